"""Allocators: bands, usable addresses, error strings (reference §2-§3, vectors 58-64, 69, 78)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from kservice.api import IPRangeAllocator, MetaAllocator, PortAllocator, calculate_range_offset
from kservice.api.ipalloc import MismatchedNetwork
from kservice.api.portalloc import calculate_port_range_offset
from kservice.errors import AlreadyAllocated, NotInRange, RangeFull


@pytest.mark.parametrize(("cidr", "offset"), [
    ("10.0.0.0/28", 0), ("10.0.0.0/27", 16), ("10.0.0.0/24", 16), ("10.0.0.0/22", 64),
    ("10.0.0.0/20", 256), ("10.0.0.0/16", 256), ("10.0.0.0/12", 256),
    ("fd00::/120", 16), ("fd00::/112", 256), ("fd00::/108", 256),
])
def test_vector_58_range_offset(cidr: str, offset: int) -> None:
    assert calculate_range_offset(cidr) == offset


@pytest.mark.parametrize(("size", "offset"), [(11, 0), (16, 0), (100, 16), (1000, 31),
                                              (2768, 86), (10000, 128), (65535, 128)])
def test_vector_78_port_range_offset(size: int, offset: int) -> None:
    assert calculate_port_range_offset(size) == offset


def test_vector_59_upper_band_then_lower() -> None:
    a = IPRangeAllocator("10.96.0.0/24", rng=random.Random(1))
    assert (a.size, a.first, a.last) == (254, "10.96.0.1", "10.96.0.254")
    got = [a.allocate_next() for _ in range(254)]
    hosts = [int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.96.0.0")) for ip in got]
    assert all(17 <= h <= 254 for h in hosts[:238])
    assert all(1 <= h <= 16 for h in hosts[238:])
    assert len(set(got)) == 254 and a.free_count == 0
    with pytest.raises(RangeFull, match=r"^range is full$"):
        a.allocate_next()


@pytest.mark.parametrize(("cidr", "ip"), [("10.96.0.0/24", "10.96.0.0"),
                                          ("10.96.0.0/24", "10.96.0.255"),
                                          ("10.96.0.0/24", "10.97.0.1"),
                                          ("fd00:10:96::/108", "fd00:10:96::"),
                                          ("fd00:10:96::/108", "fd00:10:96::1:0")])
def test_vector_60_not_in_range(cidr: str, ip: str) -> None:
    a = IPRangeAllocator(cidr)
    with pytest.raises(NotInRange) as info:
        a.allocate(ip)
    assert str(info.value) == (f"the provided IP ({ip}) is not in the valid range. "
                               f"The range of valid IPs is {cidr}")


def test_vector_61_already_allocated() -> None:
    a = IPRangeAllocator("10.96.0.0/24")
    a.allocate("10.96.0.10")
    with pytest.raises(AlreadyAllocated, match=r"^provided IP is already allocated$"):
        a.allocate("10.96.0.10")


def test_static_allocation_in_either_band_and_release() -> None:
    a = IPRangeAllocator("10.96.0.0/24")
    a.allocate("10.96.0.1")
    a.allocate("10.96.0.200")
    assert a.has("10.96.0.1") and a.used_count == 2
    a.release("10.96.0.1")
    a.release("10.96.0.1")  # releasing twice is a no-op
    a.release("192.0.2.1")  # as is releasing out of range
    assert not a.has("10.96.0.1") and a.used_count == 1


def test_vector_64_ipv6_bitmap_cap() -> None:
    a = IPRangeAllocator("fd00:10:96::/108")
    assert (a.size, a.first, a.last, a.offset) == (65535, "fd00:10:96::1", "fd00:10:96::ffff", 256)


@pytest.mark.parametrize(("cidr", "size"), [("10.0.0.0/32", 0), ("10.0.0.0/31", 0),
                                            ("10.0.0.0/30", 2), ("fd00::/128", 0),
                                            ("fd00::/127", 1)])
def test_tiny_ranges(cidr: str, size: int) -> None:
    a = IPRangeAllocator(cidr)
    assert a.size == size
    for _ in range(size):
        a.allocate_next()
    with pytest.raises(RangeFull):
        a.allocate_next()


def test_ipaddress_allocator_semantics() -> None:
    # ipallocator.go: no IPv6 cap; the last IPv6 address is usable; < /64 refused.
    a = IPRangeAllocator("fd00::/120", kind="ipaddress")
    assert (a.size, a.first, a.last) == (255, "fd00::1", "fd00::ff")
    a.allocate("fd00::ff")
    with pytest.raises(Exception, match="shortest allowed prefix length for service CIDR is 64, got 48"):
        IPRangeAllocator("fd00::/48", kind="ipaddress")
    big = IPRangeAllocator("fd00::/64", kind="ipaddress", rng=random.Random(3))
    ip = big.allocate_next()
    assert big.has(ip) and big.size == 2**64 - 1


def test_meta_allocator_largest_range_wins_and_no_duplicates() -> None:
    m = MetaAllocator("IPv4", random.Random(0))
    m.add_range("kubernetes", "10.96.0.0/28", kind="bitmap")
    m.add_range("overlap", "10.96.0.0/29")
    with pytest.raises(MismatchedNetwork, match=r"^the provided network does not match the current range$"):
        m.allocate("192.168.0.1")
    m.allocate("10.96.0.3")
    with pytest.raises(AlreadyAllocated):
        m.allocate("10.96.0.3")
    got = {m.allocate_next() for _ in range(13)}
    assert "10.96.0.3" not in got and len(got) == 13
    with pytest.raises(RangeFull):
        m.allocate_next()


def test_vector_69_port_bands() -> None:
    p = PortAllocator.from_range(30000, 32767, rng=random.Random(5))
    assert (p.size, p.offset, p.range_text) == (2768, 86, "30000-32767")
    got = [p.allocate_next() for _ in range(2768)]
    assert all(30086 <= x <= 32767 for x in got[:2682])
    assert all(30000 <= x <= 30085 for x in got[2682:])
    with pytest.raises(RangeFull):
        p.allocate_next()


def test_vector_70_71_port_errors() -> None:
    p = PortAllocator.from_range(30000, 32767)
    with pytest.raises(NotInRange) as info:
        p.allocate(80)
    assert str(info.value) == ("provided port is not in the valid range. "
                               "The range of valid ports is 30000-32767")
    p.allocate(30080)
    with pytest.raises(AlreadyAllocated, match=r"^provided port is already allocated$"):
        p.allocate(30080)
