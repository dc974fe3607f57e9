"""Packet traces through kube-proxy iptables rules: upstream flow tests, goldens, hand cases."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from backends.mockkernel import MockKernel
from kservice.proxy.types import NodeInfo
from kservice.trace import Packet, TraceResult

HERE = Path(__file__).parent
GOLDEN = Path("/work/shared/reference/golden/iptables-overall.md")

# Upstream's test node (proxier_test.go): testNodeIP and testNodeIPs (IPv4 part).
TEST_NODE = NodeInfo(
    name="test-node",
    ips=("192.168.0.2", "192.168.1.2", "192.168.99.11"),
    pod_cidrs=("10.0.0.0/24",),
    interfaces=(("eth0", "192.168.0.2/24"), ("eth0", "192.168.1.2/24"),
                ("eth0", "192.168.99.11/24")),
)
NODE_IP = "192.168.0.2"
EXTERNAL_CLIENT = "203.0.113.2"  # upstream testExternalClient
POD = "10.0.0.2"


def quote_fake_comments(text: str) -> str:
    """Quote the multi-word comments upstream's fake stores unquoted, as iptables-save does."""
    return re.sub(r"--comment (kubernetes [a-z -]+?) -j", r'--comment "\1" -j', text)


def golden_dump() -> str:
    return GOLDEN.read_text().split("## Expected dump")[1].split("```")[1]


@pytest.fixture(scope="module")
def tracepacket_kernel() -> MockKernel:
    k = MockKernel(TEST_NODE)
    k.load_iptables_save(quote_fake_comments(
        (HERE / "data/mockkernel/upstream-tracepacket.rules").read_text()))
    return k


@pytest.fixture(scope="module")
def golden_kernel() -> MockKernel:
    k = MockKernel(TEST_NODE)
    k.load_iptables_save(golden_dump())
    k.install_kube_proxy_jump_rules()
    return k


def summary(r: TraceResult) -> str:
    """Upstream tracePacket's output string: endpoints joined by ", " or the verdict."""
    parts = []
    for o in r.outcomes:
        if o.verdict != "ACCEPT":
            parts.append(o.verdict)
        elif o.delivered_to != f"{r.packet.dst}:{r.packet.dport}":
            parts.append(o.delivered_to)  # type: ignore[arg-type]
        else:
            parts.append("ACCEPT" if r.packet.dport == 30000 else "")
    return ", ".join(p for p in parts if p)


# ------------------------------------------------------------ upstream TestTracePacket

@pytest.mark.parametrize(
    ("name", "src", "dst", "port", "output", "masq"),
    [
        ("no match", POD, "10.0.0.3", 80, "", False),
        ("single endpoint", POD, "172.30.0.41", 80, "10.180.0.1:80", False),
        ("multiple endpoints", POD, "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80", False),
        ("LOCAL, KUBE-MARK-MASQ", NODE_IP, "192.168.99.22", 80, "10.180.0.2:80", True),
        ("DROP", EXTERNAL_CLIENT, "192.168.99.22", 80, "DROP", False),
        ("ACCEPT (NodePortHealthCheck)", NODE_IP, NODE_IP, 30000, "ACCEPT", False),
        ("REJECT", POD, "172.30.0.46", 80, "REJECT", False),
    ],
)
def test_upstream_trace_packet_flows(tracepacket_kernel: MockKernel, name: str, src: str,
                                     dst: str, port: int, output: str, masq: bool) -> None:
    r = tracepacket_kernel.trace(Packet(src, dst, port))
    assert summary(r) == output, name
    assert any(o.masqueraded for o in r.outcomes) is masq, name
    assert r.total_probability == 1


def test_upstream_tracepacket_multiple_endpoints_are_exact_halves(
        tracepacket_kernel: MockKernel) -> None:
    r = tracepacket_kernel.trace(Packet(POD, "172.30.0.44", 80))
    assert r.distribution() == {
        ("ACCEPT", "10.180.0.4:80", POD): Fraction(1, 2),
        ("ACCEPT", "10.180.0.5:80", POD): Fraction(1, 2),
    }


# ------------------------------------------------------------ golden TestOverallIPTablesRules

