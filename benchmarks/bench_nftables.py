"""nftables backend: full render of 10k services x 10 endpoints, and a one-service partial.

Targets (task H7): full render <= 2 s; one-service change (partial sync) <= 20 ms.
The state is built once per module (endpoint categorisation is the shared function, not
part of the backend's cost).
"""

from __future__ import annotations

import attrs
import pytest

from backends.nftables.proxier import NFTablesBackend
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)

N_SERVICES = 10_000
N_ENDPOINTS = 10
NODE = NodeInfo(name="node-a", ips=("192.168.0.10",), pod_cidrs=("10.244.0.0/24",),
                interfaces=(("eth0", "192.168.0.10/24"),))


def _port(i: int, n_eps: int = N_ENDPOINTS) -> ServicePortInfo:
    eps = tuple(sorted(
        (Endpoint(f"10.{(i * n_eps + j) // 65536 % 200 + 1}.{(i * n_eps + j) // 256 % 256}."
                  f"{(i * n_eps + j) % 256}", 8080, is_local=j == 0,
                  node_name="node-a" if j == 0 else "node-b")
         for j in range(n_eps)), key=lambda e: e.string))
    sp = ServicePortInfo(
        name=ServicePortName(f"ns{i % 50}", f"svc{i}", "http"),
        cluster_ip=f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}", port=80, protocol="TCP",
        node_port=30000 + i % 2768 if i % 4 == 0 else 0, endpoints=eps,
    )
    return attrs.evolve(sp, categorized=categorize_endpoints(eps, sp, "node-a", {}))


@pytest.fixture(scope="module")
def big_state() -> NodeProxyState:
    ports = tuple(sorted((_port(i) for i in range(N_SERVICES)), key=lambda s: s.name))
    return NodeProxyState(node=NODE, family="IPv4",
                          config=KubeProxyConfiguration(mode="nftables",
                                                        cluster_cidr="10.0.0.0/8"),
                          service_ports=ports, service_cidrs=("172.16.0.0/12",))


def test_full_render_10k_services(benchmark, big_state: NodeProxyState) -> None:
    """backend.render, cold backend: the transaction text; the ``ruleset``/``dump``
    listings are lazy sections (see the next test for their cost)."""
    def setup():  # type: ignore[no-untyped-def]
        return (NFTablesBackend(), big_state), {}

    rendering = benchmark.pedantic(lambda b, st: b.render(st), setup=setup, rounds=3,
                                   iterations=1)
    assert rendering.section("transaction").count("numgen random mod 10") == N_SERVICES


def test_full_render_with_listings_10k_services(benchmark, big_state: NodeProxyState) -> None:
    """backend.render plus every section's text (``nft list ruleset`` and the knftables
    dump forced too): what ``kservice render`` of all formats costs. Figure reported, not
    asserted."""
    def setup():  # type: ignore[no-untyped-def]
        return (NFTablesBackend(), big_state), {}

    def render_all(b, st):  # type: ignore[no-untyped-def]
        rendering = b.render(st)
        rendering.texts()
        return rendering

    rendering = benchmark.pedantic(render_all, setup=setup, rounds=3, iterations=1)
    assert rendering.section("ruleset").count("numgen random mod 10") == N_SERVICES


def test_full_transaction_only_10k_services(benchmark, big_state: NodeProxyState) -> None:
    """What kube-proxy itself computes per full sync: the transaction text, cold caches."""
    def setup():  # type: ignore[no-untyped-def]
        return (NFTablesBackend(), big_state), {}

    tx = benchmark.pedantic(lambda b, st: b.sync(st), setup=setup, rounds=3, iterations=1)
    assert tx.count("add chain ip kube-proxy endpoint-") == N_SERVICES * N_ENDPOINTS


def test_one_service_partial_sync(benchmark, big_state: NodeProxyState) -> None:
    """One endpoint of one service goes away: the backend (which, like the proxier, kept
    the previous sync) re-renders that service and diffs elements."""
    b = NFTablesBackend()
    b.sync(big_state)
    i = 1234
    pos = next(k for k, sp in enumerate(big_state.service_ports) if sp.name.name == f"svc{i}")

    def setup():  # type: ignore[no-untyped-def]
        # A fresh port object each round, so its fragment is really rendered.
        ports = list(big_state.service_ports)
        ports[pos] = _port(i, N_ENDPOINTS - 1)
        return (attrs.evolve(big_state, service_ports=tuple(ports)),), {}

    tx = benchmark.pedantic(lambda st: b.sync(st, previous=big_state), setup=setup,
                            rounds=30, iterations=1)
    assert "flush chain" in tx and "svc1234/" in tx
    assert tx.count("\n") < 60  # only that service's objects
