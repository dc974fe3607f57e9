"""The iptables chain walk, matches and targets of the mock kernel (netfilter.py)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from backends.mockkernel import MockKernel
from kservice.errors import BackendError, RuleParseError, UnsupportedRule
from kservice.proxy.types import NodeInfo
from kservice.trace import Packet

NODE = NodeInfo(
    name="n1",
    ips=("192.168.0.2",),
    pod_cidrs=("10.244.1.0/24",),
    interfaces=(("eth0", "192.168.0.2/24"),),
)
POD = "10.244.1.5"
OUTSIDE = "203.0.113.9"


def kernel(text: str, **kw: object) -> MockKernel:
    k = MockKernel(NODE, **kw)  # type: ignore[arg-type]
    k.load_iptables_save(text)
    return k


def dist(k: MockKernel, pkt: Packet, **kw: object) -> dict[tuple[str, str | None, str | None], Fraction]:
    return k.trace(pkt, **kw).distribution()  # type: ignore[arg-type]


def test_no_rules_forwards_and_delivers_locally() -> None:
    k = MockKernel(NODE)
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("ACCEPT", "10.9.9.9:80", POD): 1}
    assert dist(k, Packet(OUTSIDE, "192.168.0.2", 22)) == {("ACCEPT", "192.168.0.2:22", OUTSIDE): 1}


def test_policy_drop_and_rule_order() -> None:
    k = kernel("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n")
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.9", 53, proto="udp")) == {("ACCEPT", "10.9.9.9:53", POD): 1}
    out = k.trace(Packet(POD, "10.9.9.9", 80)).outcomes[0]
    assert out.rules[-1] == "filter FORWARD policy DROP"


def test_reject_vs_drop() -> None:
    k = kernel("*filter\n-A FORWARD -d 10.9.9.9 -j REJECT\n-A FORWARD -d 10.9.9.8 -j DROP\nCOMMIT\n")
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("REJECT", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.8", 80)) == {("DROP", None, None): 1}


def test_jump_return_and_goto() -> None:
    text = """*filter
:A - [0:0]
:B - [0:0]
-A FORWARD -j A
-A FORWARD -d 10.9.9.1 -j DROP
-A A -d 10.9.9.2 -j RETURN
-A A -d 10.9.9.3 -g B
-A A -d 10.9.9.4 -j B
-A A -d 10.9.9.4 -j DROP
-A B -p udp -j REJECT
COMMIT
"""
    k = kernel(text)
    # RETURN comes back to FORWARD, whose next rule still applies.
    assert dist(k, Packet(POD, "10.9.9.1", 1)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.2", 1)) == {("ACCEPT", "10.9.9.2:1", POD): 1}
    # -g B: falling off B returns to FORWARD (the caller of A), not to A.
    assert dist(k, Packet(POD, "10.9.9.3", 1)) == {("ACCEPT", "10.9.9.3:1", POD): 1}
    # -j B: falling off B continues in A, which drops.
    assert dist(k, Packet(POD, "10.9.9.4", 1)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.4", 1, proto="udp")) == {("REJECT", None, None): 1}


@pytest.mark.parametrize(
    ("rule", "pkt", "matches"),
    [
        ("-s 10.244.0.0/16", Packet(POD, "10.9.9.9", 80), True),
        ("! -s 10.244.0.0/16", Packet(POD, "10.9.9.9", 80), False),
        ("-d 10.9.9.9/32", Packet(POD, "10.9.9.9", 80), True),
        ("-p tcp --dport 80", Packet(POD, "10.9.9.9", 80), True),
        ("-p tcp ! --dport 80", Packet(POD, "10.9.9.9", 80), False),
        ("-p tcp --dport 70:90", Packet(POD, "10.9.9.9", 80), True),
        ("-p tcp --sport 40000", Packet(POD, "10.9.9.9", 80), True),
        ("-p udp --dport 80", Packet(POD, "10.9.9.9", 80), False),
        ("-p tcp -m multiport --dports 22,79:81", Packet(POD, "10.9.9.9", 80), True),
        ("-p tcp -m multiport --dports 22,443", Packet(POD, "10.9.9.9", 80), False),
        ("-i cni+", Packet(POD, "10.9.9.9", 80), True),
        ("-i eth0", Packet(POD, "10.9.9.9", 80), False),
        ("-o eth0", Packet(POD, "10.9.9.9", 80), True),
        ("! -o eth+", Packet(POD, "10.9.9.9", 80), False),
        ("-m iprange --dst-range 10.9.9.1-10.9.9.10", Packet(POD, "10.9.9.9", 80), True),
        ("-m addrtype --dst-type UNICAST", Packet(POD, "10.9.9.9", 80), True),
        ("-m addrtype --dst-type LOCAL", Packet(POD, "10.9.9.9", 80), False),
        ("-m addrtype ! --src-type LOCAL", Packet(POD, "10.9.9.9", 80), True),
        ("-m conntrack --ctstate NEW", Packet(POD, "10.9.9.9", 80), True),
        ("-m conntrack --ctstate ESTABLISHED,RELATED", Packet(POD, "10.9.9.9", 80), False),
        ("-m conntrack --ctstate DNAT", Packet(POD, "10.9.9.9", 80), False),
        ("-m mark --mark 0", Packet(POD, "10.9.9.9", 80), True),
        ("-m comment --comment \"x y\"", Packet(POD, "10.9.9.9", 80), True),
        ("-p tcp --syn", Packet(POD, "10.9.9.9", 80), True),
    ],
)
def test_matches(rule: str, pkt: Packet, matches: bool) -> None:
    k = kernel(f"*filter\n-A FORWARD {rule} -j DROP\nCOMMIT\n")
    verdict = next(iter(dist(k, pkt)))[0]
    assert (verdict == "DROP") is matches


def test_addrtype_local_for_node_loopback_and_bound_addresses() -> None:
    k = kernel("*filter\n-A INPUT -m addrtype --dst-type LOCAL -j REJECT\nCOMMIT\n")
    for dst in ("192.168.0.2", "10.244.1.1"):  # node IP, the bridge's address
        assert dist(k, Packet(OUTSIDE, dst, 80)) == {("REJECT", None, None): 1}
    k.add_local_address("10.96.0.10", "kube-ipvs0")
    assert dist(k, Packet(OUTSIDE, "10.96.0.10", 80)) == {("REJECT", None, None): 1}
    assert k.addr_type("127.0.0.5") == "LOCAL"
    assert k.addr_type("224.0.0.1") == "MULTICAST"
    assert k.addr_type("192.168.0.255") == "BROADCAST"
    assert k.addr_type("192.168.0.2", "eth0") == "LOCAL"
    assert k.addr_type("192.168.0.2", "cni0") == "UNICAST"  # --limit-iface-in semantics


def test_mark_targets_and_mark_match() -> None:
    text = """*mangle
