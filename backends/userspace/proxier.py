"""A real userspace proxy on sockets, behaving as kube-proxy's pre-1.26 userspace mode did.

This is the I/O adapter of :mod:`backends.userspace` (the rules and the balancer are pure).
It runs an asyncio loop in one background thread; the public API is synchronous and
thread-safe: :meth:`Proxier.update` applies a :class:`~kservice.proxy.types.NodeProxyState`,
:meth:`Proxier.stop` closes everything.

What it does, after ``pkg/proxy/userspace/{proxier,proxysocket,roundrobin}.go``
(reference ``kube-proxy-ipvs-nft-userspace.md`` §4):

* **one proxy socket per TCP/UDP service port**, on ``bind`` at a kernel-chosen port (upstream
  with an empty ``--proxy-port-range``); SCTP ports are skipped ("SCTP is not supported for
  user space proxy");
* **TCP**: accept; pick an endpoint with :class:`~backends.userspace.loadbalancer.LoadBalancerRR`
  (ClientIP affinity keyed by the client address) and dial it with the upstream timeouts
  :data:`ENDPOINT_DIAL_TIMEOUTS` (250 ms, 500 ms, 1 s, 2 s); after a failed dial the affinity
  is bypassed (``sessionAffinityReset``) so the rotation moves on. The dial happens in the
  accept loop, one at a time per service port, as upstream's ``ProxyLoop`` did
  (``serial_dial``). No endpoint / every dial failed: the accepted connection is closed.
  Then bytes are copied both ways; when either side reaches EOF or fails, **both** sockets
  are closed (``copyBytes`` closes ``dest`` and ``src``: no half-close);
* **UDP**: one socket; datagrams are read into a 4096-byte buffer (longer ones are
  truncated, as upstream's ``[4096]byte`` read did); each client ``ip:port`` gets a connected
  socket to its endpoint, replies are copied back; a session idle for ``udp_timeout``
  (``--udp-timeout``, default 250 ms) in both directions is closed and the next datagram
  re-balances; an ICMP error from the endpoint ends the session too;
* **updates** keep a service port's socket (and its port) while ``sameConfig`` holds
  (protocol, port, nodePort, cluster IP, external IPs, LB IPs, affinity type); otherwise the
  socket is closed and a new one opened on a new port. Closing a TCP listener never touches
  established connections; closing a UDP socket ends its sessions. Endpoint changes go to the
  balancer only: established connections stay on the endpoint they have, even a removed one;
* **stop** closes listeners, sessions and connections, stops the loop and joins the thread.

Divergences from upstream, by design: no iptables rules are installed (see ``render`` for
them; clients connect to the reported proxy ports directly), NodePort "claim" sockets are not
opened, and ``bind`` may be loopback (upstream refused a loopback ``--bind-address`` in this
mode because the REDIRECT rules need a routable address).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import attrs

from backends.userspace.loadbalancer import LoadBalancerRR, NoEndpoints, ServiceNotFound
from backends.userspace.render import proxy_endpoints
from kservice.errors import BackendError
from kservice.proxy.types import NodeProxyState, ServicePortInfo

__all__ = [
    "ENDPOINT_DIAL_TIMEOUTS",
    "UDP_BUFFER",
    "UDP_IDLE_TIMEOUT",
    "Listening",
    "Proxier",
]

#: ``proxy.EndpointDialTimeouts``: one dial attempt per entry, each with that timeout.
ENDPOINT_DIAL_TIMEOUTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: ``--udp-timeout`` default (``UDPIdleTimeout: 250ms`` in the v1alpha1 defaults).
UDP_IDLE_TIMEOUT = 0.25
#: ``var buffer [4096]byte`` in the UDP proxy loop and the reply copier.
UDP_BUFFER = 4096
#: Copy chunk for TCP (Go's io.Copy uses 32 KiB; larger chunks cost less in Python).
_TCP_CHUNK = 256 * 1024
#: RLIMIT_NOFILE kube-proxy raised itself to in this mode (``setRLimit(64 * 1000)``).
NOFILE_TARGET = 64000

T = TypeVar("T")
EndpointResolver = Callable[[str, str], tuple[str, int]]


@attrs.frozen
class Listening:
    """Where one service port's proxy socket listens."""

    service: str
    protocol: str
    address: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "protocol": self.protocol, "address": self.address,
                "port": self.port}


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _same_config_key(sp: ServicePortInfo) -> tuple[Any, ...]:
    # sameConfig: a change of any of these replaces the proxy socket (new proxy port).
    return (sp.protocol, sp.port, sp.node_port, sp.cluster_ip, tuple(sp.external_ips),
            tuple(sp.load_balancer_vips), sp.session_affinity_timeout is not None)


