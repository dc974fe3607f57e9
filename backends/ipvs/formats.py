"""Text formats of IPVS mode: ``ipvsadm -Ln``, ``ipvsadm -Sn``, ``ipset save``, kube-ipvs0.

Each function takes an :class:`~backends.ipvs.model.IPVSNode` (or bare virtual/real
servers) and returns the text the real tool prints for that kernel state (reference §2.8,
§2.6). ``ipvsadm``'s own sort order is reproduced, quirks included: addresses compare by a
*wrapping* 32-bit subtraction read as signed, so ``192.168.0.10`` sorts before
``10.96.100.10``.
"""

from __future__ import annotations

import functools
import gc
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from backends.ipvs.model import (
    FLAG_PERSISTENT,
    FLAG_SOURCE_HASH,
    PROTO_NUMBERS,
    IPSet,
    IPVSNode,
    RealServer,
    VirtualServer,
)
from kservice.proxy.types import join_host_port

__all__ = [
    "LIST_HEADER",
    "all_text",
    "ipset_restore",
    "ipset_save",
    "ipvsadm_list",
    "ipvsadm_save",
    "kube_ipvs0_addr",
    "lazy_node_sections",
    "node_sections",
    "sort_destinations",
    "sort_services",
    "split_all",
    "svc_option",
]

#: The three header lines of ``ipvsadm -L -n``: kernel IPVS version and connection table
#: size (1.2.1 / 4096 on every common kernel), then the two column headers.
LIST_HEADER = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
)

_AF = {False: 2, True: 10}  # AF_INET, AF_INET6: IPv4 services list first.


def _words(ip: str) -> tuple[int, ...]:
    """The address as 32-bit words (host order), as ipvsadm compares them."""
    if ":" in ip:
        n = int(ipaddress.IPv6Address(ip))
        return tuple((n >> s) & 0xFFFFFFFF for s in (96, 64, 32, 0))
    a, b, c, d = ip.split(".")  # addresses here were validated when they were rendered
    return ((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d),)


def _wrap(d: int) -> int:
    """C's ``int r = a - b`` on two u32: the difference wraps and is read as signed."""
    d &= 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