-A FORWARD -j MARK --set-xmark 0x10/0xff
-A FORWARD -j MARK --or-mark 0x4000
-A FORWARD -j MARK --xor-mark 0x10
COMMIT
*filter
-A FORWARD -m mark --mark 0x4000/0x4000 -j REJECT
COMMIT
"""
    k = kernel(text)
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("REJECT", None, None): 1}
    text2 = text.replace("-m mark --mark 0x4000/0x4000", "-m mark --mark 0x4010")
    assert dist(kernel(text2), Packet(POD, "10.9.9.9", 80)) == {("ACCEPT", "10.9.9.9:80", POD): 1}


def test_statistic_random_branches_exactly() -> None:
    text = """*nat
-A PREROUTING -d 10.96.0.1 -p tcp -m statistic --mode random --probability 0.3333333333 -j DNAT --to-destination 10.244.1.10:80
-A PREROUTING -d 10.96.0.1 -p tcp -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.244.1.11:80
-A PREROUTING -d 10.96.0.1 -p tcp -j DNAT --to-destination 10.244.1.12:80
COMMIT
"""
    pkt = Packet(OUTSIDE, "10.96.0.1", 80)
    d = dist(kernel(text), pkt)
    assert d == {("ACCEPT", f"10.244.1.1{i}:80", OUTSIDE): Fraction(1, 3) for i in range(3)}
    exact = dist(kernel(text, exact_kernel_probabilities=True), pkt)
    first = Fraction(715827883, 2**31)
    assert exact[("ACCEPT", "10.244.1.10:80", OUTSIDE)] == first
    assert exact[("ACCEPT", "10.244.1.11:80", OUTSIDE)] == (1 - first) / 2
    assert sum(exact.values()) == 1


def test_statistic_nth_counts_only_when_sending() -> None:
    text = "*filter\n-A FORWARD -m statistic --mode nth --every 3 --packet 0 -j DROP\nCOMMIT\n"
    k = kernel(text)
    rng = random.Random(0)
    pkt = Packet(POD, "10.9.9.9", 80)
    # A trace never advances the counter: it always reports the next packet's fate.
    assert dist(k, pkt) == dist(k, pkt)
    verdicts = [k.send(Packet(POD, "10.9.9.9", 80, sport=1000 + i), rng).verdict for i in range(6)]
    assert verdicts == ["ACCEPT", "ACCEPT", "DROP", "ACCEPT", "ACCEPT", "DROP"]


def test_dnat_snat_masquerade_redirect() -> None:
    text = """*nat
