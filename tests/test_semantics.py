"""The reference semantics: Kubernetes' promises, case by case, without any rule text."""

from __future__ import annotations

from fractions import Fraction

import attrs

from kservice.proxy import (
    CategorizedEndpoints,
    Endpoint,
    KubeProxyConfiguration,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.semantics import Origin, classify_origin, expected_trace
from kservice.trace import Packet

NODE = NodeInfo(name="n1", ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "172.18.0.2/16"), ("lo", "127.0.0.1/8")))
CFG = KubeProxyConfiguration(cluster_cidr="10.244.0.0/16")
LOCAL_EP = Endpoint("10.244.1.5", 8080, is_local=True, node_name="n1")
REMOTE_EP = Endpoint("10.244.2.7", 8080, is_local=False, node_name="n2")


def port(**kw: object) -> ServicePortInfo:
    eps = (LOCAL_EP, REMOTE_EP)
    base = ServicePortInfo(
        name=ServicePortName("default", "web", "http"), cluster_ip="10.96.0.50", port=80,
        protocol="TCP", endpoints=eps,
        categorized=CategorizedEndpoints(cluster=eps, local=(LOCAL_EP,), all_reachable=eps,
                                         has_any=True),
    )
    return attrs.evolve(base, **kw)  # type: ignore[arg-type]


def state(*sps: ServicePortInfo, cfg: KubeProxyConfiguration = CFG) -> NodeProxyState:
    return NodeProxyState(node=NODE, family="IPv4", config=cfg, service_ports=sps)


def dist(st: NodeProxyState, src: str, dst: str, dport: int) -> dict[tuple[str, str | None,
                                                                         str | None], Fraction]:
    return expected_trace(st, Packet(src, dst, dport)).distribution()


def test_origins() -> None:
    st = state()
    assert classify_origin(st, "10.244.1.9") is Origin.LOCAL_POD
    assert classify_origin(st, "172.18.0.2") is Origin.NODE
    assert classify_origin(st, "10.244.3.3") is Origin.REMOTE_POD
    assert classify_origin(st, "8.8.8.8") is Origin.EXTERNAL


def test_cluster_ip_from_a_pod_keeps_the_client_ip_and_splits_evenly() -> None:
    d = dist(state(port()), "10.244.1.9", "10.96.0.50", 80)
    assert d == {("ACCEPT", "10.244.1.5:8080", "10.244.1.9"): Fraction(1, 2),
                 ("ACCEPT", "10.244.2.7:8080", "10.244.1.9"): Fraction(1, 2)}


def test_cluster_ip_from_the_node_is_masqueraded_to_the_egress_address() -> None:
    d = dist(state(port()), "172.18.0.2", "10.96.0.50", 80)
    # local pod: out of the bridge (gateway 10.244.1.1); remote pod: out of eth0.
    assert d == {("ACCEPT", "10.244.1.5:8080", "10.244.1.1"): Fraction(1, 2),
                 ("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1, 2)}


def test_hairpin_is_masqueraded() -> None:
    d = dist(state(port()), "10.244.1.5", "10.96.0.50", 80)
    assert d[("ACCEPT", "10.244.1.5:8080", "10.244.1.1")] == Fraction(1, 2)
    assert d[("ACCEPT", "10.244.2.7:8080", "10.244.1.5")] == Fraction(1, 2)


def test_no_endpoints_rejects_and_no_local_endpoints_drops() -> None:
    empty = port(endpoints=(), categorized=CategorizedEndpoints())
    assert dist(state(empty), "10.244.1.9", "10.96.0.50", 80) == {("REJECT", None, None): 1}
    itp = port(internal_policy_local=True,
               categorized=CategorizedEndpoints(cluster=(REMOTE_EP,), local=(),
                                                all_reachable=(), has_any=True))
    assert dist(state(itp), "10.244.1.9", "10.96.0.50", 80) == {("DROP", None, None): 1}


def test_node_port_cluster_policy_masquerades_and_local_policy_keeps_client_ip() -> None:
    np = port(node_port=30080)
    d = dist(state(np), "203.0.113.9", "172.18.0.2", 30080)
    assert d == {("ACCEPT", "10.244.1.5:8080", "10.244.1.1"): Fraction(1, 2),
                 ("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1, 2)}
    local = port(node_port=30080, external_policy_local=True)
    assert dist(state(local), "203.0.113.9", "172.18.0.2", 30080) == {
        ("ACCEPT", "10.244.1.5:8080", "203.0.113.9"): 1}
    # a pod using the NodePort of a Local service short-circuits to all endpoints
    pod = dist(state(local), "10.244.1.9", "172.18.0.2", 30080)
    assert set(pod) == {("ACCEPT", "10.244.1.5:8080", "10.244.1.9"),
                        ("ACCEPT", "10.244.2.7:8080", "10.244.1.9")}


def test_local_policy_without_local_endpoints_drops_outside_clients() -> None:
    local = port(node_port=30080, external_policy_local=True,
                 categorized=CategorizedEndpoints(cluster=(REMOTE_EP,), local=(),
                                                  all_reachable=(REMOTE_EP,), has_any=True))
    assert dist(state(local), "203.0.113.9", "172.18.0.2", 30080) == {("DROP", None, None): 1}


def test_load_balancer_source_ranges() -> None:
    lb = port(load_balancer_vips=("198.51.100.7",),
              load_balancer_source_ranges=("203.0.113.0/24",))
    assert dist(state(lb), "192.0.2.1", "198.51.100.7", 80) == {("DROP", None, None): 1}
    ok = dist(state(lb), "203.0.113.9", "198.51.100.7", 80)
    assert sum(ok.values()) == 1 and all(k[0] == "ACCEPT" for k in ok)


def test_wrong_port_or_protocol_is_not_a_service() -> None:
    d = dist(state(port()), "10.244.1.9", "10.96.0.50", 81)
    assert d == {("ACCEPT", "10.96.0.50:81", "10.244.1.9"): 1}
    udp = expected_trace(state(port()), Packet("10.244.1.9", "10.96.0.50", 80, proto="udp"))
    assert udp.outcomes[0].delivered_to == "10.96.0.50:80"


def test_masquerade_all_and_no_detector() -> None:
    cfg = attrs.evolve(CFG, iptables=attrs.evolve(CFG.iptables, masquerade_all=True))
    d = dist(state(port(), cfg=cfg), "10.244.1.9", "10.96.0.50", 80)
    assert set(k[2] for k in d) == {"10.244.1.1", "172.18.0.2"}
    nodetect = KubeProxyConfiguration(cluster_cidr="")
    d2 = dist(state(port(), cfg=nodetect), "172.18.0.2", "10.96.0.50", 80)
    assert set(k[2] for k in d2) == {"172.18.0.2"}  # not masqueraded: client address kept


def test_localhost_node_port_only_from_the_node() -> None:
    np = port(node_port=30080)
    assert sum(dist(state(np), "172.18.0.2", "127.0.0.1", 30080).values()) == 1
    d = dist(state(np), "172.18.0.2", "127.0.0.1", 30080)
    assert all(k[0] == "ACCEPT" and k[1] != "127.0.0.1:30080" for k in d)
