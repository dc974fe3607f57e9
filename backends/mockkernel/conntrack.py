"""Kernel state on one virtual clock: conntrack table, ``xt_recent`` lists.

Nothing here reads wall time: :class:`VirtualClock` advances only when told
(``kernel.clock.advance(seconds)``), so timeouts are reproducible in tests.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from backends.mockkernel.engine import PacketState

__all__ = ["CONNTRACK_TIMEOUTS", "ConntrackEntry", "ConntrackTable", "RecentLists", "VirtualClock"]

#: Conntrack timeouts in seconds: (unreplied, replied). Kernel defaults
#: (``nf_conntrack_{tcp,udp,sctp}_timeout_*``) with kube-proxy's settings applied:
#: kube-proxy sets ``nf_conntrack_tcp_timeout_established`` to
#: ``conntrack.tcpEstablishedTimeout`` (default 24h = 86400). A TCP flow that was never
#: answered sits in SYN_SENT (120 s); UDP is 30 s until answered, then 120 s
#: (``udp_timeout_stream``); SCTP ESTABLISHED is 210 s, COOKIE_WAIT 3 s.
CONNTRACK_TIMEOUTS: dict[str, tuple[float, float]] = {
    "tcp": (120.0, 86400.0),
    "udp": (30.0, 120.0),
    "sctp": (3.0, 210.0),
}


class VirtualClock:
    """Seconds since the kernel was created; moves only on :meth:`advance`."""

    def __init__(self) -> None:
        self.now: float = 0.0

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        self.now += seconds
        return self.now


@attrs.define(slots=True, eq=False)
class ConntrackEntry:
    """One connection: the original tuple and the NAT bound to it on its first packet."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    #: (ip, port) the destination was rewritten to, or None (null binding).
    dnat: tuple[str, int] | None = None
    #: (ip, port) the source was rewritten to, or None.
    snat: tuple[str, int] | None = None
    masqueraded: bool = False
    mark: int = 0
    seen_reply: bool = False
    confirmed: bool = False
    created: float = 0.0
    expires: float = 0.0

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return (self.proto, self.src, self.sport, self.dst, self.dport)

    def describe(self) -> str:
        """``conntrack -L``-like one-liner."""
        rd, rdp = self.dnat or (self.dst, self.dport)
        rs, rsp = self.snat or (self.src, self.sport)
        flags = "" if self.seen_reply else " [UNREPLIED]"
        return (f"{self.proto} src={self.src} dst={self.dst} sport={self.sport} "
                f"dport={self.dport}{flags} src={rd} dst={rs} sport={rdp} dport={rsp}"
                f" mark={self.mark}")


class ConntrackTable:
    """The conntrack table, keyed by the original-direction tuple."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._entries: dict[tuple[str, str, int, str, int], ConntrackEntry] = {}

    def lookup(self, proto: str, src: str, sport: int, dst: str, dport: int
               ) -> ConntrackEntry | None:
        e = self._entries.get((proto, src, sport, dst, dport))
        if e is None:
            return None
        if e.expires < self.clock.now:
            # Expired entries are garbage-collected lazily, as the kernel's gc worker does.
            del self._entries[e.key]
            return None
        return e

    def confirm(self, entry: ConntrackEntry, *, answered: bool) -> None:
        """Insert (first packet) or refresh an entry after its packet left the box."""
        entry.confirmed = True
        if answered:
            entry.seen_reply = True
        unreplied, replied = CONNTRACK_TIMEOUTS.get(entry.proto, (30.0, 120.0))
        entry.expires = self.clock.now + (replied if entry.seen_reply else unreplied)
        self._entries[entry.key] = entry

    def entries(self) -> list[ConntrackEntry]:
        now = self.clock.now
        return [e for e in self._entries.values() if e.expires >= now]

    def flush(self, *, dst: str | None = None, proto: str | None = None,
              nat_dst: str | None = None) -> int:
        """``conntrack -D``: delete matching entries; returns how many.

        kube-proxy clears UDP entries of a removed endpoint with ``nat_dst=<endpoint ip>``.
        """
        gone = [k for k, e in self._entries.items()
                if (dst is None or e.dst == dst) and (proto is None or e.proto == proto)
                and (nat_dst is None or (e.dnat is not None and e.dnat[0] == nat_dst))]
        for k in gone:
            del self._entries[k]
        return len(gone)

    def __len__(self) -> int:
        return len(self.entries())


#: xt_recent's ip_pkt_list_tot default: timestamps kept per address.
RECENT_PKT_LIST_TOT = 20


class RecentLists:
    """``xt_recent`` lists: name -> address -> timestamps (oldest first)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.lists: dict[str, dict[int, list[float]]] = {}

    def match(self, st: PacketState, *, name: str, cmd: str, invert: bool,
              seconds: int | None, hitcount: int, reap: bool, rdest: bool,
              mask: int | None) -> bool:
        """Evaluate one ``-m recent`` match as ``recent_mt`` does (writes only on commit)."""
        addr = st.dst_int if rdest else st.src_int
        if mask is not None:
            addr &= mask
        elif st.version == 4:
            addr &= 0xFFFFFFFF
        now = self.clock.now
        table = self.lists.setdefault(name, {}) if st.commit else self.lists.get(name, {})
        ret = invert
        stamps = table.get(addr)
        if cmd == "set":
            if st.commit:
                lst = table.setdefault(addr, [])
                lst.append(now)
                del lst[:-RECENT_PKT_LIST_TOT]
            return not ret
        if stamps is None:
            return ret
        if cmd == "remove":
            if st.commit:
                del table[addr]
            return not ret
        hits = 0
        limit = now - seconds if seconds else None
        for t in stamps:
            # recent_mt: "if (info->seconds && time_after(time, e->stamps[i])) continue"
            if limit is not None and limit > t:
                continue
            hits += 1
            if not hitcount or hits >= hitcount:
                ret = not ret
                break
        if st.commit:
            if reap and limit is not None:
                kept = [t for t in stamps if t >= limit]
                if kept:
                    table[addr] = kept
                else:
                    del table[addr]
                    stamps = kept
            if cmd == "update" and ret != invert:
                lst = table.setdefault(addr, stamps)
                lst.append(now)
                del lst[:-RECENT_PKT_LIST_TOT]
        return ret

    def sync_names(self, names: set[str]) -> None:
        """The lists after a rule load: one per name the rules use (a new one empty), every
        other list freed with its entries."""
        for name in [n for n in self.lists if n not in names]:
            del self.lists[name]
        for name in names:
            self.lists.setdefault(name, {})

    def addresses(self, name: str) -> list[str]:
        out = []
        for a in self.lists.get(name, {}):
            out.append(str(ipaddress.ip_address(a)) if a > 0xFFFFFFFF else
                       str(ipaddress.IPv4Address(a)))
        return out