-A PREROUTING -p tcp -d 10.96.0.1 --dport 80 -j DNAT --to-destination 10.244.1.20:8080
-A PREROUTING -p tcp -d 10.96.0.2 --dport 80 -j REDIRECT --to-ports 15001
-A POSTROUTING -o eth0 -j MASQUERADE
-A POSTROUTING -o cni0 -s 203.0.113.0/24 -j SNAT --to-source 10.244.1.254
COMMIT
"""
    k = kernel(text)
    # DNAT to a local pod, SNAT on the bridge.
    assert dist(k, Packet(OUTSIDE, "10.96.0.1", 80)) == {
        ("ACCEPT", "10.244.1.20:8080", "10.244.1.254"): 1}
    # REDIRECT: to the incoming interface's address, delivered locally.
    assert dist(k, Packet(OUTSIDE, "10.96.0.2", 80)) == {
        ("ACCEPT", "192.168.0.2:15001", OUTSIDE): 1}
    # A pod going out to the internet is masqueraded to eth0's address.
    r = k.trace(Packet(POD, "1.1.1.1", 443))
    assert r.distribution() == {("ACCEPT", "1.1.1.1:443", "192.168.0.2"): 1}
    assert r.outcomes[0].masqueraded


def test_locally_generated_redirect_goes_to_loopback() -> None:
    k = kernel("*nat\n-A OUTPUT -p tcp -d 10.96.0.2 -j REDIRECT --to-ports 15001\nCOMMIT\n")
    assert dist(k, Packet("192.168.0.2", "10.96.0.2", 80)) == {
        ("ACCEPT", "127.0.0.1:15001", "192.168.0.2"): 1}


def test_ipv6_family_is_separate() -> None:
    node = NodeInfo(name="n1", ips=("192.168.0.2", "fd00::2"), pod_cidrs=("fd00:10::/64",),
                    interfaces=(("eth0", "192.168.0.2/24"), ("eth0", "fd00::2/64")))
    k = MockKernel(node)
    k.load_iptables_save("*filter\n-A FORWARD -d fd00:20::/64 -j DROP\nCOMMIT\n", family="IPv6")
    assert dist(k, Packet("fd00:10::5", "fd00:20::1", 80)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.9", 80))[("ACCEPT", "10.9.9.9:80", POD)] == 1
    k.load_iptables_save(
        "*nat\n-A PREROUTING -p tcp -j DNAT --to-destination [fd00:10::9]:8080\nCOMMIT\n",
        family="IPv6")
    assert dist(k, Packet("fd00:20::1", "fd00:99::1", 80)) == {("ACCEPT", "[fd00:10::9]:8080", "fd00:20::1"): 1}


def test_noflush_keeps_other_chains_and_x_deletes() -> None:
    k = kernel("*filter\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A A -j DROP\n-A B -j REJECT\nCOMMIT\n")
    k.load_iptables_save("*filter\n:A - [0:0]\n-X B\n-A A -j REJECT\nCOMMIT\n")
    assert "B" not in k.iptables[4]["filter"].chains
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("REJECT", None, None): 1}
    # A full (flushing) load replaces the table.
    k.load_iptables_save("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", noflush=False)
    assert set(k.iptables[4]["filter"].chains) == {"INPUT", "FORWARD", "OUTPUT"}


def test_jump_to_missing_chain_and_unknown_target() -> None:
    with pytest.raises(RuleParseError, match="does not exist"):
        kernel("*filter\n-A FORWARD -j KUBE-NOPE\nCOMMIT\n")
    with pytest.raises(UnsupportedRule) as e:
        kernel("*filter\n-A FORWARD -j TPROXY\nCOMMIT\n")
    assert e.value.option == "-j TPROXY"


def test_lenient_unknown_is_an_explicit_outcome() -> None:
    text = "*filter\n-A FORWARD -d 10.9.9.9 -m owner --uid-owner 0 -j DROP\nCOMMIT\n"
    k = kernel(text, lenient=True)
    assert k.warnings
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("UNKNOWN", None, None): 1}
    # Rules not reached do not matter.
    assert dist(k, Packet(POD, "10.9.9.8", 80)) == {("ACCEPT", "10.9.9.8:80", POD): 1}


def test_set_match_without_ipsets_is_a_clear_error() -> None:
    k = kernel("*filter\n-A FORWARD -m set --match-set KUBE-X dst,dst -j DROP\nCOMMIT\n")
    with pytest.raises(BackendError, match="ipset KUBE-X does not exist"):
        k.trace(Packet(POD, "10.9.9.9", 80))


def test_set_match_asks_kernel_ipsets() -> None:
    calls = []

    class Sets:
        def test(self, name: str, state: object, flags: tuple[str, ...]) -> bool:
            calls.append((name, flags))
            return state.dst == "10.9.9.9"

    k = kernel("*filter\n-A FORWARD -m set --match-set KUBE-X dst,dst -j DROP\nCOMMIT\n")
    k.ipsets = Sets()
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.8", 80)) == {("ACCEPT", "10.9.9.8:80", POD): 1}
    assert calls[0] == ("KUBE-X", ("dst", "dst"))


def test_notrack_skips_nat() -> None:
    text = """*raw
