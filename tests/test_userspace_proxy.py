"""The real userspace proxy on loopback sockets (backends/userspace/proxier.py).

Every socket has a timeout and every wait loop a bound in count and time; each test checks
that the proxier and the echo backends leave no file descriptor or thread behind.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends.userspace.echo import EchoPool
from backends.userspace.proxier import (
    ENDPOINT_DIAL_TIMEOUTS,
    UDP_IDLE_TIMEOUT,
    Listening,
    Proxier,
)
from kservice.errors import BackendError
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)

TIMEOUT = 5.0
#: Dial timeouts for tests that count connections per backend or check stickiness. The
#: upstream ones (ENDPOINT_DIAL_TIMEOUTS: 250 ms first) fire when the machine stalls during a
#: dial; the proxier then resets affinity and the rotation moves on -- correct behaviour, but
#: not what those tests are about. Refused dials still fail at once.
PATIENT_DIALS = (5.0,) * len(ENDPOINT_DIAL_TIMEOUTS)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _wait(cond: Callable[[], bool], *, seconds: float = 5.0, step: float = 0.01) -> bool:
    for _ in range(int(seconds / step) + 1):
        if cond():
            return True
        time.sleep(step)
    return cond()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    before = _fds()
    yield
    # Sockets closed by the peer are released asynchronously: bounded wait.
    assert _wait(lambda: _fds() <= before, seconds=5), (before, _fds())
    assert not {"kservice-userspace-proxy", "kservice-echo"} & _threads()


def _port(name: str, protocol: str, endpoints: list[str], *, affinity: int | None = None,
          port: int = 80) -> ServicePortInfo:
    eps = []
    for ep in endpoints:
        host, _, p = ep.rpartition(":")
        eps.append(Endpoint(host, int(p)))
    eps.sort(key=lambda e: e.string)
    return ServicePortInfo(name=ServicePortName("default", name, "p", protocol),
                           cluster_ip="10.96.0.10", port=port, protocol=protocol,
                           endpoints=tuple(eps), session_affinity_timeout=affinity)


def _state(*ports: ServicePortInfo) -> NodeProxyState:
    return NodeProxyState(node=NodeInfo(name="node-a", ips=("127.0.0.1",)), family="IPv4",
                          service_ports=tuple(sorted(ports, key=lambda s: s.name)))


def _connect(port: int, source: str | None = None) -> tuple[socket.socket, str]:
    """Connect through the proxy; returns the socket and the backend's name."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                 source_address=(source, 0) if source else None)
    return s, _readline(s)


def _readline(s: socket.socket) -> str:
    buf = b""
    for _ in range(256):
        c = s.recv(1)
        if not c or c == b"\n":
            break
        buf += c
    return buf.decode()


def _echo(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    got = b""
    for _ in range(10_000):
        if len(got) >= len(payload):
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _tcp_port(listening: tuple[Listening, ...], name: str = "default/rr:p") -> int:
    return next(x.port for x in listening if x.service == name)


# ------------------------------------------------------------------- round robin


def test_round_robin_is_fair_over_many_connections(no_leaks: None) -> None:
    with EchoPool(3) as pool, Proxier(dial_timeouts=PATIENT_DIALS) as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints))))
        names = []
        for _ in range(90):
            s, name = _connect(port)
            assert _echo(s, b"ping") == b"ping"
            s.close()
            names.append(name)
        assert Counter(names) == {"backend-0": 30, "backend-1": 30, "backend-2": 30}
        # LoadBalancerRR: a strict rotation over a shuffled list.
        assert all(len(set(names[i:i + 3])) == 3 for i in range(0, 90, 3))
        assert px.dial_failures == 0


def test_listening_report_is_json_ready(no_leaks: None) -> None:
    with EchoPool(1) as pool, Proxier() as px:
        got = px.update(_state(_port("rr", "TCP", pool.endpoints),
                               _port("dns", "UDP", pool.endpoints, port=53),
                               _port("sctp", "SCTP", pool.endpoints)))
        assert [(x.service, x.protocol, x.address) for x in got] == [
            ("default/dns:p", "UDP", "127.0.0.1"), ("default/rr:p", "TCP", "127.0.0.1")]
        assert all(1024 <= x.port <= 65535 for x in got)
        assert json.loads(json.dumps([x.to_json() for x in got]))[1]["service"] == "default/rr:p"