class _Service:
    """One service port's proxy socket (TCP server or UDP transport) and its sessions."""

    def __init__(self, name: str, protocol: str, key: tuple[Any, ...]) -> None:
        self.name = name
        self.order = 0
        self.protocol = protocol
        self.key = key
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.dial_lock = asyncio.Lock()
        #: UDP: client (ip, port) -> session
        self.sessions: dict[tuple[Any, ...], _UDPSession] = {}
        self.alive = True


class _UDPFront(asyncio.DatagramProtocol):
    def __init__(self, proxier: Proxier, svc: _Service) -> None:
        self.proxier = proxier
        self.svc = svc

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxier._udp_in(self.svc, data[:UDP_BUFFER], addr)

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - ICMP on front
        pass


class _UDPSession(asyncio.DatagramProtocol):
    """One client's connected socket to its endpoint (upstream ``ClientCache`` entry)."""

    def __init__(self, proxier: Proxier, svc: _Service, client: tuple[Any, ...]) -> None:
        self.proxier = proxier
        self.svc = svc
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.endpoint = ""

    # backend side
    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.closed or self.svc.udp is None:
            return
        self.touch()
        self.svc.udp.sendto(data[:UDP_BUFFER], self.client)

    def error_received(self, exc: Exception) -> None:
        # Read error on the connected socket (ICMP port unreachable): the goroutine
        # breaks out of its loop and the client entry is removed.
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def touch(self) -> None:
        self.last = self.proxier._loop_time()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
            return
        self.touch()
        self.transport.sendto(data)

    def arm(self) -> None:
        timeout = self.proxier.udp_timeout
        loop = self.proxier._loop
        assert loop is not None

        def check() -> None:
            if self.closed:
                return
            idle = loop.time() - self.last
            if idle >= timeout:
                self.close()
            else:
                self.timer = loop.call_later(timeout - idle, check)

        self.timer = loop.call_later(timeout, check)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.svc.sessions.get(self.client) is self:
            del self.svc.sessions[self.client]


