"""iptables-save / iptables-restore parsing of the mock kernel (netfilter_parse.py)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from backends.mockkernel.netfilter_parse import (
    kernel_probability,
    parse_iptables_save,
    tokenize,
)
from kservice.errors import RuleParseError, UnsupportedRule

GOLDEN = Path("/work/shared/reference/golden/iptables-overall.md")


def golden_dump() -> str:
    text = GOLDEN.read_text()
    return text.split("## Expected dump")[1].split("```")[1]


def _one_rule(rule: str, table: str = "filter", chains: str = "") -> object:
    text = f"*{table}\n{chains}{rule}\nCOMMIT\n"
    (t,) = parse_iptables_save(text)
    chain = rule.split()[1]
    return t.chains[chain].rules[0]


# ---------------------------------------------------------------- tokenizer

@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("-A X -j ACCEPT", ["-A", "X", "-j", "ACCEPT"]),
        ('-A X -m comment --comment "a b:c" -j DROP',
         ["-A", "X", "-m", "comment", "--comment", "a b:c", "-j", "DROP"]),
        ('-A X --comment "say \\"hi\\""', ["-A", "X", "--comment", 'say "hi"']),
        ('-A X --comment ""', ["-A", "X", "--comment", ""]),
        ("-A  X\t-j  ACCEPT ", ["-A", "X", "-j", "ACCEPT"]),
    ],
)
def test_tokenize(line: str, words: list[str]) -> None:
    assert tokenize(line) == words


def test_tokenize_unterminated_quote() -> None:
    with pytest.raises(ValueError):
        tokenize('-A X --comment "oops')


# ---------------------------------------------------------------- probabilities

@pytest.mark.parametrize("k", [1, 2, 3, 7, 10, 100, 1000, 10000, 100000, 100001])
def test_intended_probability_is_one_over_k(k: int) -> None:
    # kube-proxy prints 1/k with "%0.10f" (reference §5); read back exactly 1/k.
    assert kernel_probability("%0.10f" % (1.0 / k), exact_kernel=False) == Fraction(1, k)


@pytest.mark.parametrize(("text", "k"), [("0.33333333349", 3), ("0.50000000000", 2),
                                         ("0.10000000009", 10), ("0.00009999983", 10000)])
def test_iptables_save_printed_probability_is_one_over_k(text: str, k: int) -> None:
    # iptables-save prints "%.11f" of lround(2**31/k)/2**31 (libxt_statistic print).
    assert "%.11f" % (round(2**31 / k) / 2**31) == text
    assert kernel_probability(text, exact_kernel=False) == Fraction(1, k)
    assert kernel_probability(text, exact_kernel=True) == Fraction(round(2**31 / k), 2**31)


def test_intended_chain_sums_to_one_per_endpoint() -> None:
    n = 7
    remaining = Fraction(1)
    shares = []
    for i in range(n - 1):
        p = kernel_probability("%0.10f" % (1.0 / (n - i)), exact_kernel=False)
        shares.append(remaining * p)
        remaining *= 1 - p
    shares.append(remaining)
    assert shares == [Fraction(1, n)] * n


def test_exact_kernel_probability_uses_lround_of_2_31() -> None:
    # libxt_statistic: lround(0x80000000 * 0.3333333333) = lround(715827882.595...) = 715827883.
    assert kernel_probability("0.3333333333", exact_kernel=True) == Fraction(715827883, 2**31)
    assert kernel_probability("0.5000000000", exact_kernel=True) == Fraction(1, 2)
    assert kernel_probability("1.0000000000", exact_kernel=True) == 1
    # "1/3" in the kernel is a hair above 1/3 (by 1/(3 * 2**31)).
    assert kernel_probability("0.3333333333", exact_kernel=True) - Fraction(1, 3) == Fraction(1, 3 * 2**31)


def test_other_probability_text_is_its_decimal_value() -> None:
    assert kernel_probability("0.25", exact_kernel=False) == Fraction(1, 4)
    assert kernel_probability("0.3", exact_kernel=False) == Fraction(3, 10)


def test_probability_out_of_range() -> None:
    with pytest.raises(ValueError):
        kernel_probability("1.5", exact_kernel=False)


# ---------------------------------------------------------------- whole dumps

def test_golden_dump_parses_with_all_rules() -> None:
    dump = golden_dump()
    tables = {t.name: t for t in parse_iptables_save(dump)}
    assert set(tables) == {"filter", "nat"}
    n_rules = {name: sum(len(c.rules) for c in t.chains.values()) for name, t in tables.items()}
    expected = {name: 0 for name in tables}
    current = None
    for line in dump.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif line.startswith("-A "):
            expected[current] += 1  # type: ignore[index]
    assert n_rules == expected
    assert n_rules["nat"] == 55  # the rules-total metric of the golden


def test_rule_text_keeps_quotes_and_index_keys() -> None:
    dump = golden_dump()
    nat = {t.name: t for t in parse_iptables_save(dump)}["nat"]
    r = nat.chains["KUBE-SERVICES"].rules[0]
    assert r.text.startswith('-m comment --comment "ns1/svc1:p80 cluster IP"')
    assert r.key_dport == 80 and r.key_proto == "tcp" and r.key_dst is not None
    tail = nat.chains["KUBE-SERVICES"].rules[-1]
    assert tail.key_dst is None and tail.key_dport is None


def test_full_save_with_policies_and_counters() -> None:
    text = """# Generated by iptables-save v1.8.7
