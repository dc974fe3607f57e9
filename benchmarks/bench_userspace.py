"""The userspace proxy's cost on loopback: added latency and throughput, proxy vs direct.

* ``test_rtt_*``: one TCP connection, a 64-byte request echoed back, round trip timed
  (``benchmark`` measures one round trip); direct to the echo backend vs through the proxy.
* ``test_connect_*``: a new connection per request (connect, read the backend's banner,
  close): the per-connection cost, where the proxy's accept + serial dial shows.
* ``test_throughput_*``: 8 MiB streamed through one connection and echoed back; MB/s
  (counted one way) lands in ``extra_info["MB/s"]``.
* ``test_udp_rtt_*``: one UDP datagram and its reply.

Run: ``.venv/bin/python -m pytest benchmarks/bench_userspace.py --benchmark-only``.
The proxy and the echo servers each run one asyncio loop thread in this process, on a
machine shared with other work, so absolute numbers are indicative; the ratios matter.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backends.userspace.echo import EchoPool
from backends.userspace.proxier import Proxier
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)

PAYLOAD = b"x" * 64
STREAM = 8 * 1024 * 1024
CHUNK = 256 * 1024


def _state(endpoint: str) -> NodeProxyState:
    host, _, port = endpoint.rpartition(":")
    ports = tuple(
        ServicePortInfo(name=ServicePortName("default", "bench", proto.lower(), proto),
                        cluster_ip="10.96.0.10", port=80, protocol=proto,
                        endpoints=(Endpoint(host, int(port)),))
        for proto in ("TCP", "UDP"))
    return NodeProxyState(node=NodeInfo(name="n"), family="IPv4", service_ports=ports)


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, tuple[str, int]]]:
    with EchoPool(1) as pool, Proxier() as px:
        backend = pool.backends[0]
        listening = {x.protocol: x.port for x in px.update(_state(backend.endpoint))}
        yield {
            "direct": ("127.0.0.1", backend.port),
            "proxy": ("127.0.0.1", listening["TCP"]),
            "udp-direct": ("127.0.0.1", backend.port),
            "udp-proxy": ("127.0.0.1", listening["UDP"]),
        }


def _open(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    banner = b""
    while not banner.endswith(b"\n"):
        chunk = s.recv(64)
        if not chunk:
            raise ConnectionError("backend closed")
        banner += chunk
    return s


def _roundtrip(s: socket.socket) -> None:
    s.sendall(PAYLOAD)
    got = 0
    while got < len(PAYLOAD):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        got += len(chunk)


@pytest.mark.parametrize("path", ["direct", "proxy"])
def test_rtt(benchmark: Any, targets: dict[str, tuple[str, int]], path: str) -> None:
    s = _open(targets[path])
    try:
        for _ in range(50):
            _roundtrip(s)  # warm up
        benchmark.pedantic(_roundtrip, args=(s,), rounds=2000, iterations=1)
    finally:
        s.close()


@pytest.mark.parametrize("path", ["direct", "proxy"])
def test_connect(benchmark: Any, targets: dict[str, tuple[str, int]], path: str) -> None:
    def once() -> None:
        _open(targets[path]).close()

    benchmark.pedantic(once, rounds=300, iterations=1)


def _stream(addr: tuple[str, int]) -> float:
    s = _open(addr)
    try:
        data = b"y" * CHUNK
        received = [0]

        def reader() -> None:
            while received[0] < STREAM:
                chunk = s.recv(1 << 20)
                if not chunk:
                    return
                received[0] += len(chunk)

        t = threading.Thread(target=reader)
        start = time.perf_counter()
        t.start()
        for _ in range(STREAM // CHUNK):
            s.sendall(data)
        t.join(60)
        elapsed = time.perf_counter() - start
        assert received[0] == STREAM
        return STREAM / elapsed / 1e6
    finally:
        s.close()


@pytest.mark.parametrize("path", ["direct", "proxy"])
def test_throughput(benchmark: Any, targets: dict[str, tuple[str, int]], path: str) -> None:
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(_stream(targets[path])), rounds=5, iterations=1)
    benchmark.extra_info["MB/s"] = round(max(rates), 1)
    benchmark.extra_info["MB/s median"] = round(sorted(rates)[len(rates) // 2], 1)


@pytest.mark.parametrize("path", ["udp-direct", "udp-proxy"])
def test_udp_rtt(benchmark: Any, targets: dict[str, tuple[str, int]], path: str) -> None:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    addr = targets[path]

    def once() -> None:
        c.sendto(PAYLOAD, addr)
        c.recvfrom(8192)

    try:
        benchmark.pedantic(once, rounds=2000, iterations=1)
    finally:
        c.close()
