"""An immutable, hashable mapping for labels, selectors and annotations inside frozen models."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["FrozenDict", "freeze", "freeze_labels", "to_frozenset", "to_tuple"]


class FrozenDict(Mapping[K, V]):
    """A read-only dict. Equal to (and compares with) plain dicts of the same items."""

    __slots__ = ("_d", "_h")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._d: dict[K, V] = dict(*args, **kwargs)
        self._h: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._d!r})"

    def to_dict(self) -> dict[K, V]:
        return dict(self._d)


def freeze(value: Mapping[K, V] | None) -> FrozenDict[K, V]:
    """Any mapping (or None) to a FrozenDict."""
    if isinstance(value, FrozenDict):
        return value
    return FrozenDict(value or {})


def freeze_labels(value: Mapping[str, str] | None) -> FrozenDict[str, str]:
    """attrs converter for string maps (labels, annotations, selectors).

    Not generic on purpose: mypy's attrs plugin cannot solve a converter's type variables.
    """
    return freeze(value)


# Typed stand-ins for ``converter=tuple``/``frozenset``: mypy's attrs plugin cannot solve the
# builtins' type variables, so fields converted by them would reject every argument.
def to_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    """attrs converter: any iterable to a tuple."""
    return value if isinstance(value, tuple) else tuple(value)


def to_frozenset(value: Iterable[Any]) -> frozenset[Any]:
    """attrs converter: any iterable to a frozenset."""
    return value if isinstance(value, frozenset) else frozenset(value)