*filter
:INPUT ACCEPT [10:200]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:MYCHAIN - [0:0]
[3:120] -A INPUT -i eth+ -p tcp -m multiport --dports 22,80:90 -j MYCHAIN
-A MYCHAIN -s 10.0.0.0/255.255.0.0 -j RETURN
COMMIT
"""
    (t,) = parse_iptables_save(text)
    assert t.chains["FORWARD"].policy == "DROP"
    assert t.chains["INPUT"].rules[0].target.name == "MYCHAIN"


def test_restore_payload_with_delete_lines() -> None:
    text = "*nat\n:KUBE-SERVICES - [0:0]\n-X KUBE-SEP-OLD\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n"
    (t,) = parse_iptables_save(text)
    assert t.deleted == ["KUBE-SEP-OLD"]


def test_delete_after_rules_is_an_error() -> None:
    text = "*nat\n:A - [0:0]\n-A A -j RETURN\n-X A\nCOMMIT\n"
    with pytest.raises(RuleParseError) as e:
        parse_iptables_save(text)
    assert e.value.line == 4


@pytest.mark.parametrize(
    "rule",
    [
        "-A INPUT -s 10.0.0.0/8 ! -d 10.1.2.3 -p udp --sport 53 -j ACCEPT",
        "-A INPUT -p sctp -m sctp --dport 9000:9100 -j ACCEPT",
        "-A INPUT -m addrtype --src-type LOCAL --dst-type LOCAL,UNICAST --limit-iface-in -j ACCEPT",
        "-A INPUT -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A INPUT -m conntrack --ctstate NEW,ESTABLISHED,RELATED,INVALID,DNAT,SNAT -j ACCEPT",
        "-A INPUT -m state --state NEW -j ACCEPT",
        "-A INPUT -m statistic --mode nth --every 3 --packet 0 -j ACCEPT",
        "-A INPUT -m recent --name X --update --seconds 60 --hitcount 2 --reap --rdest --mask 255.255.255.0 -j DROP",
        "-A INPUT -m recent --name X --remove -j ACCEPT",
        "-A INPUT -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT",
        "-A INPUT -m nfacct --nfacct-name foo -m limit --limit 5/s --limit-burst 10 -j ACCEPT",
        "-A INPUT -j REJECT --reject-with icmp-port-unreachable",
        "-A INPUT -j LOG --log-prefix x",
        "-A INPUT -j MARK --set-xmark 0x4000/0x4000",
        "-A INPUT -j CONNMARK --save-mark",
        "-A INPUT -p tcp --syn -j ACCEPT",
    ],
)
def test_supported_filter_rules_parse(rule: str) -> None:
    _one_rule(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:80",
        "-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.3:80-90",
        "-A PREROUTING -p tcp -j DNAT --to-destination [fd00::1]:8080",
        "-A PREROUTING -p tcp -j REDIRECT --to-ports 15001",
        "-A POSTROUTING -j MASQUERADE --random-fully",
        "-A POSTROUTING -p tcp -j MASQUERADE --to-ports 1024-65535",
        "-A POSTROUTING -j SNAT --to-source 192.168.0.1",
        "-A PREROUTING -g KUBE-X",
    ],
)
def test_supported_nat_rules_parse(rule: str) -> None:
    _one_rule(rule, "nat", ":KUBE-X - [0:0]\n")


def test_dnat_ipv6_brackets() -> None:
    r = _one_rule("-A PREROUTING -p tcp -j DNAT --to-destination [fd00::1]:8080", "nat")
    assert r.target.options["ranges"][0] == {"ips": ["fd00::1"], "ports": (8080, 8080)}


@pytest.mark.parametrize(
    ("rule", "option"),
    [
        ("-A INPUT -m owner --uid-owner 0 -j ACCEPT", "-m owner"),
        ("-A INPUT -m mark --foo 1 -j ACCEPT", "--foo"),
        ("-A INPUT -m conntrack --ctorigdst 1.2.3.4 -j ACCEPT", "--ctorigdst"),
        ("-A INPUT --weird -j ACCEPT", "--weird"),
    ],
)
def test_unsupported_is_refused_with_line_and_option(rule: str, option: str) -> None:
    with pytest.raises(UnsupportedRule) as e:
        _one_rule(rule)
    assert e.value.option == option
    assert e.value.line == 2
    assert rule in str(e.value)


def test_lenient_turns_unsupported_into_warning() -> None:
    warnings: list[str] = []
    text = "*filter\n-A INPUT -m owner --uid-owner 0 -j ACCEPT\nCOMMIT\n"
    (t,) = parse_iptables_save(text, lenient=True, warnings=warnings)
    assert t.chains["INPUT"].rules[0].matches[0].unknown == "-m owner"
    assert warnings and "owner" in warnings[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-A INPUT -j ACCEPT\n", "outside a table"),
        ("*bogus\nCOMMIT\n", "unknown table"),
        ("*filter\n-A INPUT -s 300.1.1.1 -j ACCEPT\nCOMMIT\n", "bad address"),
        ("*filter\n-A INPUT -p tcp --dport 70000 -j ACCEPT\nCOMMIT\n", "port out of range"),
        ("*filter\n-A INPUT -j ACCEPT\n", "no COMMIT"),
        ("*filter\n:INPUT BOGUS [0:0]\nCOMMIT\n", "bad policy"),
        ("*filter\n-A INPUT -j DNAT --to-destination 1.2.3.4\nCOMMIT\n", "only valid in the nat"),
        ("*filter\n-A INPUT -m statistic --mode random -j ACCEPT\nCOMMIT\n", "needs --probability"),
        ("*filter\n-A INPUT -m tcp --dport 1 -j ACCEPT\nCOMMIT\n", "needs -p tcp"),
    ],
)
def test_bad_input_is_a_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(RuleParseError) as e:
        parse_iptables_save(text, source="dump.txt")
    assert fragment in str(e.value)
    assert "dump.txt" in str(e.value)


def _big(rule_lines: list[str]) -> str:
    # Enough rules of one shape to take the lazy path, then the odd one.
    lines = ["*filter", ":X - [0:0]"]
    lines += [f"-A X -s 10.0.{i // 250}.{i % 250} -p tcp --dport 80 -j ACCEPT" for i in range(6000)]
    return "\n".join(lines + rule_lines + ["COMMIT", ""])


@pytest.mark.parametrize(
    ("rule", "option"),
    [
        ("-A X -s 10.0.0.300 -p tcp --dport 80 -j ACCEPT", "-s"),
        ("-A X -s 10.0.0.3 -p tcp --dport 80000 -j ACCEPT", "--dport"),
        ("-A X -s 10.0.0.3 -p tcp --dport 80 -j ACCEPT --bogus", "--bogus"),
        ("-A X -s 10.0.0.3 -p tcp --dport 80 -m owner --uid-owner 0 -j ACCEPT", "-m owner"),
    ],
)
def test_large_inputs_still_check_every_rule_at_load(rule: str, option: str) -> None:
    with pytest.raises(RuleParseError) as e:
        parse_iptables_save(_big([rule]))
    assert e.value.line == 6003
    assert e.value.option == option


def test_large_input_lazy_rules_compile_identically() -> None:
    text = _big(['-A X -m comment --comment "" -s 10.9.9.9 -p tcp --dport 81 -j DROP'])
    (lazy,) = parse_iptables_save(text, lazy=True)
    (eager,) = parse_iptables_save(text, lazy=False)
    chain = lazy.chains["X"]
    assert chain.raw > 0
    chain.compile()
    assert [r.text for r in chain.rules] == [r.text for r in eager.chains["X"].rules]
    assert [(r.key_dst, r.key_proto, r.key_dport) for r in chain.rules] == [
        (r.key_dst, r.key_proto, r.key_dport) for r in eager.chains["X"].rules]


@pytest.mark.parametrize(
    "rule",
    [
        "-A INPUT -m statistic --mode nth --every x -j ACCEPT",
        "-A INPUT -m recent --name A --rcheck --seconds soon -j ACCEPT",
        "-A INPUT -m iprange --src-range 10.0.0.1-bogus -j ACCEPT",
    ],
)
def test_bad_values_are_parse_errors_not_tracebacks(rule: str) -> None:
    with pytest.raises(RuleParseError) as e:
        _one_rule(rule)
    assert e.value.line == 2


def test_physdev_and_ipvs_matches_of_ipvs_mode_parse_and_evaluate() -> None:
    """IPVS mode's iptables part uses ``-m physdev`` and ``-m ipvs``; both must be understood."""
    from backends.mockkernel import MockKernel
    from kservice.proxy import NodeInfo
    from kservice.trace import Packet

    k = MockKernel(NodeInfo(name="n", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",),
                            interfaces=(("eth0", "172.18.0.2/16"),)))
    k.load_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -m physdev --physdev-is-in -j DROP\n"
        "-A OUTPUT -m ipvs --vaddr 10.96.0.1 --vport 80 -j DROP\n"
        "COMMIT\n",
        "IPv4",
    )
    from_pod = k.trace(Packet("10.244.1.5", "10.244.9.9", 80))
    from_outside = k.trace(Packet("192.0.2.5", "10.244.1.9", 80))
    assert [o.verdict for o in from_pod.outcomes] == ["DROP"]
    assert [o.verdict for o in from_outside.outcomes] == ["ACCEPT"]
    # Not an IPVS packet: the ipvs match fails, so locally generated traffic passes.
    assert [o.verdict for o in k.trace(Packet("172.18.0.2", "10.96.0.1", 80)).outcomes] == [
        "ACCEPT"]


