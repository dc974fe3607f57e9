"""ClusterIP allocators: the legacy bitmap range and the IPAddress-style range.

What this module owns: ``pkg/registry/core/service/ipallocator`` -- which addresses of a
service CIDR are usable, the KEP-3070 static/dynamic bands, and the allocator error
strings. The per-cluster combination of several ranges (one per ServiceCIDR object) is
:class:`kservice.api.servicecidr.MetaAllocator`.

Usable addresses (bitmap.go ``NewAllocatorCIDRRange``):

* IPv4: the network and broadcast addresses are excluded (2^h - 2 usable);
* IPv6: only the network address is excluded and the bitmap is capped at 65536 entries
  first, so a /108 only ever hands out ``prefix::1 .. prefix::ffff``;
* index 0 is ``network + 1``.

The IPAddress allocator (ipallocator.go, used for extra ServiceCIDRs) differs: no IPv6 cap,
the last IPv6 address *is* usable, and IPv6 prefixes shorter than /64 are refused.
"""

from __future__ import annotations

import ipaddress
import random

from kservice.api._bitmap import BandedBitmap, BandedRange
from kservice.api._names import parse_cidr_sloppy, parse_ip_sloppy
from kservice.errors import AllocationError, AlreadyAllocated, NotInRange

__all__ = [
    "IPRangeAllocator",
    "MismatchedNetwork",
    "calculate_range_offset",
    "range_size",
]


class MismatchedNetwork(AllocationError):
    """``ErrMismatchedNetwork``: no range (ServiceCIDR) contains the IP."""

    def __init__(self, *, range: str | None = None) -> None:
        super().__init__("the provided network does not match the current range", range=range)


def range_size(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """netutils ``RangeSize``: 2^h, with upstream's overflow guards."""
    bits, ones = network.max_prefixlen, network.prefixlen
    if (bits == 32 and bits - ones >= 31) or (bits == 128 and bits - ones >= 127):
        return 0
    if bits - ones >= 63:
        return (1 << 63) - 1
    return 1 << (bits - ones)


def calculate_range_offset(cidr: str) -> int:
    """KEP-3070 ``calculateRangeOffset``: ``min(max(16, size//16), 256)``, 0 if size <= 16.

    ``size`` is the whole CIDR (network and broadcast included), integer division.
    """
    net = parse_cidr_sloppy(cidr)
    if net is None:
        raise ValueError(f"invalid CIDR {cidr!r}")
    size = range_size(net)
    if size <= 16:
        return 0
    return min(max(16, size // 16), 256)


class IPRangeAllocator(BandedRange[str]):
    """One CIDR's ClusterIPs: ``allocate(ip)``, ``allocate_next()``, ``release(ip)``, ``has(ip)``.

    ``kind="bitmap"`` is the legacy ``--service-cluster-ip-range`` allocator;
    ``kind="ipaddress"`` the KEP-1880 allocator behind a ServiceCIDR object.
    """

    def __init__(
        self, cidr: str, *, rng: random.Random | None = None, kind: str = "bitmap"
    ) -> None:
        net = parse_cidr_sloppy(cidr)
        if net is None:
            raise ValueError(f"invalid CIDR {cidr!r}")
        if kind not in ("bitmap", "ipaddress"):
            raise ValueError(f"unknown allocator kind {kind!r}")
        self.network = net
        self.cidr = str(net)
        self.family = "IPv6" if net.version == 6 else "IPv4"
        self.kind = kind
        host_bits = net.max_prefixlen - net.prefixlen
        if kind == "bitmap":
            size = range_size(net)
            if net.version == 6:
                size = min(size, 65536)  # the bitmap is kept in etcd: capped
            else:
                size -= 1  # broadcast
            size -= 1  # network address
        else:
            if net.version == 6 and net.prefixlen < 64:
                raise AllocationError(
                    f"shortest allowed prefix length for service CIDR is 64, got {net.prefixlen}",
                    range=self.cidr)
            size = (1 << host_bits) - (2 if net.version == 4 else 1)
        size = max(size, 0)
        self._base = int(net.network_address) + 1
        self.offset = calculate_range_offset(self.cidr)
        self._bits = BandedBitmap(size, self.offset, rng or random.Random(0))

    # ------------------------------------------------------------------ properties
    @property
    def _range_name(self) -> str:
        return self.cidr

    @property
    def first(self) -> str:
        return str(ipaddress.ip_address(self._base)) if self.size else ""

    @property
    def last(self) -> str:
        return str(ipaddress.ip_address(self._base + self.size - 1)) if self.size else ""

    def contains(self, ip: str) -> bool:
        """Whether the CIDR (network and broadcast included) contains ``ip``."""
        parsed = parse_ip_sloppy(ip)
        return parsed is not None and parsed.version == self.network.version and parsed in self.network

    # ------------------------------------------------------------------ operations
    def _index(self, ip: str) -> int | None:
        parsed = parse_ip_sloppy(ip)
        if parsed is None or parsed.version != self.network.version:
            return None
        i = int(parsed) - self._base
        return i if 0 <= i < self.size else None

    def _value(self, index: int) -> str:
        return str(ipaddress.ip_address(self._base + index))

    def allocate(self, ip: str) -> None:
        """Reserve ``ip``. Either band is fine for a static request."""
        i = self._index(ip)
        if i is None:
            parsed = parse_ip_sloppy(ip)
            shown = str(parsed) if parsed is not None else ip
            raise NotInRange(
                f"the provided IP ({shown}) is not in the valid range. "
                f"The range of valid IPs is {self.cidr}",
                range=self.cidr)
        if not self._bits.set(i):
            raise AlreadyAllocated("IP", range=self.cidr)

    def __repr__(self) -> str:
        return (f"IPRangeAllocator({self.cidr!r}, kind={self.kind!r}, "
                f"used={self.used_count}/{self.size}, offset={self.offset})")
