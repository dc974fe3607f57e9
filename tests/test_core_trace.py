"""The shared trace result: merging, ordering and the JSON contract."""

from __future__ import annotations

import json
from fractions import Fraction

from kservice.trace import Outcome, Packet, TraceResult


def test_outcomes_merge_by_verdict_destination_and_source() -> None:
    a = Outcome(Fraction(1, 3), "ACCEPT", "10.244.1.5:80", "10.244.0.1", True, ("r1",))
    b = Outcome(Fraction(1, 2), "ACCEPT", "10.244.1.5:80", "10.244.0.1", True, ("r2",))
    c = Outcome(Fraction(1, 6), "ACCEPT", "10.244.0.9:80", "10.244.0.1", True, ("r3",))
    res = TraceResult("n", "iptables", Packet("10.244.0.1", "10.96.0.5", 80), (a, b, c))
    assert [o.delivered_to for o in res.outcomes] == ["10.244.0.9:80", "10.244.1.5:80"]
    merged = res.outcomes[1]
    assert merged.probability == Fraction(5, 6)
    assert merged.rules == ("r2",)  # the more probable part's path
    assert res.total_probability == 1


def test_undelivered_outcomes_sort_last_and_compare_across_backends() -> None:
    drop = Outcome(Fraction(1, 2), "DROP")
    ok = Outcome(Fraction(1, 2), "ACCEPT", "10.0.0.1:80", "1.2.3.4")
    p = Packet("1.2.3.4", "10.96.0.1", 80)
    one = TraceResult("n", "iptables", p, (drop, ok))
    other = TraceResult("n", "nftables", p, (ok, drop))
    assert one.outcomes[-1].verdict == "DROP"
    assert one.distribution() == other.distribution()


def test_json_contract() -> None:
    p = Packet("10.244.0.5", "10.96.0.10", 53, sport=1234, proto="udp")
    res = TraceResult("kind-worker", "iptables", p,
                      (Outcome(Fraction(1), "REJECT", rules=("filter OUTPUT -j KUBE-SERVICES",)),))
    data = json.loads(res.dumps())
    assert data == {
        "node": "kind-worker",
        "mode": "iptables",
        "packet": {"src": "10.244.0.5", "sport": 1234, "dst": "10.96.0.10", "dport": 53,
                   "proto": "udp"},
        "outcomes": [{"probability": "1", "verdict": "REJECT", "delivered_to": None,
                      "source_seen": None, "masqueraded": False,
                      "rules": ["filter OUTPUT -j KUBE-SERVICES"]}],
    }