# (src, dst, dport) -> expected distribution; derived by reading the golden's rules
# (reference §3.4 semantics): masquerading sources appear as eth0's address.
GOLDEN_FLOWS = [
    # svc1 ClusterIP from a pod: no masquerade.
    ((POD, "172.30.0.41", 80), {("ACCEPT", "10.180.0.1:80", POD): 1}),
    # ... from outside the cluster CIDR: "! -s 10.0.0.0/8" masquerades.
    ((EXTERNAL_CLIENT, "172.30.0.41", 80), {("ACCEPT", "10.180.0.1:80", NODE_IP): 1}),
    # svc2 eTP=Local without local endpoints: outside -> DROP for externalIP, LB IP, NodePort.
    ((EXTERNAL_CLIENT, "192.168.99.22", 80), {("DROP", None, None): 1}),
    ((EXTERNAL_CLIENT, "1.2.3.4", 80), {("DROP", None, None): 1}),
    ((EXTERNAL_CLIENT, NODE_IP, 3001), {("DROP", None, None): 1}),
    # ... pods short-circuit to the cluster endpoints (no masquerade).
    ((POD, "1.2.3.4", 80), {("ACCEPT", "10.180.0.2:80", POD): 1}),
    # ... the node itself: masqueraded and routed to the cluster endpoints.
    ((NODE_IP, NODE_IP, 3001), {("ACCEPT", "10.180.0.2:80", NODE_IP): 1}),
    # svc2 health check node port is accepted locally.
    ((EXTERNAL_CLIENT, NODE_IP, 30000), {("ACCEPT", f"{NODE_IP}:30000", EXTERNAL_CLIENT): 1}),
    # svc3 NodePort (Cluster) on every node IP, masqueraded.
    ((EXTERNAL_CLIENT, NODE_IP, 3003), {("ACCEPT", "10.180.0.3:80", NODE_IP): 1}),
    ((EXTERNAL_CLIENT, "192.168.99.11", 3003), {("ACCEPT", "10.180.0.3:80", NODE_IP): 1}),
    # svc3 NodePort on localhost (localhostNodePorts): masqueraded out of eth0.
    (("127.0.0.1", "127.0.0.1", 3003), {("ACCEPT", "10.180.0.3:80", NODE_IP): 1}),
    # svc4 externalIP: masqueraded, half to each endpoint.
    ((EXTERNAL_CLIENT, "192.168.99.33", 80), {
        ("ACCEPT", "10.180.0.4:80", NODE_IP): Fraction(1, 2),
        ("ACCEPT", "10.180.0.5:80", NODE_IP): Fraction(1, 2)}),
    # svc4 has no NodePort rules (nodePort 0).
    ((EXTERNAL_CLIENT, NODE_IP, 80), {("ACCEPT", f"{NODE_IP}:80", EXTERNAL_CLIENT): 1}),
    # svc5 LB with source ranges: allowed source goes through, masqueraded ...
    (("203.0.113.5", "5.6.7.8", 80), {("ACCEPT", "10.180.0.3:80", NODE_IP): 1}),
    # ... other sources are dropped by KUBE-PROXY-FIREWALL, pods included (KEP-3178 effect).
    (("203.0.113.200", "5.6.7.8", 80), {("DROP", None, None): 1}),
    ((POD, "5.6.7.8", 80), {("DROP", None, None): 1}),
    # ... its NodePort is not subject to the source ranges.
    (("198.51.100.7", NODE_IP, 3002), {("ACCEPT", "10.180.0.3:80", NODE_IP): 1}),
    # svc6 without endpoints: REJECT from pods and from the node.
    ((POD, "172.30.0.46", 80), {("REJECT", None, None): 1}),
    ((NODE_IP, "172.30.0.46", 80), {("REJECT", None, None): 1}),
    # Wrong port: no rule, routed like any packet.
    ((POD, "172.30.0.41", 81), {("ACCEPT", "172.30.0.41:81", POD): 1}),
    # Outside to a localhost address without a NodePort: KUBE-FIREWALL drops it.
    ((EXTERNAL_CLIENT, "127.0.0.1", 9999), {("DROP", None, None): 1}),
]


@pytest.mark.parametrize(("pkt", "expected"), GOLDEN_FLOWS, ids=[str(f[0]) for f in GOLDEN_FLOWS])
def test_golden_overall_flows(golden_kernel: MockKernel, pkt: tuple[str, str, int],
                              expected: dict[tuple[str, str | None, str | None], int]) -> None:
    r = golden_kernel.trace(Packet(*pkt))
    assert r.distribution() == expected
    for o in r.outcomes:
        if o.verdict == "ACCEPT" and o.source_seen != pkt[0]:
            assert o.masqueraded
        if o.verdict != "ACCEPT" or o.source_seen == POD:
            assert not o.masqueraded


