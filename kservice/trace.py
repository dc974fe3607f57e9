"""The one result type every trace returns, whatever the backend.

A trace answers: for this packet on this node, what can happen and with what exact
probability. Results from different backends compare directly (``==``), and serialise to
the documented JSON contract of ``kservice trace -o json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import attrs

from kservice._frozen import to_tuple

__all__ = ["Outcome", "Packet", "TraceResult", "merge_outcomes"]

VERDICTS = ("ACCEPT", "DROP", "REJECT")


@attrs.frozen
class Packet:
    src: str
    dst: str
    dport: int
    sport: int = 40000
    #: lower case: ``tcp``, ``udp`` or ``sctp``.
    proto: str = "tcp"

    def to_json(self) -> dict[str, Any]:
        return {
            "src": self.src, "sport": self.sport, "dst": self.dst,
            "dport": self.dport, "proto": self.proto,
        }


@attrs.frozen
class Outcome:
    """One possible fate of a packet."""

    probability: Fraction
    #: ``ACCEPT`` (delivered), ``DROP`` or ``REJECT``; ``UNKNOWN`` only in lenient mode.
    verdict: str
    #: ``ip:port`` the packet finally goes to after NAT (``None`` when not delivered).
    delivered_to: str | None = None
    #: The source address the destination sees (``None`` when not delivered).
    source_seen: str | None = None
    masqueraded: bool = False
    #: The rule path, e.g. ``nat PREROUTING -j KUBE-SERVICES``.
    rules: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)

    def key(self) -> tuple[str, str | None, str | None]:
        return (self.verdict, self.delivered_to, self.source_seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "probability": str(self.probability),
            "verdict": self.verdict,
            "delivered_to": self.delivered_to,
            "source_seen": self.source_seen,
            "masqueraded": self.masqueraded,
            "rules": list(self.rules),
        }


def _sort_key(o: Outcome) -> tuple[int, str, str, str]:
    # Sorted by delivered_to (undelivered last), then verdict and source for a total order.
    return (o.delivered_to is None, o.delivered_to or "", o.verdict, o.source_seen or "")


def merge_outcomes(outcomes: Iterable[Outcome]) -> tuple[Outcome, ...]:
    """Merge outcomes with the same (verdict, delivered_to, source_seen); sort them.

    The merged outcome keeps the rule path of its most probable part (first on ties).
    """
    merged: dict[tuple[str, str | None, str | None], Outcome] = {}
    best: dict[tuple[str, str | None, str | None], Fraction] = {}
    for o in outcomes:
        k = o.key()
        if k not in merged:
            merged[k] = o
            best[k] = o.probability
            continue
        cur = merged[k]
        rules = cur.rules
        if o.probability > best[k]:
            rules, best[k] = o.rules, o.probability
        merged[k] = attrs.evolve(
            cur,
            probability=cur.probability + o.probability,
            masqueraded=cur.masqueraded or o.masqueraded,
            rules=rules,
        )
    return tuple(sorted(merged.values(), key=_sort_key))


@attrs.frozen
class TraceResult:
    node: str
    mode: str
    packet: Packet
    outcomes: tuple[Outcome, ...] = attrs.field(converter=merge_outcomes)

    def distribution(self) -> dict[tuple[str, str | None, str | None], Fraction]:
        """(verdict, delivered_to, source_seen) -> probability: what agreement compares."""
        return {o.key(): o.probability for o in self.outcomes}

    @property
    def total_probability(self) -> Fraction:
        return sum((o.probability for o in self.outcomes), Fraction(0))

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "mode": self.mode,
            "packet": self.packet.to_json(),
            "outcomes": [o.to_json() for o in self.outcomes],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
