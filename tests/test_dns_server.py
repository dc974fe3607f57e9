"""The real DNS server (backends.dnsserver) on 127.0.0.1, queried over UDP and TCP."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import pytest
from _dns_fixtures import add, ep, make_cluster, slice_, svc
from hypothesis import given
from hypothesis import strategies as st

from backends.dnsserver import DNSServer, StateFileProvider

TIMEOUT = 3.0


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    return make_cluster(
        svc("web", cluster_ip="10.96.5.5", ports=[{"name": "http", "port": 80, "protocol": "TCP"}]),
        svc("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        slice_("db", endpoints=[ep("10.244.2.7", hostname="db-0")],
               ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        svc("big", cluster_ip="None", ports=[{"name": "p", "port": 80, "protocol": "TCP"}]),
        slice_("big", endpoints=[ep(f"10.245.{i // 250}.{i % 250 + 1}") for i in range(120)],
               ports=[{"name": "p", "port": 80, "protocol": "TCP"}]),
    )


@pytest.fixture
def server(cluster) -> Iterator[DNSServer]:  # type: ignore[no-untyped-def]
    # A long idle timeout: no test's connection is closed under it by a slow machine
    # (test_idle_tcp_connections_are_closed runs its own 1 s server).
    srv = DNSServer(lambda: cluster, host="127.0.0.1", port=0, ttl=7, max_tcp_clients=4,
                    tcp_idle_timeout=30.0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def udp(server: DNSServer, msg: dns.message.Message) -> dns.message.Message:
    return dns.query.udp(msg, "127.0.0.1", port=server.port, timeout=TIMEOUT)


def tcp(server: DNSServer, msg: dns.message.Message) -> dns.message.Message:
    return dns.query.tcp(msg, "127.0.0.1", port=server.port, timeout=TIMEOUT)


def raw_udp(server: DNSServer, payload: bytes, timeout: float = TIMEOUT) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", server.port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def texts(resp: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in resp.answer for rd in rrset)


@pytest.mark.parametrize("transport", [udp, tcp], ids=["udp", "tcp"])
def test_answers_over_both_transports(server: DNSServer, transport: Any) -> None:
    resp = transport(server, dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert resp.rcode() == dns.rcode.NOERROR
    assert texts(resp) == ["10.96.5.5"]
    assert resp.answer[0].ttl == 7
    assert resp.flags & dns.flags.AA and resp.flags & dns.flags.QR
    srv = transport(server, dns.message.make_query("_pg._tcp.db.default.svc.cluster.local", "SRV"))
    assert texts(srv) == ["0 100 5432 db-0.db.default.svc.cluster.local."]
    assert [rr.to_text() for rr in srv.additional] == [
        "db-0.db.default.svc.cluster.local. 7 IN A 10.244.2.7"]


def test_nxdomain_and_nodata_carry_soa(server: DNSServer) -> None:
    nx = udp(server, dns.message.make_query("nope.default.svc.cluster.local", "A"))
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = udp(server, dns.message.make_query("web.default.svc.cluster.local", "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_ptr_and_txt(server: DNSServer) -> None:
    ptr = udp(server, dns.message.make_query("7.2.244.10.in-addr.arpa.", "PTR"))
    assert texts(ptr) == ["db-0.db.default.svc.cluster.local."]
    txt = udp(server, dns.message.make_query("dns-version.cluster.local", "TXT"))
    assert texts(txt) == ['"1.0.1"']


def test_outside_zone_refused(server: DNSServer) -> None:
    resp = udp(server, dns.message.make_query("example.com", "A"))
    assert resp.rcode() == dns.rcode.REFUSED
    assert not resp.flags & dns.flags.AA


def test_state_changes_show_without_restart(server: DNSServer, cluster: Any) -> None:
    name = "late.default.svc.cluster.local"
    assert udp(server, dns.message.make_query(name, "A")).rcode() == dns.rcode.NXDOMAIN
    add(cluster, svc("late", cluster_ip="10.96.9.9", ports=[{"port": 80, "protocol": "TCP"}]))
    resp = udp(server, dns.message.make_query(name, "A"))
    assert texts(resp) == ["10.96.9.9"]
    cluster.delete("Service", "late", "default")
    assert udp(server, dns.message.make_query(name, "A")).rcode() == dns.rcode.NXDOMAIN


def test_truncation_then_tcp(server: DNSServer) -> None:
    q = dns.message.make_query("big.default.svc.cluster.local", "A")
    resp = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=TIMEOUT,
                         ignore_trailing=True, raise_on_truncation=False)
    assert resp.flags & dns.flags.TC
    assert len(texts(resp)) < 120
    full = tcp(server, q)
    assert not full.flags & dns.flags.TC
    assert len(texts(full)) == 120
    # With EDNS and a big buffer, UDP carries it all (120 * 16 + header < 4096).
    big = udp(server, dns.message.make_query("big.default.svc.cluster.local", "A",
                                             use_edns=0, payload=4096))
    assert not big.flags & dns.flags.TC and len(texts(big)) == 120
    assert big.edns == 0 and big.payload == 1232


def test_garbage_gets_formerr(server: DNSServer) -> None:
    garbage = b"\xbe\xef" + b"\x01\x00" + b"\xff" * 30  # QR clear, otherwise nonsense
    reply = raw_udp(server, garbage)
    assert reply is not None
    msg_id, flags = struct.unpack("!HH", reply[:4])
    assert msg_id == 0xBEEF
    assert flags & 0x8000 and flags & 0xF == dns.rcode.FORMERR
    # The server is still alive afterwards.
    assert texts(udp(server, dns.message.make_query("web.default.svc.cluster.local", "A"))) == [
        "10.96.5.5"]


def test_garbage_over_tcp_gets_formerr(server: DNSServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        payload = b"\x12\x34\x00\x00\x00\x05\x00\x00"  # header claims 5 questions, then ends
        s.sendall(struct.pack("!H", len(payload)) + payload)
        (length,) = struct.unpack("!H", s.recv(2))
        reply = s.recv(length)
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0xF == dns.rcode.FORMERR


def test_responses_and_crumbs_get_silence(server: DNSServer) -> None:
    resp = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert raw_udp(server, resp.to_wire(), timeout=0.5) is None
    assert raw_udp(server, b"\x00", timeout=0.5) is None


def test_notimp_badvers_and_class(server: DNSServer) -> None:
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    q.set_opcode(dns.opcode.STATUS)
    reply = raw_udp(server, q.to_wire())
    assert reply is not None and reply[3] & 0xF == dns.rcode.NOTIMP
    v1 = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=1)
    resp = udp(server, v1)
    assert resp.rcode() == dns.rcode.BADVERS and resp.edns == 0
    ch = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert udp(server, ch).rcode() == dns.rcode.REFUSED


def test_provider_failure_is_servfail(cluster: Any) -> None:
    calls = {"n": 0}

    def flaky() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("state file unreadable")
        return cluster

    with DNSServer(flaky, port=0) as srv:
        q = dns.message.make_query("web.default.svc.cluster.local", "A")
        assert udp(srv, q).rcode() == dns.rcode.SERVFAIL
        assert texts(udp(srv, q)) == ["10.96.5.5"]


def _wait_for(cond: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_tcp_connections_are_bounded(server: DNSServer) -> None:
    # The fixture's idle timeout is long (30 s): held connections stay open however slowly
    # the machine runs, so the count and the rejection are exact.
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            for _ in range(4)]
    try:
        _wait_for(lambda: server._tcp_clients >= 4)
        assert server._tcp_clients == 4
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with extra:
            # Over the limit: closed at once (EOF) instead of being served.
            assert extra.recv(2) == b""
        assert server.stats["tcp_rejected"] == 1
        # The held ones are still served.
        wire = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
        held[0].sendall(struct.pack("!H", len(wire)) + wire)
        with held[0].makefile("rb") as f:
            (length,) = struct.unpack("!H", f.read(2))
            assert texts(dns.message.from_wire(f.read(length))) == ["10.96.5.5"]
    finally:
        for s in held:
            s.close()
    # Closed connections free their slots.
    assert _wait_for(lambda: server._tcp_clients == 0), server._tcp_clients
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    assert texts(tcp(server, q)) == ["10.96.5.5"]
    assert server.stats["tcp_rejected"] == 1


def test_idle_tcp_connections_are_closed(cluster: Any) -> None:
    with DNSServer(lambda: cluster, host="127.0.0.1", port=0, tcp_idle_timeout=1.0) as srv:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as idle:
            # Idle connections are closed after tcp_idle_timeout (1 s here), not before.
            idle.settimeout(10)
            assert idle.recv(2) == b""
            assert time.monotonic() - start >= 0.9
        assert _wait_for(lambda: srv._tcp_clients == 0), srv._tcp_clients
        assert srv.stats["tcp_rejected"] == 0


def test_several_queries_on_one_tcp_connection(server: DNSServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        for i in range(3):
            wire = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
            s.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", s.recv(2))
            buf = b""
            while len(buf) < length:
                buf += s.recv(length - len(buf))
            assert texts(dns.message.from_wire(buf)) == ["10.96.5.5"], i


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) not installed")
def test_dig(server: DNSServer) -> None:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+short", "+tries=1", "+time=2",
         "web.default.svc.cluster.local", "A"],
        capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.split() == ["10.96.5.5"]
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+tcp", "+short", "+tries=1", "+time=2",
         "_pg._tcp.db.default.svc.cluster.local", "SRV"],
        capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.strip() == "0 100 5432 db-0.db.default.svc.cluster.local."


def test_state_file_provider_reloads(tmp_path: Any) -> None:
    from kservice.cli.state import open_session

    path = str(tmp_path / "state.db")
    provider = StateFileProvider(path, interval=0.0)
    with DNSServer(provider, port=0) as srv:
        q = dns.message.make_query("kube-dns.kube-system.svc.cluster.local", "A")
        assert texts(udp(srv, q)) == ["10.96.0.10"]
        name = "added.default.svc.cluster.local"
        assert udp(srv, dns.message.make_query(name, "A")).rcode() == dns.rcode.NXDOMAIN
        time.sleep(0.01)  # distinct mtime even on coarse clocks
        with open_session(path) as c:
            c.create(c.decode({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": "added", "namespace": "default"},
                               "spec": {"clusterIP": "10.96.3.3", "ports": [{"port": 80}]}}))
        assert texts(udp(srv, dns.message.make_query(name, "A"))) == ["10.96.3.3"]


def test_cli_resolve_and_resolv_conf(tmp_path: Any, capsys: Any) -> None:
    import json

    from kservice.cli import main

    state = str(tmp_path / "s.db")
    assert main(["--state", state, "dns", "resolve", "kube-dns.kube-system", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [a["data"] for a in out["answer"]] == ["10.96.0.10"]
    assert out["tried"][0]["name"] == "kube-dns.kube-system.default.svc.cluster.local."
    assert main(["--state", state, "dns", "resolve", "nope", "-n", "test"]) == 1
    assert "status REFUSED" in capsys.readouterr().out
    assert main(["--state", state, "dns", "resolv-conf", "-n", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "search test.svc.cluster.local svc.cluster.local cluster.local")


_LABEL_BYTES = st.binary(min_size=1, max_size=12)


@given(st.lists(_LABEL_BYTES, min_size=1, max_size=5), st.integers(0, 65535),
       st.integers(0, 65535), st.booleans())
def test_handle_never_raises_on_odd_names(labels: list[bytes], qtype: int, qclass: int,
                                          edns: bool) -> None:
    cluster = make_cluster(svc("web", cluster_ip="10.96.5.5",
                               ports=[{"port": 80, "protocol": "TCP"}]))
    server = DNSServer(lambda: cluster, port=0)
    qname = b"".join(bytes([len(lbl)]) + lbl for lbl in labels) + b"\x00"
    ar = 1 if edns else 0
    wire = struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, ar) + qname + struct.pack("!HH", qtype,
                                                                                  qclass)
    if edns:
        wire += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    reply = server.handle(wire)
    assert reply is not None
    msg_id, flags, qd = struct.unpack("!HHH", reply[:6])
    assert msg_id == 77 and flags & 0x8000 and qd == 1
    # The question comes back byte for byte.
    assert reply[12:12 + len(qname)] == qname


@given(st.binary(max_size=300))
def test_handle_never_raises_on_garbage(raw: bytes) -> None:
    cluster = make_cluster()
    server = DNSServer(lambda: cluster, port=0)
    reply = server.handle(raw)
    if reply is not None:
        assert reply[:2] == raw[:2] and reply[2] & 0x80
