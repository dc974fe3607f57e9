"""What a dataplane backend is, and how backends are found.

A backend turns one immutable :class:`~kservice.proxy.types.NodeProxyState` into a
:class:`Rendering` (text artifacts such as an ``iptables-restore`` payload or an ``nft -f``
transaction), and knows how to feed that rendering to the mock kernel so packets can be
traced. Running a rendering against a real kernel or sockets is an adapter's job, not the
backend's.

Backends -- the built-in ones too -- are registered under the ``kservice.backends``
entry-point group and imported lazily; a backend that fails to import is logged and left
out rather than breaking the others (as keyring and fsspec do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from kservice.errors import BackendError

if TYPE_CHECKING:
    from kservice.proxy.types import NodeProxyState

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "Rendering",
    "SectionText",
    "available_backends",
    "get_backend",
]

ENTRY_POINT_GROUP = "kservice.backends"
log = logging.getLogger(__name__)


#: A section's text, or a function that produces it on first use.
SectionText = str | Callable[[], str]


@attrs.frozen(eq=False)
class Rendering:
    """A node's rendered dataplane for one IP family: named text sections.

    A backend may give a section as a zero-argument function instead of text: it is run on
    first use and its result kept. Formats nobody asks for then cost nothing (``kservice
    render --format X`` needs one section; the mock kernel another). Two renderings are equal
    when every section's text is equal.
    """

    backend: str
    node: str
    family: str
    #: (section name, text or text factory) in print order; e.g. ("restore", ...).
    sections: tuple[tuple[str, SectionText], ...]
    #: True when this is a partial (incremental) sync against a previous state.
    partial: bool = False
    _texts: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)

    def section(self, name: str) -> str:
        if name in self._texts:
            return self._texts[name]
        for key, text in self.sections:
            if key == name:
                value = text if isinstance(text, str) else text()
                self._texts[name] = value
                return value
        raise BackendError(
            f"backend {self.backend!r} has no output format {name!r}; "
            f"it has: {', '.join(k for k, _ in self.sections)}"
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.sections)

    def texts(self) -> tuple[tuple[str, str], ...]:
        """Every section as (name, text), computing the lazy ones."""
        return tuple((k, self.section(k)) for k in self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rendering):
            return NotImplemented
        return (
            (self.backend, self.node, self.family, self.partial)
            == (other.backend, other.node, other.family, other.partial)
            and self.texts() == other.texts()
        )

    def __hash__(self) -> int:
        return hash((self.backend, self.node, self.family, self.partial, self.texts()))


@runtime_checkable
class Backend(Protocol):
    """The interface every dataplane backend implements."""

    #: The mode name (``iptables``, ``ipvs``, ``nftables``, ``userspace`` ...).
    name: str
    #: Output formats ``kservice render --format`` accepts; the first is the default.
    formats: tuple[str, ...]

    def render(
        self, state: NodeProxyState, previous: NodeProxyState | None = None
    ) -> Rendering:
        """Render ``state``; with ``previous``, a partial sync from it where supported."""
        ...

    def load(self, kernel: Any, rendering: Rendering) -> None:
        """Program the mock kernel (``backends.mockkernel.MockKernel``) with ``rendering``."""
        ...


def _entry_points() -> Mapping[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> tuple[str, ...]:
    """Names of the registered backends, sorted."""
    return tuple(sorted(_entry_points()))


_cache: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """Load the backend registered as ``name`` (imported on first use)."""
    if name in _cache:
        return _cache[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is kservice installed? try `pip install -e .`)"
        raise BackendError(f"unknown backend {name!r}; registered backends: {known}")
    try:
        obj = eps[name].load()
    except Exception as exc:  # a broken plugin must not take the others down
        log.warning("backend %s failed to load: %s", name, exc)
        raise BackendError(f"backend {name!r} failed to load: {exc}") from exc
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise BackendError(f"entry point {name!r} does not provide a kservice Backend")
    _cache[name] = backend
    return backend