# ------------------------------------------------------------------- affinity


class _ManualClock:
    """The balancer's clock, advanced by the test only: affinity ages are exact however
    slowly the machine runs (a stall of a second must not expire a 1 s affinity record)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_client_ip_affinity_sticks_and_expires(no_leaks: None) -> None:
    clock = _ManualClock()
    with EchoPool(3) as pool, Proxier(dial_timeouts=PATIENT_DIALS, clock=clock) as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints, affinity=1))))
        first = None
        for _ in range(10):
            s, name = _connect(port)
            s.close()
            first = first or name
            assert name == first  # every connection of 127.0.0.1 sticks
            clock.now += 0.5  # each use refreshes the record: 0.5 s apart never expires
        # Another client IP is balanced on its own (the rotation moved once).
        s, other = _connect(port, source="127.0.0.2")
        s.close()
        assert other != first
        # Just under the 1s timeout since the last use: still sticky.
        clock.now += 0.99 - 0.5
        s, again = _connect(port)
        s.close()
        assert again == first
        # Idle for the 1s timeout: the record is stale, the rotation continues.
        clock.now += 1.0
        s, later = _connect(port)
        s.close()
        assert later not in (first, other)
        assert px.dial_failures == 0


def test_client_ip_affinity_expires_on_the_real_clock(no_leaks: None) -> None:
    # The default clock (time.monotonic): a record idle past its timeout is stale. A stall
    # only makes the idle time longer, so this holds however slowly the machine runs.
    with EchoPool(3) as pool, Proxier(dial_timeouts=PATIENT_DIALS) as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints, affinity=1))))
        s, first = _connect(port)
        s.close()
        time.sleep(1.05)
        s, later = _connect(port)
        s.close()
        assert later != first
        assert px.dial_failures == 0


# ------------------------------------------------------------------- failures


def test_dead_backend_is_retried_on_the_next_endpoint(no_leaks: None) -> None:
    with EchoPool(2) as pool, Proxier(dial_timeouts=PATIENT_DIALS) as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints))))
        s0, n0 = _connect(port)
        s1, n1 = _connect(port)
        try:
            assert {n0, n1} == {"backend-0", "backend-1"}
            order = px.lb.endpoints("default/rr:p")  # the shuffled rotation; index is 0 again
            pool.kill(0)
            # The established connection to the dead backend ends (EOF) ...
            dead = s0 if n0 == "backend-0" else s1
            assert dead.recv(10) == b""
            # ... and every new connection reaches the survivor. A refused dial resets
            # affinity and advances the rotation, so a connection that starts on the dead
            # endpoint moves two steps and the next one starts on the dead endpoint again.
            names = []
            for _ in range(6):
                s, name = _connect(port)
                names.append(name)
                s.close()
            assert names == ["backend-1"] * 6
            starts_dead = order[0] == pool.endpoints[0]
            assert px.dial_failures == (6 if starts_dead else 5)
        finally:
            s0.close()
            s1.close()


def test_no_endpoints_accepts_then_closes(no_leaks: None) -> None:
    with Proxier() as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", []))))
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        assert s.recv(10) == b""  # handshake completed, then EOF
        s.close()


def test_all_dials_fail_gives_up_after_the_upstream_attempts(no_leaks: None) -> None:
    # A port nothing listens on: every dial is refused at once; four attempts, then close.
    # The probe socket stays bound (never listening: connections to it are refused) until
    # the end, so the kernel cannot hand its port to the proxier's own listener.
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
        with Proxier() as px:
            port = _tcp_port(px.update(_state(_port("rr", "TCP",
                                                    [f"127.0.0.1:{dead_port}"]))))
            assert port != dead_port
            s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            assert s.recv(10) == b""
            s.close()
            assert _wait(lambda: px.dial_failures == len(ENDPOINT_DIAL_TIMEOUTS))
    finally:
        probe.close()


# ------------------------------------------------------------------- UDP


def test_udp_request_response_sessions_and_idle_timeout(no_leaks: None) -> None:
    # A 1 s idle timeout (not the 250 ms default): the session must survive the gaps between
    # this test's datagrams even on a slow machine; its expiry is still waited for.
    with EchoPool(2) as pool, Proxier(udp_timeout=1.0) as px:
        listening = px.update(_state(_port("dns", "UDP", pool.endpoints, port=53)))
        port = listening[0].port
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(TIMEOUT)
        try:
            c.sendto(b"q1", ("127.0.0.1", port))
            reply, frm = c.recvfrom(8192)
            name, _, body = reply.partition(b":")
            assert body == b"q1" and frm == ("127.0.0.1", port)
            # Within the idle timeout: the same session, the same endpoint.
            for i in range(5):
                c.sendto(b"q%d" % i, ("127.0.0.1", port))
                assert c.recvfrom(8192)[0] == name + b":q%d" % i
            assert px.active_connections() == 1
            # Idle past --udp-timeout (1 s here): the session is gone; the next datagram is
            # balanced again (round robin: the other endpoint).
            assert _wait(lambda: px.active_connections() == 0, seconds=3)
            c.sendto(b"again", ("127.0.0.1", port))
            assert c.recvfrom(8192)[0].partition(b":")[0] != name
            # 4096-byte buffers: a 5000-byte datagram is truncated on the way in, and the
            # backend's reply (name + ":" + 4096 bytes) again on the way out.
            big = bytes(range(256)) * 20
            c.sendto(big, ("127.0.0.1", port))
            got = c.recvfrom(65536)[0]
            assert len(got) == 4096
            assert got.partition(b":")[2] == big[:4096 - len(got.partition(b":")[0]) - 1]
        finally:
            c.close()
    assert UDP_IDLE_TIMEOUT == 0.25


# ------------------------------------------------------------------- scale


def test_a_thousand_concurrent_connections_leak_nothing() -> None:
    before = _fds()
    n = 1000
    with EchoPool(4, udp=False) as pool, Proxier() as px:
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints))))
        socks: list[socket.socket] = []
        try:
            for _ in range(n):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
            names = Counter(_readline(s) for s in socks)
            # Strict round robin -- unless a dial timed out (a backend slow to accept on a
            # loaded machine): upstream then moves on to the next endpoint, and each such
            # failure may shift one connection from one backend to another.
            slack = px.dial_failures
            assert sum(names.values()) == n and set(names) == {f"backend-{i}" for i in range(4)}
            assert all(abs(c - n // 4) <= slack for c in names.values()), (names, slack)
            assert px.active_connections() == n
            for i, s in enumerate(socks):
                assert _echo(s, b"x%d" % i) == b"x%d" % i
        finally:
            for s in socks:
                s.close()
        assert _wait(lambda: px.active_connections() == 0, seconds=10)
        assert px.accepted == n
    assert _wait(lambda: _fds() <= before, seconds=5), (before, _fds())


# ------------------------------------------------------------------- updates


def test_endpoint_update_keeps_established_connections(no_leaks: None) -> None:
    with EchoPool(3) as pool, Proxier() as px:
        eps = pool.endpoints
        port = _tcp_port(px.update(_state(_port("rr", "TCP", eps[:2]))))
        held = [_connect(port) for _ in range(2)]
        # Replace the endpoints: only backend-2 remains. Same service config: same port.
        again = _tcp_port(px.update(_state(_port("rr", "TCP", eps[2:]))))
        assert again == port
        for s, _name in held:
            assert _echo(s, b"still here") == b"still here"
        for _ in range(3):
            s, name = _connect(port)
            s.close()
            assert name == "backend-2"
        # A config change (another service port) replaces the socket: new proxy port, the
        # old one refuses, established connections go on.
        moved = _tcp_port(px.update(_state(_port("rr", "TCP", eps[2:], port=81))))
        assert moved != port
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        for s, _name in held:
            assert _echo(s, b"and now") == b"and now"
            s.close()
        # Removing the service closes its socket.
        assert px.update(_state()) == ()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", moved), timeout=TIMEOUT).close()


def test_clean_shutdown(no_leaks: None) -> None:
    with EchoPool(1) as pool:
        px = Proxier().start()
        port = _tcp_port(px.update(_state(_port("rr", "TCP", pool.endpoints),
                                          _port("dns", "UDP", pool.endpoints, port=53))))
        s, _ = _connect(port)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(TIMEOUT)
        udp_port = next(x.port for x in px.listening() if x.protocol == "UDP")
        u.sendto(b"x", ("127.0.0.1", udp_port))
        u.recvfrom(100)
        assert "kservice-userspace-proxy" in _threads()
        px.stop()
        assert "kservice-userspace-proxy" not in _threads()
        assert s.recv(10) == b""  # proxied connections are closed
        s.close()
        u.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        px.stop()  # idempotent
        with pytest.raises(BackendError):
            px.update(_state())


def test_bad_options_are_refused() -> None:
    with pytest.raises(BackendError):
        Proxier(udp_timeout=0)
    with pytest.raises(BackendError):
        Proxier(dial_timeouts=())


def _bindable(address: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
        return True


def test_an_address_that_cannot_be_bound_is_refused() -> None:
    # 192.0.2.123 (TEST-NET-1) is on no interface -- unless net.ipv4.ip_nonlocal_bind lets
    # any address be bound (or a host really has it): then there is no failure to provoke.
    if _bindable("192.0.2.123"):
        try:
            nonlocal_bind = Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip()
        except OSError:
            nonlocal_bind = "?"
        pytest.skip("192.0.2.123 can be bound here (net.ipv4.ip_nonlocal_bind="
                    f"{nonlocal_bind}): no bind failure to provoke")
    with pytest.raises(BackendError, match="cannot open the proxy socket"), \
            Proxier(bind="192.0.2.123") as px:
        px.update(_state(_port("rr", "TCP", [])))


# ------------------------------------------------------------------- CLI


def test_cli_prints_json_listening_and_stops(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from kservice.cli import main

    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: rr\nspec:\n"
                        "  ports:\n  - name: p\n    port: 80\n  - name: u\n    port: 53\n"
                        "    protocol: UDP\n")
    before = _fds()
    rc = main(["--state", str(tmp_path / "s.db"), "proxy", "--mode", "userspace",
               "--node", "kind-worker", "-f", str(manifest), "-o", "json",
               "--duration", "0.3", "--sync-period", "0.1"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    listening = json.loads(lines[0])["listening"]
    mine = [x for x in listening if x["service"].startswith("default/rr")]
    assert [(x["service"], x["protocol"], x["address"]) for x in mine] == [
        ("default/rr:p", "TCP", "127.0.0.1"), ("default/rr:u", "UDP", "127.0.0.1")]
    assert _wait(lambda: _fds() <= before)
    assert main(["--state", str(tmp_path / "s.db"), "proxy", "--node", "nope",
                 "--duration", "0"]) == 1
    assert 'node "nope" not found' in capsys.readouterr().err
    assert main(["--state", str(tmp_path / "s.db"), "proxy", "--endpoint-override", "x",
                 "--duration", "0"]) == 1


def test_ipv6_loopback(no_leaks: None) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with EchoPool(2, host="::1") as pool, Proxier(bind="::1") as px:
        sp = _port("rr", "TCP", [])
        eps = tuple(sorted((Endpoint("::1", b.port) for b in pool.backends),
                           key=lambda e: e.string))
        state = NodeProxyState(node=NodeInfo(name="n6", ips=("::1",)), family="IPv6",
                               service_ports=(ServicePortInfo(
                                   name=sp.name, cluster_ip="fd00::10", port=80,
                                   protocol="TCP", endpoints=eps),))
        (listening,) = px.update(state)
        assert listening.address == "::1"
        names = set()
        for _ in range(4):
            s = socket.create_connection(("::1", listening.port), timeout=TIMEOUT)
            names.add(_readline(s))
            assert _echo(s, b"v6") == b"v6"
            s.close()
        assert names == {"backend-0", "backend-1"}
