"""The mock kernel's ipsets: ``ipset`` commands, ``ipset save``/``restore`` text, and the
membership test behind iptables' ``-m set --match-set NAME FLAGS``.

Set types: ``hash:ip``, ``hash:ip,port``, ``hash:ip,port,ip``, ``hash:ip,port,net``,
``hash:net``, ``bitmap:port`` -- what kube-proxy's IPVS mode uses, plus ``hash:net``.
Anything else is refused by name.

Matching follows ``net/netfilter/ipset``: each ``src``/``dst`` flag picks the packet field
for one dimension of the set, in order; with fewer flags than the set has dimensions the
match fails (``ip_set_test`` checks ``opt->dim < set->type->dimension``), and a hash set
of the other family never matches (``bitmap:port`` has no family and matches both). ``port`` dimensions compare the protocol too (``tcp:80`` does
not match UDP); ``bitmap:port`` stores bare ports and matches TCP, UDP and SCTP alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import attrs

from backends.mockkernel.engine import command_argv
from kservice.errors import BackendError, RuleParseError, UnsupportedRule

__all__ = ["SET_TYPES", "IPSetError", "IPSetStore", "MockSet"]


class IPSetError(BackendError):
    """An ipset command the real ipset would refuse (message as close to ipset's as useful)."""


#: type -> dimensions, each ``ip``, ``port`` or ``net``. The dimension count is what
#: ``--match-set`` flags are checked against.
SET_TYPES: dict[str, tuple[str, ...]] = {
    "hash:ip": ("ip",),
    "hash:net": ("net",),
    "hash:ip,port": ("ip", "port"),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "bitmap:port": ("port",),
}

#: Protocols a ``proto:port`` element may name (ipset also knows icmp types; not needed).
_PROTOS = ("tcp", "udp", "sctp", "udplite")

#: Upper bound on elements added by one range (``10.0.0.0-10.0.255.255``), to keep a typo
#: from eating memory; the real default maxelem is 65536.
_MAX_RANGE = 65536

Elem = tuple[Any, ...]


def _parse_ip(text: str, family: str) -> list[int]:
    """An address or ``a-b`` range -> ints (range expanded)."""
    try:
        if "-" in text:
            lo_s, hi_s = text.split("-", 1)
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
            if lo.version != hi.version or int(hi) < int(lo):
                raise ValueError("bad range")
            if int(hi) - int(lo) >= _MAX_RANGE:
                raise IPSetError(f"range {text} has more than {_MAX_RANGE} addresses")
            addrs = [lo.version, *list(range(int(lo), int(hi) + 1))]
        elif "/" in text and family:
            net = ipaddress.ip_network(text, strict=False)
            if net.num_addresses > _MAX_RANGE:
                raise IPSetError(f"{text} has more than {_MAX_RANGE} addresses")
            addrs = [net.version, *list(range(int(net.network_address), int(net.broadcast_address) + 1))]
        else:
            a = ipaddress.ip_address(text)
            addrs = [a.version, int(a)]
    except ValueError as exc:
        raise IPSetError(f"syntax error: {text!r} is not a valid IP address") from exc
    version = addrs[0]
    if (version == 6) != (family == "inet6"):
        raise IPSetError(f"{text}: address family does not match the set (family {family})")
    return addrs[1:]


def _parse_net(text: str, family: str) -> tuple[int, int]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise IPSetError(f"syntax error: {text!r} is not a valid network") from exc
    if (net.version == 6) != (family == "inet6"):
        raise IPSetError(f"{text}: address family does not match the set (family {family})")
    if net.prefixlen == 0:
        raise IPSetError("zero valued prefix length is not allowed in hash:net types")
    return int(net.network_address), net.prefixlen


def _parse_port(text: str, with_proto: bool) -> list[tuple[str, int]]:
    proto = "tcp"
    port_s = text
    if ":" in text:
        if not with_proto:
            raise IPSetError(f"syntax error: {text!r}: bitmap:port takes bare ports")
        proto, port_s = text.split(":", 1)
        proto = proto.lower()
        if proto not in _PROTOS:
            raise IPSetError(f"unsupported protocol {proto!r} in {text!r}")
    try:
        if "-" in port_s:
            a, b = (int(x) for x in port_s.split("-", 1))
        else:
            a = b = int(port_s)
    except ValueError as exc:
        raise IPSetError(f"syntax error: {text!r} is not a valid port") from exc
    if not (0 <= a <= b <= 65535):
        raise IPSetError(f"port {port_s} out of range 0-65535")
    return [(proto if with_proto else "", p) for p in range(a, b + 1)]


def _fmt_ip(version: int, n: int) -> str:
    return str(ipaddress.IPv6Address(n) if version == 6 else ipaddress.IPv4Address(n))


@attrs.define
class MockSet:
    """One set: its type, family and elements (normalised tuples)."""

    name: str
    type: str
    family: str = "inet"
    #: create options other than family, as given (``hashsize 1024 maxelem 65536``,
    #: ``range 0-65535``) -- printed back by ``save``.
    options: tuple[str, ...] = ()
    elements: set[Elem] = attrs.field(factory=set)
    port_range: tuple[int, int] = (0, 65535)

    @property
    def dims(self) -> tuple[str, ...]:
        return SET_TYPES[self.type]

    @property
    def version(self) -> int:
        return 6 if self.family == "inet6" else 4

    def parse_entry(self, text: str) -> list[Elem]:
        """``10.96.0.10,tcp:80`` -> element tuples (ranges expanded)."""
        parts = text.split(",")
        if len(parts) != len(self.dims):
            raise IPSetError(
                f"syntax error: {text!r} has {len(parts)} part(s), set {self.name} of type "
                f"{self.type} needs {len(self.dims)}")
        options: list[list[Any]] = []
        for dim, part in zip(self.dims, parts, strict=True):
            if dim == "ip":
                options.append(_parse_ip(part, self.family))
            elif dim == "net":
                options.append([_parse_net(part, self.family)])
            else:
                ports = _parse_port(part, with_proto=self.type != "bitmap:port")
                if self.type == "bitmap:port":
                    lo, hi = self.port_range
                    for _, p in ports:
                        if not lo <= p <= hi:
                            raise IPSetError(
                                f"element {p} is out of the range of the set {self.name}")
                options.append(ports)
        out: list[Elem] = [()]
        for opts in options:
            out = [(*e, o) for e in out for o in opts]
            if len(out) > _MAX_RANGE:
                raise IPSetError(f"{text!r} expands to more than {_MAX_RANGE} elements")
        return out

    def format(self, elem: Elem) -> str:
        parts: list[str] = []
        for dim, v in zip(self.dims, elem, strict=True):
            if dim == "ip":
                parts.append(_fmt_ip(self.version, v))
            elif dim == "net":
                n, plen = v
                host = 128 if self.version == 6 else 32
                ip = _fmt_ip(self.version, n)
                # ipset prints host networks without the prefix length.
                parts.append(ip if plen == host else f"{ip}/{plen}")
            elif self.type == "bitmap:port":
                parts.append(str(v[1]))
            else:
                parts.append(f"{v[0]}:{v[1]}")
        return ",".join(parts)

    def create_line(self) -> str:
        if self.type == "bitmap:port":
            return f"create {self.name} {self.type} range {self.port_range[0]}-{self.port_range[1]}"
        opts = " ".join(self.options) if self.options else "hashsize 1024 maxelem 65536"
        return f"create {self.name} {self.type} family {self.family} {opts}"

    def sorted_elements(self) -> list[Elem]:
        # bitmap:port lists in port order (as the kernel does); a hash set's real order is
        # its bucket order, which is not reproducible: sorted as text, like
        # backends.ipvs.formats.ipset_save, so both print the same set identically.
        if self.type == "bitmap:port":
            return sorted(self.elements)
        return sorted(self.elements, key=self.format)

    # ----------------------------------------------------------------- matching

    def test(self, values: list[Any]) -> bool:
        """Membership of one packet's extracted values (per dimension)."""
        if not self.elements:
            return False
        nets = [i for i, d in enumerate(self.dims) if d == "net"]
        if not nets:
            return tuple(values) in self.elements
        # hash:*,net: match any stored prefix length (the kernel walks its cidr list).
        for elem in self.elements:
            ok = True
            for i, (dim, want) in enumerate(zip(self.dims, elem, strict=True)):
                got = values[i]
                if dim == "net":
                    n, plen = want
                    bits = 128 if self.version == 6 else 32
                    mask = ((1 << plen) - 1) << (bits - plen)
                    if (got & mask) != n & mask:
                        ok = False
                        break
                elif got != want:
                    ok = False
                    break
            if ok:
                return True
        return False


class IPSetStore:
    """All sets of one mock kernel; also the ``kernel.ipsets`` object the engine calls."""

    def __init__(self) -> None:
        self.sets: dict[str, MockSet] = {}

    # ----------------------------------------------------------------- commands

    def get(self, name: str) -> MockSet:
        try:
            return self.sets[name]
        except KeyError:
            raise IPSetError(
                f"The set with the given name does not exist: {name!r}") from None

    def create(self, name: str, type_: str, args: Iterable[str] = (), exist: bool = False) -> None:
        if type_ not in SET_TYPES:
            raise UnsupportedRule(f"set type {type_!r} is not implemented by the mock kernel "
                                  f"(known: {', '.join(SET_TYPES)})", option=type_)
        if len(name) > 31:
            raise IPSetError(f"set name {name!r} is longer than 31 characters")
        args = list(args)
        family = "inet"
        options: list[str] = []
        port_range = (0, 65535)
        it = iter(args)
        for tok in it:
            if tok == "family":
                family = next(it, "")
                if family not in ("inet", "inet6"):
                    raise IPSetError(f"unknown family {family!r}")
            elif tok in ("hashsize", "maxelem", "timeout", "bucketsize", "initval"):
                options.append(f"{tok} {next(it, '')}")
            elif tok == "range":
                lo, _, hi = next(it, "").partition("-")
                try:
                    port_range = (int(lo), int(hi))
                except ValueError:
                    raise IPSetError("bad range for bitmap:port") from None
            elif tok in ("comment", "counters", "skbinfo"):
                options.append(tok)
            else:
                raise UnsupportedRule(f"create option {tok!r} is not implemented", option=tok)
        if type_ == "bitmap:port" and "range" not in args:
            raise IPSetError("Missing mandatory option: range")
        new = MockSet(name, type_, family, tuple(options), set(), port_range)
        old = self.sets.get(name)
        if old is not None:
            if exist and (old.type, old.family) == (new.type, new.family):
                return
            raise IPSetError(f"Set cannot be created: set with the same name already exists: {name}")
        self.sets[name] = new

    def add(self, name: str, entry: str, exist: bool = False) -> None:
        s = self.get(name)
        elems = s.parse_entry(entry)
        if not exist and any(e in s.elements for e in elems):
            raise IPSetError(f"Element cannot be added to the set: it's already added: {entry}")
        s.elements.update(elems)

    def delete(self, name: str, entry: str, exist: bool = False) -> None:
        s = self.get(name)
        elems = s.parse_entry(entry)
        if not exist and not all(e in s.elements for e in elems):
            raise IPSetError(f"Element cannot be deleted from the set: it's not added: {entry}")
        s.elements.difference_update(elems)

    def command(self, line: str) -> None:
        """Run one ``ipset ...`` command line (the ``ipset`` word optional)."""
        argv = command_argv(line, "ipset")
        exist = "-exist" in argv or "-!" in argv
        argv = [a for a in argv if a not in ("-exist", "-!")]
        if not argv:
            return
        op, rest = argv[0], argv[1:]
        if op in ("create", "-N", "n") and len(rest) >= 2:
            self.create(rest[0], rest[1], rest[2:], exist)
        elif op in ("add", "-A", "a") and len(rest) == 2:
            self.add(rest[0], rest[1], exist)
        elif op in ("del", "-D", "d") and len(rest) == 2:
            self.delete(rest[0], rest[1], exist)
        elif op in ("flush", "-F") and len(rest) <= 1:
            for s in ([self.get(rest[0])] if rest else list(self.sets.values())):
                s.elements.clear()
        elif op in ("destroy", "-X", "x") and len(rest) <= 1:
            if rest:
                self.get(rest[0])
                del self.sets[rest[0]]
            else:
                self.sets.clear()
        else:
            raise UnsupportedRule(f"ipset command not understood: {line!r}", option=op,
                                  text=line)

    def restore(self, text: str, source: str = "ipset restore") -> None:
        """``ipset restore``: one command per line (``COMMIT`` and comments ignored)."""
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#") or line == "COMMIT":
                continue
            try:
                self.command(line)
            except RuleParseError as exc:
                exc.line, exc.source, exc.text = lineno, source, raw
                raise
            except BackendError as exc:
                raise RuleParseError(str(exc), line=lineno, text=raw, source=source) from exc

    def save(self) -> str:
        """``ipset save``: each set's create line, then its members (sorted)."""
        out: list[str] = []
        for s in self.sets.values():
            out.append(s.create_line())
            out.extend(f"add {s.name} {s.format(e)}" for e in s.sorted_elements())
        return "".join(line + "\n" for line in out)

    def members(self, name: str) -> frozenset[str]:
        s = self.get(name)
        return frozenset(s.format(e) for e in s.elements)

    # ----------------------------------------------------------------- matching

    def test(self, name: str, state: Any, flags: tuple[str, ...]) -> bool:
        """``-m set --match-set NAME FLAGS`` for one packet state (engine interface)."""
        s = self.sets.get(name)
        if s is None:
            raise BackendError(f"ipset {name} does not exist")
        for f in flags:
            if f not in ("src", "dst"):
                raise UnsupportedRule(f"--match-set flag {f!r} (expected src or dst)", option=f)
        if len(flags) < len(s.dims):
            return False
        # bitmap:port sets are family-less (NFPROTO_UNSPEC): they match IPv4 and IPv6.
        if s.type != "bitmap:port" and state.version != s.version:
            return False
        values: list[Any] = []
        for dim, flag in zip(s.dims, flags, strict=False):
            if dim in ("ip", "net"):
                values.append(state.src_int if flag == "src" else state.dst_int)
            else:
                if state.proto not in _PROTOS:
                    return False
                port = state.sport if flag == "src" else state.dport
                values.append(("" if s.type == "bitmap:port" else state.proto, port))
        return s.test(values)
