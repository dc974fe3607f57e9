"""The mock kernel's IPVS: virtual/real servers, schedulers, persistence, the LOCAL_IN hook.

State comes from ``ipvsadm`` commands (``-A -E -D -a -e -d -C``) or ``ipvsadm -Sn`` text and
prints back as ``-Sn``/``-Ln`` through :mod:`backends.ipvs.formats`.

Packet path (``net/netfilter/ipvs/ip_vs_core.c``): a packet for a local address reaches
``LOCAL_IN`` (after filter INPUT, priority ``NF_IP_PRI_NAT_SRC - 1``); when its
(protocol, daddr, dport) is a virtual service, IPVS picks a destination, rewrites the
destination (NAT/"Masq" forwarding) and ``ip_vs_nat_xmit`` sends it out again through
``LOCAL_OUT``/``POSTROUTING``. Locally generated packets are caught at ``LOCAL_OUT``
(``NF_IP_PRI_NAT_DST + 2``). A service with no usable destination answers ICMP port
unreachable (``ip_vs_leave``): the trace verdict is ``REJECT``.

Schedulers
----------
``trace`` is a what-if: for a new connection it reports each destination's **exact
long-run share** (Fractions) -- ``rr``/``lc``: equal among destinations with weight > 0;
``wrr``/``wlc``/``sed``/``nq``: proportional to weight (the limit of the kernel algorithms
when connections are opened one after another and stay open). ``sh`` and ``dh`` are
deterministic per packet (source / destination address hash into 256 buckets) and report
the one destination the kernel would use. ``send`` (``state.commit``) runs the kernel's
stateful algorithm itself: the ``rr`` cursor, the ``wrr`` current-weight cycle, connection
counters for ``lc``/``wlc``/``sed``/``nq``. ``mh`` (Maglev with keyed siphash permutations)
and the rest are refused by name rather than approximated.

Persistence (``-p T``, kube-proxy's sessionAffinity ClientIP): a template per (service,
client address) sends the client's new connections to the same destination while the
template lives; every use restarts its ``T`` second timer. Templates whose destination
has weight 0 expire at once (kube-proxy sets ``expire_quiescent_template=1``).
Weight 0 destinations get no new connections; existing connections keep them.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import attrs

from backends.ipvs.formats import ipvsadm_list, ipvsadm_save
from backends.ipvs.model import (
    FLAG_PERSISTENT,
    FLAG_SOURCE_HASH,
    RealServer,
    VirtualServer,
)
from backends.mockkernel.engine import (
    ONE,
    PRIORITY,
    Branch,
    PacketState,
    Verdict,
    command_argv,
)
from kservice.errors import BackendError, RuleParseError, UnsupportedRule
from kservice.proxy.types import join_host_port

__all__ = [
    "IPVS",
    "SCHEDULERS",
    "IPVSError",
    "MockDest",
    "MockService",
    "ipvs_match",
]

#: Schedulers the mock implements. Others exist in the kernel (lblc, lblcr, fo, ovf,
#: twos, mh) and are refused with UnsupportedRule.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh")

#: Default connection timeouts of IPVS (``ipvsadm --set`` 900 120 300): how long a
#: connection entry keeps sending the flow to its destination after its last packet.
CONN_TIMEOUT = {"tcp": 900, "udp": 300, "sctp": 900}

#: ipvsadm's default persistence timeout when ``-p`` has no value.
DEFAULT_PERSISTENT_TIMEOUT = 300

_TAB_BITS = 8  # IP_VS_SH_TAB_BITS / IP_VS_DH_TAB_BITS
_TAB_SIZE = 1 << _TAB_BITS
_GOLDEN_RATIO_32 = 0x61C88647


class IPVSError(BackendError):
    """An ipvsadm command the kernel refuses (no such service, already exists ...)."""


@attrs.define
class MockDest:
    address: str
    port: int
    weight: int = 1
    #: Forwarding method; kube-proxy only uses Masq (NAT).
    fwd: str = "Masq"
    active: int = 0
    inactive: int = 0

    @property
    def key(self) -> str:
        return join_host_port(self.address, self.port)

    @property
    def available(self) -> bool:
        return self.weight > 0


@attrs.define
class MockService:
    vs: VirtualServer
    #: In kernel list order: ``ip_vs_add_dest`` puts new destinations at the *head*.
    dests: list[MockDest] = attrs.field(factory=list)
    #: rr: key of the last chosen destination; wrr: (index of last, current weight).
    rr_last: str | None = None
    wrr_index: int = -1
    wrr_cw: int = 0
    #: Persistence templates: client address -> (dest key, expiry time).
    templates: dict[str, tuple[str, float]] = attrs.field(factory=dict)

    def dest(self, key: str) -> MockDest | None:
        for d in self.dests:
            if d.key == key:
                return d
        return None


def _ip_u32(ip: str) -> int:
    """The address folded to 32 bits as the sh/dh hash does (IPv6: XOR of the words)."""
    import ipaddress

    n = int(ipaddress.ip_address(ip))
    if ":" in ip:
        return (n >> 96 ^ n >> 64 ^ n >> 32 ^ n) & 0xFFFFFFFF
    return n


def _hash_32(val: int) -> int:
    """``hash_32(val, 8)`` of include/linux/hash.h: multiply by GOLDEN_RATIO_32, top bits."""
    return ((val * _GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - _TAB_BITS)


def sh_buckets(dests: list[MockDest]) -> list[MockDest | None]:
    """``ip_vs_sh_reassign``: walk the list, each destination taking ``weight`` consecutive
    buckets (at least one, so a weight-0 destination still owns a bucket)."""
    if not dests:
        return [None] * _TAB_SIZE
    out: list[MockDest | None] = []
    i, count = 0, 0
    for _ in range(_TAB_SIZE):
        d = dests[i]
        out.append(d)
        count += 1
        if count >= d.weight:
            i = (i + 1) % len(dests)
            count = 0
    return out


def dh_buckets(dests: list[MockDest]) -> list[MockDest | None]:
    """``ip_vs_dh_reassign``: one bucket per destination in turn, weights ignored."""
    if not dests:
        return [None] * _TAB_SIZE
    return [dests[i % len(dests)] for i in range(_TAB_SIZE)]


def _sh_index(src: str, sport: int, port_flag: bool) -> int:
    # ip_vs_sh_hashkey: hash_32(ntohs(port) + ntohl(addr_fold)); port is 0 without
    # the sh-port flag (IP_VS_SVC_F_SCHED_SH_PORT = SCHED2).
    port = sport if port_flag else 0
    return _hash_32((port + _ip_u32(src)) & 0xFFFFFFFF) & (_TAB_SIZE - 1)


def _dh_index(dst: str) -> int:
    # ip_vs_dh_hashkey: (ntohl(addr_fold) * 2654435761UL) & IP_VS_DH_TAB_MASK
    return (_ip_u32(dst) * 2654435761) & (_TAB_SIZE - 1)


class IPVS:
    """IPVS of one mock kernel: the table, and the hook program that applies it."""

    name = "ipvs"
    is_nat = False

    def __init__(self, clock: Any = None) -> None:
        self.services: dict[str, MockService] = {}
        self.hooks: dict[str, int] = {"INPUT": PRIORITY["ipvs_in"],
                                      "OUTPUT": PRIORITY["ipvs_out"]}
        self.clock = clock
        #: Connection timeouts (``ipvsadm --set``); tcpfin is kept for completeness.
        self.timeouts: dict[str, int] = {**CONN_TIMEOUT, "tcpfin": 120}
        #: (proto, client ip, client port, vaddr, vport) -> (vs key, dest key, expiry).
        self.conns: dict[tuple[str, str, int, str, int], tuple[str, str, float]] = {}

    # ----------------------------------------------------------------- table API

    def _now(self, state: PacketState | None = None) -> float:
        clock = self.clock
        if clock is None and state is not None:
            clock = getattr(state.kernel, "clock", None)
        return float(getattr(clock, "now", 0.0)) if clock is not None else 0.0

    def get(self, key: str) -> MockService:
        try:
            return self.services[key]
        except KeyError:
            raise IPVSError(f"No such service: {key}") from None

    def add_service(self, vs: VirtualServer) -> None:
        if vs.key in self.services:
            raise IPVSError(f"Service already exists: {vs.key}")
        self._check_sched(vs.scheduler)
        self.services[vs.key] = MockService(vs)

    def edit_service(self, vs: VirtualServer) -> None:
        svc = self.get(vs.key)
        self._check_sched(vs.scheduler)
        if svc.vs.scheduler != vs.scheduler:
            svc.rr_last, svc.wrr_index, svc.wrr_cw = None, -1, 0
        svc.vs = vs
        if not vs.persistent:
            svc.templates.clear()

    def delete_service(self, key: str) -> None:
        self.get(key)
        del self.services[key]
        self.conns = {k: v for k, v in self.conns.items() if v[0] != key}

    def add_dest(self, key: str, rs: RealServer, fwd: str = "Masq") -> None:
        svc = self.get(key)
        if svc.dest(rs.key) is not None:
            raise IPVSError(f"Destination already exists: {rs.key} in {key}")
        svc.dests.insert(0, MockDest(rs.address, rs.port, rs.weight, fwd))
        self._wrr_changed(svc)

    def edit_dest(self, key: str, rs: RealServer, fwd: str = "Masq") -> None:
        svc = self.get(key)
        d = svc.dest(rs.key)
        if d is None:
            raise IPVSError(f"No such destination: {rs.key} in {key}")
        d.weight, d.fwd = rs.weight, fwd
        self._wrr_changed(svc)

    def delete_dest(self, key: str, rs_key: str) -> None:
        svc = self.get(key)
        d = svc.dest(rs_key)
        if d is None:
            raise IPVSError(f"No such destination: {rs_key} in {key}")
        idx = svc.dests.index(d)
        svc.dests.remove(d)
        if svc.rr_last == rs_key:
            # ip_vs_rr_del_dest moves the cursor to the previous list entry.
            svc.rr_last = svc.dests[idx - 1].key if idx > 0 and svc.dests else None
        self._wrr_changed(svc)
        # expire_nodest_conn=1: connections to a removed destination are dropped.
        self.conns = {k: v for k, v in self.conns.items() if (v[0], v[1]) != (key, rs_key)}

    def clear(self) -> None:
        self.services.clear()
        self.conns.clear()

    @staticmethod
    def _check_sched(name: str) -> None:
        if name not in SCHEDULERS:
            raise UnsupportedRule(
                f"IPVS scheduler {name!r} is not implemented by the mock kernel "
                f"(implemented: {', '.join(SCHEDULERS)}); mh needs the kernel's keyed "
                "siphash Maglev permutations, which are not reproduced", option="-s")

    # ----------------------------------------------------------------- ipvsadm

    def command(self, line: str) -> None:
        """Run one ``ipvsadm`` command line (the ``ipvsadm`` word optional)."""
        argv = command_argv(line, "ipvsadm")
        if not argv:
            return
        op = argv[0]
        if op == "--set":
            # ipvsadm --set tcp tcpfin udp: connection timeouts; 0 leaves a value unchanged.
            try:
                tcp, fin, udp = (int(x) for x in argv[1:4])
            except ValueError:
                raise RuleParseError("--set takes three numbers: tcp tcpfin udp", text=line,
                                     option=op) from None
            for proto, value in (("tcp", tcp), ("udp", udp)):
                if value:
                    self.timeouts[proto] = value
            if fin:
                self.timeouts["tcpfin"] = fin
            return
        opts = _parse_opts(argv[1:], line)
        if op in ("-C", "--clear"):
            self.clear()
            return
        if "svc" not in opts:
            raise RuleParseError("missing service (-t/-u/--sctp-service)", text=line,
                                 option=op)
        proto, addr, port = opts["svc"]
        key = f"{join_host_port(addr, port)}/{proto}"
        if op in ("-A", "--add-service", "-E", "--edit-service"):
            flags = 0
            timeout = 0
            if "persistent" in opts:
                flags |= FLAG_PERSISTENT
                timeout = opts["persistent"]
            if opts.get("sched_flags") in ("mh-port", "sh-port", "flag-2"):
                flags |= FLAG_SOURCE_HASH
            vs = VirtualServer(addr, port, proto, opts.get("sched", "wlc"), flags, timeout)
            (self.add_service if op in ("-A", "--add-service") else self.edit_service)(vs)
        elif op in ("-D", "--delete-service"):
            self.delete_service(key)
        elif op in ("-a", "--add-server", "-e", "--edit-server"):
            if "real" not in opts:
                raise RuleParseError("missing -r <server>", text=line, option=op)
            raddr, rport = opts["real"]
            if opts.get("fwd", "Masq") != "Masq":
                raise UnsupportedRule(f"forwarding method {opts['fwd']} is not implemented "
                                      "(kube-proxy uses -m, masquerading)", text=line,
                                      option=opts["fwd"])
            rs = RealServer(raddr, rport or port, opts.get("weight", 1))
            (self.add_dest if op in ("-a", "--add-server") else self.edit_dest)(key, rs)
        elif op in ("-d", "--delete-server"):
            if "real" not in opts:
                raise RuleParseError("missing -r <server>", text=line, option=op)
            raddr, rport = opts["real"]
            self.delete_dest(key, join_host_port(raddr, rport or port))
        else:
            raise UnsupportedRule(f"ipvsadm command {op!r} is not implemented", text=line,
                                  option=op)

    def restore(self, text: str, source: str = "ipvsadm-restore") -> None:
        """``ipvsadm -R``: ``-Sn`` lines (or any commands), one per line."""
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                self.command(line)
            except RuleParseError as exc:
                exc.line, exc.source, exc.text = lineno, source, raw
                raise
            except BackendError as exc:
                raise RuleParseError(str(exc), line=lineno, text=raw, source=source) from exc

    def sync_to(self, text: str, source: str = "ipvsadm -Sn") -> None:
        """Reach the table in ``text`` (``-Sn`` form) by changing only what differs.

        What kube-proxy's reconciliation does through netlink: virtual servers and
        destinations that stay keep their state -- persistence templates, connections, the
        scheduler's cursor -- so ClientIP affinity survives a sync (a wipe and reload would
        forget it).
        """
        want = IPVS(self.clock)
        want.restore(text, source=source)
        for key in [k for k in self.services if k not in want.services]:
            self.delete_service(key)
        for key, target in want.services.items():
            if key not in self.services:
                self.add_service(target.vs)
            elif self.services[key].vs != target.vs:
                self.edit_service(target.vs)
            svc = self.services[key]
            wanted = {d.key: d for d in target.dests}
            for d in list(svc.dests):
                if d.key not in wanted:
                    self.delete_dest(key, d.key)
            # Add in reverse so the kernel's head insertion ends in the saved order.
            for d in reversed(target.dests):
                have = svc.dest(d.key)
                rs = RealServer(d.address, d.port, d.weight)
                if have is None:
                    self.add_dest(key, rs, d.fwd)
                elif (have.weight, have.fwd) != (d.weight, d.fwd):
                    self.edit_dest(key, rs, d.fwd)

    def _snapshot(self) -> tuple[dict[str, VirtualServer], dict[str, list[RealServer]]]:
        services = {k: s.vs for k, s in self.services.items()}
        dests = {k: [RealServer(d.address, d.port, d.weight) for d in s.dests]
                 for k, s in self.services.items()}
        return services, dests

    def save(self) -> str:
        """``ipvsadm -S -n``."""
        return ipvsadm_save(*self._snapshot())

    def list_text(self) -> str:
        """``ipvsadm -L -n`` with the live connection counters."""
        counters = {(k, d.key): (d.active, d.inactive)
                    for k, s in self.services.items() for d in s.dests}
        return ipvsadm_list(*self._snapshot(), counters=counters)

    # ----------------------------------------------------------------- scheduling

    def lookup(self, proto: str, ip: str, port: int) -> MockService | None:
        return self.services.get(f"{join_host_port(ip, port)}/{proto.upper()}")

    def long_run_shares(self, svc: MockService) -> dict[str, Fraction]:
        """Each destination's exact share of new connections in the long run (module doc);
        for sh/dh the share of hash buckets, i.e. of uniformly spread client/target IPs."""
        sched = svc.vs.scheduler
        self._check_sched(sched)
        avail = [d for d in svc.dests if d.available]
        if sched in ("sh", "dh"):
            table = sh_buckets(svc.dests) if sched == "sh" else dh_buckets(svc.dests)
            counts: dict[str, int] = {}
            for d in table:
                if d is not None and d.available:
                    counts[d.key] = counts.get(d.key, 0) + 1
            return {k: Fraction(v, _TAB_SIZE) for k, v in counts.items()}
        if not avail:
            return {}
        if sched in ("rr", "lc"):
            return {d.key: Fraction(1, len(avail)) for d in avail}
        total = sum(d.weight for d in avail)
        return {d.key: Fraction(d.weight, total) for d in avail}

    def _trace_choice(self, svc: MockService, state: PacketState) -> list[tuple[Fraction, MockDest]]:
        sched = svc.vs.scheduler
        self._check_sched(sched)
        if sched in ("sh", "dh"):
            d = self._hash_pick(svc, state)
            return [(ONE, d)] if d is not None else []
        shares = self.long_run_shares(svc)
        return [(shares[d.key], d) for d in svc.dests if d.key in shares]

    def _hash_pick(self, svc: MockService, state: PacketState) -> MockDest | None:
        if svc.vs.scheduler == "sh":
            idx = _sh_index(state.src, state.sport, bool(svc.vs.flags & FLAG_SOURCE_HASH))
            d = sh_buckets(svc.dests)[idx]
        else:
            d = dh_buckets(svc.dests)[_dh_index(state.dst)]
        # Without the fallback flag an unavailable bucket owner means "no destination".
        return d if d is not None and d.available else None

    def schedule(self, svc: MockService, state: PacketState) -> MockDest | None:
        """The kernel's stateful pick for one new connection (updates the cursor)."""
        sched = svc.vs.scheduler
        self._check_sched(sched)
        dests = svc.dests
        if sched in ("sh", "dh"):
            return self._hash_pick(svc, state)
        if sched == "rr":
            n = len(dests)
            start = 0
            if svc.rr_last is not None:
                keys = [d.key for d in dests]
                if svc.rr_last in keys:
                    start = keys.index(svc.rr_last) + 1
            for i in range(n):
                d = dests[(start + i) % n]
                if d.available:
                    svc.rr_last = d.key
                    return d
            return None
        if sched == "wrr":
            return self._wrr(svc)
        best: MockDest | None = None
        for d in dests:
            if not d.available:
                continue
            if sched == "nq" and d.active == 0:
                return d
            if best is None:
                best = d
                continue
            if sched == "lc":
                if _overhead(d) < _overhead(best):
                    best = d
            else:
                oh = (lambda x: _overhead(x)) if sched == "wlc" else (lambda x: x.active + 1)
                if oh(best) * d.weight > oh(d) * best.weight:
                    best = d
        return best

    @staticmethod
    def _wrr_params(svc: MockService) -> tuple[int, int]:
        """(di, mw): gcd of the positive weights (1 if none) and max weight - (di - 1)."""
        positive = [d.weight for d in svc.dests if d.weight > 0]
        di = math.gcd(*positive) if positive else 1
        mw = max((d.weight for d in svc.dests), default=0)
        return di, (mw - (di - 1) if mw else 0)

    def _wrr_changed(self, svc: MockService) -> None:
        """``ip_vs_wrr_dest_changed``: cursor back to the list head, cw re-aligned."""
        di, mw = self._wrr_params(svc)
        svc.wrr_index = -1
        if svc.wrr_cw > mw or not svc.wrr_cw:
            svc.wrr_cw = mw
        elif di > 1:
            svc.wrr_cw = (svc.wrr_cw // di) * di + 1

    def _wrr(self, svc: MockService) -> MockDest | None:
        """``ip_vs_wrr_schedule``: interleaved weighted round robin over the list."""
        dests = svc.dests
        di, mw = self._wrr_params(svc)
        if mw == 0:
            return None
        if svc.wrr_cw <= 0 or svc.wrr_cw > mw:
            svc.wrr_cw = mw
        last = svc.wrr_index  # -1 is the list head
        stop: int | None = None
        last_pass = restarted = False
        i = last
        while True:
            for j in range(i + 1, len(dests)):
                if dests[j].weight >= svc.wrr_cw:
                    svc.wrr_index = j
                    return dests[j]
                if j == stop:
                    return None
            i = -1
            svc.wrr_cw -= di
            if svc.wrr_cw <= 0:
                svc.wrr_cw = mw
                if last_pass or last == -1:
                    return None
                restarted = True
            last_pass = svc.wrr_cw <= di
            if last_pass and restarted and last != -1:
                stop = last

    # ----------------------------------------------------------------- hook program

    def evaluate(self, hook: str, state: PacketState) -> list[Branch]:
        accept = Verdict("ACCEPT")
        if state.proto not in CONN_TIMEOUT or "ipvs" in state.notes:
            return [(ONE, state, accept)]
        svc = self.lookup(state.proto, state.dst, state.dport)
        if svc is None:
            return [(ONE, state, accept)]
        now = self._now(state)
        vs = svc.vs
        where = "LOCAL_IN" if hook == "INPUT" else "LOCAL_OUT"
        label = f"ipvs {where} {vs.protocol}  {join_host_port(vs.address, vs.port)} {vs.scheduler}"
        conn_key = (state.proto, state.src, state.sport, state.dst, state.dport)
        chosen: list[tuple[Fraction, MockDest]] = []
        how = ""
        conn = self.conns.get(conn_key)
        if conn is not None and conn[2] > now and svc.dest(conn[1]) is not None:
            chosen = [(ONE, svc.dest(conn[1]))]  # type: ignore[list-item]
            how = "existing connection"
        elif vs.persistent:
            tpl = svc.templates.get(state.src)
            if tpl is not None and tpl[1] > now:
                d = svc.dest(tpl[0])
                if d is not None and d.available:
                    chosen = [(ONE, d)]
                    how = f"persistence template (expires in {tpl[1] - now:g}s)"
                elif state.commit:
                    del svc.templates[state.src]  # expire_quiescent_template
        if not chosen:
            if state.commit:
                d = self.schedule(svc, state)
                chosen = [(ONE, d)] if d is not None else []
                how = "scheduled"
            else:
                chosen = self._trace_choice(svc, state)
                how = "long-run share" if vs.scheduler not in ("sh", "dh") else "hash"
        if not chosen:
            state.rules.append(f"{label} -> no destination available: ICMP port unreachable")
            return [(ONE, state, Verdict("REJECT", reason="ipvs: no destination"))]
        out: list[Branch] = []
        verdict = Verdict("REROUTE", reinject="OUTPUT") if hook == "INPUT" else accept
        for p, d in chosen:
            st = state.fork() if len(chosen) > 1 else state
            st.notes["ipvs"] = {"vaddr": vs.address, "vport": vs.port,
                                "vproto": vs.protocol.lower(), "vdir": "ORIGINAL",
                                "vmethod": "MASQ", "dest": d.key}
            st.rules.append(f"{label} -> {d.key} Masq w{d.weight} ({how})")
            if st.commit:
                self._commit(svc, d, conn_key, st, now)
            st.set_dst(d.address, d.port)
            out.append((p, st, verdict))
        return out

    def _commit(self, svc: MockService, d: MockDest, conn_key: tuple[str, str, int, str, int],
                state: PacketState, now: float) -> None:
        if conn_key not in self.conns:
            if state.proto == "tcp":
                d.active += 1
            else:
                d.inactive += 1
        self.conns[conn_key] = (svc.vs.key, d.key, now + self.timeouts[state.proto])
        if svc.vs.persistent:
            svc.templates[state.src] = (d.key, now + svc.vs.timeout)


def _overhead(d: MockDest) -> int:
    # ip_vs_dest_conn_overhead: active connections weigh 256 times an inactive one.
    return (d.active << 8) + d.inactive


def _split_hostport(text: str, line: str) -> tuple[str, int]:
    import ipaddress

    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 0
        elif text.count(":") == 1:
            host, p = text.split(":")
            port = int(p)
        else:
            host, port = text, 0
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise RuleParseError(f"illegal address {text!r}", text=line) from exc
    return host, port


def _parse_opts(args: list[str], line: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    it = iter(range(len(args)))
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a in ("-t", "--tcp-service", "-u", "--udp-service", "--sctp-service"):
            if nxt is None:
                raise RuleParseError(f"{a} needs an address", text=line, option=a)
            proto = "TCP" if a in ("-t", "--tcp-service") else (
                "UDP" if a in ("-u", "--udp-service") else "SCTP")
            host, port = _split_hostport(nxt, line)
            opts["svc"] = (proto, host, port)
            i += 2
        elif a in ("-s", "--scheduler"):
            if nxt is None:
                raise RuleParseError("-s needs a scheduler", text=line, option=a)
            opts["sched"] = nxt
            i += 2
        elif a in ("-p", "--persistent"):
            if nxt is not None and nxt.isdigit():
                opts["persistent"] = int(nxt)
                i += 2
            else:
                opts["persistent"] = DEFAULT_PERSISTENT_TIMEOUT
                i += 1
        elif a in ("-b", "--sched-flags"):
            opts["sched_flags"] = nxt
            i += 2
        elif a in ("-r", "--real-server"):
            if nxt is None:
                raise RuleParseError("-r needs an address", text=line, option=a)
            opts["real"] = _split_hostport(nxt, line)
            i += 2
        elif a in ("-w", "--weight"):
            try:
                opts["weight"] = int(nxt or "")
            except ValueError:
                raise RuleParseError(f"illegal weight {nxt!r}", text=line, option=a) from None
            if not 0 <= opts["weight"] <= 65535:
                raise RuleParseError(f"illegal weight {nxt!r}", text=line, option=a)
            i += 2
        elif a in ("-m", "--masquerading"):
            opts["fwd"] = "Masq"
            i += 1
        elif a in ("-g", "--gatewaying"):
            opts["fwd"] = "Route"
            i += 1
        elif a in ("-i", "--ipip"):
            opts["fwd"] = "Tunnel"
            i += 1
        elif a in ("-n", "--numeric"):
            i += 1
        else:
            raise UnsupportedRule(f"ipvsadm option {a!r} is not implemented", text=line,
                                  option=a)
    del it
    return opts


def ipvs_match(state: PacketState, *, ipvs: bool = False, vproto: str | None = None,
               vaddr: str | None = None, vport: int | None = None, vdir: str | None = None,
               vmethod: str | None = None, negate: frozenset[str] = frozenset()) -> bool:
    """The iptables ``-m ipvs`` match (xt_ipvs) for one packet, for the netfilter parser.

    A packet "is IPVS" once the IPVS hook scheduled it: :meth:`IPVS.evaluate` leaves
    ``state.notes["ipvs"] = {"vaddr", "vport", "vproto", "vdir", "vmethod", "dest"}`` on the
    re-injected packet (``--vdir ORIGINAL``, ``--vmethod MASQ``). ``vaddr`` may be
    ``addr[/mask]``. ``ipvs=True`` means the ``--ipvs`` option is present. Each option named
    in ``negate`` is inverted (``! --vaddr ...``), as in xt_ipvs.
    """
    import ipaddress

    info = state.notes.get("ipvs")
    checks: list[tuple[str, bool]] = []
    if ipvs:
        checks.append(("ipvs", info is not None))
    if info is None:
        # xt_ipvs: every option other than --ipvs fails on a non-IPVS packet.
        return all((name in negate) != ok for name, ok in checks) and not any(
            v is not None for v in (vproto, vaddr, vport, vdir, vmethod))
    if vproto is not None:
        checks.append(("vproto", info["vproto"] == vproto.lower()))
    if vaddr is not None:
        net = ipaddress.ip_network(vaddr, strict=False)
        a = ipaddress.ip_address(info["vaddr"])
        checks.append(("vaddr", a.version == net.version and a in net))
    if vport is not None:
        checks.append(("vport", info["vport"] == vport))
    if vdir is not None:
        checks.append(("vdir", info["vdir"] == vdir.upper()))
    if vmethod is not None:
        checks.append(("vmethod", info["vmethod"] == vmethod.upper()))
    return all((name in negate) != ok for name, ok in checks)