def test_node_to_own_nodeport_is_masqueraded(golden_kernel: MockKernel) -> None:
    # The source does not change (eth0's address is the node IP), but the masquerade mark
    # was set and MASQUERADE ran: replies come back through conntrack either way.
    (o,) = golden_kernel.trace(Packet(NODE_IP, NODE_IP, 3001)).outcomes
    assert o.masqueraded and o.rules[-1].endswith("-j MASQUERADE")


def test_rule_path_names_table_chain_and_rule(golden_kernel: MockKernel) -> None:
    (o,) = golden_kernel.trace(Packet(POD, "172.30.0.41", 80)).outcomes
    assert o.rules[0] == 'nat PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    assert ('nat KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
            '-d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O') in o.rules
    assert o.rules.index(next(r for r in o.rules if "DNAT" in r)) < o.rules.index(
        next(r for r in o.rules if r.startswith("filter FORWARD")))


def test_affinity_rcheck_does_not_match_without_history(golden_kernel: MockKernel) -> None:
    (o,) = golden_kernel.trace(Packet(POD, "172.30.0.45", 80)).outcomes
    assert not any("--rcheck" in r for r in o.rules)
    assert any("--set" in r for r in o.rules)


def test_json_is_trace_result_contract(golden_kernel: MockKernel) -> None:
    r = golden_kernel.trace(Packet(EXTERNAL_CLIENT, "192.168.99.33", 80))
    data = json.loads(r.dumps())
    assert data["node"] == "test-node" and data["mode"] == "iptables"
    assert [o["probability"] for o in data["outcomes"]] == ["1/2", "1/2"]
    assert all(o["masqueraded"] for o in data["outcomes"])


def test_trace_does_not_change_state(golden_kernel: MockKernel) -> None:
    before = dict(golden_kernel.recent.lists)
    golden_kernel.trace(Packet(POD, "172.30.0.45", 80))
    assert golden_kernel.recent.lists == before
    assert len(golden_kernel.conntrack) == 0


def test_entry_override(golden_kernel: MockKernel) -> None:
    # The same source seen as arriving from outside instead of from the bridge.
    r = golden_kernel.trace(Packet(POD, "172.30.0.41", 80), entry="external")
    assert r.distribution() == {("ACCEPT", "10.180.0.1:80", POD): 1}
    assert r.outcomes[0].rules[-1].startswith("nat")


# ------------------------------------------------------------ hand-written cases

HAIRPIN_NODE = NodeInfo(
    name="n1", ips=("192.168.0.2",), pod_cidrs=("10.180.0.0/24",),
    interfaces=(("eth0", "192.168.0.2/24"), ("cni0", "10.180.0.254/24")),
)


def test_hairpin_pod_to_its_own_service(golden_dump_text: str = "") -> None:
    k = MockKernel(HAIRPIN_NODE)
    k.load_iptables_save(golden_dump())
    k.install_kube_proxy_jump_rules()
    # 10.180.0.1 is svc1's only endpoint and a pod on this bridge: the SEP chain marks it for
    # masquerade, so it sees the bridge address, not itself (otherwise replies bypass NAT).
    r = k.trace(Packet("10.180.0.1", "172.30.0.41", 80))
    assert r.distribution() == {("ACCEPT", "10.180.0.1:80", "10.180.0.254"): 1}
    assert r.outcomes[0].masqueraded
    # Another pod on the bridge to the same service: no masquerade.
    r = k.trace(Packet("10.180.0.7", "172.30.0.41", 80))
    assert r.distribution() == {("ACCEPT", "10.180.0.1:80", "10.180.0.7"): 1}


