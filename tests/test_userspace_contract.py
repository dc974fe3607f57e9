"""The shared backend contract for the userspace mode.

The reference semantics describe current Kubernetes; the userspace proxier (removed in v1.26)
differs in documented ways (docs/divergences-userspace.md). A mismatch is accepted only when
the traced result equals an independent model of the *userspace* semantics below -- written
from the mode's documented behaviour, not from its rule text -- and the difference is one the
divergence list names.
"""

from __future__ import annotations

from fractions import Fraction

import netaddr

from backends.mockkernel import MockKernel
from backends.userspace import plan_node
from kservice.proxy.types import NodeProxyState, ServicePortInfo, join_host_port
from kservice.semantics import Origin, classify_origin, local_addresses, pod_gateway
from kservice.testing.contract import BackendContract
from kservice.trace import Outcome, Packet, TraceResult


def _in(ip: str, cidrs: tuple[str, ...]) -> bool:
    a = netaddr.IPAddress(ip)
    return any(a.version == netaddr.IPNetwork(c).version and a in netaddr.IPNetwork(c)
               for c in cidrs)


def _match(state: NodeProxyState, packet: Packet, origin: Origin
           ) -> tuple[ServicePortInfo, str] | None:
    """The service port the userspace rules send ``packet`` to, and the frontend kind."""
    local = local_addresses(state)
    from_node = origin is Origin.NODE
    bridged = origin is Origin.LOCAL_POD
    ports = [sp for sp in state.service_ports
             if sp.protocol in ("TCP", "UDP") and sp.protocol.lower() == packet.proto]
    for sp in ports:  # KUBE-PORTALS-* first
        if packet.dport != sp.port:
            continue
        if packet.dst == sp.cluster_ip or packet.dst in sp.load_balancer_vips:
            return sp, "portal"
        if packet.dst in sp.external_ips:
            # container: not bridged, or a LOCAL destination; host: LOCAL destination only.
            if packet.dst in local or (not from_node and not bridged):
                return sp, "external IP"
    for sp in ports:  # then KUBE-NODEPORT-* (any LOCAL destination)
        if sp.node_port and packet.dport == sp.node_port and packet.dst in local:
            return sp, "node port"
    return None


def expected_userspace(state: NodeProxyState, packet: Packet) -> TraceResult:
    """What the userspace proxier does with the first packet of a flow."""
    origin = classify_origin(state, packet.src)
    hit = _match(state, packet, origin)

    def result(*outcomes: Outcome) -> TraceResult:
        return TraceResult(state.node.name, "userspace", packet, outcomes)

    if hit is None:
        return result(Outcome(Fraction(1), "ACCEPT", join_host_port(packet.dst, packet.dport),
                              packet.src))
    sp, _kind = hit
    gw = pod_gateway(state)
    eps = sorted({e.string: e for e in sp.endpoints if e.ready}.values(), key=lambda e: e.string)
    if not eps:
        if sp.protocol == "UDP":
            return result(Outcome(Fraction(1), "DROP"))
        # REDIRECT target: the incoming interface's primary address; DNAT (host) to hostIP.
        proxy_ip = gw if origin is Origin.LOCAL_POD else state.node_ip
        port = next(e.proxy_port for e in plan_node(state).entries if e.name == str(sp.name))
        return result(Outcome(Fraction(1), "ACCEPT", join_host_port(str(proxy_ip), port),
                              packet.src))
    n = len(eps)
    return result(*(
        Outcome(Fraction(1, n), "ACCEPT", e.string,
                gw if gw and _in(e.ip, state.node.pod_cidrs) else state.node_ip)
        for e in eps))


def _reasons(state: NodeProxyState, packet: Packet, expected: TraceResult,
             ours: TraceResult) -> list[str]:
    """Name the documented divergences visible in this (reference, userspace) pair."""
    why = []
    origin = classify_origin(state, packet.src)
    hit = _match(state, packet, origin)
    sp = hit[0] if hit else None
    exp_sources = {o.source_seen for o in expected.outcomes if o.delivered_to}
    if sp is not None and packet.src in exp_sources:
        why.append("client IP never preserved (the proxy opens its own connection)")
    if packet.proto == "sctp":
        why.append("SCTP is not supported by the userspace proxier")
    if sp is None and any(packet.dst in s.external_ips for s in state.service_ports):
        why.append("external IPs: pod traffic (physdev) and node traffic to non-local IPs "
                   "are not proxied")
    if sp is not None:
        if sp.internal_policy_local or sp.external_policy_local:
            why.append("traffic policies (Local) are ignored")
        if sp.load_balancer_source_ranges:
            why.append("loadBalancerSourceRanges are not enforced")
        ready = {e.string for e in sp.endpoints if e.ready}
        if {e.string for e in sp.categorized.cluster} != ready:
            why.append("only ready endpoints are used (no serving-terminating fallback)")
        if not ready:
            why.append("no endpoints: TCP accepted then closed, UDP dropped (not REJECT)")
    return why


class TestUserspaceContract(BackendContract):
    backend_name = "userspace"
    kernel_factory = MockKernel

    def allowed_divergence(self, state: NodeProxyState, packet: Packet,
                           expected: TraceResult, actual: TraceResult) -> str | None:
        ours = expected_userspace(state, packet)
        if actual.distribution() != ours.distribution():
            return None  # the backend disagrees with the userspace model: a real failure
        why = _reasons(state, packet, expected, ours)
        return "; ".join(why) or None


def test_model_agrees_on_a_plain_cluster_ip() -> None:
    # The model itself can fail: for a case with no divergence it must equal the reference.
    import attrs

    from kservice.proxy.categorize import categorize_endpoints
    from kservice.proxy.types import Endpoint, NodeInfo, ServicePortName
    from kservice.semantics import expected_trace

    node = NodeInfo(name="node-a", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",),
                    interfaces=(("eth0", "172.18.0.2/16"),))
    sp = ServicePortInfo(name=ServicePortName("default", "s", "", "TCP"), cluster_ip="10.96.0.10",
                         port=80, protocol="TCP", endpoints=(Endpoint("10.244.2.5", 80),))
    sp = attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, "node-a", {}))
    state = NodeProxyState(node=node, family="IPv4", service_ports=(sp,))
    # From outside the cluster CIDR detection: the reference masquerades to the node IP,
    # which is exactly what the proxy's own connection looks like.
    packet = Packet("172.18.0.2", "10.96.0.10", 80)
    assert expected_userspace(state, packet).distribution() == \
        expected_trace(state, packet).distribution()
