"""The port of upstream's ``sortIPTablesRules`` / ``checkIPTablesRuleJumps`` (reference §6)."""

from __future__ import annotations

import pytest

from backends.iptables.normalize import (
    check_iptables_rule_jumps,
    parse_iptables_dump,
    rule_comment,
    service_key,
    sort_iptables_rules,
)
from kservice.errors import RuleParseError

RAW = """
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-B - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-OLD - [0:0]
-A KUBE-POSTROUTING -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -d 172.30.0.42 -j KUBE-SVC-B
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 --dport 3002 -j KUBE-SVC-B
-A KUBE-SVC-B -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-SERVICES -m comment --comment "ns1/svc1:b cluster IP" -d 172.30.0.41 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:a cluster IP" -d 172.30.0.41 -j KUBE-SVC-A
-A KUBE-NODEPORTS -m comment --comment ns1/svc1 --dport 3001 -j KUBE-SVC-A
-A KUBE-SVC-A -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-X KUBE-SEP-OLD
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:INPUT - [3:4]
:KUBE-NODEPORTS - [0:0]
-A KUBE-SERVICES -m comment --comment "ns9/svc:p has no endpoints" -j REJECT
-A KUBE-SERVICES -m comment --comment "ns1/svc:p has no endpoints" -j REJECT
COMMIT
"""

EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:INPUT - [3:4]
-A KUBE-SERVICES -m comment --comment "ns1/svc:p has no endpoints" -j REJECT
-A KUBE-SERVICES -m comment --comment "ns9/svc:p has no endpoints" -j REJECT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-OLD - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SVC-B - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1 --dport 3001 -j KUBE-SVC-A
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 --dport 3002 -j KUBE-SVC-B
-A KUBE-SERVICES -m comment --comment "ns1/svc1:b cluster IP" -d 172.30.0.41 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns1/svc1:a cluster IP" -d 172.30.0.41 -j KUBE-SVC-A
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -d 172.30.0.42 -j KUBE-SVC-B
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE
-A KUBE-SVC-A -j KUBE-MARK-MASQ
-A KUBE-SVC-B -j KUBE-MARK-MASQ
-X KUBE-SEP-OLD
COMMIT
"""


def test_sort_iptables_rules() -> None:
    # Tables by name; NODEPORTS, SERVICES, other KUBE-*, others; stable per-service order
    # (svc1:b stays before svc1:a); the "must be the last rule" rule last; -X at the end.
    assert sort_iptables_rules(RAW) == EXPECTED


def test_sort_is_idempotent() -> None:
    assert sort_iptables_rules(EXPECTED) == EXPECTED


def test_comment_and_service_key() -> None:
    assert rule_comment('-A X -m comment --comment "ns/s:p cluster IP" -j Y') == "ns/s:p cluster IP"
    assert rule_comment("-A X -m comment --comment ns/s:p -j Y") == "ns/s:p"
    assert rule_comment("-A X -j Y") is None
    assert service_key('-A X -m comment --comment "ns2/svc2:p80 cluster IP"') == "ns2/svc2"
    assert service_key("-A X -m comment --comment ns2/svc2 -j Y") == "ns2/svc2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("*nat\n-A KUBE-X -j DROP\nCOMMIT\n", "undeclared chain"),
        ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -j DROP\n-X KUBE-X\nCOMMIT\n", "has rules"),
        ("*nat\n:KUBE-X - [0:0]\n", "not committed"),
        ("-A KUBE-X -j DROP\n", "outside of a table"),
        ("*nat\nCOMMIT\n*nat\nCOMMIT\n", "duplicate table"),
        ("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -j DROP\n:KUBE-Y - [0:0]\nCOMMIT\n", "after the first rule"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(RuleParseError, match=message) as info:
        parse_iptables_dump(text)
    assert "dump" in str(info.value)


def test_rule_jumps_clean_and_problems() -> None:
    # KUBE-SEP-OLD is deleted, so not "created"; INPUT is not a kube-proxy top-level chain.
    assert check_iptables_rule_jumps(EXPECTED) == [
        "filter: chain INPUT is created but nothing jumps to it"
    ]
    bad = (
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SVC-EMPTY - [0:0]\n:KUBE-ORPHAN - [0:0]\n"
        "-A KUBE-SERVICES -j KUBE-SVC-A\n-A KUBE-SERVICES -j KUBE-SVC-EMPTY\n"
        "-A KUBE-SVC-A -j KUBE-SEP-MISSING\n-A KUBE-ORPHAN -j DROP\nCOMMIT\n"
    )
    assert check_iptables_rule_jumps(bad) == [
        "nat: jump to chain KUBE-SEP-MISSING that is not created",
        "nat: jump to chain KUBE-SEP-MISSING that has no rules",
        "nat: jump to chain KUBE-SVC-EMPTY that has no rules",
        "nat: chain KUBE-ORPHAN is created but nothing jumps to it",
    ]
