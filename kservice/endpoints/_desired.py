"""What a Service's endpoints should be, from its Pods and Nodes (pure functions).

Upstream: ``pkg/controller/endpointslice/reconciler.go`` + ``utils.go`` (``podToEndpoint``,
``getEndpointPorts``), ``staging/.../endpointslice/util`` (``ShouldPodBeInEndpoints``,
``ShouldSetHostname``), ``pkg/api/v1/pod`` (``FindPort``) and the ``trafficdist`` /
``topologycache`` hint heuristics. Reference ``k8s-service-api.md`` §4.1-4.5.

Theory of operation: for each address type the Service supports, every eligible Pod becomes
one endpoint (its IP of that family), grouped by the *port mapping* it resolves to -- pods that
resolve a named ``targetPort`` differently, or not at all, land in different groups and so in
different slices. Hints are computed here too, per endpoint, before slices are packed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from kservice.models.discovery import (
    EndpointConditions,
    EndpointPort,
    ObjectReference,
    SliceEndpoint,
)
from kservice.models.service import Service
from kservice.models.workloads import Node, Pod

__all__ = [
    "ANNOTATION_TOPOLOGY_AWARE_HINTS",
    "ANNOTATION_TOPOLOGY_MODE",
    "PodEndpoints",
    "PortsKey",
    "address_types_for_service",
    "assemble_desired",
    "desired_endpoints",
    "endpoint_identity",
    "find_port",
    "pod_endpoint_ports",
    "pod_endpoints",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
    "topology_mode_auto",
]

ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
ANNOTATION_TOPOLOGY_AWARE_HINTS = "service.kubernetes.io/topology-aware-hints"
LABEL_ZONE = "topology.kubernetes.io/zone"

#: A port mapping: the slice ``ports`` a group of endpoints shares.
PortsKey = tuple[EndpointPort, ...]


def _is_ipv6(ip: str) -> bool:
    return ":" in ip


def address_types_for_service(svc: Service) -> tuple[str, ...]:
    """``getAddressTypesForService``: from ipFamilies, else guessed from the ClusterIP."""
    if svc.spec.ip_families:
        return tuple(dict.fromkeys(f for f in svc.spec.ip_families if f in ("IPv4", "IPv6")))
    cip = svc.spec.cluster_ip or ""
    if cip and cip != "None":
        return ("IPv6",) if _is_ipv6(cip) else ("IPv4",)
    # Headless without families (pre-dual-stack objects): upstream serves both families.
    return ("IPv4", "IPv6")


def should_pod_be_in_endpoints(pod: Pod, include_terminating: bool) -> bool:
    """Terminal pods, pods without IPs, and (unless included) terminating pods are out."""
    if pod.status.phase in ("Succeeded", "Failed"):
        return False
    if not pod.status.ips:
        return False
    if not include_terminating and pod.is_terminating:
        return False
    return True


def should_set_hostname(pod: Pod, svc: Service) -> bool:
    return bool(pod.spec.hostname) and pod.spec.subdomain == svc.metadata.name and \
        pod.metadata.namespace == svc.metadata.namespace


def find_port(pod: Pod, target_port: int | str, protocol: str) -> int | None:
    """``podutil.FindPort``: an int as is; a name looked up in containers, then sidecars."""
    if isinstance(target_port, int):
        return target_port
    for c in pod.spec.containers:
        for p in c.ports:
            if p.name == target_port and (p.protocol or "TCP") == protocol:
                return p.container_port
    for c in pod.spec.sidecars:
        for p in c.ports:
            if p.name == target_port and (p.protocol or "TCP") == protocol:
                return p.container_port
    return None


def pod_endpoint_ports(svc: Service, pod: Pod) -> PortsKey:
    """``getEndpointPorts``: service ports this pod serves (a port it lacks is omitted)."""
    if not svc.spec.ports and svc.is_headless:
        return ()
    out = []
    for sp in svc.spec.ports:
        protocol = sp.protocol or "TCP"
        tp: int | str = sp.target_port
        if tp in (0, ""):
            tp = sp.port  # unset targetPort defaults to port
        num = find_port(pod, tp, protocol)
        if num is None:
            continue
        out.append((sp.name, num, protocol, sp.app_protocol))
    return _ports_key(tuple(out))


@functools.lru_cache(maxsize=8192)
def _ports_key(spec: tuple[tuple[str, int, str, str | None], ...]) -> PortsKey:
    # Every pod of a Service resolves to one of very few port mappings: share them.
    return tuple(EndpointPort(name=n, port=p, protocol=pr, app_protocol=a)
                 for n, p, pr, a in spec)


def endpoint_identity(ep: SliceEndpoint) -> tuple[Any, ...]:
    """``hashEndpoint``: addresses, hostname and target pod identify an endpoint."""
    ref = ep.target_ref
    addrs = ep.addresses if len(ep.addresses) < 2 else tuple(sorted(ep.addresses))
    return (addrs, ep.hostname or "",
            (ref.namespace, ref.name) if ref is not None else None)


def _pod_ip(pod: Pod, address_type: str) -> str | None:
    for ip in pod.status.ips:
        if _is_ipv6(ip) == (address_type == "IPv6"):
            return ip
    return None


def topology_mode_auto(svc: Service) -> bool:
    """The topology annotation asks for the older CPU-proportional hints."""
    mode = svc.metadata.annotations.get(ANNOTATION_TOPOLOGY_MODE)
    if mode is None:
        mode = svc.metadata.annotations.get(ANNOTATION_TOPOLOGY_AWARE_HINTS)
    return mode in ("Auto", "auto")


def _auto_hints(
    endpoints: list[SliceEndpoint], nodes: Mapping[str, Node]
) -> dict[tuple[Any, ...], tuple[str, ...] | None]:
    """Approximation of ``topologycache.AddHints`` (documented in the package README/doc).

    Upstream weighs zones by the allocatable CPU of their Ready nodes and redistributes
    endpoints so each zone gets its share, giving up (no hints) when a zone has no nodes'
    CPU information, an endpoint lacks a zone, or some zone would get less than one endpoint.
    kservice weighs every Ready node equally (CPU is not modelled): zone share = nodes in zone
    / nodes. Endpoints first keep their own zone; surplus endpoints of over-served zones are
    then handed to under-served zones, lowest identity first.
    """
    ready = [e for e in endpoints if e.conditions.ready]
    zones_nodes: dict[str, int] = {}
    for n in nodes.values():
        z = n.metadata.labels.get(LABEL_ZONE)
        if not z:
            return {}
        zones_nodes[z] = zones_nodes.get(z, 0) + 1
    if not ready or not zones_nodes or any(not e.zone for e in ready):
        return {}
    total_nodes = sum(zones_nodes.values())
    expected = {z: len(ready) * n / total_nodes for z, n in zones_nodes.items()}
    if any(v < 1 for v in expected.values()):
        return {}
    want = {z: round(v) for z, v in expected.items()}
    by_zone: dict[str, list[SliceEndpoint]] = {}
    for e in sorted(ready, key=endpoint_identity):
        by_zone.setdefault(e.zone or "", []).append(e)
    assign: dict[tuple[Any, ...], str] = {}
    surplus: list[SliceEndpoint] = []
    for z, eps in by_zone.items():
        keep = want.get(z, 0)
        for e in eps[:keep]:
            assign[endpoint_identity(e)] = z
        surplus.extend(eps[keep:])
    for z in sorted(want):
        have = sum(1 for v in assign.values() if v == z)
        while have < want[z] and surplus:
            assign[endpoint_identity(surplus.pop(0))] = z
            have += 1
    for e in surplus:  # rounding leftovers keep their own zone
        assign[endpoint_identity(e)] = e.zone or ""
    return {k: (v,) for k, v in assign.items()}


def pod_reference(pod: Pod) -> ObjectReference:
    """``targetRef`` of a pod's endpoint (one object shared by the slice and Endpoints)."""
    return ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                           name=pod.metadata.name, uid=pod.metadata.uid)


