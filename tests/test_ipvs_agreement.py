"""IPVS mode vs iptables mode, traced through the mock kernel.

For generated node states and probe packets both modes must reach the same endpoints with
the same exact shares and the same source seen by the endpoint -- except where upstream's
IPVS mode really behaves differently. Each such divergence is named by
:func:`ipvs_divergence`, documented in ``docs/divergences-ipvs.md`` and pinned by its own test
below, so the classifier cannot silently excuse anything else.
"""

from __future__ import annotations

import ipaddress
import random
from fractions import Fraction

import attrs
from hypothesis import given, note
from hypothesis import strategies as st

from backends.ipvs.render import chosen_endpoints, nodeport_ips
from backends.mockkernel import MockKernel
from kservice.backend import get_backend
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import NodeInfo, NodeProxyState, ServicePortInfo, join_host_port
from kservice.testing.contract import BackendContract, describe_state
from kservice.testing.dataplane import node_proxy_states, probes
from kservice.testing.ipvs import endpoint, node_state, service_port
from kservice.trace import Packet, TraceResult

NODE = NodeInfo("node-a", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "172.18.0.2/16"), ("lo", "127.0.0.1/8")))
CFG = KubeProxyConfiguration(mode="ipvs", cluster_cidr="10.244.0.0/16")


# --------------------------------------------------------------------------- kernel support


def trace(mode: str, state: NodeProxyState, packet: Packet) -> TraceResult:
    backend = get_backend(mode)
    kernel = MockKernel(state.node)
    backend.load(kernel, backend.render(state))
    return kernel.trace(packet, mode=mode)


# --------------------------------------------------------------------------- the classifier


def frontend(state: NodeProxyState, packet: Packet) -> tuple[ServicePortInfo, str] | None:
    for sp in state.service_ports:
        if sp.protocol.lower() != packet.proto:
            continue
        if packet.dst == sp.cluster_ip and packet.dport == sp.port:
            return sp, "cluster"
        if packet.dport == sp.port and packet.dst in (*sp.external_ips, *sp.load_balancer_vips):
            return sp, "external"
        if sp.node_port and packet.dport == sp.node_port and packet.dst in nodeport_ips(state):
            return sp, "external"
    return None


def _in_ranges(src: str, cidrs: tuple[str, ...]) -> bool:
    a = ipaddress.ip_address(src)
    return any(a.version == ipaddress.ip_network(c).version and a in ipaddress.ip_network(c)
               for c in cidrs)


def _inside(state: NodeProxyState, src: str) -> bool:
    """From a pod of the cluster or from the node itself."""
    a = ipaddress.ip_address(src)
    cidrs = [c for c in state.config.cluster_cidr.split(",") if c]
    cidrs += list(state.node.pod_cidrs)
    return src in state.node.ips or any(
        a.version == ipaddress.ip_network(c).version and a in ipaddress.ip_network(c)
        for c in cidrs)


def _equal_shares(result: TraceResult, eps: set[str]) -> bool:
    got = {o.delivered_to: o.probability for o in result.outcomes}
    return set(got) == eps and all(p == Fraction(1, len(eps)) for p in got.values())


def ipvs_divergence(state: NodeProxyState, packet: Packet, ipt: TraceResult,
                    ipvs: TraceResult) -> str | None:
    """The documented upstream divergence explaining the mismatch, or ``None``.

    A divergence is only granted when the IPVS side does exactly what IPVS mode does (its
    own endpoint choice with equal shares, or ICMP unreachable) -- never as a blanket pass.
    """
    if _localhost_nodeport_not_proxied(state, packet, ipt, ipvs):
        return "no-localhost-nodeports"
    hit = frontend(state, packet)
    if hit is None:
        return None
    sp, kind = hit
    if (
        packet.dst in sp.load_balancer_vips
        and sp.load_balancer_source_ranges
        and not _in_ranges(packet.src, sp.load_balancer_source_ranges)
        and ipvs.distribution() == {("DROP", None, None): 1}
        and ipt.distribution() == {("REJECT", None, None): 1}
    ):
        # KUBE-LOAD-BALANCER-FW drops a disallowed source before anything looks at
        # endpoints; iptables mode writes no KUBE-FW chain without endpoints and REJECTs.
        return "source-ranges-before-no-endpoints"
    local_policy = sp.internal_policy_local if kind == "cluster" else sp.external_policy_local
    chosen = {e.string for e in chosen_endpoints(sp, local_policy)}
    if (
        packet.src in state.node.ips
        and packet.dst in sp.load_balancer_vips
        and sp.load_balancer_source_ranges
        and not _in_ranges(packet.src, sp.load_balancer_source_ranges)
        and ipt.distribution() == {("DROP", None, None): 1}
        and chosen
        and _equal_shares(ipvs, chosen)
    ):
        # IPVS schedules the node's own connection at LOCAL_OUT; it never reaches filter
        # INPUT, where IPVS mode hooks KUBE-PROXY-FIREWALL. iptables mode also hooks it
        # from OUTPUT and drops.
        return "node-bypasses-source-ranges"
    if not chosen:
        if ipvs.distribution() != {("REJECT", None, None): 1}:
            return None
        if all(o.verdict in ("DROP", "REJECT") for o in ipt.outcomes):
            return "no-destination-icmp"
        unchanged = join_host_port(packet.dst, packet.dport)
        if packet.dst in (*sp.external_ips, *sp.load_balancer_vips) and all(
                o.delivered_to == unchanged for o in ipt.outcomes):
            # iptables mode leaves this traffic for the real LB / external router.
            return "vip-bound-locally"
        return None
    if not _equal_shares(ipvs, chosen):
        return None
    if _only_remote_hairpin_differs(sp, packet, ipt, ipvs):
        return "hairpin-only-local-endpoints"
    if local_policy and not sp.categorized.local:
        return "local-policy-fallback"
    if kind == "external" and sp.external_policy_local and _inside(state, packet.src):
        return "etp-local-from-inside"
    return None


