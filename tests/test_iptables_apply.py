"""The in-memory iptables' restore semantics (what the partial-sync property relies on).

Each behaviour below is what ``iptables-restore`` does in the kernel (checked with iptables
1.8.9 in a namespace for the chain-line flush and the referenced-chain refusal).
"""

from __future__ import annotations

import pytest

from backends.iptables.apply import IPTablesState, jump_target
from kservice.errors import RuleParseError

BASE = "*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\n-A KUBE-B -j RETURN\n-A OUTPUT -j KUBE-A\nCOMMIT\n"


def loaded() -> IPTablesState:
    st = IPTablesState.empty()
    st.apply_restore(BASE)
    return st


def test_noflush_chain_line_flushes_only_that_chain() -> None:
    st = loaded()
    st.apply_restore("*nat\n:KUBE-B - [0:0]\n-A KUBE-B -j ACCEPT\nCOMMIT\n")
    assert st.rules("nat", "KUBE-B") == ["-A KUBE-B -j ACCEPT"]
    assert st.rules("nat", "KUBE-A") == ["-A KUBE-A -j KUBE-B"]
    assert st.rules("nat", "OUTPUT") == ["-A OUTPUT -j KUBE-A"]


def test_without_noflush_the_table_is_replaced() -> None:
    st = loaded()
    st.apply_restore("*nat\n:KUBE-C - [0:0]\n-A KUBE-C -j RETURN\nCOMMIT\n", noflush=False)
    assert st.chain_names("nat") == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KUBE-C"]
    assert st.rules("nat", "OUTPUT") == []


def test_builtin_chain_line_sets_policy_without_flushing() -> None:
    st = loaded()
    st.apply_restore("*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n")
    assert st.tables["nat"]["OUTPUT"].policy == "DROP"
    assert st.rules("nat", "OUTPUT") == ["-A OUTPUT -j KUBE-A"]


def test_delete_after_flush_when_unreferenced() -> None:
    st = loaded()
    st.apply_restore("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A OUTPUT -j RETURN\n-X KUBE-B\nCOMMIT\n")
    assert "KUBE-B" not in st.chain_names("nat")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("*nat\n-A KUBE-NOPE -j RETURN\nCOMMIT\n", "does not exist"),
        ("*nat\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n", "still referenced"),
        ("*nat\n-X KUBE-B\nCOMMIT\n", "not empty"),
        ("*nat\n-X OUTPUT\nCOMMIT\n", "built-in"),
        ("*nat\n:KUBE-C - [0:0]\n-A KUBE-C -j KUBE-MISSING\nCOMMIT\n", "KUBE-MISSING"),
        ("*raw\nCOMMIT\n", "unknown table"),
        ("*nat\n:KUBE-C - [0:0]\n", "COMMIT"),
        ("*nat\n-I OUTPUT -j RETURN\nCOMMIT\n", "unsupported"),
        ("*nat\n:KUBE-C ACCEPT [0:0]\nCOMMIT\n", "cannot have a policy"),
    ],
)
def test_errors_leave_the_state_unchanged(payload: str, message: str) -> None:
    st = loaded()
    before = st.snapshot()
    with pytest.raises(RuleParseError, match=message):
        st.apply_restore(payload)
    assert st.snapshot() == before


def test_ensure_rule_is_idempotent_and_quotes_comments() -> None:
    st = IPTablesState.empty()
    st.ensure_chain("nat", "KUBE-SERVICES")
    args = ("-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
    assert st.ensure_rule("nat", "PREROUTING", args, prepend=True) is False
    assert st.ensure_rule("nat", "PREROUTING", args, prepend=True) is True
    assert st.rules("nat", "PREROUTING") == [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']


def test_jump_target() -> None:
    assert jump_target('-A X -m comment --comment "a -j b" -j KUBE-SVC-1') == "KUBE-SVC-1"
    assert jump_target("-A X -j DNAT --to-destination 1.2.3.4:80") == "DNAT"
    assert jump_target('-A KUBE-FW-X -m comment --comment "other traffic"') is None
