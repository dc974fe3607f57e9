"""kube-proxy's view of Services, EndpointSlices and Nodes: objects -> :class:`NodeProxyState`.

This module owns THE conversion every snapshot goes through (``kube-proxy-iptables.md``
§3.1-3.2; upstream ``serviceport.go``, ``servicechangetracker.go``, ``endpointslicecache.go``,
``pkg/proxy/util``). :func:`state_from_objects` feeds it raw manifests exactly as a cluster
stores them (``kubectl get svc,endpointslices,nodes -A -o yaml``, ``kind: List`` included)
with NO defaulting, validation or allocation -- the way the proxier sees them; and
:func:`kservice.proxy.snapshot.build_node_state` feeds it the live store's objects.

Rules reproduced (and where kservice has to pick a behaviour Go leaves undefined, said so):

* Services: skipped when ``clusterIP`` is ``""``/``None``, type ``ExternalName``, or there is no
  ClusterIP of the proxier's family (``GetClusterIPByFamily``: ``ipFamilies``/``clusterIPs`` when
  ``ipFamilies`` is set, else ``clusterIP`` if its family matches). Type ``""`` renders as
  ClusterIP, but only the literal types count for "externally accessible by API type"
  (``ExternalPolicyLocal``/``NeedsHealthCheck``). kservice also skips a Service whose ClusterIP
  does not parse (Go would keep a nil IP and write ``<nil>`` into rules).
* Addresses are parsed *sloppily* (``netutils.ParseIPSloppy``: IPv4 octets with leading zeros are
  decimal) and printed canonically; an IPv4-mapped IPv6 address counts as IPv4 (Go ``To4()``).
* externalIPs and LB ingress IPs are filtered to the family, order kept; ingress entries with an
  empty ``ip`` or an ``ipMode`` other than nil/``VIP`` are skipped. Source ranges are trimmed,
  sloppy-parsed, family-filtered and printed masked (Go ``IPNet.String()``).
* ClientIP affinity without ``timeoutSeconds`` (impossible through the API; Go would
  dereference nil) is read as the API default 10800. A port without ``protocol`` (also
  impossible through the API) is read as ``TCP``.
* Slices: grouped by the ``kubernetes.io/service-name`` label (slices without it are ignored,
  as upstream logs and drops them); slices of another addressType are ignored; ports with a nil
  name or nil/0 port are ignored; only ``addresses[0]`` of an endpoint is used, and only when
  it is of the proxier's family. nil ``ready``/``serving`` mean true, nil ``terminating`` false.
* Dedup per service port by ``ip:port``: a later duplicate replaces an earlier one unless it is
  terminating (v1.34). Upstream walks slices in Go-map order; kservice walks them by name and,
  within a slice, by address text (upstream's ``byAddress`` sort), so results are repeatable.
* Each port's endpoints are sorted by their ``ip:port`` *string* (``10.0.0.10:80`` before
  ``10.0.0.2:80``) and categorised once with :func:`categorize_endpoints`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from kservice.errors import InvalidInput
from kservice.models.discovery import EndpointSlice
from kservice.models.service import Service
from kservice.models.workloads import Node
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
)

__all__ = [
    "FAMILIES",
    "LABEL_SERVICE_NAME",
    "assemble_state",
    "endpoints_by_port",
    "ip_family",
    "iter_manifests",
    "node_info_from_node",
    "parse_cidr_sloppy",
    "parse_ip_sloppy",
    "service_port_infos",
    "state_from_objects",
]

FAMILIES = ("IPv4", "IPv6")
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
#: kube-apiserver's default for sessionAffinityConfig.clientIP.timeoutSeconds.
DEFAULT_CLIENT_IP_TIMEOUT = 10800

# --------------------------------------------------------------------------- sloppy parsing

_V4_SLOPPY = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")


def _parse_v4(text: str) -> bytes | None:
    m = _V4_SLOPPY.match(text)
    if not m:
        return None
    octets = [int(g) for g in m.groups()]  # leading zeros read as decimal, as ParseIPSloppy
    if any(o > 255 for o in octets):
        return None
    return bytes(octets)


def _parse_v6(text: str) -> bytes | None:
    import ipaddress  # stdlib; the embedded-IPv4 tail is parsed sloppily first

    if ":" not in text or "%" in text:
        return None
    head, _sep, tail = text.rpartition(":")
    if "." in tail:
        v4 = _parse_v4(tail)
        if v4 is None:
            return None
        text = f"{head}:{v4[0]}.{v4[1]}.{v4[2]}.{v4[3]}"
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        return None


def _format(packed: bytes) -> str:
    import ipaddress

    if len(packed) == 4:
        return ".".join(str(b) for b in packed)
    # Go's IP.String() prints an IPv4-mapped address as dotted quad.
    if packed[:12] == b"\x00" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in packed[12:])
    return str(ipaddress.IPv6Address(packed))


def _to4(packed: bytes) -> bytes | None:
    if len(packed) == 4:
        return packed
    if packed[:12] == b"\x00" * 10 + b"\xff\xff":
        return packed[12:]
    return None


def parse_ip_sloppy(text: str) -> str | None:
    """``netutils.ParseIPSloppy(text).String()``, or ``None`` when it does not parse."""
    packed = _parse_v4(text)
    if packed is None:
        packed = _parse_v6(text)
    if packed is None:
        return None
    return _format(packed)


def ip_family(text: str) -> str | None:
    """``IPv4``/``IPv6`` of a sloppy-parsed address (IPv4-mapped counts as IPv4), or ``None``."""
    packed = _parse_v4(text) or _parse_v6(text)
    if packed is None:
        return None
    return "IPv4" if _to4(packed) is not None else "IPv6"


def parse_cidr_sloppy(text: str) -> tuple[str, str] | None:
    """``netutils.ParseCIDRSloppy`` -> (masked network text, family), or ``None``.

    The prefix length may carry leading zeros (``/025``); the address part is sloppy.
    """
    ip_text, sep, bits_text = text.partition("/")
    if not sep or not bits_text.isdigit() or not bits_text.isascii():
        return None
    packed = _parse_v4(ip_text)
    if packed is None:
        packed = _parse_v6(ip_text)
        if packed is None:
            return None
    bits = int(bits_text)
    width = 8 * len(packed)
    if bits > width:
        return None
    value = int.from_bytes(packed, "big")
    mask = ((1 << width) - 1) ^ ((1 << (width - bits)) - 1)
    net = (value & mask).to_bytes(len(packed), "big")
    if len(packed) == 16 and _to4(net) is not None and bits >= 96:
        # Go: a v4-in-v6 CIDR with a v6 mask prints as IPv6 text; keep the v6 form.
        import ipaddress

        return f"{ipaddress.IPv6Address(net)}/{bits}", "IPv6"
    family = "IPv4" if len(packed) == 4 else "IPv6"
    return f"{_format(net)}/{bits}", family


# --------------------------------------------------------------------------- services


def _cluster_ip_for_family(svc: Service, family: str) -> str:
    """``proxyutil.GetClusterIPByFamily``."""
    spec = svc.spec
    if not spec.ip_families:
        cip = spec.cluster_ip or ""
        if cip in ("", "None"):
            return ""
        return cip if (ip_family(cip) == "IPv6") == (family == "IPv6") else ""
    for idx, fam in enumerate(spec.ip_families):
        if fam == family and idx < len(spec.cluster_ips):
            return spec.cluster_ips[idx]
    return ""


def _externally_accessible_by_type(svc: Service) -> bool:
    """``apiservice.ExternallyAccessible``: literal types only (``""`` is not ClusterIP)."""
    t = svc.spec.type or ""
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(svc.spec.external_ips))


def service_port_infos(svc: Service, family: str) -> list[ServicePortInfo]:
    """One :class:`ServicePortInfo` per ``spec.ports[]`` entry (endpoints not yet filled).

    Empty when kube-proxy would not proxy the Service for ``family`` at all.
    """
    spec = svc.spec
    if spec.cluster_ip in (None, "", "None") or spec.type == "ExternalName":
        return []  # ShouldSkipService
    cip_text = _cluster_ip_for_family(svc, family)
    if not cip_text:
        return []
    cluster_ip = parse_ip_sloppy(cip_text)
    if cluster_ip is None:
        return []

    external_ips = tuple(
        ip for ip in (parse_ip_sloppy(x) for x in spec.external_ips if ip_family(x) == family)
        if ip is not None
    )
    lb_vips: list[str] = []
    for ing in svc.status.load_balancer_ingress:
        if not ing.ip:
            continue
        if ing.ip_mode is not None and ing.ip_mode != "VIP":
            continue  # ipMode Proxy: the LB delivers to nodes itself; no VIP rules
        if ip_family(ing.ip) != family:
            continue
        parsed = parse_ip_sloppy(ing.ip)
        if parsed is not None:
            lb_vips.append(parsed)
    source_ranges: list[str] = []
    for raw in spec.load_balancer_source_ranges:
        got = parse_cidr_sloppy(raw.strip())
        if got is not None and got[1] == family:
            source_ranges.append(got[0])

    etp_local = _externally_accessible_by_type(svc) and spec.external_traffic_policy == "Local"
    itp_local = spec.internal_traffic_policy == "Local"
    hc_port = 0
    if (spec.type or "") == "LoadBalancer" and etp_local:
        hc_port = spec.health_check_node_port
    affinity: int | None = None
    if spec.session_affinity == "ClientIP":
        cfg = spec.session_affinity_config
        timeout = cfg.client_ip.timeout_seconds if cfg and cfg.client_ip else None
        affinity = DEFAULT_CLIENT_IP_TIMEOUT if timeout is None else timeout

    out: dict[ServicePortName, ServicePortInfo] = {}
    for port in spec.ports:
        protocol = port.protocol or "TCP"
        name = ServicePortName(svc.metadata.namespace, svc.metadata.name, port.name, protocol)
        out[name] = ServicePortInfo(
            name=name,
            cluster_ip=cluster_ip,
            port=port.port,
            protocol=protocol,
            node_port=port.node_port,
            external_ips=external_ips,
            load_balancer_vips=tuple(lb_vips),
            load_balancer_source_ranges=tuple(source_ranges),
            session_affinity_timeout=affinity,
            external_policy_local=etp_local,
            internal_policy_local=itp_local,
            health_check_node_port=hc_port,
            target_port=port.target_port,
        )
    return list(out.values())


# --------------------------------------------------------------------------- endpoints


def endpoints_by_port(
    namespace: str,
    service: str,
    slices: Iterable[EndpointSlice],
    family: str,
    node_name: str,
    *,
    prefer_same_node_gate: bool = True,
) -> dict[ServicePortName, tuple[Endpoint, ...]]:
    """The endpoints of one Service's ports, from its slices (dedup + ``ip:port`` sort)."""
    sets: dict[ServicePortName, dict[str, Endpoint]] = {}
    for sl in sorted(slices, key=lambda s: s.metadata.name):
        if sl.address_type != family:
            continue
        # byAddress: upstream sorts a slice's endpoints by their joined address text.
        eps = sorted(sl.endpoints, key=lambda e: ",".join(e.addresses))
        for port in sorted(sl.ports, key=lambda p: p.port or 0):
            if port.name is None or not port.port:
                continue
            spn = ServicePortName(namespace, service, port.name, port.protocol or "TCP")
            target = sets.setdefault(spn, {})
            for ep in eps:
                if not ep.addresses:
                    continue
                addr = ep.addresses[0]
                if (ip_family(addr) == "IPv6") != (family == "IPv6"):
                    continue
                ip = parse_ip_sloppy(addr)
                if ip is None:
                    continue
                c = ep.conditions
                terminating = c.terminating is True
                endpoint = Endpoint(
                    ip=ip,
                    port=port.port,
                    is_local=bool(node_name) and ep.node_name == node_name,
                    ready=c.ready is not False,
                    serving=c.serving is not False,
                    terminating=terminating,
                    zone_hints=frozenset(ep.hints_for_zones or ()),
                    node_hints=frozenset(ep.hints_for_nodes or ()) if prefer_same_node_gate
                    else frozenset(),
                    node_name=ep.node_name,
                    zone=ep.zone,
                )
                key = endpoint.string
                if key not in target or not terminating:
                    target[key] = endpoint
    return {spn: tuple(d[k] for k in sorted(d)) for spn, d in sets.items() if d}


