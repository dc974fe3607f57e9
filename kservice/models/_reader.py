"""Strict reading of manifest dicts into models.

Like kubectl's default (strict) field validation: unknown fields and wrong JSON types are
errors. Each error names the field path (``spec.ports[0].port``); the manifest loader turns
the path into a file, line and column.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kservice.errors import InvalidInput

T = TypeVar("T")

__all__ = ["Reader", "type_name"]


def type_name(value: object) -> str:
    """JSON type name of a decoded YAML/JSON value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Reader:
    """Reads one JSON object; remembers which keys were consumed.

    Call :meth:`finish` at the end: any key not consumed is an unknown field.
    """

    def __init__(self, data: object, path: builtins.str, kind: builtins.str = "") -> None:
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"expected an object, got {type_name(data)}", path=path or "<root>"
            )
        self.data: Mapping[builtins.str, Any] = data
        self.path = path
        self.kind = kind
        self._seen: set[builtins.str] = set()

    def _p(self, key: builtins.str) -> builtins.str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: builtins.str) -> builtins.bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: builtins.str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def _wrong(self, key: builtins.str, want: builtins.str, value: object) -> InvalidInput:
        return InvalidInput(
            f"cannot unmarshal {type_name(value)} into field {self._p(key)} of type {want}",
            path=self._p(key),
        )

    def str(self, key: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self._wrong(key, "string", v)
        return v

    def int(self, key: builtins.str, default: builtins.int | None = None) -> builtins.int | None:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            raise self._wrong(key, "integer", v)
        return v

    def bool(self, key: builtins.str, default: builtins.bool | None = None) -> builtins.bool | None:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self._wrong(key, "boolean", v)
        return v

    def int_or_str(self, key: builtins.str) -> builtins.int | builtins.str | None:
        v = self.raw(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise self._wrong(key, "IntOrString", v)
        return v

    def str_map(self, key: builtins.str) -> builtins.dict[builtins.str, builtins.str] | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise self._wrong(key, "map[string]string", v)
        out: builtins.dict[builtins.str, builtins.str] = {}
        for k, item in v.items():
            if not isinstance(item, str):
                raise InvalidInput(
                    f"cannot unmarshal {type_name(item)} into field {self._p(key)}.{k} "
                    "of type string",
                    path=f"{self._p(key)}.{k}",
                    hint="quote values such as \"true\" or \"8080\" in labels and annotations",
                )
            out[str(k)] = item
        return out

    def str_list(self, key: builtins.str) -> builtins.list[builtins.str] | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, list):
            raise self._wrong(key, "[]string", v)
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise InvalidInput(
                    f"cannot unmarshal {type_name(item)} into field {self._p(key)}[{i}] "
                    "of type string",
                    path=f"{self._p(key)}[{i}]",
                )
        return list(v)

    def obj(self, key: builtins.str, build: Callable[[Reader], T]) -> T | None:
        v = self.raw(key)
        if v is None:
            return None
        r = Reader(v, self._p(key), self.kind)
        out = build(r)
        r.finish()
        return out

    def objs(self, key: builtins.str, build: Callable[[Reader], T]) -> builtins.list[T] | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, list):
            raise self._wrong(key, "array", v)
        out = []
        for i, item in enumerate(v):
            r = Reader(item, f"{self._p(key)}[{i}]", self.kind)
            out.append(build(r))
            r.finish()
        return out

    def ignore(self, *keys: builtins.str) -> None:
        """Accept keys this model keeps no typed field for (e.g. ``status`` of some kinds)."""
        self._seen.update(keys)

    def rest(self) -> builtins.dict[builtins.str, Any]:
        """Keys not consumed so far, consumed now (for kinds that keep opaque data)."""
        out = {k: v for k, v in self.data.items() if k not in self._seen}
        self._seen.update(out)
        return out

    def finish(self) -> None:
        for key in self.data:
            if key not in self._seen:
                raise InvalidInput(f'unknown field "{self._p(key)}"', path=self._p(key))
