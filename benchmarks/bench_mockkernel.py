"""Mock kernel benchmarks: loading a 10k-service x 10-endpoint dump, one trace at 10k vs 10.

Targets (task H5): load <= 3 s; one trace at 10k services <= 200 us median and <= 2x the
time at 10 services. The dump comes from our iptables backend (``backends.iptables``, the
node's full ``iptables-save``) when it is importable, else from
``kservice.testing.mockkernel.synthetic_kube_proxy_dump`` (same rule shapes).

Run: ``.venv/bin/python -m pytest benchmarks/bench_mockkernel.py --benchmark-only``
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import statistics
import time

import pytest

from backends.mockkernel import MockKernel
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    CategorizedEndpoints,
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
)
from kservice.testing.mockkernel import synthetic_kube_proxy_dump
from kservice.trace import Packet

NODE = NodeInfo(name="bench-node", ips=("192.168.0.2",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "192.168.0.2/24"),))
ENDPOINTS = 10


def _state(n_services: int) -> NodeProxyState:
    ports = []
    for s in range(n_services):
        eps = tuple(sorted(
            (Endpoint(str(ipaddress.IPv4Address(0x0AB40000 + s * ENDPOINTS + e)), 80)
             for e in range(ENDPOINTS)), key=lambda ep: ep.string))
        ports.append(ServicePortInfo(
            name=ServicePortName(f"ns{s}", f"svc{s}", "p80"),
            cluster_ip=str(ipaddress.IPv4Address(0xAC100000 + s)), port=80, protocol="TCP",
            endpoints=eps,
            categorized=CategorizedEndpoints(cluster=eps, all_reachable=eps, has_any=True)))
    return NodeProxyState(node=NODE, family="IPv4",
                          config=KubeProxyConfiguration(cluster_cidr="10.0.0.0/8"),
                          options=ProxierOptions(masquerade_mark="0x4000"),
                          service_ports=tuple(sorted(ports, key=lambda p: p.name)))


@functools.cache
def dump(n_services: int) -> tuple[str, str]:
    """(source, iptables-save text) for n services x 10 endpoints."""
    try:
        from backends.iptables import IPTablesBackend
    except ImportError:
        return "synthetic", synthetic_kube_proxy_dump(n_services, ENDPOINTS)
    rendering = IPTablesBackend().render(_state(n_services))
    return "backends.iptables", rendering.section("save")


def loaded(n_services: int) -> MockKernel:
    source, text = dump(n_services)
    k = MockKernel(NODE)
    k.load_iptables_save(text)
    if source == "synthetic":
        k.install_kube_proxy_jump_rules()
    return k


def _packets(n_services: int, count: int = 200) -> list[Packet]:
    return [Packet("10.244.1.5", str(ipaddress.IPv4Address(0xAC100000 + (i * 7919) % n_services)),
                   80) for i in range(count)]


def test_load_10k_services_x_10_endpoints(benchmark: pytest.FixtureRequest) -> None:
    _source, text = dump(10_000)
    kept: list[MockKernel] = []

    def fresh() -> None:
        # Free the previous round's kernel outside the timed region (its ~1M objects take
        # a while to deallocate).
        kept.clear()

    def load() -> None:
        k = MockKernel(NODE)
        k.load_iptables_save(text)
        kept.append(k)

    benchmark.pedantic(load, setup=fresh, rounds=3, iterations=1)  # type: ignore[attr-defined]
    assert kept[0].iptables[4]["nat"].rule_count() > 300_000


@pytest.mark.parametrize("n_services", [10, 10_000])
def test_trace(benchmark: pytest.FixtureRequest, n_services: int) -> None:
    k = loaded(n_services)
    packets = _packets(n_services)
    for p in packets:  # compile the chains the traces use (lazy for big dumps)
        k.trace(p)
    cycle = itertools.cycle(packets)
    r = benchmark(lambda: k.trace(next(cycle)))  # type: ignore[operator]
    assert len(r.outcomes) == ENDPOINTS


def _median_trace_us(k: MockKernel, packets: list[Packet], rounds: int = 3) -> float:
    for p in packets:
        k.trace(p)
    times = []
    for _ in range(rounds):
        for p in packets:
            t = time.perf_counter()
            k.trace(p)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def test_trace_scales_with_index() -> None:
    """A trace among 10k services costs at most twice one among 10 (same conditions)."""
    small = _median_trace_us(loaded(10), _packets(10))
    large = _median_trace_us(loaded(10_000), _packets(10_000))
    print(f"\nmedian trace: {small:.0f} us at 10 services, {large:.0f} us at 10k "
          f"(ratio {large / small:.2f})")
    assert large <= 2 * small