# §9 of the reference: eTP=Local with a local endpoint, iTP=Local (derived illustration).
LOCAL_POLICY_RULES = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-ZX7GRIZKSNUQ3LAJ - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVL-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SVL-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVL-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -s 10.180.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-ZX7GRIZKSNUQ3LAJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.2.1:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
COMMIT
"""

LOCAL_NODE = NodeInfo(
    name="test-node", ips=("192.168.0.2", "192.168.99.11"), pod_cidrs=("10.180.2.0/24",),
    interfaces=(("eth0", "192.168.0.2/24"), ("eth0", "192.168.99.11/24"),
                ("cni0", "10.180.2.254/24")),
)


@pytest.fixture(scope="module")
def local_kernel() -> MockKernel:
    k = MockKernel(LOCAL_NODE)
    k.load_iptables_save(LOCAL_POLICY_RULES)
    k.install_kube_proxy_jump_rules()
    return k


def test_local_policy_from_outside_keeps_source_and_stays_local(local_kernel: MockKernel) -> None:
    for dst, port in (("1.2.3.4", 80), ("192.168.99.11", 80), ("192.168.0.2", 3001)):
        r = local_kernel.trace(Packet(EXTERNAL_CLIENT, dst, port))
        # Only the local endpoint, and the client IP is preserved (no masquerade).
        assert r.distribution() == {("ACCEPT", "10.180.2.1:80", EXTERNAL_CLIENT): 1}, dst


def test_local_policy_from_inside_uses_all_endpoints(local_kernel: MockKernel) -> None:
    # A pod (cluster CIDR 10/8) reaching the LB IP is short-circuited to the Cluster chain.
    r = local_kernel.trace(Packet("10.180.2.9", "1.2.3.4", 80))
    assert r.distribution() == {
        ("ACCEPT", "10.180.0.1:80", "10.180.2.9"): Fraction(1, 2),
        ("ACCEPT", "10.180.2.1:80", "10.180.2.9"): Fraction(1, 2),
    }
    # The node itself: masqueraded, all endpoints.
    r = local_kernel.trace(Packet("192.168.0.2", "1.2.3.4", 80))
    assert r.distribution() == {
        ("ACCEPT", "10.180.0.1:80", "192.168.0.2"): Fraction(1, 2),
        ("ACCEPT", "10.180.2.1:80", "10.180.2.254"): Fraction(1, 2),
    }


def test_internal_local_policy(local_kernel: MockKernel) -> None:
    # iTP=Local: only 10.180.0.3 (the local endpoint) is in the SVL chain.
    r = local_kernel.trace(Packet("10.180.2.9", "172.30.0.43", 80))
    assert r.distribution() == {("ACCEPT", "10.180.0.3:80", "10.180.2.9"): 1}


# ------------------------------------------------------------ upstream flow tests, rendered
# The same packet-flow expectations upstream runs (runPacketFlowTests in proxier_test.go),
# on rules rendered by our iptables backend (backends.iptables), loaded as the node's
# complete iptables-save.

BLOCKED_CLIENT = "203.0.113.130"  # upstream testExternalClientBlocked
ALT_NODE_IP = "192.168.1.2"       # upstream testNodeIPAlt


def _svc(ns: str, name: str, spec: dict, status: dict | None = None) -> dict:
    m = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
         "spec": spec}
    if status:
        m["status"] = status
    return m


def _slice(ns: str, svc: str, endpoints: list[dict], ports: list[dict]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": f"{svc}-1",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def rendered_kernel(objects: list[dict], **cfg: object) -> MockKernel:
    backends_iptables = pytest.importorskip("backends.iptables")
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.raw import state_from_objects
    from kservice.proxy.types import ProxierOptions

    node = NodeInfo(
        name="test-node", ips=("192.168.0.2",), pod_cidrs=("10.0.0.0/24",),
        interfaces=(("lo", "127.0.0.1/8"), ("eth0", "192.168.0.2/24"),
                    ("eth0", "192.168.1.2/24"), ("eth0", "192.168.99.11/24")),
    )
    state = state_from_objects(
        objects, "test-node", "IPv4", KubeProxyConfiguration(cluster_cidr="10.0.0.0/8", **cfg),
        node=node, options=ProxierOptions(masquerade_mark="0x4000", random_fully=False))
    backend = backends_iptables.IPTablesBackend()
    k = MockKernel(node)
    backend.load(k, backend.render(state))
    return k


def check_flows(k: MockKernel, flows: list[tuple[str, str, str, int, str, bool]],
                proto: str = "tcp") -> None:
    for name, src, dst, port, output, masq in flows:
        r = k.trace(Packet(src, dst, port, proto=proto))
        assert r.total_probability == 1, name
        got = ", ".join(o.verdict if o.verdict != "ACCEPT" else (
            o.delivered_to if o.delivered_to != f"{dst}:{port}" else "") for o in r.outcomes)
        assert got == output, name
        assert any(o.masqueraded for o in r.outcomes) is masq, name


def test_upstream_load_balancer_flows() -> None:
    k = rendered_kernel([
        _svc("ns1", "svc1", {"type": "LoadBalancer", "clusterIP": "172.30.0.41",
                             "ports": [{"name": "p80", "port": 80, "protocol": "TCP",
                                        "nodePort": 3001}],
                             "loadBalancerSourceRanges": ["192.168.0.0/24", " 203.0.113.0/25"]},
             {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}]}}),
        _slice("ns1", "svc1", [{"addresses": ["10.180.0.1"]}],
               [{"name": "p80", "port": 80, "protocol": "TCP"}]),
    ])
    ep = "10.180.0.1:80"
    check_flows(k, [
        ("pod to cluster IP", POD, "172.30.0.41", 80, ep, False),
        ("external to nodePort", EXTERNAL_CLIENT, NODE_IP, 3001, ep, True),
        ("nodePort bypasses LoadBalancerSourceRanges", BLOCKED_CLIENT, NODE_IP, 3001, ep, True),
        ("accepted external to LB1", EXTERNAL_CLIENT, "1.2.3.4", 80, ep, True),
        ("accepted external to LB2", EXTERNAL_CLIENT, "5.6.7.8", 80, ep, True),
        ("blocked external to LB1", BLOCKED_CLIENT, "1.2.3.4", 80, "DROP", False),
        ("blocked external to LB2", BLOCKED_CLIENT, "5.6.7.8", 80, "DROP", False),
        ("pod to LB1 (blocked by LoadBalancerSourceRanges)", POD, "1.2.3.4", 80, "DROP", False),
        ("pod to LB2 (blocked by LoadBalancerSourceRanges)", POD, "5.6.7.8", 80, "DROP", False),
        ("node to LB1 (allowed by LoadBalancerSourceRanges)", NODE_IP, "1.2.3.4", 80, ep, True),
        ("node to LB2 (allowed by LoadBalancerSourceRanges)", NODE_IP, "5.6.7.8", 80, ep, True),
        ("same node to LB1, SNATted to LB1", "1.2.3.4", "1.2.3.4", 80, ep, True),
        ("same node to LB2, SNATted to LB2", "5.6.7.8", "5.6.7.8", 80, ep, True),
    ])


def test_upstream_no_endpoints_reject_flows() -> None:
    k = rendered_kernel([
        _svc("ns1", "svc1", {"type": "LoadBalancer", "clusterIP": "172.30.0.41",
                             "externalIPs": ["192.168.99.11"],
                             "ports": [{"name": "p80", "port": 80, "protocol": "TCP",
                                        "nodePort": 3001}]},
             {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
    ])
    check_flows(k, [
        ("pod to cluster IP with no endpoints", POD, "172.30.0.41", 80, "REJECT", False),
        ("external to external IP with no endpoints", EXTERNAL_CLIENT, "192.168.99.11", 80,
         "REJECT", False),
        ("pod to NodePort with no endpoints", POD, NODE_IP, 3001, "REJECT", False),
        ("external to NodePort with no endpoints", EXTERNAL_CLIENT, NODE_IP, 3001, "REJECT", False),
        ("pod to LoadBalancer IP with no endpoints", POD, "1.2.3.4", 80, "REJECT", False),
        ("external to LoadBalancer IP with no endpoints", EXTERNAL_CLIENT, "1.2.3.4", 80,
         "REJECT", False),
    ])


def test_upstream_cluster_ip_general_flows() -> None:
    ports = [{"name": "http", "port": 80, "protocol": "TCP"},
             {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
             {"name": "dns-udp", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
             {"name": "dns-sctp", "port": 53, "protocol": "SCTP"}]
    k = rendered_kernel([
        _svc("ns1", "svc1", {"clusterIP": "172.30.0.41",
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        _svc("ns2", "svc2", {"clusterIP": "172.30.0.42", "ports": ports}),
        _slice("ns1", "svc1", [{"addresses": ["10.180.0.1"], "nodeName": "test-node"}],
               [{"name": "http", "port": 80, "protocol": "TCP"}]),
        _slice("ns2", "svc2", [{"addresses": ["10.180.0.1"], "nodeName": "test-node"},
                               {"addresses": ["10.180.2.1"], "nodeName": "node2"}],
               [{"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "https", "port": 8443, "protocol": "TCP"},
                {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                {"name": "dns-sctp", "port": 53, "protocol": "SCTP"}]),
    ])
    src = "10.180.0.2"
    check_flows(k, [
        ("simple clusterIP", src, "172.30.0.41", 80, "10.180.0.1:80", False),
        ("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),
        ("clusterIP with multiple endpoints", src, "172.30.0.42", 80,
         "10.180.0.1:80, 10.180.2.1:80", False),
        ("clusterIP with TargetPort", src, "172.30.0.42", 443,
         "10.180.0.1:8443, 10.180.2.1:8443", False),
        ("TCP on port 53", src, "172.30.0.42", 53, "10.180.0.1:5353, 10.180.2.1:5353", False),
        ("svc1 does not accept svc2's ports", src, "172.30.0.41", 443, "", False),
    ])
    check_flows(k, [("UDP on port 53", src, "172.30.0.42", 53, "10.180.0.1:53, 10.180.2.1:53",
                     False),
                    ("TCP-only port does not match UDP traffic", src, "172.30.0.42", 80, "",
                     False)], proto="udp")
    check_flows(k, [("SCTP on port 53", src, "172.30.0.42", 53,
                     "10.180.0.1:53, 10.180.2.1:53", False)], proto="sctp")


def test_upstream_node_ports_flows() -> None:
    k = rendered_kernel([
        _svc("ns1", "svc1", {"type": "NodePort", "clusterIP": "172.30.0.41",
                             "ports": [{"name": "p80", "port": 80, "protocol": "TCP",
                                        "nodePort": 3001}]}),
        _slice("ns1", "svc1", [{"addresses": ["10.180.0.1"]},
                               {"addresses": ["10.180.2.1"], "nodeName": "test-node"}],
               [{"name": "p80", "port": 80, "protocol": "TCP"}]),
    ])
    out = "10.180.0.1:80, 10.180.2.1:80"
    check_flows(k, [
        ("pod to cluster IP", POD, "172.30.0.41", 80, out, False),
        ("external to nodePort", EXTERNAL_CLIENT, NODE_IP, 3001, out, True),
        ("node to nodePort", NODE_IP, NODE_IP, 3001, out, True),
        ("localhost to nodePort gets masqueraded", "127.0.0.1", "127.0.0.1", 3001, out, True),
        ("external to nodePort on secondary IP", EXTERNAL_CLIENT, ALT_NODE_IP, 3001, out, True),
    ])


# ------------------------------------------------------------ CLI (kservice trace)

def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from kservice.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def golden_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("dump") / "golden.rules"
    p.write_text(golden_dump())
    return p


def test_cli_trace_dump_json_is_trace_result(golden_file: Path, golden_kernel: MockKernel,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _err = _cli(["trace", "--rules", str(golden_file), "--node", "test-node",
                          "--node-ip", "192.168.0.2", "--node-ip", "192.168.1.2",
                          "--node-ip", "192.168.99.11", "--iface", "eth0=192.168.0.2/24",
                          "--pod-cidr", "10.0.0.0/24", "--src", EXTERNAL_CLIENT,
                          "--dst", "192.168.99.33:80", "-o", "json"], capsys)
    assert rc == 0
    expected = golden_kernel.trace(Packet(EXTERNAL_CLIENT, "192.168.99.33", 80)).to_json()
    data = json.loads(out)
    # The payload's empty built-in chains got kube-proxy's jump rules: said in "warnings",
    # the one key added to TraceResult.to_json() (only when there are warnings).
    warnings = data.pop("warnings")
    assert len(warnings) == 1 and "added kube-proxy's jump rules" in warnings[0]
    assert data == expected


def test_cli_trace_dump_text(golden_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _err = _cli(["trace", "--rules", str(golden_file), "--node-ip", "192.168.0.2",
                          "--pod-cidr", "10.0.0.0/24", "--src", "10.0.0.2:1234",
                          "--dst", "172.30.0.44:80"], capsys)
    assert rc == 0
    assert "10.0.0.2:1234 -> 172.30.0.44:80" in out
    assert "1/2" in out and "10.180.0.4:80" in out and "10.180.0.5:80" in out
    assert 'nat KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT' in out
    assert "added kube-proxy's jump rules" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dst", "172.30.0.44"], "needs a port"),
        (["--dst", "nonsense:80"], "is not an IP address"),
        (["--dst", "172.30.0.44:99999"], "port must be 1-65535"),
        (["--dst", "[fd00::1]:80"], "different IP families"),
    ],
)
def test_cli_bad_input_is_an_error_not_a_traceback(
        golden_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    rc, _out, err = _cli(["trace", "--rules", str(golden_file), "--node-ip", "192.168.0.2",
                          "--src", "10.0.0.2", *args], capsys)
    assert rc == 1
    assert message in err and "Traceback" not in err


def test_cli_bad_dump_names_line_and_option(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "bad.rules"
    dump.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m owner --uid-owner 0 -j DROP\nCOMMIT\n")
    rc, _out, err = _cli(["trace", "--rules", str(dump), "--node-ip", "192.168.0.2",
                          "--src", "1.1.1.1", "--dst", "192.168.0.2:22"], capsys)
    assert rc == 1
    assert f"{dump}:3" in err and "-m owner" in err
    rc, out, _err = _cli(["trace", "--rules", str(dump), "--node-ip", "192.168.0.2", "--lenient",
                          "--src", "1.1.1.1", "--dst", "192.168.0.2:22"], capsys)
    assert rc == 0 and "UNKNOWN" in out


def test_cli_trace_from_stored_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("backends.iptables")
    state = str(tmp_path / "state.db")
    rc, out, err = _cli(["--state", state, "trace", "--node", "kind-worker", "--src",
                         "10.244.1.5", "--dst", "10.96.0.10:53", "--proto", "udp", "-o", "json"],
                        capsys)
    if rc != 0 and "not found" in err:
        pytest.skip(f"default cluster has no such node: {err}")
    assert rc == 0, err
    data = json.loads(out)
    assert data["mode"] == "iptables" and data["node"] == "kind-worker"
    assert sum(Fraction(o["probability"]) for o in data["outcomes"]) == 1
    assert all(o["verdict"] == "ACCEPT" for o in data["outcomes"])


def test_upstream_external_traffic_policy_cluster_flows() -> None:
    k = rendered_kernel([
        _svc("ns1", "svc1", {"type": "LoadBalancer", "clusterIP": "172.30.0.41",
                             "externalIPs": ["192.168.99.11"],
                             "externalTrafficPolicy": "Cluster",
                             "ports": [{"name": "p80", "port": 80, "protocol": "TCP",
                                        "nodePort": 3001, "targetPort": 80}]},
             {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
        _slice("ns1", "svc1", [{"addresses": ["10.180.0.1"]},
                               {"addresses": ["10.180.2.1"], "nodeName": "test-node"}],
               [{"name": "p80", "port": 80, "protocol": "TCP"}]),
    ])
    both = "10.180.0.1:80, 10.180.2.1:80"
    check_flows(k, [
        ("pod to cluster IP hits both endpoints, unmasqueraded", POD, "172.30.0.41", 80, both,
         False),
        ("pod to external IP hits both endpoints, masqueraded", POD, "192.168.99.11", 80, both,
         True),
        ("external to external IP hits both endpoints, masqueraded", EXTERNAL_CLIENT,
         "192.168.99.11", 80, both, True),
        ("pod to LB IP hits both endpoints, masqueraded", POD, "1.2.3.4", 80, both, True),
        ("external to LB IP hits both endpoints, masqueraded", EXTERNAL_CLIENT, "1.2.3.4", 80,
         both, True),
        ("pod to NodePort hits both endpoints, masqueraded", POD, NODE_IP, 3001, both, True),
        ("external to NodePort hits both endpoints, masqueraded", EXTERNAL_CLIENT, NODE_IP, 3001,
         both, True),
    ])


@pytest.mark.parametrize(
    ("policy", "nodes", "output"),
    [
        ("Cluster", ["test-node", "node1", "node2"], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
        ("Local", ["test-node", "node1", "node2"], "10.0.1.1:80"),
        ("Local", ["test-node", "test-node", "node2"], "10.0.1.1:80, 10.0.1.2:80"),
        ("Local", ["node0", "node1", "node2"], "DROP"),
    ],
)
def test_upstream_internal_traffic_policy_flows(policy: str, nodes: list[str], output: str) -> None:
    svc = _svc("ns1", "svc1", {"clusterIP": "172.30.1.1", "internalTrafficPolicy": policy,
                               "ports": [{"name": "", "port": 80, "protocol": "TCP"}]})
    eps = [{"addresses": [f"10.0.1.{i + 1}"], "conditions": {"ready": True}, "nodeName": n}
           for i, n in enumerate(nodes)]
    k = rendered_kernel([svc, _slice("ns1", "svc1", eps, [{"name": "", "port": 80,
                                                           "protocol": "TCP"}])])
    check_flows(k, [("pod to ClusterIP", POD, "172.30.1.1", 80, output, False)])
    # Endpoints deleted: the service rejects.
    check_flows(rendered_kernel([svc]), [("endpoints deleted", POD, "172.30.1.1", 80, "REJECT",
                                          False)])


RAW_OBJECTS = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
  status:
    addresses: [{type: InternalIP, address: 172.18.0.2}]
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    clusterIP: 10.96.0.50
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: web-abcde
    namespace: default
    labels: {kubernetes.io/service-name: web}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: true}
    nodeName: n1
  - addresses: [10.244.2.7]
    conditions: {ready: true}
    nodeName: n2
"""


