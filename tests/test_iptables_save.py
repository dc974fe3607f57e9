"""Restore-form rules -> ``iptables-save`` form. Expected lines are what iptables v1.8.9
(nft and legacy) printed for these inputs in a network namespace."""

from __future__ import annotations

import pytest

from backends.iptables.apply import IPTablesState
from backends.iptables.save import node_state, render_save, save_rule, save_string
from kservice.errors import UnsupportedRule

CASES = [
    ('-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
     '-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O'),
    ('-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
     '-A KUBE-SVC-XPGD46QRK7WJZT7O ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ'),
    ('-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-S --rcheck --seconds 10800 --reap -j KUBE-SEP-S',
     '-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-S --mask 255.255.255.255 --rsource -j KUBE-SEP-S'),
    ('-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-S',
     '-A KUBE-SVC-X -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-S'),
    ('-A KUBE-SVC-X -m statistic --mode random --probability 0.0001000000 -j KUBE-SEP-S',
     '-A KUBE-SVC-X -m statistic --mode random --probability 0.00009999983 -j KUBE-SEP-S'),
    ('-A KUBE-SEP-S -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ',
     '-A KUBE-SEP-S -s 10.180.0.1/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ'),
    ('-A KUBE-SEP-S -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-S --set -m udp -p udp -j DNAT --to-destination 10.180.0.1:80',
     '-A KUBE-SEP-S -p udp -m comment --comment "ns1/svc1:p80" -m recent --set --name KUBE-SEP-S --mask 255.255.255.255 --rsource -m udp -j DNAT --to-destination 10.180.0.1:80'),
    ('-A KUBE-SEP-S -m comment --comment ns1/svc1 -i br0 -m sctp -p sctp --dport 80 -j DNAT --to-destination 10.180.0.1:80',
     '-A KUBE-SEP-S -i br0 -p sctp -m comment --comment "ns1/svc1" -m sctp --dport 80 -j DNAT --to-destination 10.180.0.1:80'),
    ('-A KUBE-FW-A -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"',
     '-A KUBE-FW-A -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"'),
    ('-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
     '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'),
    ('-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000', '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0'),
    ('-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000', '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'),
    ('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
     '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'),
    ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS',
     '-A KUBE-SERVICES ! -d 127.0.0.0/8 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'),
    ('-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT',
     '-A KUBE-SERVICES -d 172.30.0.46/32 -p tcp -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable'),
    ('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
     '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP'),
    ('-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP',
     '-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP'),
    ('-A KUBE-FW-A -m comment --comment "a\'b" ! -i veth+ -j RETURN',
     '-A KUBE-FW-A ! -i veth+ -m comment --comment "a\\\'b" -j RETURN'),
]


@pytest.mark.parametrize(("restore", "saved"), CASES)
def test_save_rule(restore: str, saved: str) -> None:
    assert save_rule(restore) == saved


def test_save_rule_ipv6() -> None:
    assert save_rule(
        "-A KUBE-SEP-S -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-S --set -m tcp -p tcp "
        "-j DNAT --to-destination [fd00:10:180::1]:80", "IPv6"
    ) == ('-A KUBE-SEP-S -p tcp -m comment --comment "ns1/svc1:p80" -m recent --set --name KUBE-SEP-S '
          "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -m tcp -j DNAT --to-destination [fd00:10:180::1]:80")
    assert save_rule("-A X -m tcp -p tcp -d fd00:172:30::41 --dport 80 -j REJECT", "IPv6") == (
        "-A X -d fd00:172:30::41/128 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable")


@pytest.mark.parametrize(
    ("value", "printed"),
    [("kubernetes", "kubernetes"), ("a-b_c9", "a-b_c9"), ("ns1/svc1", '"ns1/svc1"'),
     ("a b", '"a b"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("", '""')],
)
def test_save_string(value: str, printed: str) -> None:
    assert save_string(value) == printed


@pytest.mark.parametrize(
    "line",
    ["-A X -m multiport --dports 80,443 -j ACCEPT", "-I X -j ACCEPT", "-A X --dport 80 -j ACCEPT",
     "-A X -m statistic --mode nth --every 2 -j ACCEPT", "-A X -d 1.2.3.4 -j REJECT --frob"],
)
def test_unknown_syntax_is_refused_with_the_option(line: str) -> None:
    with pytest.raises(UnsupportedRule) as info:
        save_rule(line)
    assert info.value.option


def test_address_family_mismatch_is_refused() -> None:
    with pytest.raises(UnsupportedRule, match="not IPv6"):
        save_rule("-A X -d 10.0.0.1 -j ACCEPT", "IPv6")


def test_node_state_jump_rules_are_prepended_in_reverse() -> None:
    st = node_state("*nat\nCOMMIT\n")
    targets = {c: [r.rsplit(" ", 1)[1] for r in st.rules("filter", c)] for c in ("INPUT", "FORWARD", "OUTPUT")}
    # Reference §1.2: prepending in list order leaves the reverse order on a clean host.
    assert targets == {
        "INPUT": ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"],
        "FORWARD": ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"],
        "OUTPUT": ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"],
    }
    assert [r.rsplit(" ", 1)[1] for r in st.rules("nat", "PREROUTING")] == ["KUBE-SERVICES"]
    for table in ("mangle", "nat", "filter"):
        assert "KUBE-PROXY-CANARY" in st.chain_names(table)


def test_render_save_layout() -> None:
    st = IPTablesState.empty()
    st.apply_restore("*nat\n:KUBE-B - [0:0]\n:KUBE-A - [0:0]\n-A KUBE-B -j RETURN\n-A OUTPUT -j KUBE-B\nCOMMIT\n")
    text = render_save(st, generated_on="Sat Nov 28 18:24:47 2026")
    nat = text.split("*nat\n", 1)[1].split("COMMIT\n", 1)[0]
    assert nat == (":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                   ":POSTROUTING ACCEPT [0:0]\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n"
                   "-A OUTPUT -j KUBE-B\n-A KUBE-B -j RETURN\n")
    assert text.startswith("# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sat Nov 28 18:24:47 2026\n*mangle\n")
    assert [line for line in text.splitlines() if line.startswith("*")] == ["*mangle", "*filter", "*nat"]
    legacy = render_save(st, variant="legacy")
    assert legacy.startswith("# Generated by iptables-save v1.8.9 on ")
    v6 = IPTablesState.empty("IPv6")
    assert render_save(v6).startswith("# Generated by ip6tables-nft-save v1.8.9 (nf_tables) on ")
