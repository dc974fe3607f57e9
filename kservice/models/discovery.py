"""EndpointSlice (discovery.k8s.io/v1) and the legacy v1 Endpoints, as frozen values.

Optional API pointers stay ``None`` when unset (``conditions.ready: nil`` means "ready" to
kube-proxy, ``ports[].name: nil`` makes kube-proxy ignore the port), so a slice read from
``kubectl get -o yaml`` output keeps exactly what kube-proxy would see. Defaulting (port name
``""``, protocol ``TCP``) is done by the store's strategy, not here.

Serialisation follows the apiserver after an etcd (protobuf) round trip: an empty
``endpoints`` or ``ports`` list comes back as nil, which kubectl prints as ``null``.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice._frozen import FrozenDict, freeze, to_tuple
from kservice.models._reader import Reader
from kservice.models._toplevel import TopLevelObject, read_metadata
from kservice.models.meta import ObjectMeta

__all__ = [
    "EndpointAddress",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "EndpointSubset",
    "Endpoints",
    "LegacyEndpointPort",
    "ObjectReference",
    "SliceEndpoint",
]

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
_EMPTY: FrozenDict[str, str] = FrozenDict()


def _freeze(value: Any) -> FrozenDict[str, str]:
    return _EMPTY if not value else freeze(value)


@attrs.frozen
class ObjectReference:
    """v1 ObjectReference (``targetRef``)."""

    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    api_version: str = ""
    resource_version: str = ""
    field_path: str = ""

    @classmethod
    def from_reader(cls, r: Reader) -> ObjectReference:
        return cls(
            kind=r.str("kind") or "",
            namespace=r.str("namespace") or "",
            name=r.str("name") or "",
            uid=r.str("uid") or "",
            api_version=r.str("apiVersion") or "",
            resource_version=r.str("resourceVersion") or "",
            field_path=r.str("fieldPath") or "",
        )

    def to_manifest(self) -> dict[str, Any]:
        pairs = [
            ("apiVersion", self.api_version), ("fieldPath", self.field_path),
            ("kind", self.kind), ("name", self.name), ("namespace", self.namespace),
            ("resourceVersion", self.resource_version), ("uid", self.uid),
        ]
        return {k: v for k, v in pairs if v}


# EndpointSlice -------------------------------------------------------------------------


@attrs.frozen
class EndpointConditions:
    """Tri-state conditions: ``None`` is nil (kube-proxy reads nil ready/serving as true)."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> EndpointConditions:
        return cls(ready=r.bool("ready"), serving=r.bool("serving"),
                   terminating=r.bool("terminating"))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, v in (("ready", self.ready), ("serving", self.serving),
                       ("terminating", self.terminating)):
            if v is not None:
                out[key] = v
        return out


@attrs.frozen
class SliceEndpoint:
    """One ``endpoints[]`` entry of an EndpointSlice."""

    addresses: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    conditions: EndpointConditions = attrs.field(factory=EndpointConditions)
    hostname: str | None = None
    target_ref: ObjectReference | None = None
    node_name: str | None = None
    zone: str | None = None
    #: ``hints.forZones[].name`` / ``hints.forNodes[].name``; ``None`` = no hints object.
    hints_for_zones: tuple[str, ...] | None = None
    hints_for_nodes: tuple[str, ...] | None = None
    deprecated_topology: FrozenDict[str, str] = attrs.field(default=_EMPTY, converter=_freeze)

    @classmethod
    def from_reader(cls, r: Reader) -> SliceEndpoint:
        def hints(rr: Reader) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
            def names(key: str) -> tuple[str, ...] | None:
                got = rr.objs(key, lambda x: x.str("name") or "")
                return None if got is None else tuple(got)
            return names("forZones"), names("forNodes")

        hz, hn = r.obj("hints", hints) or (None, None)
        return cls(
            addresses=r.str_list("addresses") or (),
            conditions=r.obj("conditions", EndpointConditions.from_reader) or EndpointConditions(),
            hostname=r.str("hostname"),
            target_ref=r.obj("targetRef", ObjectReference.from_reader),
            node_name=r.str("nodeName"),
            zone=r.str("zone"),
            hints_for_zones=hz,
            hints_for_nodes=hn,
            deprecated_topology=r.str_map("deprecatedTopology"),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"addresses": list(self.addresses)}
        out["conditions"] = self.conditions.to_manifest()
        if self.deprecated_topology:
            out["deprecatedTopology"] = dict(self.deprecated_topology)
        if self.hints_for_zones is not None or self.hints_for_nodes is not None:
            h: dict[str, Any] = {}
            if self.hints_for_nodes is not None:
                h["forNodes"] = [{"name": n} for n in self.hints_for_nodes]
            if self.hints_for_zones is not None:
                h["forZones"] = [{"name": z} for z in self.hints_for_zones]
            out["hints"] = h
        if self.hostname is not None:
            out["hostname"] = self.hostname
        if self.node_name is not None:
            out["nodeName"] = self.node_name
        if self.target_ref is not None:
            out["targetRef"] = self.target_ref.to_manifest()
        if self.zone is not None:
            out["zone"] = self.zone
        return out