# ------------------------------------------------- what iptables-restore itself refuses
#
# Each case below was checked against the real tool (iptables v1.8.9, nf_tables) in a
# throwaway network namespace; test_real_iptables_restore_refuses_them_too re-checks it
# whenever the kernel tools are at hand.

REFUSED_NAT: list[tuple[str, str, str, str]] = [
    # (table, chains and rules, option named, words of the message)
    ("nat", "-A PREROUTING -j DROP", "-j DROP", 'The "nat" table is not intended for filtering'),
    ("nat", ":X - [0:0]\n-A X -j DROP", "-j DROP", "the use of DROP is therefore inhibited"),
    ("nat", "-A OUTPUT -j REJECT", "-j REJECT", "only valid in the filter table"),
    ("mangle", "-A PREROUTING -j REJECT", "-j REJECT", "only valid in the filter table"),
    ("nat", "-A POSTROUTING -j MASQUERADE --to-ports 1000", "--to-ports",
     "Need TCP, UDP, SCTP or DCCP with port specification"),
    ("nat", "-A PREROUTING -j REDIRECT --to-ports 80", "--to-ports", "Need TCP, UDP"),
    ("nat", "-A PREROUTING -j DNAT --to-destination 10.0.0.1:80", "--to-destination",
     "Need TCP, UDP"),
    ("nat", "-A POSTROUTING -j SNAT --to-source 10.0.0.1:80", "--to-source", "Need TCP, UDP"),
    ("nat", "-A POSTROUTING -j DNAT --to-destination 10.0.0.1", "-j DNAT",
     "not in POSTROUTING"),
    ("nat", "-A INPUT -j DNAT --to-destination 10.0.0.1", "-j DNAT", "not in INPUT"),
    ("nat", "-A PREROUTING -j SNAT --to-source 10.0.0.1", "-j SNAT", "not in PREROUTING"),
    ("nat", "-A OUTPUT -j SNAT --to-source 10.0.0.1", "-j SNAT", "not in OUTPUT"),
    ("nat", "-A OUTPUT -j MASQUERADE", "-j MASQUERADE", "not in OUTPUT"),
    ("nat", "-A INPUT -j MASQUERADE", "-j MASQUERADE", "not in INPUT"),
    ("nat", "-A POSTROUTING -j REDIRECT", "-j REDIRECT", "not in POSTROUTING"),
    # A user chain inherits the hooks of every built-in chain that reaches it.
    ("nat", ":X - [0:0]\n-A X -j DNAT --to-destination 10.0.0.1\n-A POSTROUTING -j X",
     "-j DNAT", "chain X is reached from POSTROUTING (the jump on line 4)"),
    ("nat", ":X - [0:0]\n:Y - [0:0]\n-A PREROUTING -j X\n-A X -g Y\n-A POSTROUTING -j X\n"
     "-A Y -j MASQUERADE", "-j MASQUERADE", "chain Y is reached from PREROUTING"),
]