def node_info_from_node(node: Node) -> NodeInfo:
    """What the proxier knows of its Node object: name, labels, IPs, pod CIDRs."""
    return NodeInfo(
        name=node.metadata.name,
        ips=node.node_ips,
        labels=node.metadata.labels,
        pod_cidrs=node.pod_cidrs,
    )


def assemble_state(
    services: Iterable[Service],
    slices: Iterable[EndpointSlice],
    node: NodeInfo,
    family: str,
    config: KubeProxyConfiguration | None = None,
    options: ProxierOptions | None = None,
    *,
    prefer_same_node_gate: bool = True,
) -> NodeProxyState:
    """The one code path from Service + EndpointSlice objects to a :class:`NodeProxyState`."""
    if family not in FAMILIES:
        raise InvalidInput(f'unknown IP family "{family}"', hint="use IPv4 or IPv6")
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for sl in slices:
        svc_name = sl.metadata.labels.get(LABEL_SERVICE_NAME, "")
        if not svc_name or not sl.metadata.name:
            continue  # endpointSliceCacheKeys error: logged and ignored upstream
        by_service.setdefault((sl.metadata.namespace, svc_name), []).append(sl)
    ports: list[ServicePortInfo] = []
    for svc in services:
        infos = service_port_infos(svc, family)
        if not infos:
            continue
        eps = endpoints_by_port(
            svc.metadata.namespace, svc.metadata.name,
            by_service.get((svc.metadata.namespace, svc.metadata.name), ()),
            family, node.name, prefer_same_node_gate=prefer_same_node_gate,
        )
        for info in infos:
            ports.append(finish_port(info, eps.get(info.name, ()), node,
                                     prefer_same_node_gate=prefer_same_node_gate))
    ports.sort(key=lambda p: p.name)
    return NodeProxyState(
        node=node,
        family=family,
        config=config or KubeProxyConfiguration(),
        options=options or ProxierOptions(),
        service_ports=tuple(ports),
    )


