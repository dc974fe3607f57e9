"""Small endpoint servers for proxy tests, benchmarks and labs (TCP and UDP on one port).

Each :class:`EchoBackend` listens on ``host`` at a kernel-chosen port for TCP and the same
port number for UDP. TCP: on accept it sends its name and a newline (so a client learns which
endpoint it reached), then echoes every byte. UDP: every datagram is answered with
``name + b":" + datagram``. :class:`EchoPool` runs several in one background asyncio thread;
:meth:`EchoPool.kill` stops one (listener and its open connections) to simulate a dying pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["EchoBackend", "EchoPool"]

T = TypeVar("T")


class _UDPEcho(asyncio.DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(self.name + b":" + data, addr)


class EchoBackend:
    """One endpoint: name, address, TCP server, UDP socket, open TCP connections."""

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self, udp: bool = True) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(50):
            self.server = await asyncio.start_server(self._conn, self.host, 0, backlog=4096)
            self.port = self.server.sockets[0].getsockname()[1]
            if not udp:
                return
            try:
                self.udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPEcho(self.name.encode()), local_addr=(self.host, self.port))
                return
            except OSError:
                # The UDP port of that number is taken: try another TCP port.
                self.server.close()
        raise OSError("no port free for both TCP and UDP")

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(self.name.encode() + b"\n")
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()
        for w in list(self.writers):
            w.close()
        await asyncio.sleep(0)


class EchoPool:
    """``n`` echo backends on ``host`` in a background loop; use as a context manager."""

    def __init__(self, n: int, host: str = "127.0.0.1", *, udp: bool = True) -> None:
        self.n = n
        self.host = host
        self.udp = udp
        self.backends: list[EchoBackend] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EchoPool:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="kservice-echo", daemon=True)
        self._thread.start()
        ready.wait(10)
        for i in range(self.n):
            b = EchoBackend(f"backend-{i}", self.host)
            self._call(b.start(self.udp))
            self.backends.append(b)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._stop_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _stop_all(self) -> None:
        for b in self.backends:
            await b.stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def kill(self, index: int) -> None:
        """Stop backend ``index``: its port refuses new connections, open ones are closed."""
        self._call(self.backends[index].stop())

    @property
    def endpoints(self) -> list[str]:
        return [b.endpoint for b in self.backends]
