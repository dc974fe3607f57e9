"""The userspace proxier inside the mock kernel: its rules, its sockets, its balancer.

:func:`load` programs a :class:`~backends.mockkernel.MockKernel` with a userspace rendering:

1. the ``iptables`` section (the KUBE-PORTALS-* / KUBE-NODEPORT-* chains and their jumps)
   is loaded like any iptables-save dump, so a trace shows the ``REDIRECT``/``DNAT`` to the
   proxy port;
2. one listening socket per service port is bound in the kernel's socket layer
   (:mod:`backends.mockkernel.localproxy`); a packet that reaches it is *consumed* there;
3. the proxy then opens a NEW connection from the node to the endpoint it picks with
   :class:`~backends.userspace.loadbalancer.LoadBalancerRR`. That connection walks the
   node's OUTPUT/POSTROUTING path on its own conntrack entry, and its source is the address
   routing picks (the node IP, or the pod bridge's for a pod of this node): the endpoint
   never sees the client.

``trace`` shows round robin as equal shares (the rotation starts at a random point of a
shuffled list) and a fresh ClientIP affinity record as probability 1; ``send`` advances the
real rotation, records affinity on the kernel's virtual clock, keeps an established TCP flow
on its endpoint and a UDP client on its endpoint until ``udp_timeout`` of idleness.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from backends.mockkernel.engine import ACCEPT, Branch, PacketState, Verdict
from backends.mockkernel.localproxy import connect, local_sockets
from backends.userspace.loadbalancer import LoadBalancerRR
from backends.userspace.render import ProxyEntry, entries_from_json
from kservice.backend import Rendering

__all__ = ["OWNER", "UDP_IDLE_TIMEOUT", "UserspaceProxyModel", "load"]

OWNER = "kube-proxy (userspace)"
#: ``--udp-timeout`` default (KubeProxyConfiguration ``udpIdleTimeout``): 250ms.
UDP_IDLE_TIMEOUT = 0.25
#: Source ports of the proxy's own connections in ``trace`` (any ephemeral port would do).
_TRACE_SPORT = 50000
_SPORT_RANGE = (50000, 60999)


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


class UserspaceProxyModel:
    """kube-proxy's proxy sockets and balancer, living in one mock kernel."""

    def __init__(self, kernel: Any, listen_ip: str, entries: tuple[ProxyEntry, ...], *,
                 udp_timeout: float = UDP_IDLE_TIMEOUT, seed: int = 0) -> None:
        self.kernel = kernel
        self.listen_ip = listen_ip
        self.udp_timeout = udp_timeout
        self.entries = {e.name: e for e in entries}
        self.lb = LoadBalancerRR(clock=lambda: float(kernel.clock.now), rng=random.Random(seed))
        #: TCP: client connection (proto, src, sport, dst, dport) -> (endpoint, proxy sport).
        self.tcp_flows: dict[tuple[str, str, int, str, int], tuple[str, int]] = {}
        #: UDP: (service, client ip:port) -> [endpoint, proxy sport, last activity].
        self.udp_sessions: dict[tuple[str, str, int], list[Any]] = {}
        self._sport = _SPORT_RANGE[0]
        sockets = local_sockets(kernel)
        sockets.unbind_owner(OWNER)
        for e in entries:
            self.lb.new_service(e.name, e.affinity_timeout)
            self.lb.on_endpoints_update(e.name, e.endpoints)
            sockets.bind(e.protocol, listen_ip, e.proxy_port, OWNER, self._handler(e))

    def _handler(self, e: ProxyEntry) -> Callable[[PacketState], list[Branch]]:
        def handle(st: PacketState) -> list[Branch]:
            return self._receive(e, st)
        return handle

    def _next_sport(self) -> int:
        s = self._sport
        self._sport = s + 1 if s < _SPORT_RANGE[1] else _SPORT_RANGE[0]
        return s

    def _receive(self, e: ProxyEntry, st: PacketState) -> list[Branch]:
        now = float(self.kernel.clock.now)
        proto = e.protocol.lower()
        where = f"{st.dst}:{st.dport}" if ":" not in st.dst else f"[{st.dst}]:{st.dport}"
        head = f"kube-proxy {e.name} {e.protocol} socket {where}"
        # An established flow keeps the backend connection it has.
        if proto == "tcp":
            key = (proto, st.src, st.sport, st.dst, st.dport)
            flow = self.tcp_flows.get(key)
            if flow is not None:
                ep, sport = flow
                return self._dial(st, ep, sport, f"{head}: established connection -> {ep}")
        else:
            ukey = (e.name, st.src, st.sport)
            sess = self.udp_sessions.get(ukey)
            if sess is not None and now - sess[2] < self.udp_timeout:
                if st.commit:
                    sess[2] = now
                return self._dial(st, sess[0], sess[1], f"{head}: UDP session -> {sess[0]}")
        if not self.lb.has_endpoints(e.name):
            if proto == "tcp":
                # TryConnectEndpoints fails; ProxyLoop closes the accepted connection: the
                # client's handshake completed with kube-proxy, then it reads EOF.
                st.rules.append(f"{head}: no endpoints; connection accepted, then closed")
                return [(Fraction(1), st, ACCEPT)]
            st.rules.append(f"{head}: no endpoints; datagram discarded")
            return [(Fraction(1), st, Verdict("DROP", reason="no endpoints"))]
        if not st.commit:
            out: list[Branch] = []
            choices = self.lb.choices(e.name, st.src)
            how = "ClientIP affinity" if len(choices) == 1 and self.lb.sticky_endpoint(
                e.name, st.src) else "round robin"
            for q, ep in choices:
                for p, s2, v in self._dial(st.fork(), ep, _TRACE_SPORT,
                                           f"{head}: {how} -> {ep} ({q})"):
                    out.append((q * p, s2, v))
            return out
        sticky = self.lb.sticky_endpoint(e.name, st.src)
        ep = self.lb.next_endpoint(e.name, st.src)
        how = "ClientIP affinity" if sticky == ep else "round robin"
        sport = self._next_sport()
        if proto == "tcp":
            self.tcp_flows[(proto, st.src, st.sport, st.dst, st.dport)] = (ep, sport)
        else:
            self.udp_sessions[(e.name, st.src, st.sport)] = [ep, sport, now]
        return self._dial(st, ep, sport, f"{head}: {how} -> {ep}")

    def _dial(self, st: PacketState, endpoint: str, sport: int, note: str) -> list[Branch]:
        ip, port = _split(endpoint)
        return connect(self.kernel, st, dst=ip, dport=port, sport=sport, note=note)


def load(kernel: Any, rendering: Rendering) -> UserspaceProxyModel:
    """Program ``kernel`` with a userspace ``rendering``; returns the proxy model
    (also kept as ``kernel.userspace_proxy``)."""
    family, listen, _host, entries = entries_from_json(rendering.section("json"))
    kernel.load_iptables_save(rendering.section("iptables"), family,
                              source="userspace iptables")
    model = UserspaceProxyModel(kernel, listen, entries)
    kernel.userspace_proxy = model
    return model