def finish_port(
    info: ServicePortInfo,
    endpoints: tuple[Endpoint, ...],
    node: NodeInfo,
    *,
    prefer_same_node_gate: bool = True,
) -> ServicePortInfo:
    """Attach endpoints and their categorisation for ``node`` to a port."""
    info = attrs.evolve(info, endpoints=endpoints)
    cat = categorize_endpoints(endpoints, info, node.name, node.labels,
                               prefer_same_node_gate=prefer_same_node_gate)
    return attrs.evolve(info, categorized=cat)


# --------------------------------------------------------------------------- manifests


def iter_manifests(objects: Iterable[Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Flatten ``kind: List`` (and ``*List``) items; yields (path, manifest)."""
    for i, obj in enumerate(objects):
        p = f"{path}[{i}]"
        if obj is None:
            continue  # an empty YAML document
        if not isinstance(obj, Mapping):
            raise InvalidInput("expected an object with apiVersion and kind", path=p)
        kind = obj.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in obj:
            items = obj.get("items") or []
            if not isinstance(items, list):
                raise InvalidInput("items must be a list", path=f"{p}.items")
            yield from iter_manifests(items, f"{p}.items")
        else:
            yield p, obj


def state_from_objects(
    objects: list[dict[str, Any]] | Mapping[str, Any],
    node_name: str,
    family: str,
    kube_proxy_config: KubeProxyConfiguration | None = None,
    *,
    node: NodeInfo | None = None,
    options: ProxierOptions | None = None,
    prefer_same_node_gate: bool = True,
) -> NodeProxyState:
    """Build one node's proxier snapshot from raw manifests, without any API processing.

    Services, EndpointSlices and Nodes are read; a ``KubeProxyConfiguration`` document is used
    when ``kube_proxy_config`` is not given; other kinds (Pods, Endpoints, ...) are ignored,
    as kube-proxy does not watch them. ``node`` overrides what the Node object says.
    """
    docs: list[Any] = [objects] if isinstance(objects, Mapping) else list(objects)
    services: list[Service] = []
    slices: list[EndpointSlice] = []
    found_node: Node | None = None
    cidrs: list[str] = []
    config = kube_proxy_config
    for p, m in iter_manifests(docs):
        kind = m.get("kind")
        if kind == "Service":
            services.append(Service.from_manifest(m, p))
        elif kind == "EndpointSlice":
            slices.append(EndpointSlice.from_manifest(m, p))
        elif kind == "Node":
            n = Node.from_manifest(m, p)
            if n.metadata.name == node_name:
                found_node = n
        elif kind == "KubeProxyConfiguration" and kube_proxy_config is None:
            from kservice.proxy.configfile import load_kube_proxy_config

            config = load_kube_proxy_config(m, path=p)
        elif kind == "ServiceCIDR":
            # kube-proxy (nftables mode) watches ServiceCIDRs to drop traffic to
            # unallocated service IPs.
            spec = m.get("spec") or {}
            cidrs += [str(c) for c in (spec.get("cidrs") or []) if isinstance(c, str)]
    if node is None:
        node = node_info_from_node(found_node) if found_node else NodeInfo(name=node_name)
    state = assemble_state(services, slices, node, family, config, options,
                           prefer_same_node_gate=prefer_same_node_gate)
    return attrs.evolve(state, service_cidrs=tuple(dict.fromkeys(cidrs))) if cidrs else state