class Proxier:
    """kube-proxy's userspace proxy on real sockets (see the module docstring).

    ``resolve_endpoint(service, "ip:port") -> (host, port)`` rewrites where an endpoint is
    dialled (tests and labs point cluster addresses at local servers); by default the
    endpoint's own address. ``clock``/``rng`` feed the balancer (affinity ages, shuffles).
    """

    def __init__(
        self,
        *,
        bind: str = "127.0.0.1",
        udp_timeout: float = UDP_IDLE_TIMEOUT,
        dial_timeouts: Sequence[float] = ENDPOINT_DIAL_TIMEOUTS,
        resolve_endpoint: EndpointResolver | None = None,
        serial_dial: bool = True,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        raise_nofile: bool = True,
    ) -> None:
        if udp_timeout <= 0:
            raise BackendError("udp timeout must be greater than 0 (upstream --udp-timeout)")
        if not dial_timeouts:
            raise BackendError("at least one dial timeout is needed")
        self.bind = bind
        self.udp_timeout = udp_timeout
        self.dial_timeouts = tuple(dial_timeouts)
        self.resolve_endpoint = resolve_endpoint
        self.serial_dial = serial_dial
        self.raise_nofile = raise_nofile
        self.lb = LoadBalancerRR(clock=clock, rng=rng)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._services: dict[str, _Service] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        #: Counters (read them from any thread; they only grow).
        self.accepted = 0
        self.dial_failures = 0
        self._tcp_active = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Proxier:
        if self._thread is not None:
            return self
        if self.raise_nofile:
            _raise_nofile(NOFILE_TARGET)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kservice-userspace-proxy",
                                        daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    def __enter__(self) -> Proxier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if self._loop is None or self._thread is None:
            coro.close()
            raise BackendError("the proxier is not running (call start())")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def _loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def stop(self, timeout: float = 10.0) -> None:
        """Close every socket, end every session, stop and join the loop thread."""
        if self._loop is None or self._thread is None:
            return
        loop, thread = self._loop, self._thread
        try:
            if thread.is_alive():
                self._call(self._shutdown(), timeout)
        finally:
            if thread.is_alive():
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
            loop.close()
            self._loop = None
            self._thread = None
            self._started.clear()

    async def _shutdown(self) -> None:
        for name in list(self._services):
            await self._close_service(name)
        for w in list(self._writers):
            w.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Let transports run their connection_lost callbacks (they close the sockets).
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ state
    def update(self, state: NodeProxyState) -> tuple[Listening, ...]:
        """Apply ``state`` (services and endpoints); returns where every proxy listens."""
        return self._call(self._update(state))

    def listening(self) -> tuple[Listening, ...]:
        return self._call(self._listening())

    def active_connections(self) -> int:
        """TCP connections being proxied plus UDP sessions."""
        async def count() -> int:
            return self._tcp_active + sum(len(s.sessions) for s in self._services.values())
        return self._call(count())

    async def _listening(self) -> tuple[Listening, ...]:
        # In the state's order (sorted by ServicePortName), like the render's proxy table.
        return tuple(Listening(s.name, s.protocol, self.bind, s.port)
                     for s in sorted(self._services.values(), key=lambda s: s.order)
                     if s.alive)

    async def _update(self, state: NodeProxyState) -> tuple[Listening, ...]:
        wanted: dict[str, ServicePortInfo] = {}
        for sp in state.service_ports:
            if sp.protocol in ("TCP", "UDP"):
                wanted[str(sp.name)] = sp
        for name in [n for n in self._services if n not in wanted]:
            await self._close_service(name)
            self.lb.delete_service(name)
        for order, (name, sp) in enumerate(wanted.items()):
            key = _same_config_key(sp)
            cur = self._services.get(name)
            if cur is not None and cur.key != key:
                await self._close_service(name)
                cur = None
            self.lb.new_service(name, sp.session_affinity_timeout)
            self.lb.on_endpoints_update(name, proxy_endpoints(sp))
            if cur is None:
                await self._open_service(name, sp, key)
            self._services[name].order = order
        self.lb.cleanup_stale_sticky_sessions()
        return await self._listening()

    async def _open_service(self, name: str, sp: ServicePortInfo, key: tuple[Any, ...]) -> None:
        svc = _Service(name, sp.protocol, key)
        loop = asyncio.get_running_loop()
        try:
            if sp.protocol == "TCP":
                svc.server = await asyncio.start_server(
                    lambda r, w: self._spawn(self._tcp_conn(svc, r, w)), self.bind, 0,
                    reuse_address=True, backlog=4096)
                svc.port = svc.server.sockets[0].getsockname()[1]
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPFront(self, svc), local_addr=(self.bind, 0))
                svc.udp = transport
                svc.port = transport.get_extra_info("sockname")[1]
        except OSError as exc:
            raise BackendError(f"cannot open the proxy socket for {name} on {self.bind}: "
                               f"{exc.strerror or exc}") from None
        self._services[name] = svc

    async def _close_service(self, name: str) -> None:
        svc = self._services.pop(name, None)
        if svc is None:
            return
        svc.alive = False
        if svc.server is not None:
            # Stops accepting; established connections are separate sockets and go on.
            svc.server.close()
        if svc.udp is not None:
            svc.udp.close()
            for sess in list(svc.sessions.values()):
                sess.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ dialling
    def _resolve(self, service: str, endpoint: str) -> tuple[str, int]:
        if self.resolve_endpoint is not None:
            return self.resolve_endpoint(service, endpoint)
        return _split(endpoint)

    async def _try_connect(self, svc: _Service, client_ip: str,
                           dial: Callable[[str, int], Coroutine[Any, Any, T]]
                           ) -> tuple[str, T]:
        """``TryConnectEndpoints``: up to len(dial_timeouts) attempts."""
        reset = False
        for timeout in self.dial_timeouts:
            endpoint = self.lb.next_endpoint(svc.name, client_ip, reset=reset)
            try:
                host, port = self._resolve(svc.name, endpoint)
            except Exception as exc:  # a broken resolver must not kill the accept path
                raise BackendError(f"cannot resolve endpoint {endpoint} of {svc.name}: "
                                   f"{exc}") from None
            try:
                return endpoint, await asyncio.wait_for(dial(host, port), timeout)
            except (TimeoutError, OSError):
                self.dial_failures += 1
                reset = True  # bypass affinity: the rotation moves to the next endpoint
        raise BackendError(f"failed to connect to an endpoint of {svc.name}")

    # ------------------------------------------------------------------ TCP
    async def _tcp_conn(self, svc: _Service, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        out_w: asyncio.StreamWriter | None = None
        try:
            try:
                if self.serial_dial:
                    async with svc.dial_lock:
                        _ep, (out_r, out_w) = await self._try_connect(
                            svc, client_ip, asyncio.open_connection)
                else:
                    _ep, (out_r, out_w) = await self._try_connect(
                        svc, client_ip, asyncio.open_connection)
            except (BackendError, NoEndpoints, ServiceNotFound):
                return  # the accepted connection is closed (finally)
            assert out_w is not None
            self._writers.add(out_w)
            self._tcp_active += 1
            for w in (writer, out_w):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = asyncio.ensure_future(_copy(reader, out_w))
            down = asyncio.ensure_future(_copy(out_r, writer))
            try:
                await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._tcp_active -= 1
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        finally:
            for maybe in (writer, out_w):
                if maybe is not None:
                    self._writers.discard(maybe)
                    maybe.close()
                    with contextlib.suppress(Exception):
                        await maybe.wait_closed()

    # ------------------------------------------------------------------ UDP
    def _udp_in(self, svc: _Service, data: bytes, addr: tuple[Any, ...]) -> None:
        if not svc.alive:
            return
        key = addr[:2]
        sess = svc.sessions.get(key)
        if sess is not None and not sess.closed:
            sess.send(data)
            return
        sess = _UDPSession(self, svc, key)
        sess.pending.append(data)
        svc.sessions[key] = sess
        self._spawn(self._udp_dial(svc, sess))

    async def _udp_dial(self, svc: _Service, sess: _UDPSession) -> None:
        loop = asyncio.get_running_loop()

        async def dial(host: str, port: int) -> asyncio.DatagramTransport:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: sess, remote_addr=(host, port))
            return transport

        try:
            sess.endpoint, transport = await self._try_connect(svc, str(sess.client[0]), dial)
        except (BackendError, NoEndpoints, ServiceNotFound):
            sess.close()  # datagrams dropped
            return
        if sess.closed or not svc.alive:
            transport.close()
            return
        sess.transport = transport
        sess.touch()
        sess.arm()
        pending, sess.pending = sess.pending, []
        for data in pending:
            transport.sendto(data)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``io.Copy`` until EOF or error."""
    try:
        while True:
            data = await reader.read(_TCP_CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        return


def _raise_nofile(target: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = target if hard == resource.RLIM_INFINITY else min(target, hard)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
