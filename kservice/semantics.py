"""What Kubernetes promises a packet, written from the API semantics -- no rule text.

This is the *reference* the property suite holds every backend to. Given one node's
:class:`~kservice.proxy.types.NodeProxyState` and a :class:`~kservice.trace.Packet`, it says
which endpoints may receive the packet and with what share, whether the client address is
kept or masqueraded, or whether the packet is rejected or dropped. It reads only the service
model (types, traffic policies, source ranges, affinity, nodePortAddresses, masqueradeAll,
local-traffic detection) and the shared endpoint categorisation.

The node's network, shared with the mock kernel and the lab so that addresses compare:

* a pod of this node lives in one of ``node.pod_cidrs``; the pods' bridge owns the first
  host address of each pod CIDR (the pods' gateway);
* the node's own addresses are ``node.ips`` (plus loopback);
* a masqueraded packet leaves with the address of the interface it goes out of: the bridge
  gateway when the endpoint is a pod of this node, the node's primary IP otherwise.

The first packet of a flow is described (session affinity changes later packets, not the
first one's distribution).
"""

from __future__ import annotations

import enum
from fractions import Fraction

import netaddr

from kservice.proxy.types import Endpoint, NodeProxyState, ServicePortInfo, join_host_port
from kservice.trace import Outcome, Packet, TraceResult

__all__ = ["Frontend", "Origin", "classify_origin", "expected_trace", "match_frontend"]


class Origin(enum.Enum):
    """Where a packet comes from, as seen by the node."""

    LOCAL_POD = "pod on this node"
    REMOTE_POD = "pod on another node"
    NODE = "the node itself"
    EXTERNAL = "outside the cluster"


class Frontend(enum.Enum):
    CLUSTER_IP = "cluster IP"
    EXTERNAL_IP = "external IP"
    LOAD_BALANCER = "loadbalancer IP"
    NODE_PORT = "node port"


