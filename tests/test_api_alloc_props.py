"""Allocator properties (hypothesis), for both the ClusterIP and the NodePort allocator.

Never a duplicate; always in range; the upper band is used until it is full; released
values can be allocated again; "range is full" exactly at capacity.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kservice.api import IPRangeAllocator, PortAllocator
from kservice.errors import AlreadyAllocated, NotInRange, RangeFull

# Small ranges so "full" is reachable: IPv4 /24../29, IPv6 /120../125, ports 1..300 wide.
ip_cidrs = st.one_of(
    st.integers(24, 29).map(lambda p: f"10.96.0.0/{p}"),
    st.integers(120, 125).map(lambda p: f"fd00:10:96::/{p}"),
)
port_ranges = st.tuples(st.integers(1, 60000), st.integers(1, 300)).map(
    lambda t: (t[0], min(t[0] + t[1] - 1, 65535)))


class _Adapter:
    """One interface over both allocators: values as ints (host offset or port)."""

    def __init__(self, kind: str, spec: Any, seed: int) -> None:
        self.kind = kind
        rng = random.Random(seed)
        if kind == "ip":
            self.a: Any = IPRangeAllocator(spec, rng=rng)
            net = ipaddress.ip_network(spec)
            self.lo = int(net.network_address) + 1
            self.values = list(range(self.lo, self.lo + self.a.size))
            self.conv = lambda v: str(ipaddress.ip_address(v))
            self.unconv = lambda s: int(ipaddress.ip_address(s))
        else:
            first, last = spec
            self.a = PortAllocator.from_range(first, last, rng=rng)
            self.lo = first
            self.values = list(range(first, last + 1))
            self.conv = self.unconv = lambda v: v
        self.offset = self.a.offset

    def band(self, v: int) -> str:
        return "static" if v - self.lo < self.offset else "dynamic"


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ad: _Adapter | None = None
        self.model: set[int] = set()

    @precondition(lambda self: self.ad is None)
    @rule(kind=st.sampled_from(["ip", "port"]), cidr=ip_cidrs, ports=port_ranges,
          seed=st.integers(0, 2**16))
    def setup(self, kind: str, cidr: str, ports: tuple[int, int], seed: int) -> None:
        self.ad = _Adapter(kind, cidr if kind == "ip" else ports, seed)

    @precondition(lambda self: self.ad is not None)
    @rule()
    def allocate_next(self) -> None:
        ad = self.ad
        assert ad is not None
        free = set(ad.values) - self.model
        free_dynamic = {v for v in free if ad.band(v) == "dynamic"}
        try:
            v = ad.unconv(ad.a.allocate_next())
        except RangeFull:
            assert not free, "range is full reported with free values left"
            return
        assert free, "allocated from a full range"
        assert v in free, "duplicate or out-of-range allocation"
        if free_dynamic:
            assert ad.band(v) == "dynamic", "static band used while the upper band had room"
        self.model.add(v)

    @precondition(lambda self: self.ad is not None)
    @rule(data=st.data())
    def allocate_static(self, data: st.DataObject) -> None:
        ad = self.ad
        assert ad is not None
        v = data.draw(st.sampled_from([*ad.values, ad.lo - 1])) if ad.values else ad.lo - 1
        try:
            ad.a.allocate(ad.conv(v))
        except AlreadyAllocated:
            assert v in self.model
            return
        except NotInRange:
            assert v not in ad.values
            return
        assert v in ad.values and v not in self.model
        self.model.add(v)

    @precondition(lambda self: self.ad is not None and bool(self.model))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        ad = self.ad
        assert ad is not None
        v = data.draw(st.sampled_from(sorted(self.model)))
        ad.a.release(ad.conv(v))
        self.model.discard(v)
        assert not ad.a.has(ad.conv(v))

    @invariant()
    def counts_agree(self) -> None:
        if self.ad is not None:
            assert self.ad.a.used_count == len(self.model)
            assert self.ad.a.free_count == len(self.ad.values) - len(self.model)


TestAllocatorMachine = AllocatorMachine.TestCase


@given(cidr=ip_cidrs, seed=st.integers(0, 2**32))
def test_ip_fill_exactly_to_capacity(cidr: str, seed: int) -> None:
    a = IPRangeAllocator(cidr, rng=random.Random(seed))
    net = ipaddress.ip_network(cidr)
    got = [a.allocate_next() for _ in range(a.size)]
    assert len(set(got)) == a.size
    assert all(ipaddress.ip_address(ip) in net for ip in got)
    assert str(net.network_address) not in got
    if net.version == 4:
        assert str(net.broadcast_address) not in got
    upper = a.size - a.offset
    hosts = [int(ipaddress.ip_address(ip)) - int(net.network_address) - 1 for ip in got]
    assert all(h >= a.offset for h in hosts[:upper])
    assert all(h < a.offset for h in hosts[upper:])
    try:
        a.allocate_next()
    except RangeFull:
        pass
    else:
        raise AssertionError("allocated past capacity")
    a.release(got[0])
    assert a.allocate_next() == got[0]


@given(rng=port_ranges, seed=st.integers(0, 2**32))
def test_ports_fill_exactly_to_capacity(rng: tuple[int, int], seed: int) -> None:
    a = PortAllocator.from_range(*rng, rng=random.Random(seed))
    got = [a.allocate_next() for _ in range(a.size)]
    assert sorted(got) == list(range(rng[0], rng[1] + 1))
    assert all(p - rng[0] >= a.offset for p in got[: a.size - a.offset])
    try:
        a.allocate_next()
    except RangeFull:
        pass
    else:
        raise AssertionError("allocated past capacity")
    a.release(got[-1])
    assert a.allocate_next() == got[-1]