def _localhost_nodeport_not_proxied(state: NodeProxyState, packet: Packet, ipt: TraceResult,
                                    ipvs: TraceResult) -> bool:
    """IPVS mode's first nat rule is ``-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN`` (IPv6
    ``-s ::1/128``) and it creates no virtual server on a loopback address: a connection from
    the node to ``127.0.0.1:<nodePort>`` goes on, unchanged, to whatever listens locally.
    iptables mode (``localhostNodePorts: true``, IPv4 only, ``route_localnet``) proxies it."""
    if not ipaddress.ip_address(packet.dst).is_loopback:
        return False
    if not any(sp.node_port == packet.dport and sp.protocol.lower() == packet.proto
               for sp in state.service_ports):
        return False
    unchanged = {("ACCEPT", join_host_port(packet.dst, packet.dport), packet.src): 1}
    return ipvs.distribution() == unchanged and ipt.distribution() != unchanged


def _only_remote_hairpin_differs(sp: ServicePortInfo, packet: Packet, ipt: TraceResult,
                                 ipvs: TraceResult) -> bool:
    """KUBE-LOOP-BACK lists local endpoints only: a packet from a *remote* endpoint to its own
    service, handled on this node, is not masqueraded in IPVS mode (iptables mode marks it
    in the endpoint's KUBE-SEP chain)."""
    remote = {e.string for e in sp.endpoints if not e.is_local and e.ip == packet.src}
    a = {o.delivered_to: (o.probability, o.source_seen) for o in ipt.outcomes}
    b = {o.delivered_to: (o.probability, o.source_seen) for o in ipvs.outcomes}
    if not remote or set(a) != set(b):
        return False
    diff = {k for k in a if a[k][1] != b[k][1] or abs(a[k][0] - b[k][0]) >= Fraction(1, 10**9)}
    return bool(diff) and diff <= remote and all(b[k][1] == packet.src for k in diff)


def close(a: TraceResult, b: TraceResult) -> bool:
    """Same outcomes; shares equal (within 1e-9: the iptables side reads kube-proxy's
    ten-digit probabilities, which the mock kernel may not turn back into exact 1/k)."""
    da, db = a.distribution(), b.distribution()
    return set(da) == set(db) and all(abs(da[k] - db[k]) < Fraction(1, 10**9) for k in da)


# --------------------------------------------------------------------------- property


@given(st.data())
def test_ipvs_agrees_with_iptables(data: st.DataObject) -> None:
    state = data.draw(node_proxy_states(family=st.sampled_from(["IPv4", "IPv6"])))
    state = attrs.evolve(state, config=attrs.evolve(state.config, mode="ipvs"))
    packet = data.draw(probes(state))
    ipt = trace("iptables", state, packet)
    ipvs = trace("ipvs", state, packet)
    if close(ipt, ipvs):
        return
    why = ipvs_divergence(state, packet, ipt, ipvs)
    note(describe_state(state))
    note(f"packet {packet}\niptables {ipt.distribution()}\nipvs     {ipvs.distribution()}")
    assert why is not None, (
        f"IPVS and iptables modes disagree for {packet}:\n"
        f"iptables {ipt.distribution()}\nipvs     {ipvs.distribution()}\n" + describe_state(state))


# --------------------------------------------------------------------------- each divergence