def _family_of(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def _in_any(ip: str, cidrs: tuple[str, ...] | list[str]) -> bool:
    addr = netaddr.IPAddress(ip)
    for c in cidrs:
        c = c.strip()
        if not c:
            continue
        net = netaddr.IPNetwork(c)
        if net.version == addr.version and addr in net:
            return True
    return False


def cluster_cidrs(state: NodeProxyState) -> tuple[str, ...]:
    return tuple(c.strip() for c in state.config.cluster_cidr.split(",") if c.strip())


def pod_gateway(state: NodeProxyState) -> str | None:
    """First host address of this node's pod CIDR of the state's family (the bridge)."""
    for cidr in state.node.pod_cidrs:
        net = netaddr.IPNetwork(cidr)
        if (net.version == 6) == (state.family == "IPv6"):
            return str(netaddr.IPAddress(net.first + 1, net.version))
    return None


def local_addresses(state: NodeProxyState) -> set[str]:
    """Addresses of type LOCAL on the node: node IPs, loopback, the pod gateway."""
    out = {ip for ip in state.node.ips}
    out |= {"127.0.0.1", "::1"}
    for _, cidr in state.node.interfaces:
        out.add(str(netaddr.IPNetwork(cidr).ip))
    gw = pod_gateway(state)
    if gw:
        out.add(gw)
    return out


def classify_origin(state: NodeProxyState, src: str) -> Origin:
    """The entry path the mock kernel takes for ``src`` (see module docstring)."""
    if _in_any(src, state.node.pod_cidrs):
        return Origin.LOCAL_POD
    if src in local_addresses(state):
        return Origin.NODE
    if _in_any(src, cluster_cidrs(state)):
        return Origin.REMOTE_POD
    return Origin.EXTERNAL


def _detects_local(state: NodeProxyState, origin: Origin, src: str) -> bool | None:
    """kube-proxy's LocalTrafficDetector: is this pod traffic? ``None`` = no detector."""
    mode = state.config.detect_local_mode or "ClusterCIDR"
    if mode == "ClusterCIDR":
        cidrs = [c for c in cluster_cidrs(state) if _family_of(c.split("/")[0]) == state.family]
        if not cidrs:
            return None
        return _in_any(src, cidrs)
    if mode == "NodeCIDR":
        if not state.node.pod_cidrs:
            return None
        return _in_any(src, state.node.pod_cidrs)
    # BridgeInterface / InterfaceNamePrefix: "came in on a pod interface of this node".
    return origin is Origin.LOCAL_POD


def _node_port_addresses(state: NodeProxyState) -> set[str] | None:
    """Addresses a NodePort answers on; ``None`` means every LOCAL address."""
    npa = [c for c in state.config.node_port_addresses if c]
    fam = [c for c in npa if c == "primary" or _family_of(c.split("/")[0]) == state.family]
    if not fam or any(c in ("0.0.0.0/0", "::/0") for c in fam):
        return None
    out: set[str] = set()
    for c in fam:
        if c == "primary":
            if state.node_ip:
                out.add(state.node_ip)
            continue
        # Every interface address inside the CIDR: the node IPs, the listed interfaces and
        # loopback, which every host has on lo whether or not NodeInfo lists it (kube-proxy
        # reads the host's interfaces; 127.0.0.0/8 in nodePortAddresses is how localhost
        # NodePorts are kept when addresses are restricted).
        for ip in (*state.node.ips, "127.0.0.1", "::1"):
            if _in_any(ip, [c]):
                out.add(ip)
        for _, cidr in state.node.interfaces:
            ip = str(netaddr.IPNetwork(cidr).ip)
            if _in_any(ip, [c]):
                out.add(ip)
    return out


def match_frontend(
    state: NodeProxyState, packet: Packet, origin: Origin
) -> tuple[ServicePortInfo, Frontend] | None:
    """The service port and frontend a packet is addressed to, if any."""
    proto = packet.proto.upper()
    local = local_addresses(state)
    npa = _node_port_addresses(state)
    for sp in state.service_ports:
        if sp.protocol != proto:
            continue
        if packet.dport == sp.port:
            if packet.dst == sp.cluster_ip:
                return sp, Frontend.CLUSTER_IP
            if packet.dst in sp.external_ips:
                return sp, Frontend.EXTERNAL_IP
            if packet.dst in sp.load_balancer_vips:
                return sp, Frontend.LOAD_BALANCER
    for sp in state.service_ports:
        if sp.protocol != proto or not sp.node_port or packet.dport != sp.node_port:
            continue
        dst = packet.dst
        if dst in ("127.0.0.1", "::1") or dst.startswith("127."):
            # Localhost NodePorts: IPv4 only, only from the node itself, only if enabled.
            if (
                state.family == "IPv4"
                and state.config.iptables.localhost_node_ports
                and origin is Origin.NODE
                and (npa is None or any(a.startswith("127.") for a in npa))
            ):
                return sp, Frontend.NODE_PORT
            continue
        if (npa is None and dst in local) or (npa is not None and dst in npa):
            return sp, Frontend.NODE_PORT
    return None


def _share(
    endpoints: tuple[Endpoint, ...], packet: Packet, masq: bool, state: NodeProxyState,
    why: str,
) -> list[Outcome]:
    n = len(endpoints)
    gw = pod_gateway(state)
    out = []
    for ep in endpoints:
        hairpin = ep.ip == packet.src
        m = masq or hairpin
        if m:
            seen = gw if _in_any(ep.ip, state.node.pod_cidrs) and gw else state.node_ip
        else:
            seen = packet.src
        out.append(Outcome(Fraction(1, n), "ACCEPT", join_host_port(ep.ip, ep.port), seen, m,
                           (why,)))
    return out


def expected_trace(state: NodeProxyState, packet: Packet, *, mode: str = "reference") -> TraceResult:
    """Every fate of ``packet`` on this node that Kubernetes' semantics allow, with shares."""
    origin = classify_origin(state, packet.src)
    hit = match_frontend(state, packet, origin)

    def result(*outcomes: Outcome) -> TraceResult:
        return TraceResult(state.node.name, mode, packet, outcomes)

    if hit is None:
        # Not a service: the packet is routed unchanged.
        return result(Outcome(Fraction(1), "ACCEPT", join_host_port(packet.dst, packet.dport),
                              packet.src, False, ("not a service frontend",)))
    sp, frontend = hit
    cat = sp.categorized
    spn = str(sp.name)
    if not cat.has_any:
        return result(Outcome(Fraction(1), "REJECT", rules=(f"{spn} has no endpoints",)))

    is_pod_traffic = _detects_local(state, origin, packet.src)
    if frontend is Frontend.CLUSTER_IP:
        eps = cat.local if sp.internal_policy_local else cat.cluster
        if not eps:
            return result(Outcome(Fraction(1), "DROP", rules=(f"{spn} has no local endpoints",)))
        masq = state.config.iptables.masquerade_all or is_pod_traffic is False
        return result(*_share(eps, packet, masq, state, f"{spn} cluster IP"))

    # External destinations: NodePort, externalIP, LB VIP.
    if frontend is Frontend.LOAD_BALANCER and sp.load_balancer_source_ranges:
        allowed = _in_any(packet.src, sp.load_balancer_source_ranges)
        node_ip = state.node_ip
        if (
            not allowed
            and node_ip is not None
            and _in_any(node_ip, sp.load_balancer_source_ranges)
            and packet.src in sp.load_balancer_vips
        ):
            allowed = True
        if not allowed:
            return result(Outcome(Fraction(1), "DROP",
                                  rules=(f"{spn} traffic not accepted by the source ranges",)))
    why = f"{spn} {frontend.value}"
    if not sp.external_policy_local:
        return result(*_share(cat.cluster, packet, True, state, why))
    # externalTrafficPolicy: Local
    if is_pod_traffic:
        # Pods reach external frontends like cluster IPs (short-circuit, no masquerade).
        return result(*_share(cat.cluster, packet, False, state, why + " (pod traffic)"))
    if origin is Origin.NODE:
        return result(*_share(cat.cluster, packet, True, state, why + " (LOCAL traffic)"))
    if not cat.local:
        return result(Outcome(Fraction(1), "DROP", rules=(f"{spn} has no local endpoints",)))
    return result(*_share(cat.local, packet, False, state, why))