def _cmp_words(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    for wa, wb in zip(a, b, strict=False):
        r = _wrap(wa - wb)
        if r:
            return r
    return 0


# Sort keys are precomputed per item (family, protocol, address words, port) and compared
# with ipvsadm's comparator; the comparator itself must stay a cmp function because the
# wrapping address difference is not a total order.
_SvcKey = tuple[int, int, tuple[int, ...], int]


def _cmp_keys(a: _SvcKey, b: _SvcKey) -> int:
    # ipvs_cmp_services: fwmark (always 0 here), af, protocol, address, port.
    # ipvs_cmp_dests: address, port (af/protocol equal within a service).
    r = a[0] - b[0]
    if r:
        return r
    r = a[1] - b[1]
    if r:
        return r
    r = _cmp_words(a[2], b[2])
    if r:
        return r
    return a[3] - b[3]


_KEY = functools.cmp_to_key(_cmp_keys)


def _sort(items: list[Any], keys: list[_SvcKey]) -> list[Any]:
    # Fast path: when, word by word, all addresses lie within 2^31 of each other, the
    # wrapping difference has the sign of the true difference, so the comparator is the
    # plain numeric order and a tuple key gives the same result.
    if len(items) < 2:
        return list(items)
    words = [k[2] for k in keys]
    width = max(len(w) for w in words)
    fast = all(len(w) == width for w in words) and all(
        max(w[i] for w in words) - min(w[i] for w in words) < 1 << 31 for i in range(width))
    order = sorted(range(len(items)), key=(lambda i: keys[i]) if fast else
                   (lambda i: _KEY(keys[i])))
    return [items[i] for i in order]


def sort_services(services: Iterable[VirtualServer]) -> list[VirtualServer]:
    """ipvsadm's service order. Python's sort is not qsort: with the non-transitive
    comparator the order of addresses ≥ 2^31 apart can differ from a real ipvsadm when
    three or more such addresses mix (reference §2.8)."""
    items = list(services)
    return _sort(items, [(_AF[v.ipv6], PROTO_NUMBERS[v.protocol], _words(v.address), v.port)
                         for v in items])


def sort_destinations(dests: Iterable[RealServer]) -> list[RealServer]:
    items = list(dests)
    return _sort(items, [(_AF[":" in r.address], 0, _words(r.address), r.port) for r in items])


def _sorted_view(services: Mapping[str, VirtualServer],
                 destinations: Mapping[str, Sequence[RealServer]]
                 ) -> list[tuple[VirtualServer, list[RealServer]]]:
    return [(vs, sort_destinations(destinations.get(vs.key, ())))
            for vs in sort_services(services.values())]


def svc_option(vs: VirtualServer) -> str:
    """The ipvsadm service selector: ``-t``/``-u``/``--sctp-service`` ``addr:port``."""
    flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[vs.protocol]
    return f"{flag} {join_host_port(vs.address, vs.port)}"


def _sched_flags(vs: VirtualServer) -> str:
    # ipvsadm >= 1.29 names IP_VS_SVC_F_SCHED2 "mh-port" for the mh scheduler.
    if vs.flags & FLAG_SOURCE_HASH and vs.scheduler == "mh":
        return "mh-port"
    if vs.flags & FLAG_SOURCE_HASH:
        return "flag-2"
    return ""


def service_args(vs: VirtualServer) -> str:
    """``-s <sched> [-b <flags>] [-p <timeout>]`` as ipvsadm -S writes (and -A/-E take)."""
    text = f"-s {vs.scheduler}"
    sf = _sched_flags(vs)
    if sf:
        text += f" -b {sf}"
    if vs.flags & FLAG_PERSISTENT:
        text += f" -p {vs.timeout}"
    return text


def ipvsadm_save(services: Mapping[str, VirtualServer],
                 destinations: Mapping[str, Sequence[RealServer]],
                 _view: list[tuple[VirtualServer, list[RealServer]]] | None = None) -> str:
    """``ipvsadm -S -n``: no header; ``-A`` per service, then its ``-a`` lines."""
    out: list[str] = []
    for vs, rss in _view if _view is not None else _sorted_view(services, destinations):
        sel = svc_option(vs)
        out.append(f"-A {sel} {service_args(vs)}")
        for rs in rss:
            out.append(f"-a {sel} -r {rs.key} -m -w {rs.weight}")
    return "".join(line + "\n" for line in out)


def ipvsadm_list(services: Mapping[str, VirtualServer],
                 destinations: Mapping[str, Sequence[RealServer]],
                 counters: Mapping[tuple[str, str], tuple[int, int]] | None = None,
                 _view: list[tuple[VirtualServer, list[RealServer]]] | None = None) -> str:
    """``ipvsadm -L -n``. ``counters`` maps (VS key, RS key) to (ActiveConn, InActConn)."""
    counters = counters or {}
    out = [LIST_HEADER]
    for vs, rss in _view if _view is not None else _sorted_view(services, destinations):
        line = f"{vs.protocol}  {join_host_port(vs.address, vs.port)}"
        if not vs.ipv6:
            line = line[:33]
        line += f" {vs.scheduler}"
        sf = _sched_flags(vs)
        if sf:
            line += f" ({sf})"
        if vs.flags & FLAG_PERSISTENT:
            line += f" persistent {vs.timeout}"
        out.append(line + "\n")
        for rs in rss:
            rk = rs.key
            name = rk if ":" in rs.address else rk[:28]
            act, inact = counters.get((vs.key, rk), (0, 0)) if counters else (0, 0)
            out.append(f"  -> {name:<28} {'Masq':<7} {rs.weight:<6} {act:<10} {inact:<10}\n")
    return "".join(out)


def _set_lines(s: IPSet) -> list[str]:
    return [f"add {s.name} {e}" for e in _sorted_entries(s)]


def _sorted_entries(s: IPSet) -> list[str]:
    # bitmap:port lists in port order (true of the kernel); hash sets list in bucket order,
    # which is not reproducible -- kservice sorts them as text.
    if s.is_bitmap:
        return sorted(s.entries, key=int)
    return sorted(s.entries)


def ipset_save(sets: Iterable[IPSet]) -> str:
    """``ipset save``: each set's ``create`` line followed by its ``add`` lines.

    ipset >= 7 also prints ``bucketsize 12 initval 0x...`` on hash sets; those depend on
    the ipset version and a random seed and are left out (they are create defaults).
    """
    out: list[str] = []
    for s in sets:
        out.append(f"create {s.name} {s.create_args()}")
        out.extend(_set_lines(s))
    return "".join(line + "\n" for line in out)


def ipset_restore(sets: Sequence[IPSet]) -> str:
    """Restore form of reference §2.9: every ``create`` first, then the ``add`` lines."""
    out = [f"create {s.name} {s.create_args()}" for s in sets]
    for s in sets:
        out.extend(_set_lines(s))
    return "".join(line + "\n" for line in out)


def kube_ipvs0_addr(bound: Sequence[str]) -> str:
    """What ``ip addr show dev kube-ipvs0`` prints (link line without index and MAC,
    which are node-specific). The dummy device is never set up: DOWN, noop qdisc."""
    out = ["kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default"]
    for ip in bound:
        if ":" in ip:
            out.append(f"    inet6 {ip}/128 scope global ")
        else:
            out.append(f"    inet {ip}/32 scope global kube-ipvs0")
        out.append("       valid_lft forever preferred_lft forever")
    return "".join(line + "\n" for line in out)


#: Section order of the ``all`` format.
ALL_SECTIONS = ("commands", "save", "list", "ipset", "iptables", "addr")


def all_text(sections: Sequence[tuple[str, str]]) -> str:
    """Every section under a ``### <name>`` header; :func:`split_all` reads it back."""
    out: list[str] = []
    for name, text in sections:
        out.append(f"### {name}\n")
        out.append(text if text.endswith("\n") or not text else text + "\n")
    return "".join(out)


def split_all(text: str) -> dict[str, str]:
    """Inverse of :func:`all_text`."""
    from kservice.errors import BackendError

    result: dict[str, str] = {}
    current: str | None = None
    buf: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.startswith("### "):
            if current is not None:
                result[current] = "".join(buf)
            current, buf = line[4:].strip(), []
            continue
        if current is None:
            raise BackendError(f"line {lineno}: text before the first '### <section>' header")
        buf.append(line)
    if current is not None:
        result[current] = "".join(buf)
    return result


def node_sections(node: IPVSNode, commands: str) -> tuple[tuple[str, str], ...]:
    """The named sections of a rendering, ``all`` first."""
    view = _sorted_view(node.services, node.destinations)
    parts = (
        ("commands", commands),
        ("save", ipvsadm_save(node.services, node.destinations, _view=view)),
        ("list", ipvsadm_list(node.services, node.destinations, _view=view)),
        ("ipset", ipset_save(node.ipsets)),
        ("iptables", node.iptables_restore),
        ("addr", kube_ipvs0_addr(node.bound)),
    )
    return (("all", all_text(parts)), *parts)


def _gc_paused(fn: Callable[[], str]) -> Callable[[], str]:
    """``fn`` with the cyclic collector paused while it runs: a 10k-service listing makes
    ~10^5 short-lived acyclic objects that the collector would only walk for nothing."""
    @functools.wraps(fn)
    def run() -> str:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if was_enabled:
                gc.enable()
    return run


def lazy_node_sections(node: IPVSNode, commands: str
                       ) -> tuple[tuple[str, str | Callable[[], str]], ...]:
    """:func:`node_sections` with the listings produced on first use.

    What kube-proxy itself computes per sync -- the ``ipvsadm`` commands and the
    ``iptables-restore`` payload -- is text already; the ``ipvsadm -Sn``/``-Ln`` listings,
    the ipset listing and ``all`` are views that a caller asking for one format never needs
    (a :class:`~kservice.backend.Rendering` runs each function once).
    """
    view = functools.cache(lambda: _sorted_view(node.services, node.destinations))
    save = _gc_paused(functools.cache(
        lambda: ipvsadm_save(node.services, node.destinations, _view=view())))
    listing = _gc_paused(functools.cache(
        lambda: ipvsadm_list(node.services, node.destinations, _view=view())))
    ipset = functools.cache(lambda: ipset_save(node.ipsets))
    addr = functools.cache(lambda: kube_ipvs0_addr(node.bound))

    @_gc_paused
    def everything() -> str:
        return all_text((("commands", commands), ("save", save()), ("list", listing()),
                         ("ipset", ipset()), ("iptables", node.iptables_restore),
                         ("addr", addr())))

    return (("all", everything), ("commands", commands), ("save", save), ("list", listing),
            ("ipset", ipset), ("iptables", node.iptables_restore), ("addr", addr))
