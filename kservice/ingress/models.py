"""networking.k8s.io/v1 Ingress and IngressClass as frozen values, plus the legacy shapes.

v1 fields keep Go's nil-vs-empty distinctions validation depends on: ``pathType`` is
``None`` when unset (v1 has no default, so validation says ``Required value``), a port is
``number`` *or* ``name`` (0 / "" = unset).

The beta shapes (``extensions/v1beta1``, ``networking.k8s.io/v1beta1``; removed from the
apiserver in v1.22) are read by :func:`ingress_from_legacy`, which applies v1beta1
defaulting (``pathType: ImplementationSpecific``) and the conversion upstream's
``Convert_v1beta1_IngressBackend_To_networking_IngressBackend`` does: ``spec.backend`` ->
``spec.defaultBackend``; ``{serviceName, servicePort}`` -> ``service {name, port}`` when the
name is non-empty or the port is a string or non-zero. :meth:`Ingress.to_legacy_manifest`
converts back (a non-empty port name becomes a string ``servicePort``, else the number).
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice._frozen import to_tuple
from kservice.models import LoadBalancerIngress
from kservice.models._reader import Reader
from kservice.models._toplevel import TopLevelObject, no_matches, read_kind, read_metadata
from kservice.models.meta import ObjectMeta

__all__ = [
    "LEGACY_API_VERSIONS",
    "PATH_TYPES",
    "HTTPIngressPath",
    "Ingress",
    "IngressBackend",
    "IngressClass",
    "IngressClassParameters",
    "IngressRule",
    "IngressServiceBackend",
    "IngressSpec",
    "IngressTLS",
    "TypedLocalObjectReference",
    "ingress_from_legacy",
]

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
LEGACY_API_VERSIONS = ("extensions/v1beta1", "networking.k8s.io/v1beta1")
API_VERSION = "networking.k8s.io/v1"


def _check_ingress_header(r: Reader, kind: str, *, legacy: bool) -> str:
    # An absent or empty apiVersion reads as v1; a beta one gets its removal explained.
    api_version = read_kind(r, kind) or API_VERSION
    allowed = (API_VERSION, *LEGACY_API_VERSIONS) if legacy else (API_VERSION,)
    if api_version not in allowed:
        hint = f'{kind} is apiVersion "{API_VERSION}"'
        if api_version in LEGACY_API_VERSIONS:
            hint += (f"; {api_version} was removed in Kubernetes v1.22 -- rewrite it as v1 "
                     "(spec.backend -> spec.defaultBackend, serviceName/servicePort -> "
                     "service.name/service.port, pathType is required)")
        raise no_matches(kind, api_version, hint)
    return api_version


@attrs.frozen
class TypedLocalObjectReference:
    kind: str = ""
    name: str = ""
    api_group: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> TypedLocalObjectReference:
        return cls(kind=r.str("kind") or "", name=r.str("name") or "",
                   api_group=r.str("apiGroup"))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.api_group is not None:
            out["apiGroup"] = self.api_group
        out["kind"] = self.kind
        out["name"] = self.name
        return out


@attrs.frozen
class IngressServiceBackend:
    name: str = ""
    #: ``port.name``; ``""`` = unset.
    port_name: str = ""
    #: ``port.number``; ``0`` = unset.
    port_number: int = 0

    @classmethod
    def from_reader(cls, r: Reader) -> IngressServiceBackend:
        def port(rr: Reader) -> tuple[str, int]:
            return rr.str("name") or "", rr.int("number") or 0

        name, number = r.obj("port", port) or ("", 0)
        return cls(name=r.str("name") or "", port_name=name, port_number=number)

    @property
    def port(self) -> int | str:
        """The port as one value: the name if set, else the number."""
        return self.port_name or self.port_number

    def to_manifest(self) -> dict[str, Any]:
        port: dict[str, Any] = {}
        if self.port_name:
            port["name"] = self.port_name
        if self.port_number:
            port["number"] = self.port_number
        return {"name": self.name, "port": port}


@attrs.frozen
class IngressBackend:
    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> IngressBackend:
        return cls(service=r.obj("service", IngressServiceBackend.from_reader),
                   resource=r.obj("resource", TypedLocalObjectReference.from_reader))

    @classmethod
    def from_legacy_reader(cls, r: Reader) -> IngressBackend:
        name = r.str("serviceName") or ""
        port = r.int_or_str("servicePort")
        resource = r.obj("resource", TypedLocalObjectReference.from_reader)
        service = None
        # Convert_v1beta1_IngressBackend_To_networking_IngressBackend.
        if name or isinstance(port, str) or (isinstance(port, int) and port != 0):
            service = IngressServiceBackend(
                name=name,
                port_name=port if isinstance(port, str) else "",
                port_number=port if isinstance(port, int) else 0,
            )
        return cls(service=service, resource=resource)

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.resource is not None:
            out["resource"] = self.resource.to_manifest()
        if self.service is not None:
            out["service"] = self.service.to_manifest()
        return out

    def to_legacy_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.resource is not None:
            out["resource"] = self.resource.to_manifest()
        if self.service is not None:
            out["serviceName"] = self.service.name
            out["servicePort"] = (self.service.port_name if self.service.port_name
                                  else self.service.port_number)
        return out


@attrs.frozen
class HTTPIngressPath:
    path: str = ""
    path_type: str | None = None
    backend: IngressBackend = attrs.field(factory=IngressBackend)

    @classmethod
    def from_reader(cls, r: Reader, *, legacy: bool = False) -> HTTPIngressPath:
        path_type: str | None
        if legacy:
            backend = r.obj("backend", IngressBackend.from_legacy_reader)
            # v1beta1 SetDefaults_HTTPIngressPath: pathType defaults to ImplementationSpecific.
            path_type = r.str("pathType") or "ImplementationSpecific"
        else:
            backend = r.obj("backend", IngressBackend.from_reader)
            path_type = r.str("pathType")
        return cls(path=r.str("path") or "", path_type=path_type,
                   backend=backend or IngressBackend())

    def to_manifest(self, *, legacy: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": (self.backend.to_legacy_manifest() if legacy
                        else self.backend.to_manifest()),
        }
        if self.path:
            out["path"] = self.path
        if self.path_type is not None:
            out["pathType"] = self.path_type
        return out


@attrs.frozen
class IngressRule:
    host: str = ""
    #: ``http.paths``; ``None`` when the rule has no ``http`` at all.
    paths: tuple[HTTPIngressPath, ...] | None = None

    @classmethod
    def from_reader(cls, r: Reader, *, legacy: bool = False) -> IngressRule:
        def http(rr: Reader) -> tuple[HTTPIngressPath, ...]:
            return tuple(rr.objs("paths", lambda x: HTTPIngressPath.from_reader(
                x, legacy=legacy)) or ())

        return cls(host=r.str("host") or "", paths=r.obj("http", http))

    def to_manifest(self, *, legacy: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.host:
            out["host"] = self.host
        if self.paths is not None:
            out["http"] = {"paths": [p.to_manifest(legacy=legacy) for p in self.paths]}
        return out


@attrs.frozen
class IngressTLS:
    hosts: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    secret_name: str = ""

    @classmethod
    def from_reader(cls, r: Reader) -> IngressTLS:
        return cls(hosts=r.str_list("hosts") or (), secret_name=r.str("secretName") or "")

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.hosts:
            out["hosts"] = list(self.hosts)
        if self.secret_name:
            out["secretName"] = self.secret_name
        return out


@attrs.frozen
class IngressSpec:
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    tls: tuple[IngressTLS, ...] = attrs.field(default=(), converter=to_tuple)
    rules: tuple[IngressRule, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_reader(cls, r: Reader, *, legacy: bool = False) -> IngressSpec:
        if legacy:
            default = r.obj("backend", IngressBackend.from_legacy_reader)
        else:
            default = r.obj("defaultBackend", IngressBackend.from_reader)
        return cls(
            ingress_class_name=r.str("ingressClassName"),
            default_backend=default,
            tls=r.objs("tls", IngressTLS.from_reader) or (),
            rules=r.objs("rules", lambda x: IngressRule.from_reader(x, legacy=legacy)) or (),
        )

    def to_manifest(self, *, legacy: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.default_backend is not None:
            if legacy:
                out["backend"] = self.default_backend.to_legacy_manifest()
            else:
                out["defaultBackend"] = self.default_backend.to_manifest()
        if self.ingress_class_name is not None:
            out["ingressClassName"] = self.ingress_class_name
        if self.rules:
            out["rules"] = [rule.to_manifest(legacy=legacy) for rule in self.rules]
        if self.tls:
            out["tls"] = [t.to_manifest() for t in self.tls]
        return out


@attrs.frozen
class Ingress(TopLevelObject):
    """A networking.k8s.io/v1 Ingress."""

    api_version = API_VERSION
    kind = "Ingress"

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: IngressSpec = attrs.field(factory=IngressSpec)
    #: ``status.loadBalancer.ingress``
    load_balancer: tuple[LoadBalancerIngress, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_manifest(cls, data: object, path: str = "", *, allow_legacy: bool = False
                      ) -> Ingress:
        """Read a v1 manifest strictly; with ``allow_legacy``, convert a v1beta1 one."""
        # Not TopLevelObject._read: which versions are accepted depends on ``allow_legacy``,
        # and the body is read differently for a legacy version.
        r = Reader(data, path, cls.kind)
        api_version = _check_ingress_header(r, cls.kind, legacy=allow_legacy)
        legacy = api_version in LEGACY_API_VERSIONS

        def status(rr: Reader) -> tuple[LoadBalancerIngress, ...]:
            def lb(x: Reader) -> tuple[LoadBalancerIngress, ...]:
                return tuple(x.objs("ingress", LoadBalancerIngress.from_reader) or ())
            return rr.obj("loadBalancer", lb) or ()

        out = cls(
            metadata=read_metadata(r),
            spec=r.obj("spec", lambda x: IngressSpec.from_reader(x, legacy=legacy))
            or IngressSpec(),
            load_balancer=r.obj("status", status) or (),
        )
        r.finish()
        return out

    def to_manifest(self) -> dict[str, Any]:
        lb: dict[str, Any] = {}
        if self.load_balancer:
            lb["ingress"] = [i.to_manifest() for i in self.load_balancer]
        return {**self._head(), "spec": self.spec.to_manifest(), "status": {"loadBalancer": lb}}

    def to_legacy_manifest(self, api_version: str = "networking.k8s.io/v1beta1"
                           ) -> dict[str, Any]:
        """The object as a v1beta1 client would have seen it (conversion back)."""
        if api_version not in LEGACY_API_VERSIONS:
            raise ValueError(f"{api_version!r} is not a legacy Ingress version")
        return {"apiVersion": api_version, "kind": "Ingress",
                "metadata": self.metadata.to_manifest(),
                "spec": self.spec.to_manifest(legacy=True)}


def ingress_from_legacy(data: object, path: str = "") -> Ingress:
    """Read an Ingress of any version (v1 or the two v1beta1 shapes) and convert it to v1."""
    return Ingress.from_manifest(data, path, allow_legacy=True)


@attrs.frozen
class IngressClassParameters:
    kind: str = ""
    name: str = ""
    api_group: str | None = None
    scope: str | None = None
    namespace: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> IngressClassParameters:
        return cls(kind=r.str("kind") or "", name=r.str("name") or "",
                   api_group=r.str("apiGroup"), scope=r.str("scope"),
                   namespace=r.str("namespace"))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.api_group is not None:
            out["apiGroup"] = self.api_group
        out["kind"] = self.kind
        out["name"] = self.name
        if self.namespace is not None:
            out["namespace"] = self.namespace
        if self.scope is not None:
            out["scope"] = self.scope
        return out


@attrs.frozen
class IngressClass(TopLevelObject):
    """A networking.k8s.io/v1 IngressClass (cluster-scoped)."""

    api_version = API_VERSION
    kind = "IngressClass"
    #: Annotation marking the class new Ingresses without a class get.
    DEFAULT_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    controller: str = ""
    parameters: IngressClassParameters | None = None

    @classmethod
    def _check_header(cls, r: Reader) -> str | None:
        return _check_ingress_header(r, cls.kind, legacy=False)

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> IngressClass:
        def spec(rr: Reader) -> tuple[str, IngressClassParameters | None]:
            return (rr.str("controller") or "",
                    rr.obj("parameters", IngressClassParameters.from_reader))

        def body(r: Reader) -> IngressClass:
            controller, params = r.obj("spec", spec) or ("", None)
            return cls(metadata=read_metadata(r), controller=controller, parameters=params)

        return cls._read(data, path, body)

    def to_manifest(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.controller:
            spec["controller"] = self.controller
        if self.parameters is not None:
            spec["parameters"] = self.parameters.to_manifest()
        return {**self._head(), "spec": spec}

    @property
    def is_default(self) -> bool:
        return self.metadata.annotations.get(self.DEFAULT_ANNOTATION) == "true"
