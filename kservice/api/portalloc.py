"""The NodePort allocator (pkg/registry/core/service/portallocator).

What this module owns: ``--service-node-port-range`` as a bitmap with the KEP-3668
static/dynamic bands and upstream's error strings. The band formula is **not** the IP one:
``offset = 0 if size <= 16 else min(max(16, size // 32), 128)`` -- step 32, cap 128. For the
default 30000-32767 (size 2768) the offset is 86: static band 30000-30085, dynamic
allocations prefer 30086-32767.
"""

from __future__ import annotations

import random

from kservice.api._bitmap import BandedBitmap, BandedRange
from kservice.errors import AlreadyAllocated, NotInRange

__all__ = ["PortAllocator", "calculate_port_range_offset"]


def calculate_port_range_offset(size: int) -> int:
    """KEP-3668 ``calculateRangeOffset`` for a port range of ``size`` ports."""
    if size <= 16:
        return 0
    return min(max(16, size // 32), 128)


class PortAllocator(BandedRange[int]):
    """NodePorts ``base .. base+size-1``."""

    def __init__(self, base: int, size: int, *, rng: random.Random | None = None) -> None:
        if size < 0 or base < 0:
            raise ValueError("port range base and size must be non-negative")
        self.base = base
        self.offset = calculate_port_range_offset(size)
        self._bits = BandedBitmap(size, self.offset, rng or random.Random(0))

    @classmethod
    def from_range(cls, first: int, last: int, *, rng: random.Random | None = None) -> PortAllocator:
        return cls(first, last - first + 1, rng=rng)

    @property
    def range_text(self) -> str:
        """``PortRange.String()``: ``30000-32767``."""
        return f"{self.base}-{self.base + self.size - 1}" if self.size else ""

    @property
    def _range_name(self) -> str:
        return self.range_text

    def _index(self, port: int) -> int | None:
        return port - self.base if self.contains(port) else None

    def _value(self, index: int) -> int:
        return self.base + index

    def contains(self, port: int) -> bool:
        return self.base <= port < self.base + self.size

    def allocate(self, port: int) -> None:
        if not self.contains(port):
            raise NotInRange(
                "provided port is not in the valid range. "
                f"The range of valid ports is {self.range_text}",
                range=self.range_text)
        if not self._bits.set(port - self.base):
            raise AlreadyAllocated("port", range=self.range_text)

    def __repr__(self) -> str:
        return f"PortAllocator({self.range_text!r}, used={self.used_count}/{self.size})"
