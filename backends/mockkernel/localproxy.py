"""Local sockets in the mock kernel: a process that consumes packets and opens new connections.

The engine's packet path ends at "delivered locally" (``INPUT`` accepted): it has no notion
of *who* receives the packet. A userspace proxy (kube-proxy ``--proxy-mode=userspace``, an
``inetd``-style forwarder) needs two more things, which this module adds without changing
the engine:

* **the socket layer** -- :class:`LocalSockets` is a :class:`~backends.mockkernel.engine.HookProgram`
  at ``INPUT`` with priority :data:`SOCKET_PRIORITY` (``NF_IP_PRI_LAST``: after every netfilter
  table, where ``ip_local_deliver_finish`` hands the skb to the socket). A listener bound to
  ``(proto, address or wildcard, port)`` receives the packets addressed to it and decides
  their fate through a handler;
* **a new locally generated connection** -- :func:`connect` walks a fresh packet from the
  node (``OUTPUT`` -> ``POSTROUTING`` -> out, or over ``lo`` to ``INPUT``) with its own
  conntrack entry, exactly as ``connect()`` from a process would; the source address is the
  one routing picks for the destination (the outgoing interface's address).

A handler's branches replace the consumed packet: the outcome of a proxied packet is where
the *proxy's* connection ends up, and ``source_seen`` is the proxy's source address -- the
client address is gone, as it is on a real node.

Engine API used: ``MockKernel.packet_state`` and ``MockKernel.walk`` (a walk from a fresh
packet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backends.mockkernel.engine import ACCEPT, ONE, Branch, PacketState, Verdict
from kservice.trace import Packet

__all__ = [
    "SOCKET_PRIORITY",
    "Handler",
    "LocalSockets",
    "connect",
    "local_sockets",
]

#: ``NF_IP_PRI_LAST`` (INT_MAX): the socket layer comes after every INPUT hook.
SOCKET_PRIORITY = 2**31 - 1

#: ``handler(state) -> branches``: what happens to a packet the socket receives.
Handler = Callable[[PacketState], list[Branch]]

_ONE = ONE  # the shared object (see engine.ONE)


class LocalSockets:
    """The listening sockets of the node's processes (one program per kernel)."""

    name = "sockets"
    is_nat = False

    def __init__(self) -> None:
        self.hooks = {"INPUT": SOCKET_PRIORITY}
        #: (proto, address or None for the wildcard, port) -> (owner label, handler)
        self._listeners: dict[tuple[str, str | None, int], tuple[str, Handler]] = {}

    def bind(self, proto: str, address: str | None, port: int, owner: str,
             handler: Handler) -> None:
        """Listen on ``address:port`` (``None``, ``0.0.0.0`` or ``::``: every local address)."""
        addr = None if address in (None, "0.0.0.0", "::") else address
        self._listeners[(proto.lower(), addr, port)] = (owner, handler)

    def unbind_owner(self, owner: str) -> None:
        for key in [k for k, (o, _h) in self._listeners.items() if o == owner]:
            del self._listeners[key]

    def lookup(self, proto: str, dst: str, port: int) -> tuple[str, Handler] | None:
        # A socket bound to the exact address wins over the wildcard (inet_lookup scoring).
        return (self._listeners.get((proto, dst, port))
                or self._listeners.get((proto, None, port)))

    def evaluate(self, hook: str, state: PacketState) -> list[Branch]:
        got = self.lookup(state.proto, state.dst, state.dport)
        if got is None:
            return [(_ONE, state, ACCEPT)]
        return got[1](state)


def local_sockets(kernel: Any) -> LocalSockets:
    """The kernel's :class:`LocalSockets`, registered on first use."""
    prog = getattr(kernel, "local_sockets", None)
    if prog is None:
        prog = LocalSockets()
        kernel.local_sockets = prog
        kernel.register(prog)
    return prog


def _confirm(kernel: Any, st: PacketState) -> None:
    """Confirm ``st``'s conntrack entry as :meth:`MockKernel.send` does for a delivered packet."""
    e = st.ct
    if e is None or st.ct_state == "UNTRACKED":
        return
    if not e.confirmed:
        e.dnat = st.dnat
        e.snat = st.snat
        e.masqueraded = st.masqueraded
    kernel.conntrack.confirm(e, answered=True)


def connect(kernel: Any, via: PacketState, *, dst: str, dport: int, sport: int,
            note: str, depth_limit: int = 4) -> list[Branch]:
    """A process that received ``via`` opens a new connection to ``dst:dport``.

    Returns branches whose states are the *new* connection's final states (rule path:
    ``via``'s path, ``note``, then the new packet's path). In ``send`` (``via.commit``) the
    received packet's own conntrack entry is confirmed here, since the engine will confirm
    the state it gets back -- the new connection's.
    """
    depth = int(via.notes.get("socket_depth", 0))
    if depth >= depth_limit:
        return [(_ONE, via, Verdict("DROP", reason="local proxy loop"))]
    dev = kernel.route(dst)
    src = kernel.iface_address(dev, via.version, dst) if dev != "lo" else dst
    if src is None:
        src = next((ip for ip in kernel.node.ips if (":" in ip) == (via.version == 6)),
                   "::1" if via.version == 6 else "127.0.0.1")
    packet = Packet(src=src, dst=dst, dport=dport, sport=sport, proto=via.proto)
    if via.commit:
        _confirm(kernel, via)
    st = kernel.packet_state(packet, entry="local", commit=via.commit, rng=via.rng)
    st.notes["socket_depth"] = depth + 1
    st.rules = [*via.rules, note]
    # The engine confirms (in send) the state it gets back -- this new connection's.
    return [(p, s, v) for p, s, v, _where in kernel.walk(st)]