ACCEPTED_NAT: list[tuple[str, str]] = [
    ("nat", "-A POSTROUTING -p tcp -j MASQUERADE --to-ports 1000"),
    ("nat", "-A POSTROUTING -p udp -j MASQUERADE --to-ports 1000-2000"),
    ("nat", "-A OUTPUT -j DNAT --to-destination 10.0.0.1"),
    ("nat", "-A PREROUTING -p sctp -j DNAT --to-destination 10.0.0.1:80"),
    ("nat", "-A INPUT -j SNAT --to-source 10.0.0.1"),
    ("nat", "-A OUTPUT -j REDIRECT"),
    ("nat", "-A POSTROUTING -j MASQUERADE"),
    # Not reached from any hook: the kernel has no hook to refuse it for.
    ("nat", ":Y - [0:0]\n-A Y -j DNAT --to-destination 10.0.0.1"),
    ("filter", "-A OUTPUT -j REJECT"),
]


@pytest.mark.parametrize(("table", "rules", "option", "words"), REFUSED_NAT)
def test_what_iptables_restore_refuses_is_refused(table: str, rules: str, option: str,
                                                  words: str) -> None:
    text = f"*{table}\n{rules}\nCOMMIT\n"
    with pytest.raises(RuleParseError) as e:
        parse_iptables_save(text, source="dump")
    assert e.value.option == option
    assert words in str(e.value)
    # The line named is the offending rule's (1-based; line 1 is "*table").
    bad = [i for i, line in enumerate(text.splitlines(), 1) if option.split()[-1] in line]
    assert e.value.line == bad[-1]