def test_cli_trace_raw_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--raw traces stored objects as kube-proxy reads them (a replay of a real cluster)."""
    f = tmp_path / "cluster.yaml"
    f.write_text(RAW_OBJECTS)
    rc, out, err = _cli(["--state", str(tmp_path / "s.db"), "trace", "--raw", "-f", str(f),
                         "--node", "n1", "--src", "10.244.9.9", "--dst", "10.96.0.50:80",
                         "-o", "json"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    got = {o["delivered_to"]: o["probability"] for o in data["outcomes"]}
    assert got == {"10.244.1.5:8080": "1/2", "10.244.2.7:8080": "1/2"}
    rc, _out, err = _cli(["--state", str(tmp_path / "s.db"), "trace", "--raw", "--node", "n1",
                          "--src", "10.244.9.9", "--dst", "10.96.0.50:80"], capsys)
    assert rc == 1 and "--raw needs -f" in err


@pytest.mark.parametrize(("flag", "name", "text", "port", "warning"), [
    ("--rules", "tp.rules",
     "*mangle\n:PREROUTING ACCEPT [0:0]\n"
     "-A PREROUTING -p tcp --dport 80 -j TPROXY --on-port 1 --tproxy-mark 0x1/0x1\nCOMMIT\n",
     80, ":3: unsupported target '-j TPROXY'"),
    ("--nft", "q.nft",
     "table ip kp {\n\tchain inp {\n\t\ttype filter hook input priority filter; policy accept;"
     "\n\t\ttcp dport 7777 queue num 3\n\t}\n}\n", 7777, ":4: unsupported expression"),
])
def test_cli_lenient_json_carries_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           flag: str, name: str, text: str, port: int,
                                           warning: str) -> None:
    dump = tmp_path / name
    dump.write_text(text)
    base = ["trace", flag, str(dump), "--node-ip", "192.168.0.2", "--src", "1.1.1.1",
            "--dst", f"192.168.0.2:{port}", "-o", "json"]
    rc, _out, err = _cli(base, capsys)
    assert rc == 1 and f"{dump}:" in err
    rc, out, _err = _cli([*base, "--lenient"], capsys)
    data = json.loads(out)
    assert rc == 0 and [o["verdict"] for o in data["outcomes"]] == ["UNKNOWN"]
    assert len(data["warnings"]) == 1 and data["warnings"][0].startswith(f"{dump}{warning}")
    # Another port never reaches the unknown rule: a known outcome (the load's warning
    # is still reported).
    rc, out, _err = _cli([*base[:-3], f"192.168.0.2:{port + 1}", "-o", "json", "--lenient"],
                         capsys)
    assert [o["verdict"] for o in json.loads(out)["outcomes"]] == ["ACCEPT"]


def test_cli_json_has_no_warnings_key_without_warnings(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "ok.rules"
    dump.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j DROP\nCOMMIT\n")
    rc, out, _err = _cli(["trace", "--rules", str(dump), "--node-ip", "192.168.0.2", "--src",
                          "1.1.1.1", "--dst", "192.168.0.2:22", "-o", "json", "--lenient"],
                         capsys)
    data = json.loads(out)
    assert rc == 0 and set(data) == {"node", "mode", "packet", "outcomes"}
