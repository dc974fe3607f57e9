"""The allocation bitmap both allocators share (pkg/registry/core/service/allocator).

Theory of operation
-------------------
Indices ``[0, size)`` are split into a *static* lower band ``[0, offset)`` and a
*dynamic* upper band ``[offset, size)`` (KEP-3070 for IPs, KEP-3668 for node ports).
``next_free`` is upstream's ``randomScanStrategyWithOffset.AllocateBit``: a random start in
the upper band, scanning forward and wrapping *within* that band; only when the upper
band is full, a random start in the lower band, wrapping within it. With ``offset == 0``
this is the plain ``randomScanStrategy`` over the whole range.

:class:`BandedRange` is what both allocators do around the bitmap once a value (an IP, a
port) is mapped to an index: pick the next free one, release, test, list, count. Each
allocator keeps its own value <-> index mapping, band offset formula and error texts.

Storage is a ``bytearray`` (one byte per index, so the forward scan is a C-speed
``find``) up to :data:`DENSE_LIMIT` entries and a ``set`` beyond that (ServiceCIDRs may be
as large as an IPv6 /64).
"""

from __future__ import annotations

import random
from typing import Generic, TypeVar

from kservice.errors import RangeFull

__all__ = ["DENSE_LIMIT", "BandedBitmap", "BandedRange"]

V = TypeVar("V")

#: Largest range kept as a dense bytearray (16 MiB).
DENSE_LIMIT = 1 << 24


class BandedBitmap:
    """Used/free state of ``size`` indices with a static band of ``offset`` entries."""

    def __init__(self, size: int, offset: int, rng: random.Random) -> None:
        if size < 0 or offset < 0:
            raise ValueError("size and offset must be non-negative")
        self.size = size
        self.offset = min(offset, size)
        self.rng = rng
        self.count = 0
        self._dense: bytearray | None = bytearray(size) if size <= DENSE_LIMIT else None
        self._sparse: set[int] = set()

    def has(self, i: int) -> bool:
        if self._dense is not None:
            return bool(self._dense[i])
        return i in self._sparse

    def set(self, i: int) -> bool:
        """Mark ``i`` used; False if it already was."""
        if self.has(i):
            return False
        if self._dense is not None:
            self._dense[i] = 1
        else:
            self._sparse.add(i)
        self.count += 1
        return True

    def clear(self, i: int) -> bool:
        if not self.has(i):
            return False
        if self._dense is not None:
            self._dense[i] = 0
        else:
            self._sparse.discard(i)
        self.count -= 1
        return True

    def used(self) -> list[int]:
        if self._dense is not None:
            out, i = [], self._dense.find(1)
            while i != -1:
                out.append(i)
                i = self._dense.find(1, i + 1)
            return out
        return sorted(self._sparse)

    def _scan(self, lo: int, hi: int, start: int) -> int | None:
        """First free index scanning ``[start, hi)`` then ``[lo, start)``."""
        if self._dense is not None:
            at = self._dense.find(0, start, hi)
            if at == -1:
                at = self._dense.find(0, lo, start)
            return None if at == -1 else at
        for i in range(start, hi):
            if i not in self._sparse:
                return i
        for i in range(lo, start):
            if i not in self._sparse:
                return i
        return None

    def next_free(self) -> int | None:
        """Pick and mark a free index per upstream's banded random scan; None if full."""
        if self.count >= self.size:
            return None
        upper = self.size - self.offset
        at = None
        if upper > 0:
            at = self._scan(self.offset, self.size, self.offset + self.rng.randrange(upper))
        if at is None and self.offset > 0:
            at = self._scan(0, self.offset, self.rng.randrange(self.offset))
        if at is None:
            return None
        self.set(at)
        return at


class BandedRange(Generic[V]):
    """An allocator of values ``V`` kept in a :class:`BandedBitmap` (``self._bits``).

    Subclasses set ``_bits`` and provide :meth:`_index` (``None`` when the value is outside
    the range), :meth:`_value` and :attr:`_range_name` (the range errors carry).
    """

    _bits: BandedBitmap

    def _index(self, value: V) -> int | None:
        raise NotImplementedError

    def _value(self, index: int) -> V:
        raise NotImplementedError

    @property
    def _range_name(self) -> str:
        raise NotImplementedError

    @property
    def rng(self) -> random.Random:
        return self._bits.rng

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._bits.rng = value

    @property
    def size(self) -> int:
        """Number of allocatable values."""
        return self._bits.size

    @property
    def used_count(self) -> int:
        return self._bits.count

    @property
    def free_count(self) -> int:
        return self._bits.size - self._bits.count

    def allocate_next(self) -> V:
        """A free value: upper band first (random start), lower band only when it is full."""
        i = self._bits.next_free()
        if i is None:
            raise RangeFull(range=self._range_name)
        return self._value(i)

    def release(self, value: V) -> None:
        """Free ``value``; releasing an unallocated or out-of-range value is a no-op."""
        i = self._index(value)
        if i is not None:
            self._bits.clear(i)

    def has(self, value: V) -> bool:
        i = self._index(value)
        return i is not None and self._bits.has(i)

    def used(self) -> list[V]:
        """Allocated values in order."""
        return [self._value(i) for i in self._bits.used()]