@attrs.frozen(order=True)
class EndpointPort:
    """``ports[]`` of an EndpointSlice. ``name``/``port``/``protocol`` are Go pointers."""

    name: str | None = None
    port: int | None = None
    protocol: str | None = None
    app_protocol: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> EndpointPort:
        return cls(name=r.str("name"), port=r.int("port"), protocol=r.str("protocol"),
                   app_protocol=r.str("appProtocol"))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.app_protocol is not None:
            out["appProtocol"] = self.app_protocol
        if self.name is not None:
            out["name"] = self.name
        if self.port is not None:
            out["port"] = self.port
        if self.protocol is not None:
            out["protocol"] = self.protocol
        return out


@attrs.frozen
class EndpointSlice(TopLevelObject):
    """discovery.k8s.io/v1 EndpointSlice."""

    api_version = "discovery.k8s.io/v1"
    kind = "EndpointSlice"

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    address_type: str = ""
    endpoints: tuple[SliceEndpoint, ...] = attrs.field(default=(), converter=to_tuple)
    ports: tuple[EndpointPort, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> EndpointSlice:
        return cls._read(data, path, lambda r: cls(
            metadata=read_metadata(r),
            address_type=r.str("addressType") or "",
            endpoints=r.objs("endpoints", SliceEndpoint.from_reader) or (),
            ports=r.objs("ports", EndpointPort.from_reader) or (),
        ))

    def to_manifest(self) -> dict[str, Any]:
        return {
            "addressType": self.address_type,
            "apiVersion": self.api_version,
            # nil after the protobuf round trip when empty: kubectl shows ``null``.
            "endpoints": [e.to_manifest() for e in self.endpoints] or None,
            "kind": self.kind,
            "metadata": self.metadata.to_manifest(),
            "ports": [p.to_manifest() for p in self.ports] or None,
        }

    @property
    def service_name(self) -> str | None:
        """The owning Service, from the ``kubernetes.io/service-name`` label."""
        return self.metadata.labels.get("kubernetes.io/service-name")


# Legacy Endpoints ----------------------------------------------------------------------


@attrs.frozen
class EndpointAddress:
    ip: str = ""
    hostname: str = ""
    node_name: str | None = None
    target_ref: ObjectReference | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> EndpointAddress:
        return cls(ip=r.str("ip") or "", hostname=r.str("hostname") or "",
                   node_name=r.str("nodeName"),
                   target_ref=r.obj("targetRef", ObjectReference.from_reader))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.hostname:
            out["hostname"] = self.hostname
        out["ip"] = self.ip
        if self.node_name is not None:
            out["nodeName"] = self.node_name
        if self.target_ref is not None:
            out["targetRef"] = self.target_ref.to_manifest()
        return out


@attrs.frozen(order=True)
class LegacyEndpointPort:
    name: str = ""
    port: int = 0
    protocol: str = "TCP"
    app_protocol: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> LegacyEndpointPort:
        return cls(name=r.str("name") or "", port=r.int("port") or 0,
                   protocol=r.str("protocol") or "TCP", app_protocol=r.str("appProtocol"))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.app_protocol is not None:
            out["appProtocol"] = self.app_protocol
        if self.name:
            out["name"] = self.name
        out["port"] = self.port
        out["protocol"] = self.protocol
        return out


@attrs.frozen
class EndpointSubset:
    addresses: tuple[EndpointAddress, ...] = attrs.field(default=(), converter=to_tuple)
    not_ready_addresses: tuple[EndpointAddress, ...] = attrs.field(default=(), converter=to_tuple)
    ports: tuple[LegacyEndpointPort, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_reader(cls, r: Reader) -> EndpointSubset:
        return cls(
            addresses=r.objs("addresses", EndpointAddress.from_reader) or (),
            not_ready_addresses=r.objs("notReadyAddresses", EndpointAddress.from_reader) or (),
            ports=r.objs("ports", LegacyEndpointPort.from_reader) or (),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.addresses:
            out["addresses"] = [a.to_manifest() for a in self.addresses]
        if self.not_ready_addresses:
            out["notReadyAddresses"] = [a.to_manifest() for a in self.not_ready_addresses]
        if self.ports:
            out["ports"] = [p.to_manifest() for p in self.ports]
        return out


@attrs.frozen
class Endpoints(TopLevelObject):
    """Legacy v1 Endpoints (deprecated since 1.33, still maintained by the controller)."""

    api_version = "v1"
    kind = "Endpoints"

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    subsets: tuple[EndpointSubset, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> Endpoints:
        return cls._read(data, path, lambda r: cls(
            metadata=read_metadata(r),
            subsets=r.objs("subsets", EndpointSubset.from_reader) or (),
        ))

    def to_manifest(self) -> dict[str, Any]:
        out = self._head()
        if self.subsets:
            out["subsets"] = [s.to_manifest() for s in self.subsets]
        return out
