"""DNS server throughput on loopback (target: >= 5,000 queries/s) and the in-process cost.

``test_udp_qps`` starts the real server on 127.0.0.1 and sends queries from one client
socket, a window of ``WINDOW`` in flight at a time (as a resolver with several clients
does); qps lands in ``extra_info``. It runs with the reply cache and without it (every query
parsed, looked up and encoded). ``test_handle`` times the server's bytes-in/bytes-out path
alone, without sockets, uncached.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import dns.message
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _dns_fixtures import ep, make_cluster, slice_, svc

from backends.dnsserver import DNSServer

BATCH = 2000
WINDOW = 16


def _cluster():  # type: ignore[no-untyped-def]
    objs = []
    for i in range(200):
        objs.append(svc(f"svc{i}", cluster_ip=f"10.96.{i // 250}.{i % 250 + 20}",
                        ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    objs.append(svc("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432,
                                                      "protocol": "TCP"}]))
    objs.append(slice_("db", endpoints=[ep(f"10.244.2.{i}", hostname=f"db-{i}")
                                        for i in range(1, 4)],
                       ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    return make_cluster(*objs)


def _queries() -> list[bytearray]:
    names = [(f"svc{i}.default.svc.cluster.local", "A") for i in range(0, 200, 7)]
    names += [("_pg._tcp.db.default.svc.cluster.local", "SRV"),
              ("db.default.svc.cluster.local", "A"),
              ("nope.default.svc.cluster.local", "A")]
    return [bytearray(dns.message.make_query(n, t).to_wire()) for n, t in names]


def _run(port: int, queries: list[bytearray]) -> int:
    """Send BATCH queries with WINDOW in flight; return how many answers came back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(2.0)
    sent = got = 0
    try:
        while sent < min(WINDOW, BATCH):
            s.send(queries[sent % len(queries)])
            sent += 1
        while got < BATCH:
            try:
                s.recv(4096)
            except TimeoutError:
                break  # a dropped datagram: count only what arrived
            got += 1
            if sent < BATCH:
                s.send(queries[sent % len(queries)])
                sent += 1
    finally:
        s.close()
    return got


@pytest.mark.parametrize("cache", [4096, 0], ids=["cached", "uncached"])
def test_udp_qps(benchmark, cache: int) -> None:  # type: ignore[no-untyped-def]
    cluster = _cluster()
    queries = _queries()
    with DNSServer(lambda: cluster, port=0) as server:
        server.cache_size = cache
        _run(server.port, queries)  # warm the zone index
        answered = benchmark.pedantic(_run, args=(server.port, queries), rounds=5,
                                      iterations=1)
        qps = BATCH / benchmark.stats.stats.mean
        benchmark.extra_info["qps"] = round(qps)
        benchmark.extra_info["answered_last_round"] = answered
    print(f"\nDNS UDP throughput ({'cached' if cache else 'uncached'}): {qps:,.0f} queries/s")
    assert answered == BATCH


def test_handle(benchmark) -> None:  # type: ignore[no-untyped-def]
    cluster = _cluster()
    server = DNSServer(lambda: cluster, port=0)
    server.cache_size = 0
    wire = bytes(_queries()[0])
    server.handle(wire)
    reply = benchmark(server.handle, wire)
    assert reply is not None and reply[3] & 0xF == 0
