"""iptables mode against the reference semantics: the shared contract, with the generated
states of :mod:`kservice.testing.strategies` (nodePortAddresses, localhost NodePorts,
detect-local modes, dual-stack nodes, multi-port Services, LB source ranges).

iptables mode really differs from what the API promises in the cases
:func:`iptables_divergence` names (``docs/divergences.md``); each is pinned by a
``test_divergence_*`` test below, and the classifier grants a divergence only when iptables
does exactly what its rules do there -- never as a blanket pass.
"""

from __future__ import annotations

from fractions import Fraction

import attrs

from backends.mockkernel import MockKernel
from kservice.backend import get_backend
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import NodeInfo, NodeProxyState, ServicePortInfo, join_host_port
from kservice.semantics import expected_trace
from kservice.testing.contract import BackendContract
from kservice.testing.ipvs import endpoint, service_port
from kservice.trace import Packet, TraceResult

__all__ = ["close", "iptables_divergence", "trace"]

NODE = NodeInfo("node-a", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
CFG = KubeProxyConfiguration(cluster_cidr="10.244.0.0/16")


def trace(mode: str, state: NodeProxyState, packet: Packet) -> TraceResult:
    backend = get_backend(mode)
    kernel = MockKernel(state.node)
    backend.load(kernel, backend.render(state))
    return kernel.trace(packet, mode=mode)


def close(a: TraceResult, b: TraceResult) -> bool:
    """Same outcomes, shares within 1e-9: the iptables side is loaded from ``iptables-save``
    text, which prints the kernel's 31-bit ``statistic`` probability with 11 digits
    (``0.33333333349``), so its shares differ from 1/k by ~1e-10 -- as on a real node."""
    da, db = a.distribution(), b.distribution()
    return set(da) == set(db) and all(abs(da[k] - db[k]) < Fraction(1, 10**9) for k in da)


def _unchanged(packet: Packet, result: TraceResult) -> bool:
    """The packet went on to its original destination, source kept (not a service)."""
    return result.distribution() == {
        ("ACCEPT", join_host_port(packet.dst, packet.dport), packet.src): Fraction(1)}


def _only(result: TraceResult, verdict: str) -> bool:
    return result.distribution() == {(verdict, None, None): Fraction(1)}


def _external_filter_verdict(sp: ServicePortInfo) -> str | None:
    """What KUBE-EXTERNAL-SERVICES does to a NEW packet for ``sp``'s external frontends:
    REJECT without endpoints, DROP with eTP Local and no local endpoint, else nothing."""
    if not sp.categorized.has_any:
        return "REJECT"
    if sp.external_policy_local and not sp.categorized.local:
        return "DROP"
    return None


def iptables_divergence(state: NodeProxyState, packet: Packet, expected: TraceResult,
                        actual: TraceResult) -> str | None:
    """The documented upstream iptables behaviour explaining a mismatch, or ``None``."""
    proto = packet.proto.upper()
    node_addrs = set(state.node.ips) | {"127.0.0.1", "::1"}
    for sp in state.service_ports:
        if sp.protocol != proto:
            continue
        verdict = _external_filter_verdict(sp)
        # 1. KUBE-EXTERNAL-SERVICES is jumped from INPUT and FORWARD only: a connection the
        # node itself opens to an externalIP / LB IP without endpoints is not rejected; it
        # leaves the node toward the real LB / router.
        if (packet.dport == sp.port and packet.src in node_addrs
                and packet.dst in (*sp.external_ips, *sp.load_balancer_vips)
                and not sp.categorized.has_any
                and _only(expected, "REJECT") and _unchanged(packet, actual)):
            return "host-to-external-ip-without-endpoints"
        # 2. The NodePort REJECT/DROP rules in KUBE-EXTERNAL-SERVICES match
        # `-m addrtype --dst-type LOCAL`: every local address, whatever nodePortAddresses
        # and localhostNodePorts say (only the DNAT jump to KUBE-NODEPORTS honours them).
        if (sp.node_port and packet.dport == sp.node_port and verdict is not None
                and packet.dst in node_addrs and _unchanged(packet, expected)
                and _only(actual, verdict)):
            return "nodeport-filter-on-every-local-address"
    return None


class TestIPTablesContract(BackendContract):
    backend_name = "iptables"
    kernel_factory = MockKernel

    # states()/probes(): the contract's defaults (kservice.testing.strategies.node_states /
    # probe_packets).

    def same(self, expected: TraceResult, actual: TraceResult) -> bool:
        return close(expected, actual)

    def allowed_divergence(self, state: NodeProxyState, packet: Packet, expected: TraceResult,
                           actual: TraceResult) -> str | None:
        return iptables_divergence(state, packet, expected, actual)


# --------------------------------------------------------------------------- each divergence


def state_of(*ports: ServicePortInfo, config: KubeProxyConfiguration = CFG) -> NodeProxyState:
    return NodeProxyState(node=NODE, family="IPv4", config=config, service_ports=tuple(ports))


def test_divergence_host_to_external_ip_without_endpoints() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, external_ips=("203.0.113.10",),
                      load_balancer_vips=("198.51.100.10",), node_port=30080)
    state = state_of(sp)
    for dst in ("203.0.113.10", "198.51.100.10"):
        pkt = Packet("172.18.0.2", dst, 80)
        exp, act = expected_trace(state, pkt), trace("iptables", state, pkt)
        assert _only(exp, "REJECT")
        assert _unchanged(pkt, act)
        assert iptables_divergence(state, pkt, exp, act) == "host-to-external-ip-without-endpoints"
        # From a pod (FORWARD) or from outside (INPUT/FORWARD) iptables does reject.
        for src in ("10.244.1.5", "192.0.2.9"):
            p2 = Packet(src, dst, 80)
            assert close(expected_trace(state, p2), trace("iptables", state, p2))