EPS = [endpoint("10.244.1.5", 8080, local=True), endpoint("10.244.2.7", 8080),
       endpoint("10.244.2.8", 8080)]


def state_of(*ports: ServicePortInfo) -> NodeProxyState:
    return node_state(list(ports), ips=NODE.ips, interfaces=NODE.interfaces,
                      pod_cidrs=NODE.pod_cidrs, config=CFG)


def dist(result: TraceResult) -> dict[tuple[str, str | None, str | None], Fraction]:
    return result.distribution()


def test_divergence_local_policy_fallback() -> None:
    # eTP=Local, no endpoint on this node: iptables drops external traffic, IPVS falls back
    # to every cluster endpoint (PR #97081).
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080, external_policy_local=True,
                      endpoints=EPS[1:])
    state = state_of(sp)
    pkt = Packet("192.0.2.9", "172.18.0.2", 30080)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert {o.verdict for o in ipt.outcomes} == {"DROP"}
    assert dist(ipvs) == {("ACCEPT", "10.244.2.7:8080", "192.0.2.9"): Fraction(1, 2),
                          ("ACCEPT", "10.244.2.8:8080", "192.0.2.9"): Fraction(1, 2)}
    assert ipvs_divergence(state, pkt, ipt, ipvs) == "local-policy-fallback"


def test_divergence_etp_local_from_inside_the_cluster() -> None:
    # A pod reaching an eTP=Local LB IP or NodePort: iptables short-circuits pod traffic to
    # all cluster endpoints; IPVS uses the VS's own (local) destinations.
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080, external_policy_local=True,
                      load_balancer_vips=("198.51.100.10",), endpoints=EPS)
    state = state_of(sp)
    for dst, port in (("198.51.100.10", 80), ("172.18.0.2", 30080)):
        pkt = Packet("10.244.1.9", dst, port)
        ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
        assert {o.delivered_to for o in ipt.outcomes} == {e.string for e in EPS}
        assert dist(ipvs) == {("ACCEPT", "10.244.1.5:8080", "10.244.1.9"): Fraction(1)}
        assert ipvs_divergence(state, pkt, ipt, ipvs) == "etp-local-from-inside"
    # From outside both modes agree: local endpoints, client source kept.
    pkt = Packet("192.0.2.9", "198.51.100.10", 80)
    assert close(trace("iptables", state, pkt), trace("ipvs", state, pkt))


def test_divergence_no_destination_is_icmp_unreachable() -> None:
    # iTP=Local ClusterIP-only service with endpoints elsewhere: iptables DROPs, IPVS has a
    # VS without destinations and answers ICMP port unreachable (ip_vs_leave).
    sp = service_port("ns", "itl", "10.96.0.11", 80, internal_policy_local=True,
                      endpoints=EPS[1:])
    state = state_of(sp)
    pkt = Packet("10.244.1.9", "10.96.0.11", 80)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert dist(ipt) == {("DROP", None, None): 1}
    assert dist(ipvs) == {("REJECT", None, None): 1}
    assert ipvs_divergence(state, pkt, ipt, ipvs) == "no-destination-icmp"


def test_divergence_vips_are_local_addresses() -> None:
    # Every ClusterIP (and externalIP/LB IP) is bound on kube-ipvs0: a non-service port on a
    # VIP is REJECTed by KUBE-IPVS-FILTER; in iptables mode the VIP is not an address of the
    # node and the packet is routed on unchanged.
    sp = service_port("ns", "web", "10.96.0.10", 80, endpoints=EPS)
    state = state_of(sp)
    pkt = Packet("10.244.1.9", "10.96.0.10", 22)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert dist(ipt) == {("ACCEPT", "10.96.0.10:22", "10.244.1.9"): 1}
    assert dist(ipvs) == {("REJECT", None, None): 1}
    assert any("KUBE-IPVS-FILTER" in r and "REJECT" in r for r in ipvs.outcomes[0].rules)


def test_divergence_external_ip_bound_on_kube_ipvs0() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, external_ips=("203.0.113.10",),
                      endpoints=EPS)
    state = state_of(sp)
    pkt = Packet("192.0.2.9", "203.0.113.10", 443)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert dist(ipt) == {("ACCEPT", "203.0.113.10:443", "192.0.2.9"): 1}
    assert dist(ipvs) == {("REJECT", None, None): 1}
    # The service port itself agrees.
    pkt = Packet("192.0.2.9", "203.0.113.10", 80)
    assert close(trace("iptables", state, pkt), trace("ipvs", state, pkt))