@pytest.mark.parametrize(("table", "rules"), ACCEPTED_NAT)
def test_what_iptables_restore_accepts_still_parses(table: str, rules: str) -> None:
    (t,) = parse_iptables_save(f"*{table}\n{rules}\nCOMMIT\n")
    assert sum(len(c.rules) for c in t.chains.values()) == rules.count("-A ")


@pytest.mark.kernel
def test_real_iptables_restore_agrees(kernel_tools: None) -> None:
    """The same verdicts from the real iptables-restore (applied in a throwaway netns:
    ``--test`` alone skips the kernel's hook checks under iptables-nft)."""
    import subprocess
    import uuid

    ns = f"kst-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        def real(table: str, rules: str) -> int:
            return subprocess.run(["ip", "netns", "exec", ns, "iptables-restore"],
                                  input=f"*{table}\n{rules}\nCOMMIT\n", capture_output=True,
                                  text=True, timeout=30).returncode
        refused_by_real = [r for t, r, _o, _w in REFUSED_NAT if real(t, r) == 0]
        accepted_by_real = [r for t, r in ACCEPTED_NAT if real(t, r) != 0]
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30)
    assert refused_by_real == [] and accepted_by_real == []


# ------------------------------------------------- unknown targets with options

TPROXY = "-A PREROUTING -p tcp --dport 80 -j TPROXY --on-port 1 --tproxy-mark 0x1/0x1"


def test_unknown_target_with_options_is_unsupported_not_a_chain_jump() -> None:
    with pytest.raises(UnsupportedRule) as e:
        parse_iptables_save(f"*mangle\n{TPROXY}\nCOMMIT\n", source="dump")
    assert e.value.option == "-j TPROXY" and e.value.line == 2
    assert "unsupported target TPROXY" in str(e.value)
    assert "takes no options" not in str(e.value)


def test_unknown_target_with_options_is_lenient() -> None:
    warnings: list[str] = []
    (t,) = parse_iptables_save(f"*mangle\n{TPROXY}\nCOMMIT\n", lenient=True,
                               warnings=warnings)
    rule = t.chains["PREROUTING"].rules[0]
    assert rule.target.unknown == "-j TPROXY"
    assert not rule.target.options.get("chain")
    assert warnings == ["rules:2: unsupported target '-j TPROXY'"]


def test_a_declared_chain_jump_with_options_stays_an_error() -> None:
    text = "*filter\n:MYCHAIN - [0:0]\n-A INPUT -j MYCHAIN --on-port 1\nCOMMIT\n"
    for lenient in (False, True):
        with pytest.raises(RuleParseError) as e:
            parse_iptables_save(text, lenient=lenient)
        assert "jump to chain MYCHAIN takes no options" in str(e.value)