@functools.lru_cache(maxsize=8)
def _conditions(ready: bool, serving: bool, terminating: bool) -> EndpointConditions:
    """The eight possible condition values, shared (immutable) across endpoints."""
    return EndpointConditions(ready=ready, serving=serving, terminating=terminating)


@attrs.frozen
class PodEndpoints:
    """One pod's contribution to one Service, per address type (cacheable per pod object)."""

    #: The pod passes ``ShouldPodBeInEndpoints`` (so its port mapping group exists).
    eligible: bool = False
    ports: PortsKey = ()
    #: address type -> endpoint (absent: no IP of that family, or the node is missing).
    endpoints: Mapping[str, SliceEndpoint] = attrs.field(factory=dict)
    #: Skipped because its Node is missing (upstream requeues the Service).
    missing_node: bool = False


def pod_endpoints(
    svc: Service, pod: Pod, nodes: Mapping[str, Node], address_types: Iterable[str],
) -> PodEndpoints:
    """``podToEndpoint`` + ``getEndpointPorts`` for one pod, every address type at once."""
    if not should_pod_be_in_endpoints(pod, include_terminating=True):
        return PodEndpoints()
    ports = pod_endpoint_ports(svc, pod)
    node = nodes.get(pod.spec.node_name) if pod.spec.node_name else None
    pnr = svc.spec.publish_not_ready_addresses
    if node is None and not pnr:
        return PodEndpoints(eligible=True, ports=ports, missing_node=True)
    serving = pod.is_ready
    terminating = pod.is_terminating
    ready = pnr or (serving and not terminating)
    zone = (node.metadata.labels.get(LABEL_ZONE) if node is not None else None) or None
    td = svc.spec.traffic_distribution
    hz: tuple[str, ...] | None = None
    hn: tuple[str, ...] | None = None
    if ready and not topology_mode_auto(svc):
        if td in ("PreferClose", "PreferSameZone") and zone:
            hz = (zone,)
        elif td == "PreferSameNode" and pod.spec.node_name:
            # Node hint plus a zone hint, so kube-proxies without the gate fall back to
            # same-zone routing.
            hn, hz = (pod.spec.node_name,), ((zone,) if zone else None)
    ref = pod_reference(pod)
    hostname = pod.spec.hostname if should_set_hostname(pod, svc) else None
    conditions = _conditions(ready, serving, terminating)
    eps: dict[str, SliceEndpoint] = {}
    for at in address_types:
        ip = _pod_ip(pod, at)
        if ip is None:
            continue
        eps[at] = SliceEndpoint(
            addresses=(ip,), conditions=conditions, hostname=hostname, target_ref=ref,
            node_name=pod.spec.node_name or None, zone=zone,
            hints_for_zones=hz, hints_for_nodes=hn,
        )
    return PodEndpoints(eligible=True, ports=ports, endpoints=eps)