def test_divergence_affinity_is_per_virtual_server() -> None:
    # ClientIP affinity: iptables keeps one `recent` list per endpoint, shared by every
    # frontend of the service port; IPVS keeps a persistence template per virtual server,
    # so the same client reaching the ClusterIP and then the NodePort is scheduled anew.
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      session_affinity_timeout=10800, endpoints=EPS)
    state = state_of(sp)
    client = "192.0.2.9"
    first_pkt = Packet(client, "10.96.0.10", 80, sport=1000)
    second = Packet(client, "172.18.0.2", 30080, sport=2000)
    for mode in ("iptables", "ipvs"):
        backend = get_backend(mode)
        kernel = MockKernel(state.node)
        backend.load(kernel, backend.render(state))
        first = kernel.send(first_pkt, random.Random(7))
        again = kernel.trace(Packet(client, "10.96.0.10", 80, sport=3000), mode=mode)
        assert [o.delivered_to for o in again.outcomes] == [first.delivered_to], mode
        other = kernel.trace(second, mode=mode)
        if mode == "iptables":
            assert [o.delivered_to for o in other.outcomes] == [first.delivered_to]
        else:
            assert len(other.outcomes) == 3  # a fresh schedule across all destinations


def test_divergence_hairpin_only_for_local_endpoints() -> None:
    # A remote pod (an endpoint of the service) reaching the ClusterIP through this node and
    # picked as its own destination: iptables masquerades (KUBE-SEP `-s <ep> -j
    # KUBE-MARK-MASQ`), IPVS does not (KUBE-LOOP-BACK holds this node's endpoints only).
    sp = service_port("ns", "web", "10.96.0.10", 80, endpoints=[endpoint("10.244.2.7", 8080)])
    state = state_of(sp)
    pkt = Packet("10.244.2.7", "10.96.0.10", 80)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert dist(ipt) == {("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): 1}
    assert dist(ipvs) == {("ACCEPT", "10.244.2.7:8080", "10.244.2.7"): 1}
    assert ipvs_divergence(state, pkt, ipt, ipvs) == "hairpin-only-local-endpoints"
    # A local endpoint hairpinning is masqueraded in both modes.
    sp = service_port("ns", "web", "10.96.0.10", 80, endpoints=[EPS[0]])
    state = state_of(sp)
    pkt = Packet("10.244.1.5", "10.96.0.10", 80)
    assert close(trace("iptables", state, pkt), trace("ipvs", state, pkt))


def test_divergence_no_localhost_nodeports() -> None:
    # iptables mode (localhostNodePorts defaults to true) DNATs 127.0.0.1:<nodePort>; IPVS mode
    # RETURNs every loopback-sourced packet from KUBE-SERVICES, so it reaches the local port.
    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080, endpoints=EPS)
    state = state_of(sp)
    pkt = Packet("127.0.0.1", "127.0.0.1", 30080)
    ipt, ipvs = trace("iptables", state, pkt), trace("ipvs", state, pkt)
    assert {o.delivered_to for o in ipt.outcomes} == {e.string for e in EPS}
    assert dist(ipvs) == {("ACCEPT", "127.0.0.1:30080", "127.0.0.1"): 1}
    assert ipvs_divergence(state, pkt, ipt, ipvs) == "no-localhost-nodeports"
    # Only for a NodePort: another loopback port is not a divergence to excuse.
    other = Packet("127.0.0.1", "127.0.0.1", 30081)
    wrong = TraceResult("node-a", "ipvs", other, ipvs.outcomes)
    assert ipvs_divergence(state, other, ipt, wrong) is None
    # And the node's own address still reaches the NodePort in IPVS mode.
    via_ip = Packet("172.18.0.2", "172.18.0.2", 30080)
    assert close(trace("iptables", state, via_ip), trace("ipvs", state, via_ip))


def test_classifier_refuses_unexplained_differences() -> None:
    sp = service_port("ns", "web", "10.96.0.10", 80, endpoints=EPS)
    state = state_of(sp)
    pkt = Packet("10.244.1.9", "10.96.0.10", 80)
    ipt = trace("iptables", state, pkt)
    wrong = TraceResult("node-a", "ipvs", pkt, ipt.outcomes[:1])
    assert ipvs_divergence(state, pkt, ipt, wrong) is None


# --------------------------------------------------------------------------- shared contract


class TestIPVSContract(BackendContract):
    """The shared backend contract (reference semantics) with IPVS's upstream divergences."""

    backend_name = "ipvs"
    kernel_factory = MockKernel

    def trace(self, state: NodeProxyState, packet: Packet) -> TraceResult:
        return trace("ipvs", state, packet)

    def allowed_divergence(self, state: NodeProxyState, packet: Packet,
                           expected: TraceResult, actual: TraceResult) -> str | None:
        return ipvs_divergence(state, packet, expected, actual)
