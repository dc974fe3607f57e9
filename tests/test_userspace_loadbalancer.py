"""LoadBalancerRR (backends/userspace/loadbalancer.py): reference §4.3."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import pytest

from backends.userspace.loadbalancer import (
    DEFAULT_AFFINITY_TTL,
    LoadBalancerRR,
    NoEndpoints,
    ServiceNotFound,
)


def _lb(now: list[float], seed: int = 1) -> LoadBalancerRR:
    return LoadBalancerRR(clock=lambda: now[0], rng=random.Random(seed))


def test_round_robin_over_a_shuffled_list() -> None:
    now = [0.0]
    lb = _lb(now)
    lb.new_service("s", None)
    assert lb.on_endpoints_update("s", ["a:1", "b:1", "c:1", "d:1"])
    order = lb.endpoints("s")
    assert sorted(order) == ["a:1", "b:1", "c:1", "d:1"]
    picks = [lb.next_endpoint("s", f"10.0.0.{i}") for i in range(12)]
    assert picks == list(order) * 3
    # The same set in another order is no change: the rotation goes on.
    assert not lb.on_endpoints_update("s", ["d:1", "c:1", "b:1", "a:1"])
    assert lb.next_endpoint("s", "x") == order[0]
    # A changed set is shuffled again and the index restarts at 0.
    assert lb.on_endpoints_update("s", ["a:1", "b:1"])
    assert lb.next_endpoint("s", "x") == lb.endpoints("s")[0]
    assert lb.choices("s", "x") == ((Fraction(1, 2), "a:1"), (Fraction(1, 2), "b:1"))


def test_shuffle_is_uniform_over_seeds() -> None:
    firsts: Counter[str] = Counter()
    for seed in range(300):
        lb = _lb([0.0], seed)
        lb.new_service("s", None)
        lb.on_endpoints_update("s", ["a:1", "b:1", "c:1"])
        firsts[lb.next_endpoint("s", "c")] += 1
    assert set(firsts) == {"a:1", "b:1", "c:1"} and min(firsts.values()) > 60


def test_affinity_sticks_refreshes_and_expires() -> None:
    now = [0.0]
    lb = _lb(now)
    lb.new_service("s", 60)
    lb.on_endpoints_update("s", ["a:1", "b:1", "c:1"])
    first = lb.next_endpoint("s", "10.0.0.1")
    for _ in range(5):
        now[0] += 59
        assert lb.next_endpoint("s", "10.0.0.1") == first  # refreshed on every use
    assert lb.choices("s", "10.0.0.1") == ((Fraction(1), first),)
    now[0] += 60
    assert lb.sticky_endpoint("s", "10.0.0.1") is None
    assert lb.cleanup_stale_sticky_sessions() == 1
    assert lb.next_endpoint("s", "10.0.0.1") != first
    # reset=True (after a failed dial) bypasses the record and advances the rotation.
    pinned = lb.next_endpoint("s", "10.0.0.2")
    assert lb.next_endpoint("s", "10.0.0.2", reset=True) != pinned


def test_removed_endpoint_drops_its_affinity_records() -> None:
    now = [0.0]
    lb = _lb(now)
    lb.new_service("s", 0)  # 0 -> 10800
    lb.on_endpoints_update("s", ["a:1", "b:1"])
    pinned = lb.next_endpoint("s", "10.0.0.1")
    keep = "b:1" if pinned == "a:1" else "a:1"
    lb.on_endpoints_update("s", [keep, "c:1"])
    assert lb.sticky_endpoint("s", "10.0.0.1") is None
    now[0] += DEFAULT_AFFINITY_TTL - 1
    got = lb.next_endpoint("s", "10.0.0.1")
    now[0] += DEFAULT_AFFINITY_TTL - 1
    assert lb.next_endpoint("s", "10.0.0.1") == got


def test_ttl_is_fixed_at_creation_as_upstream() -> None:
    now = [0.0]
    lb = _lb(now)
    lb.new_service("s", None)  # created with sessionAffinity None: TTL 10800
    lb.on_endpoints_update("s", ["a:1", "b:1"])
    lb.new_service("s", 5)  # switched to ClientIP/5s: only the type is taken
    first = lb.next_endpoint("s", "c")
    now[0] += 100
    assert lb.next_endpoint("s", "c") == first  # still sticky after 100s > 5s
    lb.new_service("s", None)
    assert lb.sticky_endpoint("s", "c") is None


def test_errors() -> None:
    lb = _lb([0.0])
    with pytest.raises(ServiceNotFound):
        lb.next_endpoint("nope", "c")
    with pytest.raises(ServiceNotFound):
        lb.on_endpoints_update("nope", ["a:1"])
    lb.new_service("s", None)
    with pytest.raises(NoEndpoints):
        lb.next_endpoint("s", "c")
    assert lb.choices("s", "c") == ()
    lb.delete_service("s")
    assert lb.services() == ()