-A PREROUTING -d 10.96.0.1 -j CT --notrack
COMMIT
*nat
-A PREROUTING -d 10.96.0.1 -j DNAT --to-destination 10.244.1.20
COMMIT
*filter
-A FORWARD -m conntrack --ctstate UNTRACKED -j REJECT
COMMIT
"""
    assert dist(kernel(text), Packet(OUTSIDE, "10.96.0.1", 80)) == {("REJECT", None, None): 1}


def test_hook_order_raw_mangle_nat_filter() -> None:
    text = """*raw
-A PREROUTING -j MARK --set-mark 0x1
COMMIT
*mangle
-A PREROUTING -m mark --mark 0x1 -j MARK --set-mark 0x3
COMMIT
*nat
-A PREROUTING -m mark --mark 0x3 -j DNAT --to-destination 10.244.1.20
COMMIT
*filter
-A FORWARD -m conntrack --ctstate DNAT -m mark --mark 0x3 -j REJECT
COMMIT
"""
    r = kernel(text).trace(Packet(OUTSIDE, "10.96.0.1", 80))
    assert r.distribution() == {("REJECT", None, None): 1}
    tables = [line.split()[0] for line in r.outcomes[0].rules]
    assert tables == ["raw", "mangle", "nat", "filter"]


def test_jump_loop_is_detected() -> None:
    k = kernel("*filter\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A A -j B\n-A B -j A\nCOMMIT\n")
    with pytest.raises(BackendError, match="loop"):
        k.trace(Packet(POD, "10.9.9.9", 80))


@pytest.mark.parametrize(
    "rule",
    [
        # iptables-save's own order: the proto's match loaded explicitly after a comment.
        '-p tcp -m comment --comment "x" -m tcp --dport 80',
        # An option after another match goes to the match that defines it (here the
        # implicitly loaded tcp match), not to the comment match.
        '-p tcp -m comment --comment "x" --dport 80',
        '-m tcp -p tcp -m comment --comment x --dport 80',
    ],
)
def test_options_go_to_the_match_that_defines_them(rule: str) -> None:
    k = kernel(f"*filter\n-A FORWARD {rule} -j DROP\nCOMMIT\n")
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("DROP", None, None): 1}
    assert dist(k, Packet(POD, "10.9.9.9", 81)) == {("ACCEPT", "10.9.9.9:81", POD): 1}


def test_goto_with_statistic_split() -> None:
    text = """*nat
:A - [0:0]
:B - [0:0]
-A PREROUTING -d 10.96.0.1 -m statistic --mode random --probability 0.25 -g A
-A PREROUTING -d 10.96.0.1 -j B
-A A -j RETURN
-A B -j DNAT --to-destination 10.244.1.30
COMMIT
"""
    # 1/4: goto A, which returns from PREROUTING itself (no DNAT); 3/4: B's DNAT.
    assert dist(kernel(text), Packet(OUTSIDE, "10.96.0.1", 80)) == {
        ("ACCEPT", "10.96.0.1:80", OUTSIDE): Fraction(1, 4),
        ("ACCEPT", "10.244.1.30:80", OUTSIDE): Fraction(3, 4),
    }


def test_policy_dash_keeps_policy_and_counters_are_ignored() -> None:
    k = kernel("*filter\n:FORWARD DROP [5:300]\nCOMMIT\n")
    k.load_iptables_save("*filter\n:FORWARD - [0:0]\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n")
    assert k.iptables[4]["filter"].chains["FORWARD"].policy == "DROP"
    assert dist(k, Packet(POD, "10.9.9.9", 80)) == {("DROP", None, None): 1}


def test_masquerade_out_of_lo_uses_the_node_ip_not_loopback() -> None:
    """A node reaching a ClusterIP served by its own address: DNAT in OUTPUT, out via lo,
    MASQUERADE. The kernel picks a universe-scope address (inet_select_addr), so the
    endpoint sees the node IP -- confirmed against a real kernel by the lab."""
    k = MockKernel(NodeInfo(name="n", ips=("172.18.0.2",), pod_cidrs=("10.244.0.0/24",),
                            interfaces=(("eth0", "172.18.0.2/16"), ("lo", "127.0.0.1/8"))))
    k.load_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n"
        "-A OUTPUT -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j DNAT --to-destination "
        "172.18.0.2:6443\n"
        "-A POSTROUTING -j MASQUERADE\nCOMMIT\n", "IPv4")
    (o,) = k.trace(Packet("172.18.0.2", "10.96.0.1", 443)).outcomes
    assert o.delivered_to == "172.18.0.2:6443"
    assert o.source_seen == "172.18.0.2" and o.masqueraded
