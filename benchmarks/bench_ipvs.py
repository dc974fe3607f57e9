"""IPVS-mode rendering at scale: 10k services x 10 endpoints (target: full render <= 2 s)."""

from __future__ import annotations

import ipaddress

import pytest

from backends.ipvs import backend, reconcile, render_node
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    CategorizedEndpoints,
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)

SERVICES = 10_000
ENDPOINTS = 10


def big_state(services: int = SERVICES, endpoints: int = ENDPOINTS) -> NodeProxyState:
    base_svc = int(ipaddress.IPv4Address("10.96.0.0"))
    base_pod = int(ipaddress.IPv4Address("10.244.0.0"))
    ports = []
    for i in range(services):
        eps = tuple(sorted(
            (Endpoint(str(ipaddress.IPv4Address(base_pod + i * endpoints + j)), 8080,
                      is_local=(j == 0), node_name="node-a" if j == 0 else "node-b")
             for j in range(endpoints)), key=lambda e: e.string))
        ports.append(ServicePortInfo(
            name=ServicePortName("ns", f"svc-{i:05d}", "http"),
            cluster_ip=str(ipaddress.IPv4Address(base_svc + i + 1)), port=80, protocol="TCP",
            node_port=30000 + i // 5 if i % 5 == 0 else 0, endpoints=eps,
            categorized=CategorizedEndpoints(cluster=eps, local=eps[:1], all_reachable=eps,
                                             has_any=True)))
    return NodeProxyState(
        node=NodeInfo("node-a", ips=("192.168.0.10",),
                      interfaces=(("lo", "127.0.0.1/8"), ("eth0", "192.168.0.10/24"))),
        family="IPv4", config=KubeProxyConfiguration(mode="ipvs", cluster_cidr="10.244.0.0/16"),
        service_ports=tuple(ports))


@pytest.fixture(scope="module")
def state() -> NodeProxyState:
    return big_state()


def test_render_node_10k_services(benchmark, state: NodeProxyState) -> None:
    node = benchmark(render_node, state)
    assert len(node.services) == SERVICES + SERVICES // 5


def test_full_render_all_sections_10k_services(benchmark, state: NodeProxyState) -> None:
    """render + every section's text (the listings are lazy; they are all forced here)."""
    def render_all():  # type: ignore[no-untyped-def]
        rendering = backend.render(state)
        rendering.texts()
        return rendering

    rendering = benchmark.pedantic(render_all, rounds=3, iterations=1)
    assert rendering.section("save").count("\n-A ") + 1 == SERVICES + SERVICES // 5
    assert benchmark.stats.stats.mean <= 2.0


def test_full_render_sync_sections_10k_services(benchmark, state: NodeProxyState) -> None:
    """What kube-proxy computes per full sync: the ipvsadm commands and the iptables-restore
    payload (the listings stay unrendered)."""
    def sync():  # type: ignore[no-untyped-def]
        rendering = backend.render(state)
        return rendering.section("commands"), rendering.section("iptables")

    commands, _iptables = benchmark.pedantic(sync, rounds=3, iterations=1)
    assert commands.count("ipvsadm -a") == (SERVICES + SERVICES // 5) * ENDPOINTS


def test_reconcile_one_endpoint_change(benchmark, state: NodeProxyState) -> None:
    import attrs

    old = render_node(state)
    sp = state.service_ports[0]
    eps = sp.endpoints[:-1]
    changed = attrs.evolve(sp, endpoints=eps, categorized=attrs.evolve(sp.categorized,
                                                                       cluster=eps))
    new = render_node(attrs.evolve(state, service_ports=(changed, *state.service_ports[1:])))
    plan = benchmark(reconcile, old, new)
    # svc-00000 has a ClusterIP and a NodePort virtual server: both retire the endpoint.
    assert sum(c.startswith("ipvsadm -e") for c in plan.commands) == 2
