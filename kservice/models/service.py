"""The v1 Service, every spec field, as a frozen value.

Unset optional fields are ``None`` (Go's nil) so defaulting and validation can tell "not
given" from "given as empty", which several upstream messages depend on. Build one with
:meth:`Service.from_manifest`; write it back with :meth:`Service.to_manifest` (the shape
``kubectl get svc -o yaml`` shows).
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice._frozen import FrozenDict, to_tuple
from kservice.models._reader import Reader
from kservice.models._toplevel import SpecStatusObject
from kservice.models.meta import ObjectMeta

__all__ = [
    "ClientIPConfig",
    "LoadBalancerIngress",
    "PortStatus",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SessionAffinityConfig",
]


def _opt_freeze(value: object) -> FrozenDict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, FrozenDict):
        return value
    return FrozenDict(value)  # type: ignore[arg-type]


@attrs.frozen
class ServicePort:
    name: str = ""
    #: ``None`` until defaulted to ``"TCP"``.
    protocol: str | None = None
    app_protocol: str | None = None
    port: int = 0
    #: int or IANA service name; ``0`` (or ``""``) means unset, defaulted to ``port``.
    target_port: int | str = 0
    node_port: int = 0

    @classmethod
    def from_reader(cls, r: Reader) -> ServicePort:
        tp = r.int_or_str("targetPort")
        return cls(
            name=r.str("name") or "",
            protocol=r.str("protocol"),
            app_protocol=r.str("appProtocol"),
            port=r.int("port") or 0,
            target_port=0 if tp is None else tp,
            node_port=r.int("nodePort") or 0,
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.app_protocol is not None:
            out["appProtocol"] = self.app_protocol
        if self.name:
            out["name"] = self.name
        if self.node_port:
            out["nodePort"] = self.node_port
        out["port"] = self.port
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.target_port not in (0, ""):
            out["targetPort"] = self.target_port
        return out


@attrs.frozen
class ClientIPConfig:
    timeout_seconds: int | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> ClientIPConfig:
        return cls(timeout_seconds=r.int("timeoutSeconds"))


@attrs.frozen
class SessionAffinityConfig:
    client_ip: ClientIPConfig | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> SessionAffinityConfig:
        return cls(client_ip=r.obj("clientIP", ClientIPConfig.from_reader))

    def to_manifest(self) -> dict[str, Any]:
        if self.client_ip is None:
            return {}
        inner: dict[str, Any] = {}
        if self.client_ip.timeout_seconds is not None:
            inner["timeoutSeconds"] = self.client_ip.timeout_seconds
        return {"clientIP": inner}


@attrs.frozen
class ServiceSpec:
    type: str | None = None
    ports: tuple[ServicePort, ...] = attrs.field(default=(), converter=to_tuple)
    #: ``None`` = no selector (the controllers ignore the Service). ``{}`` is read as None:
    #: the apiserver's JSON round trip drops an empty map.
    selector: FrozenDict[str, str] | None = attrs.field(default=None, converter=_opt_freeze)
    cluster_ip: str | None = None
    cluster_ips: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    ip_families: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    ip_family_policy: str | None = None
    external_ips: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    external_name: str | None = None
    session_affinity: str | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    health_check_node_port: int = 0
    load_balancer_ip: str | None = None
    load_balancer_source_ranges: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    publish_not_ready_addresses: bool = False
    traffic_distribution: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> ServiceSpec:
        selector = r.str_map("selector")
        return cls(
            type=r.str("type"),
            ports=r.objs("ports", ServicePort.from_reader) or (),
            selector=selector or None,
            cluster_ip=r.str("clusterIP"),
            cluster_ips=r.str_list("clusterIPs") or (),
            ip_families=r.str_list("ipFamilies") or (),
            ip_family_policy=r.str("ipFamilyPolicy"),
            external_ips=r.str_list("externalIPs") or (),
            external_name=r.str("externalName"),
            session_affinity=r.str("sessionAffinity"),
            session_affinity_config=r.obj(
                "sessionAffinityConfig", SessionAffinityConfig.from_reader
            ),
            external_traffic_policy=r.str("externalTrafficPolicy"),
            internal_traffic_policy=r.str("internalTrafficPolicy"),
            health_check_node_port=r.int("healthCheckNodePort") or 0,
            load_balancer_ip=r.str("loadBalancerIP"),
            load_balancer_source_ranges=r.str_list("loadBalancerSourceRanges") or (),
            load_balancer_class=r.str("loadBalancerClass"),
            allocate_load_balancer_node_ports=r.bool("allocateLoadBalancerNodePorts"),
            publish_not_ready_addresses=bool(r.bool("publishNotReadyAddresses")),
            traffic_distribution=r.str("trafficDistribution"),
        )

    def to_manifest(self) -> dict[str, Any]:
        # Keys in the alphabetical order kubectl prints them.
        out: dict[str, Any] = {}
        if self.allocate_load_balancer_node_ports is not None:
            out["allocateLoadBalancerNodePorts"] = self.allocate_load_balancer_node_ports
        if self.cluster_ip:
            out["clusterIP"] = self.cluster_ip
        if self.cluster_ips:
            out["clusterIPs"] = list(self.cluster_ips)
        if self.external_ips:
            out["externalIPs"] = list(self.external_ips)
        if self.external_name:
            out["externalName"] = self.external_name
        if self.external_traffic_policy:
            out["externalTrafficPolicy"] = self.external_traffic_policy
        if self.health_check_node_port:
            out["healthCheckNodePort"] = self.health_check_node_port
        if self.internal_traffic_policy:
            out["internalTrafficPolicy"] = self.internal_traffic_policy
        if self.ip_families:
            out["ipFamilies"] = list(self.ip_families)
        if self.ip_family_policy:
            out["ipFamilyPolicy"] = self.ip_family_policy
        if self.load_balancer_class is not None:
            out["loadBalancerClass"] = self.load_balancer_class
        if self.load_balancer_ip:
            out["loadBalancerIP"] = self.load_balancer_ip
        if self.load_balancer_source_ranges:
            out["loadBalancerSourceRanges"] = list(self.load_balancer_source_ranges)
        if self.ports:
            out["ports"] = [p.to_manifest() for p in self.ports]
        if self.publish_not_ready_addresses:
            out["publishNotReadyAddresses"] = True
        if self.selector is not None:
            out["selector"] = dict(self.selector)
        if self.session_affinity:
            out["sessionAffinity"] = self.session_affinity
        if self.session_affinity_config is not None:
            out["sessionAffinityConfig"] = self.session_affinity_config.to_manifest()
        if self.traffic_distribution:
            out["trafficDistribution"] = self.traffic_distribution
        if self.type:
            out["type"] = self.type
        return out


@attrs.frozen
class PortStatus:
    port: int
    protocol: str
    error: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> PortStatus:
        return cls(port=r.int("port") or 0, protocol=r.str("protocol") or "", error=r.str("error"))


@attrs.frozen
class LoadBalancerIngress:
    ip: str = ""
    hostname: str = ""
    #: ``VIP`` (default when ``ip`` is set) or ``Proxy``.
    ip_mode: str | None = None
    ports: tuple[PortStatus, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_reader(cls, r: Reader) -> LoadBalancerIngress:
        return cls(
            ip=r.str("ip") or "",
            hostname=r.str("hostname") or "",
            ip_mode=r.str("ipMode"),
            ports=r.objs("ports", PortStatus.from_reader) or (),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.hostname:
            out["hostname"] = self.hostname
        if self.ip:
            out["ip"] = self.ip
        if self.ip_mode is not None:
            out["ipMode"] = self.ip_mode
        if self.ports:
            out["ports"] = [
                {"port": p.port, "protocol": p.protocol, **({"error": p.error} if p.error else {})}
                for p in self.ports
            ]
        return out


@attrs.frozen
class ServiceStatus:
    load_balancer_ingress: tuple[LoadBalancerIngress, ...] = attrs.field(
        default=(), converter=to_tuple
    )

    @classmethod
    def from_reader(cls, r: Reader) -> ServiceStatus:
        r.ignore("conditions")

        def lb(rr: Reader) -> tuple[LoadBalancerIngress, ...]:
            return tuple(rr.objs("ingress", LoadBalancerIngress.from_reader) or ())

        return cls(load_balancer_ingress=r.obj("loadBalancer", lb) or ())

    def to_manifest(self) -> dict[str, Any]:
        lb: dict[str, Any] = {}
        if self.load_balancer_ingress:
            lb["ingress"] = [i.to_manifest() for i in self.load_balancer_ingress]
        return {"loadBalancer": lb}


@attrs.frozen
class Service(SpecStatusObject):
    """A v1 Service. ``metadata.namespace`` is ``""`` until the store defaults it."""

    api_version = "v1"
    kind = "Service"
    version_hint = 'Services are apiVersion "v1"'
    spec_type = ServiceSpec
    status_type = ServiceStatus

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: ServiceSpec = attrs.field(factory=ServiceSpec)
    status: ServiceStatus = attrs.field(factory=ServiceStatus)

    @property
    def is_headless(self) -> bool:
        return self.spec.cluster_ip == "None" or self.spec.cluster_ips[:1] == ("None",)

    def evolve_spec(self, **changes: Any) -> Service:
        return attrs.evolve(self, spec=attrs.evolve(self.spec, **changes))
