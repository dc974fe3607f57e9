"""The one exception tree of kservice.

Every error says whose fault it was:

* :class:`InvalidInput` -- the user's input could not be read (YAML syntax, unknown field,
  wrong type). Carries the file, line and column when known.
* :class:`InvalidObject` -- the object was read but kube-apiserver would refuse it
  (HTTP 422). Carries the list of :class:`FieldError` in upstream's order and prints exactly
  like kubectl: ``The Service "foo" is invalid: <field error>``.
* :class:`AllocationError` -- an allocator could not satisfy a request (full range, already
  allocated, not in range). Carries the range.
* :class:`InternalError` -- what the apiserver reports as HTTP 500 (``Internal error
  occurred: ...``), e.g. a dynamic allocation from a full range.
* :class:`NotFound` / :class:`AlreadyExists` / :class:`Conflict` -- store outcomes.
* :class:`BackendError` -- a backend or the mock kernel could not render or parse rules;
  :class:`RuleParseError` names the line and the option.

Each class also subclasses the nearest builtin so callers that only know Python's
exceptions still catch them sensibly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "AllocationError",
    "AlreadyAllocated",
    "AlreadyExists",
    "BackendError",
    "Conflict",
    "FieldError",
    "InternalError",
    "InvalidInput",
    "InvalidObject",
    "KServiceError",
    "NotFound",
    "NotInRange",
    "RangeFull",
    "RuleParseError",
    "UnsupportedRule",
]


class KServiceError(Exception):
    """Base of every error kservice raises on purpose."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 1


# --------------------------------------------------------------------------- field errors

# Type strings exactly as apimachinery's field.ErrorType prints them.
_BODY_ONLY = frozenset({"Required value", "Forbidden", "Too long", "Internal error"})


def go_repr(value: object) -> str:
    """Render a value the way apimachinery's field errors do (see reference §0.2).

    ``str`` is quoted; ints and bools plain; ``None`` is ``null``; a list of strings is Go's
    ``[]string{"a", "b"}``. Callers needing another Go type (a struct) pass a preformatted
    :class:`GoLiteral`.
    """
    if isinstance(value, GoLiteral):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, list | tuple):
        if not value:
            return "[]string(nil)"
        return "[]string{" + ", ".join(_go_quote(str(v)) for v in value) + "}"
    return str(value)


def _go_quote(s: str) -> str:
    # Go's %q: backslash and double quote escaped; printable unicode kept.
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


@attrs.frozen
class GoLiteral:
    """A value already formatted as Go's ``%#v`` would print it."""

    text: str


@attrs.frozen
class FieldError:
    """One apimachinery field error: ``<field>: <type>[: <value>][: <detail>]``."""

    field: str
    type: str
    value: object = None
    detail: str = ""
    #: Whether ``value`` is printed (``Required``/``Forbidden``/... never print it).
    has_value: bool = True

    def body(self) -> str:
        if self.type in _BODY_ONLY or not self.has_value:
            text = self.type
        else:
            text = f"{self.type}: {go_repr(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    # Constructors mirroring field.Required/Invalid/... so callers read like upstream.
    @classmethod
    def required(cls, field: str, detail: str = "") -> FieldError:
        return cls(field, "Required value", None, detail, has_value=False)

    @classmethod
    def forbidden(cls, field: str, detail: str = "") -> FieldError:
        return cls(field, "Forbidden", None, detail, has_value=False)

    @classmethod
    def invalid(cls, field: str, value: object, detail: str = "") -> FieldError:
        return cls(field, "Invalid value", value, detail)

    @classmethod
    def duplicate(cls, field: str, value: object) -> FieldError:
        return cls(field, "Duplicate value", value)

    @classmethod
    def not_supported(cls, field: str, value: object, supported: Iterable[str]) -> FieldError:
        detail = "supported values: " + ", ".join(f'"{v}"' for v in sorted(supported))
        return cls(field, "Unsupported value", value, detail)

    @classmethod
    def too_many(cls, field: str, value: object, detail: str = "") -> FieldError:
        return cls(field, "Too many", value, detail)

    @classmethod
    def not_found(cls, field: str, value: object) -> FieldError:
        return cls(field, "Not found", value)


