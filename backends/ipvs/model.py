"""The values IPVS mode programs on a node: virtual servers, real servers, ipsets.

These mirror kube-proxy's ``pkg/proxy/ipvs/util`` ``VirtualServer``/``RealServer`` and
``pkg/proxy/ipvs/ipset`` ``IPSet``/``Entry`` types, as frozen values. Their ``key``
strings are exactly upstream's ``String()`` methods, because kube-proxy uses those strings
as identities when it diffs the kernel's state against the wanted state (reference §2.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from kservice._frozen import FrozenDict, freeze
from kservice.proxy.types import join_host_port

__all__ = [
    "FLAG_HASHED",
    "FLAG_PERSISTENT",
    "FLAG_SOURCE_HASH",
    "IPSet",
    "IPVSNode",
    "RealServer",
    "VirtualServer",
]

#: IP_VS_SVC_F_PERSISTENT: session affinity (ClientIP).
FLAG_PERSISTENT = 0x1
#: IP_VS_SVC_F_HASHED: set by the kernel on every service; kube-proxy strips it on read.
FLAG_HASHED = 0x2
#: IP_VS_SVC_F_SCHED2, what ``mh`` reads as "mh-port" (kube-proxy sets it for ``mh``).
FLAG_SOURCE_HASH = 0x10

def _entries(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _services(value: Mapping[str, VirtualServer]) -> FrozenDict[str, VirtualServer]:
    return freeze(value)


def _dests(value: Mapping[str, tuple[RealServer, ...]]) -> FrozenDict[str, tuple[RealServer, ...]]:
    return freeze(value)


#: IPPROTO numbers: ipvsadm sorts services by these, not by name.
PROTO_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}


@attrs.frozen(order=False)
class VirtualServer:
    """One IPVS virtual service: (address, port, protocol) plus its scheduling settings."""

    address: str
    port: int
    protocol: str  # upper case: TCP, UDP, SCTP
    scheduler: str = "rr"
    flags: int = 0
    #: Persistence timeout in seconds (only meaningful with FLAG_PERSISTENT).
    timeout: int = 0

    @property
    def key(self) -> str:
        """``VirtualServer.String()``: ``ip:port/PROTO`` -- kube-proxy's identity for a VS."""
        return f"{join_host_port(self.address, self.port)}/{self.protocol}"

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def ipv6(self) -> bool:
        return ":" in self.address


@attrs.frozen(order=False)
class RealServer:
    """One destination of a virtual service. kube-proxy always uses Masq and weight 1."""

    address: str
    port: int
    weight: int = 1

    @property
    def key(self) -> str:
        """``RealServer.String()``: ``ip:port`` (JoinHostPort)."""
        return join_host_port(self.address, self.port)


@attrs.frozen
class IPSet:
    """One ipset as kube-proxy declares it (``ipsetInfo`` row) with its wanted entries.

    ``comment`` is not an ipset comment: kube-proxy only uses it in the ``-m comment`` of
    the iptables rule that matches the set (reference §2.6).
    """

    name: str
    type: str
    comment: str
    #: ``inet`` or ``inet6`` (ignored for bitmap types).
    family: str = "inet"
    entries: frozenset[str] = attrs.field(default=frozenset(), converter=_entries)

    @property
    def is_bitmap(self) -> bool:
        return self.type.startswith("bitmap:")

    def create_args(self) -> str:
        """The create options as ``ipset save`` prints them (and kube-proxy passes them)."""
        if self.is_bitmap:
            return f"{self.type} range 0-65535"
        return f"{self.type} family {self.family} hashsize 1024 maxelem 65536"


@attrs.frozen
class IPVSNode:
    """Everything IPVS mode wants on one node for one IP family after a full sync."""

    node: str
    family: str
    #: VS key -> virtual server, in the order kservice synced them (sorted service ports).
    services: FrozenDict[str, VirtualServer] = attrs.field(factory=FrozenDict, converter=_services)
    #: VS key -> destinations (sorted by key).
    destinations: FrozenDict[str, tuple[RealServer, ...]] = attrs.field(
        factory=FrozenDict, converter=_dests
    )
    #: Addresses bound on kube-ipvs0, in binding order.
    bound: tuple[str, ...] = ()
    #: Every ipset in ``ipsetInfo`` order, with its entries.
    ipsets: tuple[IPSet, ...] = ()
    #: The iptables-restore payload (nat then filter), exactly as kube-proxy writes it.
    iptables_restore: str = ""
    #: (sysctl path, value) kube-proxy ensures when the proxier starts, in its order.
    sysctls: tuple[tuple[str, str], ...] = ()
    #: ``ipvsadm --set tcp tcpfin udp`` seconds, when any configured timeout is > 0.
    timeouts: tuple[int, int, int] | None = None

    def ipset(self, name: str) -> IPSet:
        for s in self.ipsets:
            if s.name == name:
                return s
        raise KeyError(name)
