"""What every top-level object shares: the type header, the strict read, the name accessors.

Theory of operation
-------------------
A stored kind (Service, Node, Pod, the apps/v1 workloads, EndpointSlice, Endpoints, Ingress,
IngressClass, ServiceCIDR) is read from a manifest in one fixed order, the order the error a
user sees depends on:

1. ``apiVersion`` then ``kind`` are read (a wrong JSON type in either is reported first);
2. a different ``kind`` is ``expected kind "X", got "Y"`` (path ``kind``);
3. an apiVersion that does not serve the kind is the RESTMapper's
   ``no matches for kind "X" in version "V"`` (path ``apiVersion``) with a per-kind hint;
4. the body is read strictly (:class:`~kservice.models._reader.Reader`);
5. any key left over is an unknown field.

:class:`TopLevelObject` is that sequence once (:meth:`TopLevelObject._read`), plus the
``apiVersion``/``kind``/``metadata`` head of ``to_manifest`` and the ``name``/``namespace``/
``labels`` accessors. :class:`SpecStatusObject` adds the whole of ``from_manifest`` and
``to_manifest`` for kinds whose body is a ``spec`` and a ``status`` model. Each model keeps its
own class attributes (``api_version``, ``kind``, accepted versions, hint), so its error texts
stay its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

from kservice._frozen import FrozenDict
from kservice.errors import InvalidInput
from kservice.models._reader import Reader
from kservice.models.meta import ObjectMeta

__all__ = [
    "SpecStatusObject",
    "TopLevelObject",
    "check_header",
    "no_matches",
    "read_kind",
    "read_metadata",
]

T = TypeVar("T")


def read_kind(r: Reader, kind: str) -> str | None:
    """Read ``apiVersion`` and ``kind``; a kind other than ``kind`` is an error.

    Returns the apiVersion as given (``None`` when absent) for the caller to check.
    """
    api_version = r.str("apiVersion")
    k = r.str("kind")
    if k not in (None, kind):
        raise InvalidInput(f'expected kind "{kind}", got "{k}"', path="kind")
    return api_version


def no_matches(kind: str, api_version: str, hint: str) -> InvalidInput:
    """The apiserver's (RESTMapper's) error for a version that does not serve ``kind``."""
    return InvalidInput(f'no matches for kind "{kind}" in version "{api_version}"',
                        path="apiVersion", hint=hint)


def check_header(r: Reader, kind: str, api_versions: tuple[str, ...], *,
                 hint: str | None = None) -> str | None:
    """:func:`read_kind`, then refuse an apiVersion outside ``api_versions`` (absent is fine).

    ``hint`` defaults to ``<kind> is apiVersion "<api_versions[0]>"``.
    """
    api_version = read_kind(r, kind)
    if api_version is not None and api_version not in api_versions:
        raise no_matches(kind, api_version,
                         hint if hint is not None else f'{kind} is apiVersion "{api_versions[0]}"')
    return api_version


def read_metadata(r: Reader) -> ObjectMeta:
    """``metadata`` of a top-level object; an absent one is the empty ObjectMeta."""
    return r.obj("metadata", ObjectMeta.from_reader) or ObjectMeta()


class TopLevelObject:
    """Base of the attrs top-level models: header check, strict read, name accessors.

    Subclasses are ``@attrs.frozen`` classes with a ``metadata: ObjectMeta`` field and the
    class attributes below. No slots of its own, so the subclasses stay fully slotted.
    """

    __slots__ = ()

    #: Written back by ``to_manifest``; also the only version read unless ``read_versions``.
    api_version: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: Every apiVersion accepted on read (default: just ``api_version``).
    read_versions: ClassVar[tuple[str, ...]] = ()
    #: Hint on a wrong apiVersion (default: ``<kind> is apiVersion "<api_version>"``).
    version_hint: ClassVar[str | None] = None

    metadata: ObjectMeta

    @classmethod
    def _check_header(cls, r: Reader) -> str | None:
        return check_header(r, cls.kind, cls.read_versions or (cls.api_version,),
                            hint=cls.version_hint)

    @classmethod
    def _read(cls, data: object, path: str, body: Callable[[Reader], T]) -> T:
        """Check the header, build the object with ``body``, refuse keys ``body`` left."""
        r = Reader(data, path, cls.kind)
        cls._check_header(r)
        out = body(r)
        r.finish()
        return out

    def _head(self) -> dict[str, Any]:
        """``apiVersion``, ``kind`` and ``metadata``: the start of every ``to_manifest``."""
        return {"apiVersion": self.api_version, "kind": self.kind,
                "metadata": self.metadata.to_manifest()}

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``""`` for cluster-scoped kinds (and for namespaced ones until the store defaults it)."""
        return self.metadata.namespace

    @property
    def labels(self) -> FrozenDict[str, str]:
        return self.metadata.labels


class SpecStatusObject(TopLevelObject):
    """A kind whose body is ``spec`` and ``status``, each a model with ``from_reader`` and
    ``to_manifest`` whose no-argument constructor is the empty value (Service, Node, Pod).
    """

    __slots__ = ()

    spec_type: ClassVar[type[Any]]
    status_type: ClassVar[type[Any]]

    spec: Any
    status: Any

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> Self:
        """Read a decoded manifest strictly (unknown fields and wrong types are errors)."""
        return cls._read(data, path, lambda r: cls(
            metadata=read_metadata(r),  # type: ignore[call-arg]
            spec=r.obj("spec", cls.spec_type.from_reader) or cls.spec_type(),
            status=r.obj("status", cls.status_type.from_reader) or cls.status_type()))

    def to_manifest(self) -> dict[str, Any]:
        """The object as the apiserver's JSON (``kubectl get -o yaml``) shows it."""
        return {"apiVersion": self.api_version, "kind": self.kind,
                "metadata": self.metadata.to_manifest(), "spec": self.spec.to_manifest(),
                "status": self.status.to_manifest()}
