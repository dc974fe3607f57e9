"""nftables mode against the reference semantics: the shared contract, with the generated
states of :mod:`kservice.testing.strategies`.

(``tests/test_nftables_render.py`` runs the contract over the basic dataplane strategies;
this module adds nodePortAddresses, localhost NodePorts, detect-local modes, dual-stack
nodes, multi-port Services and LB source ranges.) nftables mode really differs from the
API promise in the cases :func:`nftables_divergence` names (``docs/divergences.md``), each
pinned by a ``test_divergence_*`` test below.
"""

from __future__ import annotations

from fractions import Fraction

import attrs
from hypothesis import strategies as st

from backends.mockkernel import MockKernel
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import NodeInfo, NodeProxyState, ServicePortInfo, join_host_port
from kservice.semantics import expected_trace
from kservice.testing.contract import BackendContract
from kservice.testing.ipvs import endpoint, service_port
from kservice.testing.nftables import nftables_mode_divergence
from kservice.trace import Packet, TraceResult
from tests.test_contract_iptables import close, trace

__all__ = ["nftables_divergence", "no_localhost_nodeports"]

NODE = NodeInfo("node-a", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
CFG = KubeProxyConfiguration(mode="nftables", cluster_cidr="10.244.0.0/16")


def _unchanged(packet: Packet, result: TraceResult) -> bool:
    return result.distribution() == {
        ("ACCEPT", join_host_port(packet.dst, packet.dport), packet.src): Fraction(1)}


def _only(result: TraceResult, verdict: str) -> bool:
    return result.distribution() == {(verdict, None, None): Fraction(1)}


def no_localhost_nodeports(state: NodeProxyState, packet: Packet, actual: TraceResult) -> bool:
    """127.0.0.1:<nodePort> treated as an ordinary local address (nftables and IPVS modes:
    localhost NodePorts are an iptables-mode feature, `iptables.localhostNodePorts`)."""
    return (packet.dst == "127.0.0.1" and _unchanged(packet, actual) and any(
        sp.node_port == packet.dport and sp.protocol == packet.proto.upper()
        for sp in state.service_ports))


def nftables_divergence(state: NodeProxyState, packet: Packet, expected: TraceResult,
                        actual: TraceResult) -> str | None:
    """The documented upstream nftables behaviour explaining a mismatch, or ``None``."""
    proto = packet.proto.upper()
    for sp in state.service_ports:
        if sp.protocol != proto:
            continue
        # 1. nftables mode has no localhost NodePorts (KEP-3866: `route_localnet` is not
        # set and loopback is excluded from the nodeport rules): 127.0.0.1:<nodePort> is
        # an ordinary local socket address.
        if no_localhost_nodeports(state, packet, actual):
            return "no-localhost-nodeports"
        # 2. The LB source-range firewall (`firewall-check`, priority dstnat-10) runs before
        # the no-endpoints REJECT (`service-endpoints-check`, filter priority) and exists
        # whether or not the Service has endpoints: a source outside the ranges is DROPped
        # where iptables mode (no KUBE-FW chain without endpoints) REJECTs.
        if (packet.dport == sp.port and packet.dst in sp.load_balancer_vips
                and sp.load_balancer_source_ranges and not sp.categorized.has_any
                and _only(expected, "REJECT") and _only(actual, "DROP")
                and any("firewall" in r for o in actual.outcomes for r in o.rules)):
            return "lb-firewall-before-no-endpoints-reject"
    return None


class TestNFTablesStrategiesContract(BackendContract):
    backend_name = "nftables"
    kernel_factory = MockKernel

    # probes(): the contract's default (kservice.testing.strategies.probe_packets).
    def states(self) -> st.SearchStrategy[NodeProxyState]:
        # The contract's default states, as an nftables-mode node's configuration says.
        return super().states().map(
            lambda s: attrs.evolve(s, config=attrs.evolve(s.config, mode="nftables")))

    def same(self, expected: TraceResult, actual: TraceResult) -> bool:
        return close(expected, actual)

    def allowed_divergence(self, state: NodeProxyState, packet: Packet, expected: TraceResult,
                           actual: TraceResult) -> str | None:
        why = (nftables_divergence(state, packet, expected, actual)
               or nftables_mode_divergence(state, packet, expected.distribution(),
                                           actual.distribution()))
        if why:
            return why
        # The nftables proxier reads nftables.masqueradeAll, not iptables.masqueradeAll
        # (the --masquerade-all flag sets both; a config file sets them separately). The
        # reference semantics follows iptables.masqueradeAll, so only the source seen may
        # differ, and only when the two settings differ.
        cfg = state.config
        if cfg.iptables.masquerade_all == cfg.nftables.masquerade_all:
            return None
        def strip(d: dict[tuple[str, str | None, str | None], Fraction]
                  ) -> dict[tuple[str, str | None], Fraction]:
            return {(k[0], k[1]): v for k, v in d.items()}
        if strip(expected.distribution()) == strip(actual.distribution()):
            return "masqueradeAll is per mode (iptables.masqueradeAll vs nftables.masqueradeAll)"
        return None


# --------------------------------------------------------------------------- each divergence


def state_of(*ports: ServicePortInfo, config: KubeProxyConfiguration = CFG) -> NodeProxyState:
    return NodeProxyState(node=NODE, family="IPv4", config=config, service_ports=tuple(ports))


def test_divergence_no_localhost_nodeports() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    state = state_of(sp)
    pkt = Packet("127.0.0.1", "127.0.0.1", 30080)
    exp, act = expected_trace(state, pkt), trace("nftables", state, pkt)
    # The API promise with localhostNodePorts (the default): the endpoint, masqueraded.
    assert exp.distribution() == {("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1)}
    assert close(exp, trace("iptables", state, pkt))
    assert _unchanged(pkt, act)
    assert nftables_divergence(state, pkt, exp, act) == "no-localhost-nodeports"


def test_divergence_lb_firewall_before_no_endpoints_reject() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      load_balancer_vips=("198.51.100.10",),
                      load_balancer_source_ranges=("192.0.2.0/24",),
                      endpoints=[endpoint("10.244.2.7", 8080, ready=False)])
    state = state_of(sp)
    pkt = Packet("100.64.0.7", "198.51.100.10", 80)
    exp, act = expected_trace(state, pkt), trace("nftables", state, pkt)
    assert _only(exp, "REJECT") and _only(act, "DROP")
    assert close(exp, trace("iptables", state, pkt))
    assert nftables_divergence(state, pkt, exp, act) == "lb-firewall-before-no-endpoints-reject"
    # An allowed source gets the REJECT in both modes.
    ok = Packet("192.0.2.9", "198.51.100.10", 80)
    assert _only(trace("nftables", state, ok), "REJECT")


def test_classifier_refuses_unexplained_differences() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    state = state_of(sp)
    pkt = Packet("127.0.0.1", "127.0.0.1", 30080)
    exp = expected_trace(state, pkt)
    dropped = TraceResult("node-a", "nftables", pkt, (attrs.evolve(
        exp.outcomes[0], verdict="DROP", delivered_to=None, source_seen=None),))
    assert nftables_divergence(state, pkt, exp, dropped) is None