def assemble_desired(
    svc: Service,
    contributions: Iterable[PodEndpoints],
    nodes: Mapping[str, Node],
    address_type: str,
) -> tuple[dict[PortsKey, list[SliceEndpoint]], bool]:
    """Group per-pod contributions (in pod-name order) by port mapping for one address type;
    apply topology-mode Auto hints. Returns the groups and whether a node was missing."""
    groups: dict[PortsKey, list[SliceEndpoint]] = {}
    missing_node = False
    for pe in contributions:
        if not pe.eligible:
            continue
        group = groups.setdefault(pe.ports, [])
        missing_node = missing_node or pe.missing_node
        ep = pe.endpoints.get(address_type)
        if ep is not None:
            group.append(ep)
    if topology_mode_auto(svc):
        flat = [e for eps in groups.values() for e in eps]
        hints = _auto_hints(flat, nodes)
        if hints:
            for key, eps in groups.items():
                groups[key] = [
                    attrs.evolve(e, hints_for_zones=hints.get(endpoint_identity(e)))
                    for e in eps
                ]
    return groups, missing_node


def desired_endpoints(
    svc: Service,
    pods: Iterable[Pod],
    nodes: Mapping[str, Node],
    address_type: str,
) -> tuple[dict[PortsKey, list[SliceEndpoint]], bool]:
    """Endpoints per port mapping for one address type, and whether a pod was skipped
    because its Node is missing (upstream requeues the Service then).

    Groups and endpoints are in pod-name order (upstream: informer order, i.e. random).
    """
    ordered = sorted(pods, key=lambda p: p.metadata.name)
    return assemble_desired(
        svc, (pod_endpoints(svc, p, nodes, (address_type,)) for p in ordered), nodes,
        address_type)