# --------------------------------------------------------------------------- user input


class InvalidInput(KServiceError, ValueError):
    """Input that could not be read: syntax, unknown fields, wrong types, unknown kinds."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.path = path
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        text = where + self.message
        if self.path:
            text += f" (at {self.path})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class InvalidObject(KServiceError, ValueError):
    """kube-apiserver's HTTP 422: the object breaks validation."""

    http_status = 422

    def __init__(self, kind: str, name: str, errors: Sequence[FieldError]) -> None:
        # Exact duplicates are removed, as utilerrors.NewAggregate does.
        seen: list[FieldError] = []
        for e in errors:
            if e not in seen:
                seen.append(e)
        self.kind = kind
        self.name = name
        self.errors: tuple[FieldError, ...] = tuple(seen)
        super().__init__(self.status_message())

    def aggregate(self) -> str:
        if len(self.errors) == 1:
            return str(self.errors[0])
        return "[" + ", ".join(str(e) for e in self.errors) + "]"

    def status_message(self) -> str:
        """The Status message: ``Service "foo" is invalid: ...``."""
        return f'{self.kind} "{self.name}" is invalid: {self.aggregate()}'

    def kubectl_message(self) -> str:
        """What kubectl prints: ``The Service "foo" is invalid: ...``.

        kubectl lists several causes one per line, each prefixed with ``* ``.
        """
        if len(self.errors) == 1:
            return f"The {self.status_message()}"
        lines = [f'The {self.kind} "{self.name}" is invalid: ']
        lines += [f"* {e}" for e in self.errors]
        return "\n".join(lines)


class InternalError(KServiceError, RuntimeError):
    """kube-apiserver's HTTP 500: ``Internal error occurred: <msg>``."""

    http_status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Internal error occurred: {message}")


class NotFound(KServiceError, LookupError):
    """The named object does not exist (HTTP 404)."""

    http_status = 404

    def __init__(self, resource: str, name: str, namespace: str | None = None) -> None:
        self.resource = resource
        self.name = name
        self.namespace = namespace
        super().__init__(f'{resource} "{name}" not found')


class AlreadyExists(KServiceError, ValueError):
    """create of an object that exists (HTTP 409)."""

    http_status = 409

    def __init__(self, resource: str, name: str) -> None:
        self.resource = resource
        self.name = name
        super().__init__(f'{resource} "{name}" already exists')


class Conflict(KServiceError, RuntimeError):
    """A write lost a race (resourceVersion mismatch; HTTP 409)."""

    http_status = 409


# --------------------------------------------------------------------------- allocation


class AllocationError(KServiceError, ValueError):
    """An allocator refused a request. ``range`` is the range's text (CIDR or ports)."""

    def __init__(self, message: str, *, range: str | None = None) -> None:
        self.message = message
        self.range = range
        super().__init__(message)


class RangeFull(AllocationError):
    def __init__(self, *, range: str | None = None) -> None:
        super().__init__("range is full", range=range)


class AlreadyAllocated(AllocationError):
    def __init__(self, what: str = "IP", *, range: str | None = None) -> None:
        super().__init__(f"provided {what} is already allocated", range=range)


class NotInRange(AllocationError):
    """Carries the upstream message verbatim (it differs for IPs and ports)."""


# --------------------------------------------------------------------------- backends


class BackendError(KServiceError, RuntimeError):
    """A backend could not render, or an adapter could not apply, a node's dataplane."""


class RuleParseError(BackendError, ValueError):
    """Rule text the mock kernel cannot read. Names the line and the option."""

    def __init__(
        self, message: str, *, line: int | None = None, text: str | None = None,
        option: str | None = None, source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.text = text
        self.option = option
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "rules"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.message}"
        if self.option:
            text += f" (option {self.option!r})"
        if self.text:
            text += f"\n    {self.text}"
        return text


class UnsupportedRule(RuleParseError):
    """A match, target or statement the mock kernel does not implement."""