def test_divergence_nodeport_filter_on_every_local_address() -> None:
    no_eps = service_port("ns", "web", "10.96.0.10", 80, node_port=30080)
    etp_remote = service_port("ns", "loc", "10.96.0.11", 80, node_port=30081,
                              external_policy_local=True,
                              endpoints=[endpoint("10.244.2.7", 8080)])
    # localhostNodePorts off: 127.0.0.1 is no NodePort address, yet the filter matches it.
    cfg = KubeProxyConfiguration(cluster_cidr="10.244.0.0/16")
    cfg = attrs.evolve(cfg, iptables=attrs.evolve(cfg.iptables, localhost_node_ports=False))
    state = state_of(no_eps, etp_remote, config=cfg)
    for sp, verdict in ((no_eps, "REJECT"), (etp_remote, "DROP")):
        pkt = Packet("127.0.0.1", "127.0.0.1", sp.node_port)
        exp, act = expected_trace(state, pkt), trace("iptables", state, pkt)
        assert _unchanged(pkt, exp) and _only(act, verdict)
        assert iptables_divergence(state, pkt, exp, act) == "nodeport-filter-on-every-local-address"
    # nodePortAddresses that exclude the node IP: no NodePort there, but the filter still is.
    state = state_of(no_eps, config=attrs.evolve(CFG, node_port_addresses=("100.64.0.0/24",)))
    pkt = Packet("192.0.2.9", "172.18.0.2", 30080)
    exp, act = expected_trace(state, pkt), trace("iptables", state, pkt)
    assert _unchanged(pkt, exp) and _only(act, "REJECT")
    assert iptables_divergence(state, pkt, exp, act) == "nodeport-filter-on-every-local-address"


def test_classifier_refuses_unexplained_differences() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080), endpoint("10.244.2.8", 8080)])
    state = state_of(sp)
    pkt = Packet("192.0.2.9", "172.18.0.2", 30080)
    exp = expected_trace(state, pkt)
    act = trace("iptables", state, pkt)
    assert close(exp, act)
    wrong = TraceResult("node-a", "iptables", pkt, act.outcomes[:1])
    assert iptables_divergence(state, pkt, exp, wrong) is None
    unchanged = TraceResult("node-a", "iptables", pkt, expected_trace(
        state, Packet("192.0.2.9", "172.18.0.99", 30080)).outcomes)
    assert iptables_divergence(state, pkt, exp, unchanged) is None


def test_nodeport_addresses_cidr_on_a_node_without_an_interface_list() -> None:
    """A state built from the Node object lists no interfaces (kube-proxy reads them from
    the host); nodePortAddresses CIDRs must still match the node's own IPs."""
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    for npa in (("172.18.0.0/16",), ("primary",)):
        state = state_of(sp, config=KubeProxyConfiguration(cluster_cidr="10.244.0.0/16",
                                                           node_port_addresses=npa))
        pkt = Packet("192.0.2.9", "172.18.0.2", 30080)
        assert trace("iptables", state, pkt).distribution() == {
            ("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1)}, npa


def test_localhost_nodeports_kept_by_a_loopback_cidr_in_node_port_addresses() -> None:
    """lo holds 127.0.0.1 on every host: with nodePortAddresses [127.0.0.0/8, <node net>]
    localhost NodePorts stay on (iptables) -- in the reference and the backend alike, also
    on a node whose NodeInfo lists no interfaces."""
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    cfg = KubeProxyConfiguration(cluster_cidr="10.244.0.0/16",
                                 node_port_addresses=("127.0.0.0/8", "172.18.0.0/16"))
    state = state_of(sp, config=cfg)
    pkt = Packet("127.0.0.1", "127.0.0.1", 30080)
    want = {("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1)}
    assert expected_trace(state, pkt).distribution() == want
    assert trace("iptables", state, pkt).distribution() == want
    # Without the loopback CIDR, 127.0.0.1 is no NodePort address.
    state = state_of(sp, config=attrs.evolve(cfg, node_port_addresses=("172.18.0.0/16",)))
    assert _unchanged(pkt, expected_trace(state, pkt))
    assert _unchanged(pkt, trace("iptables", state, pkt))
