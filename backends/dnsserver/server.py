"""A real DNS server (UDP and TCP, asyncio) answering from the live emulated cluster.

It is the I/O shell around the pure core: bytes come in, :func:`kservice.dns.wire.parse_query`
reads them, :class:`kservice.dns.ClusterZone` answers, :func:`kservice.dns.wire.encode`
writes the reply. The cluster comes from a ``provider: Callable[[], Cluster]`` called for
every query; the zone index is rebuilt only when the provider hands back a different
cluster object or the cluster's resourceVersion moved, so state changes show up on the next
query without a restart (:class:`StateFileProvider` reloads the CLI's SQLite file when it
changes on disk).

Robustness rules:

* malformed input is answered with FORMERR (or NOTIMP for other opcodes), never an
  exception escaping the handler; responses (QR=1) and messages too short to carry an id
  get no answer, so two servers cannot ping-pong;
* UDP replies respect 512 bytes without EDNS and the client's EDNS buffer (at most 4096)
  with it, truncating with TC=1 so the client retries over TCP;
* TCP: at most ``max_tcp_clients`` connections (more are closed at once), each closed
  after ``tcp_idle_timeout`` seconds without a complete query, and a query must arrive
  whole within that time; UDP is handled inline in the event loop, so work in flight is
  bounded by one datagram at a time;
* a failure of the provider or of the zone answers SERVFAIL and is logged;
* encoded replies are cached per zone index, keyed by the query's bytes after the id (the
  answer is a pure function of those and the index); a new index empties the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from kservice.dns import ClusterZone, DnsOptions
from kservice.dns._rr import TYPE_NAMES
from kservice.dns.wire import (
    DEFAULT_EDNS_SIZE,
    Edns,
    Message,
    Query,
    WireError,
    encode,
    error_response,
    parse_query,
    udp_limit,
)

__all__ = ["DNSServer", "StateFileProvider"]

log = logging.getLogger(__name__)

Provider = Callable[[], Any]


class DNSServer:
    """Serve the cluster zone on ``host:port`` over UDP and TCP."""

    def __init__(
        self,
        provider: Provider,
        *,
        host: str = "127.0.0.1",
        port: int = 5353,
        ttl: int | None = None,
        endpoint_pod_names: bool = False,
        max_tcp_clients: int = 64,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.provider = provider
        self.host = host
        self.port = port
        self.ttl = ttl
        self.endpoint_pod_names = endpoint_pod_names
        self.max_tcp_clients = max_tcp_clients
        self.tcp_idle_timeout = tcp_idle_timeout
        self._zone: ClusterZone | None = None
        self._zone_key: tuple[int, int] | None = None
        self._cluster_ref: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_clients = 0
        #: Encoded replies by (query bytes after the id, transport), valid for one zone
        #: index: the answer is a pure function of both. Bounded; emptied on a new index.
        self._cache: dict[tuple[bytes, bool], bytes] = {}
        self._cache_zone: ClusterZone | None = None
        #: 0 disables the reply cache.
        self.cache_size = 4096
        self.stats = {"queries": 0, "formerr": 0, "servfail": 0, "tcp_rejected": 0}

    # ------------------------------------------------------------------ answering
    def zone(self) -> ClusterZone:
        """The index for the provider's current cluster, rebuilt only when it changed."""
        cluster = self.provider()
        key = (id(cluster), int(cluster.resource_version))
        if self._zone is None or key != self._zone_key or cluster is not self._cluster_ref:
            opts = DnsOptions.from_config(cluster.config, ttl=self.ttl,
                                          endpoint_pod_names=self.endpoint_pod_names)
            self._zone = ClusterZone.from_cluster(cluster, opts)
            self._zone_key = key
            # Holding the cluster keeps id() from being reused by a new object.
            self._cluster_ref = cluster
        return self._zone

    def handle(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """One query in, one reply out (``None``: stay silent). Never raises."""
        self.stats["queries"] += 1
        try:
            zone: ClusterZone | None = self.zone()
        except Exception:
            log.exception("the cluster provider failed")
            zone = None
        key = (data[2:], tcp)
        if zone is not None:
            if zone is not self._cache_zone:
                self._cache.clear()
                self._cache_zone = zone
            cached = self._cache.get(key)
            if cached is not None:
                return data[:2] + cached[2:]
        try:
            query = parse_query(data)
        except WireError as err:
            self.stats["formerr"] += err.rcode == "FORMERR"
            reply = error_response(err)
            return None if reply is None else encode(reply)
        try:
            if zone is None:
                raise RuntimeError("no cluster state")
            msg = self._answer(query, zone)
        except Exception:
            log.exception("answering %s %s failed", query.question.name,
                          query.question.type_name)
            self.stats["servfail"] += 1
            return self._servfail(query)
        try:
            wire = encode(msg, 65535 if tcp else udp_limit(query))
        except Exception:
            log.exception("encoding the reply to %s failed", query.question.name)
            self.stats["servfail"] += 1
            return self._servfail(query)
        if self.cache_size:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = wire
        return wire

    def _servfail(self, query: Query) -> bytes:
        return encode(Message(id=query.id, rcode="SERVFAIL", question=query.question,
                              rd=query.rd, cd=query.cd, edns=self._reply_edns(query)))

    @staticmethod
    def _reply_edns(query: Query) -> Edns | None:
        if query.edns is None:
            return None
        return Edns(udp_size=DEFAULT_EDNS_SIZE, do=query.edns.do)

    def _answer(self, query: Query, zone: ClusterZone) -> Message:
        q = query.question
        edns = self._reply_edns(query)
        base = {"id": query.id, "question": q, "rd": query.rd, "cd": query.cd, "edns": edns}
        if query.edns is not None and query.edns.version > 0:
            # RFC 6891 §6.1.3: an EDNS version we do not implement is BADVERS, version 0.
            return Message(rcode="BADVERS", **base)  # type: ignore[arg-type]
        if q.qclass not in (1, 255):
            return Message(rcode="REFUSED", **base)  # type: ignore[arg-type]
        qtype = TYPE_NAMES.get(q.qtype, f"TYPE{q.qtype}")
        ans = zone.lookup(q.name, qtype)
        return Message(rcode=ans.rcode, answer=ans.answer, authority=ans.authority,
                       additional=ans.additional, aa=ans.authoritative and ans.rcode != "REFUSED",
                       **base)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ asyncio plumbing
    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if self._tcp_clients >= self.max_tcp_clients:
            self.stats["tcp_rejected"] += 1
            writer.close()
            return
        self._tcp_clients += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (length,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(length),
                                                  self.tcp_idle_timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                reply = self.handle(data, tcp=True)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                try:
                    await asyncio.wait_for(writer.drain(), self.tcp_idle_timeout)
                except (TimeoutError, ConnectionError):
                    break
        finally:
            self._tcp_clients -= 1
            with contextlib.suppress(Exception):
                writer.close()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            transport: asyncio.DatagramTransport

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                reply = server.handle(data)
                if reply is not None:
                    self.transport.sendto(reply, addr)

            def error_received(self, exc: Exception) -> None:
                log.debug("UDP error: %s", exc)

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Port 0: let the kernel pick for UDP, then take the same number for TCP; if TCP
        # cannot have it, try again with another.
        for _attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                _Udp, local_addr=(self.host, self.port), family=family)
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, port,
                                                 family=family, reuse_address=True)
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            self._udp, self._tcp, self.port = udp, tcp, port
            return
        raise OSError("could not bind UDP and TCP on the same port")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._udp is not None:
                self._udp.close()
            if self._tcp is not None:
                self._tcp.close()
                loop.run_until_complete(self._tcp.wait_closed())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start(self) -> DNSServer:
        """Serve in a background thread; return once both sockets are bound."""
        self._thread = threading.Thread(target=self._run, name="kservice-dns", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve (starting first if needed) until interrupted; blocks the calling thread."""
        if self._thread is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()


class StateFileProvider:
    """The CLI's SQLite state as a provider, reloaded when the file changes on disk.

    ``os.stat`` runs at most every ``interval`` seconds; a reload happens only when the
    file's (mtime, size, inode) changed, so a busy server costs the state file nothing.
    """

    def __init__(self, path: str, *, interval: float = 0.2) -> None:
        self.path = path
        self.interval = interval
        self._sig: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._cluster: Any = None

    def _signature(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> Any:
        from kservice.cli.state import open_session

        with open_session(self.path, write=False) as cluster:
            return cluster

    def __call__(self) -> Any:
        now = time.monotonic()
        if self._cluster is not None and now - self._checked < self.interval:
            return self._cluster
        self._checked = now
        try:
            sig = self._signature()
        except OSError:
            sig = None
        if self._cluster is None or sig != self._sig:
            self._cluster = self._load()
            # Loading may itself create and seed a fresh file; stat again afterwards.
            with contextlib.suppress(OSError):
                sig = self._signature()
            self._sig = sig
        return self._cluster
