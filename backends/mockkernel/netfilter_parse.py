"""Reading ``iptables-save`` output and ``iptables-restore`` payloads into rule objects.

This module owns the text side of the iptables emulation: tokenising a line the way
``iptables-restore`` does (double quotes group words; a backslash escapes the next
character inside quotes), and turning each ``-A`` line into a :class:`Rule` with compiled
:class:`Match` objects and a :class:`Target`. The evaluation of those objects against a
packet lives in the same objects (``test``/``apply`` read the packet state) and the chain
walk in :mod:`backends.mockkernel.netfilter`.

A match or target the mock kernel does not implement is refused with
:class:`~kservice.errors.UnsupportedRule` naming the line and the option; with
``lenient=True`` the rule is kept and evaluating it yields an explicit ``UNKNOWN`` outcome
instead of a silent "no match".
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import attrs

from kservice.errors import RuleParseError, UnsupportedRule

if TYPE_CHECKING:
    from backends.mockkernel.engine import PacketState

__all__ = [
    "BUILTIN_CHAINS",
    "Chain",
    "Match",
    "ParsedTable",
    "Rule",
    "Target",
    "kernel_probability",
    "parse_iptables_save",
    "tokenize",
]

#: Built-in chains of each table (``iptables -t T -L``); ``security`` is optional upstream.
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

#: Targets that end the walk of the whole table with a verdict.
TERMINAL_TARGETS = frozenset({"ACCEPT", "DROP", "REJECT"})

_PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}


# --------------------------------------------------------------------------- tokenizer


def tokenize(line: str) -> list[str]:
    """Split one rule line as iptables-restore does (quotes group, ``\\`` escapes)."""
    if '"' not in line and "\\" not in line:
        return line.split()
    if "\\" not in line:
        fast = _tokenize_quotes(line)
        if fast is not None:
            return fast
    out: list[str] = []
    cur: list[str] = []
    in_quote = False
    have = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            cur.append(line[i + 1])
            have = True
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
            have = True
        elif c in " \t" and not in_quote:
            if have:
                out.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if in_quote:
        raise ValueError("unterminated quote")
    if have:
        out.append("".join(cur))
    return out


def _tokenize_quotes(line: str) -> list[str] | None:
    """Fast path: quotes that open at a word start and close at a word end."""
    segs = line.split('"')
    if len(segs) % 2 == 0:
        raise ValueError("unterminated quote")
    out: list[str] = []
    for i, seg in enumerate(segs):
        if i % 2:
            out.append(seg)
            continue
        # Glued text around a quote ("a"b, x"a") takes the slow path.
        if seg and ((i > 0 and not seg[0].isspace()) or
                    (i < len(segs) - 1 and not seg[-1].isspace())):
            return None
        out.extend(seg.split())
    return out


# --------------------------------------------------------------------------- probabilities


def kernel_probability(text: str, *, exact_kernel: bool) -> Fraction:
    """The exact probability a ``statistic --mode random --probability text`` rule matches.

    ``exact_kernel``: libxt_statistic stores ``lround(0x80000000 * atof(text))`` and
    xt_statistic matches when ``(get_random_u32() & 0x7FFFFFFF) < stored``, so the match
    probability is ``stored / 2**31`` (``0.3333333333`` -> ``715827883/2**31``).

    Otherwise the value kube-proxy meant: a text equal to ``"%0.10f" % (1/k)`` (how
    kube-proxy writes it) or to ``"%.11f"`` of the stored ``1/k`` (how ``iptables-save``
    prints it back, e.g. ``0.33333333349``) is ``1/k`` exactly, so a 1/3, 1/2, 1 chain gives
    each endpoint exactly a third; any other text is its exact decimal value.
    """
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad probability {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--probability must be between 0 and 1, got {text!r}")
    if exact_kernel:
        stored = math.floor(0x80000000 * value + 0.5)  # lround for a positive value
        return Fraction(stored, 0x80000000)
    if value > 0:
        k = round(1.0 / value)
        # kube-proxy writes "%0.10f" % (1/k); iptables-save prints the stored value back
        # as "%.11f" % (stored / 2**31) (libxt_statistic's print), e.g. 0.33333333349.
        if k >= 1 and text in ("%0.10f" % (1.0 / k),
                               "%.11f" % (math.floor(0x80000000 / k + 0.5) / 0x80000000)):
            return Fraction(1, k)
    return Fraction(text)


# --------------------------------------------------------------------------- addresses


@attrs.frozen
class Net:
    """An address or network as ``-s``/``-d`` take it, as integers for speed."""

    version: int
    network: int
    mask: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Net:
        if "/" in text:
            addr, _, plen = text.partition("/")
            if "." in plen or (":" in plen):
                # Dotted mask form (iptables-save prints /255.255.255.0 for odd masks).
                m = ipaddress.ip_address(plen)
                net = ipaddress.ip_network(f"{addr}/{bin(int(m)).count('1')}", strict=False)
            else:
                net = ipaddress.ip_network(text, strict=False)
        else:
            net = ipaddress.ip_network(text)
        return cls(net.version, int(net.network_address), int(net.netmask), text)

    @property
    def is_host(self) -> bool:
        return self.mask == (0xFFFFFFFF if self.version == 4 else (1 << 128) - 1)

    def contains(self, value: int) -> bool:
        return (value & self.mask) == self.network


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    a = int(lo) if lo else 0
    b = int(hi) if sep and hi else (65535 if sep else a)
    if not (0 <= a <= 65535 and 0 <= b <= 65535):
        raise ValueError(f"port out of range: {text}")
    return a, b


def _int(text: str) -> int:
    return int(text, 0)


def _mark_mask(text: str) -> tuple[int, int]:
    v, sep, m = text.partition("/")
    return _int(v), (_int(m) if sep else 0xFFFFFFFF)


# --------------------------------------------------------------------------- matches


@attrs.define(slots=True, eq=False)
class Match:
    """One compiled match. ``test(state) -> bool``; ``probability`` marks a random match."""

    name: str
    test: Callable[[PacketState], bool]
    #: For ``statistic --mode random``: the exact match probability (branching).
    probability: Fraction | None = None
    invert: bool = False
    #: Lenient mode: the option the kernel model does not implement.
    unknown: str | None = None
    #: ``1 - probability``, computed once (the walk needs it for every split).
    complement: Fraction | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.probability is not None:
            self.complement = 1 - self.probability


@attrs.define(slots=True, eq=False)
class Target:
    """The ``-j``/``-g`` part of a rule."""

    name: str | None
    goto: bool = False
    options: dict[str, Any] = attrs.field(factory=dict)
    unknown: str | None = None


@attrs.define(slots=True, eq=False)
class Rule:
    chain: str
    #: The rule text after ``-A CHAIN`` (as it appears in the rule path).
    text: str
    line: int
    matches: list[Match]
    target: Target
    # Index keys: set when the rule restricts the field to exactly one value.
    key_dst: int | None = None
    key_proto: str | None = None
    key_dport: int | None = None
    #: The rule-path entry, filled on first use by the walk.
    path: str | None = None
    #: The matches' tests when every match is a plain test (no random split, nothing
    #: unknown) -- the walk's fast path; None otherwise. Set at construction.
    tests: tuple[Callable[[PacketState], bool], ...] | None = None

    def __attrs_post_init__(self) -> None:
        if all(m.unknown is None and m.probability is None for m in self.matches):
            self.tests = tuple(m.test for m in self.matches)


@attrs.define(slots=True, eq=False)
class RawRule:
    """A rule checked at load but compiled when its chain is first walked (big dumps)."""

    chain: str
    #: The whole ``-A`` line (the rule text is derived on demand).
    full: str
    line: int
    #: ``-j``/``-g`` target name (None without one) -- what the loader resolves.
    target_name: str | None
    goto: bool
    opts: _Opts
    #: Lenient mode: an unsupported target found by the loader.
    unknown_target: str | None = None

    @property
    def text(self) -> str:
        parts = self.full.split(None, 2)
        return parts[2] if len(parts) > 2 else ""


@attrs.frozen
class _Opts:
    table: str
    source: str | None
    lenient: bool
    exact_kernel: bool
    warnings: list[str]


def compile_raw(raw: RawRule) -> Rule:
    """Compile a :class:`RawRule` (same result as an eager parse of its line)."""
    o = raw.opts
    ctx = _Ctx(raw.line, raw.full, o.source, o.lenient, o.exact_kernel, o.warnings)
    # Tokenised again here rather than kept: a big dump holds far fewer objects that way.
    rule = _parse_rule(ctx, tokenize(raw.full), o.table, set())
    if raw.unknown_target is not None:
        rule.target.unknown = raw.unknown_target
        rule.target.options.pop("chain", None)
    return rule


def rule_target(rule: Rule | RawRule) -> tuple[str | None, bool]:
    """(target name, is a chain jump/goto) of a compiled or raw rule."""
    if isinstance(rule, RawRule):
        return rule.target_name, rule.target_name is not None and (
            rule.goto or rule.target_name not in _KNOWN_TARGETS) and rule.unknown_target is None
    return rule.target.name, bool(rule.target.options.get("chain"))


@attrs.define(slots=True, eq=False)
class Chain:
    name: str
    #: ``ACCEPT``/``DROP`` for built-in chains, ``None`` for user chains.
    policy: str | None = None
    rules: list[Any] = attrs.field(factory=list)
    #: How many entries of ``rules`` are still :class:`RawRule` (compiled on first walk).
    raw: int = 0

    def compile(self) -> None:
        if self.raw:
            self.rules = [compile_raw(r) if isinstance(r, RawRule) else r for r in self.rules]
            self.raw = 0


@attrs.define(slots=True, eq=False)
class ParsedTable:
    name: str
    chains: dict[str, Chain] = attrs.field(factory=dict)
    #: Chains declared in this input (``:NAME``) -- flushed by a ``--noflush`` restore.
    declared: list[str] = attrs.field(factory=list)
    deleted: list[str] = attrs.field(factory=list)


class _Ctx:
    """Everything a match/target builder needs: where we are, and the parser knobs."""

    def __init__(self, line: int, text: str, source: str | None, lenient: bool,
                 exact_kernel: bool, warnings: list[str]) -> None:
        self.line = line
        self.text = text
        self.source = source
        self.lenient = lenient
        self.exact_kernel = exact_kernel
        self.warnings = warnings

    def error(self, message: str, option: str | None = None) -> RuleParseError:
        return RuleParseError(message, line=self.line, text=self.text, option=option,
                              source=self.source)

    def unsupported(self, message: str, option: str) -> UnsupportedRule:
        return UnsupportedRule(message, line=self.line, text=self.text, option=option,
                               source=self.source)


def _always(_st: PacketState) -> bool:
    return True


def _port_test(attr: str, lo: int, hi: int, inv: bool) -> Callable[[PacketState], bool]:
    if lo == hi:
        if attr == "dport":
            return (lambda st: st.dport != lo) if inv else (lambda st: st.dport == lo)
        return (lambda st: st.sport != lo) if inv else (lambda st: st.sport == lo)
    if attr == "dport":
        return lambda st: (lo <= st.dport <= hi) != inv
    return lambda st: (lo <= st.sport <= hi) != inv


def _ports_list_test(attr: str, ranges: list[tuple[int, int]], inv: bool
                     ) -> Callable[[PacketState], bool]:
    def test(st: PacketState) -> bool:
        v = st.dport if attr == "dport" else st.sport
        return any(a <= v <= b for a, b in ranges) != inv
    return test


_ADDR_TYPES = frozenset({
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
})


def _addr_type(st: PacketState, ip: str, iface: str | None) -> str:
    # What inet_addr_type()/inet_dev_addr_type() answer for the address.
    return str(st.kernel.addr_type(ip, iface))


# Each builder gets (ctx, options: list[(negated, opt, args)]) for its module and returns
# a list of Match. Options are pre-split by the rule parser.
_Opt = tuple[bool, str, list[str]]


def _one_arg(ctx: _Ctx, opt: str, args: list[str]) -> str:
    if len(args) != 1:
        raise ctx.error(f"option {opt} takes one argument", opt)
    return args[0]


def _build_proto_ports(ctx: _Ctx, module: str, opts: list[_Opt]) -> list[Match]:
    out: list[Match] = []
    for neg, opt, args in opts:
        if opt in ("--dport", "--destination-port", "--sport", "--source-port"):
            attr = "dport" if opt in ("--dport", "--destination-port") else "sport"
            try:
                lo, hi = _port_range(_one_arg(ctx, opt, args))
            except ValueError as e:
                raise ctx.error(str(e), opt) from None
            out.append(Match(module, _port_test(attr, lo, hi, neg), invert=neg))
            if attr == "dport" and lo == hi and not neg:
                out[-1].name = f"{module}:dport={lo}"
        elif opt == "--syn" and module == "tcp":
            # A SYN is the first packet of a TCP connection: the mock kernel models only
            # original-direction packets, so "--syn" holds exactly for conntrack NEW.
            out.append(Match("tcp", (lambda st: st.ct_state != "NEW") if neg
                             else (lambda st: st.ct_state == "NEW"), invert=neg))
        else:
            out.append(_unknown(ctx, f"{module} option", opt))
    return out


def _unknown(ctx: _Ctx, what: str, opt: str) -> Match:
    if not ctx.lenient:
        raise ctx.unsupported(f"unsupported {what}", opt)
    ctx.warnings.append(f"{ctx.source or 'rules'}:{ctx.line}: unsupported {what} {opt!r}")
    return Match("unknown", _always, unknown=opt)


def _build_multiport(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    out = []
    for neg, opt, args in opts:
        kind = {"--dports": "dport", "--destination-ports": "dport", "--sports": "sport",
                "--source-ports": "sport", "--ports": "both"}.get(opt)
        if kind is None:
            out.append(_unknown(ctx, "multiport option", opt))
            continue
        try:
            ranges = [_port_range(p) for p in _one_arg(ctx, opt, args).split(",")]
        except ValueError as e:
            raise ctx.error(str(e), opt) from None
        if kind == "both":
            def test(st: PacketState, r: list[tuple[int, int]] = ranges, inv: bool = neg) -> bool:
                hit = any(a <= st.dport <= b or a <= st.sport <= b for a, b in r)
                return hit != inv
            out.append(Match("multiport", test, invert=neg))
        else:
            out.append(Match("multiport", _ports_list_test(kind, ranges, neg), invert=neg))
    return out


def _build_addrtype(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    src_t: tuple[frozenset[str], bool] | None = None
    dst_t: tuple[frozenset[str], bool] | None = None
    lim_in = lim_out = False
    out: list[Match] = []
    for neg, opt, args in opts:
        if opt in ("--src-type", "--dst-type"):
            types = frozenset(_one_arg(ctx, opt, args).upper().split(","))
            bad = types - _ADDR_TYPES
            if bad:
                raise ctx.error(f"unknown address type {sorted(bad)[0]!r}", opt)
            if opt == "--src-type":
                src_t = (types, neg)
            else:
                dst_t = (types, neg)
        elif opt == "--limit-iface-in":
            lim_in = True
        elif opt == "--limit-iface-out":
            lim_out = True
        else:
            out.append(_unknown(ctx, "addrtype option", opt))

    def test(st: PacketState) -> bool:
        # xt_addrtype: with --limit-iface-in/out the type is computed for that device only.
        dev = st.iif if lim_in else (st.oif if lim_out else None)
        if src_t is not None:
            if (_addr_type(st, st.src, dev) in src_t[0]) == src_t[1]:
                return False
        if dst_t is not None:
            if (_addr_type(st, st.dst, dev) in dst_t[0]) == dst_t[1]:
                return False
        return True

    out.insert(0, Match("addrtype", test))
    return out


def _build_mark(ctx: _Ctx, module: str, opts: list[_Opt]) -> list[Match]:
    out = []
    for neg, opt, args in opts:
        if opt != "--mark":
            out.append(_unknown(ctx, f"{module} option", opt))
            continue
        try:
            v, m = _mark_mask(_one_arg(ctx, opt, args))
        except ValueError:
            raise ctx.error("bad mark value", opt) from None
        out.append(Match(module, _mark_test(module == "connmark", v, m, neg)))
    return out


def _mark_test(ct: bool, v: int, m: int, neg: bool) -> Callable[[PacketState], bool]:
    if ct:  # connmark: the conntrack entry's mark
        return lambda st: ((_ct_mark(st) & m) == v) != neg
    return lambda st: ((st.mark & m) == v) != neg


def _ct_mark(st: PacketState) -> int:
    return int(st.notes.get("ctmark", st.ct.mark if st.ct is not None else 0))


_CT_STATES = frozenset({"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"})


def _ct_state_test(states: frozenset[str], neg: bool) -> Callable[[PacketState], bool]:
    plain = states - {"SNAT", "DNAT"}
    virt = states & {"SNAT", "DNAT"}

    def test(st: PacketState) -> bool:
        # xt_conntrack: the state bit, plus the virtual SNAT/DNAT states from ct->status.
        hit = st.ct_state in plain or bool(virt and (virt & st.ct_status))
        return hit != neg
    return test


def _build_conntrack(ctx: _Ctx, module: str, opts: list[_Opt]) -> list[Match]:
    out = []
    for neg, opt, args in opts:
        if (module == "conntrack" and opt == "--ctstate") or (module == "state" and opt == "--state"):
            states = frozenset(_one_arg(ctx, opt, args).upper().split(","))
            bad = states - _CT_STATES
            if bad or (module == "state" and states & {"SNAT", "DNAT"}):
                raise ctx.error(f"bad conntrack state {sorted(bad or states)[0]!r}", opt)
            out.append(Match(module, _ct_state_test(states, neg), invert=neg))
        elif module == "conntrack" and opt == "--ctstatus":
            st_set = frozenset(_one_arg(ctx, opt, args).upper().split(","))
            def test(st: PacketState, s: frozenset[str] = st_set, n: bool = neg) -> bool:
                have = set(st.ct_status)
                if st.ct is not None and st.ct.seen_reply:
                    have.add("SEEN_REPLY")
                if st.ct is not None and st.ct.confirmed:
                    have.add("CONFIRMED")
                return bool(s & have) != n
            out.append(Match(module, test, invert=neg))
        else:
            out.append(_unknown(ctx, f"{module} option", opt))
    return out


def _build_statistic(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    mode = None
    prob: str | None = None
    every = packet = None
    neg_any = False
    for neg, opt, args in opts:
        neg_any = neg_any or neg
        if opt == "--mode":
            mode = _one_arg(ctx, opt, args)
        elif opt == "--probability":
            prob = _one_arg(ctx, opt, args)
        elif opt == "--every":
            every = int(_one_arg(ctx, opt, args))
        elif opt == "--packet":
            packet = int(_one_arg(ctx, opt, args))
        else:
            return [_unknown(ctx, "statistic option", opt)]
    if mode == "random":
        if prob is None:
            raise ctx.error("statistic --mode random needs --probability", "--probability")
        try:
            p = kernel_probability(prob, exact_kernel=ctx.exact_kernel)
        except ValueError as e:
            raise ctx.error(str(e), "--probability") from None
        if neg_any:
            p = 1 - p
        return [Match("statistic", _always, probability=p)]
    if mode == "nth":
        if every is None or every < 1:
            raise ctx.error("statistic --mode nth needs --every N (N >= 1)", "--every")
        counter = _NthCounter(every - 1, packet or 0)
        inv = neg_any

        def test(st: PacketState) -> bool:
            return counter.step(st.commit) != inv
        return [Match("statistic", test)]
    raise ctx.error(f"bad statistic mode {mode!r}", "--mode")


class _NthCounter:
    """xt_statistic nth mode: ``nval = 0 if count == every else count + 1``; match on 0."""

    def __init__(self, every: int, packet: int) -> None:
        self.every = every
        self.count = packet

    def step(self, commit: bool) -> bool:
        nval = 0 if self.count == self.every else self.count + 1
        if commit:
            self.count = nval
        return nval == 0


def _build_recent(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    name = "DEFAULT"
    cmd: str | None = None
    inv = False
    seconds: int | None = None
    hitcount = 0
    reap = False
    rdest = False
    mask: int | None = None
    for neg, opt, args in opts:
        if opt in ("--set", "--rcheck", "--update", "--remove"):
            if cmd is not None:
                raise ctx.error("recent takes only one of --set/--rcheck/--update/--remove", opt)
            cmd, inv = opt[2:], neg
        elif opt == "--name":
            name = _one_arg(ctx, opt, args)
        elif opt == "--seconds":
            seconds = int(_one_arg(ctx, opt, args))
        elif opt == "--hitcount":
            hitcount = int(_one_arg(ctx, opt, args))
        elif opt == "--reap":
            reap = True
        elif opt == "--rsource":
            rdest = False
        elif opt == "--rdest":
            rdest = True
        elif opt == "--mask":
            mask = int(ipaddress.ip_address(_one_arg(ctx, opt, args)))
        else:
            return [_unknown(ctx, "recent option", opt)]
    if cmd is None:
        raise ctx.error("recent needs one of --set/--rcheck/--update/--remove", "-m recent")
    if reap and seconds is None:
        raise ctx.error("recent --reap needs --seconds", "--reap")

    def test(st: PacketState) -> bool:
        return bool(st.kernel.recent.match(
            st, name=name, cmd=cmd, invert=inv, seconds=seconds, hitcount=hitcount,
            reap=reap, rdest=rdest, mask=mask,
        ))
    return [Match("recent", test)]


_RECENT_NAME = re.compile(r"--name (\S+)")
_NEXT_MODULE = re.compile(r" -[mjg] ")


def recent_names(text: str) -> list[str]:
    """The list each ``-m recent`` of a rule's text names (``DEFAULT`` without ``--name``,
    as xt_recent)."""
    out = []
    for part in text.split("-m recent")[1:]:
        own = _NEXT_MODULE.split(part, maxsplit=1)[0]
        found = _RECENT_NAME.search(own)
        out.append(found.group(1) if found else "DEFAULT")
    return out


def _build_set(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    out = []
    for neg, opt, args in opts:
        if opt == "--match-set":
            if len(args) != 2:
                raise ctx.error("--match-set takes NAME and FLAGS", opt)
            name, flags = args[0], tuple(args[1].split(","))
            if any(f not in ("src", "dst") for f in flags):
                raise ctx.error(f"bad --match-set flags {args[1]!r}", opt)
            out.append(Match("set", _set_test(name, flags, neg), invert=neg))
        else:
            out.append(_unknown(ctx, "set option", opt))
    return out


def _build_iprange(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    out = []
    for neg, opt, args in opts:
        if opt not in ("--src-range", "--dst-range"):
            out.append(_unknown(ctx, "iprange option", opt))
            continue
        lo_t, _, hi_t = _one_arg(ctx, opt, args).partition("-")
        lo = int(ipaddress.ip_address(lo_t))
        hi = int(ipaddress.ip_address(hi_t or lo_t))
        out.append(Match("iprange", _range_test(opt == "--src-range", lo, hi, neg)))
    return out


def _set_test(name: str, flags: tuple[str, ...], neg: bool) -> Callable[[PacketState], bool]:
    return lambda st: bool(st.kernel.ipsets.test(name, st, flags)) != neg


def _range_test(src: bool, lo: int, hi: int, neg: bool) -> Callable[[PacketState], bool]:
    if src:
        return lambda st: (lo <= st.src_int <= hi) != neg
    return lambda st: (lo <= st.dst_int <= hi) != neg


def _net_test(src: bool, net: Net, neg: bool) -> Callable[[PacketState], bool]:
    mask, network = net.mask, net.network
    if src:
        return lambda st: ((st.src_int & mask) == network) != neg
    return lambda st: ((st.dst_int & mask) == network) != neg


def _proto_test(proto: str, neg: bool) -> Callable[[PacketState], bool]:
    return lambda st: (st.proto == proto) != neg


def _build_physdev(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    """``-m physdev``: which bridge port a bridged packet came in on / goes out of.

    In the node model, pods hang off the pod bridge, so a packet that entered from a pod
    came in through a bridge port (``--physdev-is-in``); nothing else is bridged.
    """
    out = []
    for neg, opt, args in opts:
        if opt in ("--physdev-is-in", "--physdev-is-bridged"):
            out.append(Match("physdev", _physdev_in_test(neg)))
        elif opt == "--physdev-is-out":
            # Output bridge ports are only known after routing onto the bridge.
            out.append(Match("physdev", _physdev_out_test(neg)))
        elif opt in ("--physdev-in", "--physdev-out"):
            _one_arg(ctx, opt, args)  # the port name: any pod veth in this model
            test = _physdev_in_test(neg) if opt == "--physdev-in" else _physdev_out_test(neg)
            out.append(Match("physdev", test))
        else:
            out.append(_unknown(ctx, "physdev option", opt))
    return out


def _physdev_in_test(neg: bool) -> Callable[[PacketState], bool]:
    return lambda st: (st.origin == "pod") != neg


def _physdev_out_test(neg: bool) -> Callable[[PacketState], bool]:
    return lambda st: (st.oif is not None and st.oif == getattr(st.kernel, "bridge", None)) != neg


def _build_ipvs(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
    """``-m ipvs`` (xt_ipvs): match packets IPVS scheduled, by virtual address/port/method."""
    from backends.mockkernel.ipvs import ipvs_match

    kw: dict[str, Any] = {}
    negate: set[str] = set()
    for neg, opt, args in opts:
        name = opt[2:]
        if opt == "--ipvs":
            kw["ipvs"] = True
        elif opt == "--vport":
            kw["vport"] = int(_one_arg(ctx, opt, args))
        elif opt in ("--vproto", "--vaddr", "--vdir", "--vmethod"):
            kw[name] = _one_arg(ctx, opt, args)
        else:
            return [_unknown(ctx, "ipvs option", opt)]
        if neg:
            negate.add(name)
    frozen_neg = frozenset(negate)

    def test(st: PacketState) -> bool:
        return ipvs_match(st, negate=frozen_neg, **kw)
    return [Match("ipvs", test)]


def _build_pass(known: frozenset[str], module: str) -> Callable[[_Ctx, list[_Opt]], list[Match]]:
    def build(ctx: _Ctx, opts: list[_Opt]) -> list[Match]:
        out = []
        for _neg, opt, _args in opts:
            if opt not in known:
                out.append(_unknown(ctx, f"{module} option", opt))
        return out
    return build


_MODULES: dict[str, Callable[[_Ctx, list[_Opt]], list[Match]]] = {
    "tcp": lambda c, o: _build_proto_ports(c, "tcp", o),
    "udp": lambda c, o: _build_proto_ports(c, "udp", o),
    "sctp": lambda c, o: _build_proto_ports(c, "sctp", o),
    "multiport": _build_multiport,
    "addrtype": _build_addrtype,
    # The comment match always matches; it only labels the rule.
    "comment": _build_pass(frozenset({"--comment"}), "comment"),
    "mark": lambda c, o: _build_mark(c, "mark", o),
    "connmark": lambda c, o: _build_mark(c, "connmark", o),
    "conntrack": lambda c, o: _build_conntrack(c, "conntrack", o),
    "state": lambda c, o: _build_conntrack(c, "state", o),
    "statistic": _build_statistic,
    "recent": _build_recent,
    "set": _build_set,
    "iprange": _build_iprange,
    # nfacct only counts; it always matches.
    "nfacct": _build_pass(frozenset({"--nfacct-name"}), "nfacct"),
    # Rate limiting is not modelled: a trace is one packet, well under any limit.
    "limit": _build_pass(frozenset({"--limit", "--limit-burst"}), "limit"),
    "physdev": _build_physdev,
    "ipvs": _build_ipvs,
}

#: The options each implemented match defines (for dispatching options to matches).
_MODULE_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset({"--sport", "--source-port", "--dport", "--destination-port", "--syn",
                      "--tcp-flags", "--tcp-option"}),
    "udp": frozenset({"--sport", "--source-port", "--dport", "--destination-port"}),
    "sctp": frozenset({"--sport", "--source-port", "--dport", "--destination-port",
                       "--chunk-types"}),
    "multiport": frozenset({"--dports", "--sports", "--ports", "--destination-ports",
                            "--source-ports"}),
    "addrtype": frozenset({"--src-type", "--dst-type", "--limit-iface-in", "--limit-iface-out"}),
    "comment": frozenset({"--comment"}),
    "mark": frozenset({"--mark"}),
    "connmark": frozenset({"--mark"}),
    "conntrack": frozenset({"--ctstate", "--ctstatus", "--ctproto", "--ctorigsrc", "--ctorigdst",
                            "--ctreplsrc", "--ctrepldst", "--ctorigsrcport", "--ctorigdstport",
                            "--ctreplsrcport", "--ctrepldstport", "--ctexpire", "--ctdir"}),
    "state": frozenset({"--state"}),
    "statistic": frozenset({"--mode", "--probability", "--every", "--packet"}),
    "recent": frozenset({"--set", "--rcheck", "--update", "--remove", "--seconds", "--hitcount",
                         "--reap", "--name", "--mask", "--rsource", "--rdest", "--rttl"}),
    "set": frozenset({"--match-set", "--return-nomatch", "--update-counters",
                      "--update-subcounters", "--packets-eq", "--packets-lt", "--packets-gt",
                      "--bytes-eq", "--bytes-lt", "--bytes-gt"}),
    "iprange": frozenset({"--src-range", "--dst-range"}),
    "nfacct": frozenset({"--nfacct-name"}),
    "limit": frozenset({"--limit", "--limit-burst"}),
    "physdev": frozenset({"--physdev-in", "--physdev-out", "--physdev-is-in",
                          "--physdev-is-out", "--physdev-is-bridged"}),
    "ipvs": frozenset({"--ipvs", "--vproto", "--vaddr", "--vport", "--vdir", "--vmethod"}),
}

# Options taking no argument (flags), per module; everything else takes one argument
# (--match-set takes two).
_FLAG_OPTS = frozenset({
    "--set", "--rcheck", "--update", "--remove", "--reap", "--rsource", "--rdest",
    "--syn", "--limit-iface-in", "--limit-iface-out", "--random", "--random-fully",
    "--persistent", "--notrack", "--save-mark", "--restore-mark", "--fully-random",
    "--log-uid", "--log-tcp-sequence", "--log-tcp-options", "--log-ip-options",
    "--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged", "--ipvs",
})
_TWO_ARG_OPTS = frozenset({"--match-set"})


# --------------------------------------------------------------------------- targets


def _nat_range(ctx: _Ctx, opt: str, text: str) -> dict[str, Any]:
    """``[ip[-ip2]][:port[-port2]]`` with IPv6 in brackets."""
    addr, ports = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ctx.error(f"bad address {text!r}", opt)
        addr, rest = text[1:end], text[end + 1:]
        if rest.startswith(":"):
            ports = rest[1:]
        elif rest:
            raise ctx.error(f"bad address {text!r}", opt)
    elif text.count(":") == 1:
        addr, _, ports = text.partition(":")
    ips: list[str] = []
    if addr:
        lo_t, _, hi_t = addr.partition("-")
        try:
            lo = ipaddress.ip_address(lo_t)
            hi = ipaddress.ip_address(hi_t) if hi_t else lo
        except ValueError:
            raise ctx.error(f"bad address {addr!r}", opt) from None
        if int(hi) < int(lo) or int(hi) - int(lo) > 4096:
            raise ctx.error(f"bad address range {addr!r}", opt)
        ips = [str(ipaddress.ip_address(v)) for v in range(int(lo), int(hi) + 1)]
    port_range = None
    if ports:
        a, _, b = ports.partition("-")
        try:
            port_range = (int(a), int(b) if b else int(a))
        except ValueError:
            raise ctx.error(f"bad port {ports!r}", opt) from None
    return {"ips": ips, "ports": port_range}


#: Targets the kernel allows at some hooks only (``.hooks`` of their xt_target: the
#: table's chains -- and the user chains reached from them -- must be among these).
#: nf_nat's DNAT/REDIRECT: NF_INET_PRE_ROUTING|LOCAL_OUT; SNAT: POST_ROUTING|LOCAL_IN;
#: MASQUERADE: POST_ROUTING. Elsewhere the kernel refuses the rule (iptables-nft:
#: "RULE_APPEND failed (Invalid argument)").
TARGET_HOOKS: dict[str, frozenset[str]] = {
    "DNAT": frozenset({"PREROUTING", "OUTPUT"}),
    "REDIRECT": frozenset({"PREROUTING", "OUTPUT"}),
    "SNAT": frozenset({"POSTROUTING", "INPUT"}),
    "MASQUERADE": frozenset({"POSTROUTING"}),
}

#: Protocols whose ports a NAT target may rewrite (libxt_DNAT/MASQUERADE/REDIRECT refuse a
#: port specification without one of them; the check does not look at ``!``).
_PORT_PROTOS = frozenset({"tcp", "udp", "sctp", "dccp"})
_NEED_PORT_PROTO = "Need TCP, UDP, SCTP or DCCP with port specification"


def _build_target(ctx: _Ctx, name: str, goto: bool, opts: list[_Opt],
                  table: str, proto: str | None = None) -> Target:
    t = Target(name, goto=goto)
    o = t.options
    if goto:
        if opts:
            raise ctx.error("-g takes no target options", opts[0][1])
        return t
    simple = {"ACCEPT", "DROP", "RETURN", "LOG", "NFLOG", "TRACE", "NOTRACK", "ULOG"}
    for neg, opt, args in opts:
        if neg:
            raise ctx.error("target options cannot be negated", opt)
        val = args[0] if args else ""
        if name == "REJECT" and opt == "--reject-with":
            o["with"] = val
        elif name in ("DNAT", "SNAT") and opt in ("--to-destination", "--to-source", "--to"):
            if (name == "DNAT") != (opt != "--to-source"):
                raise ctx.error(f"{name} does not take {opt}", opt)
            o.setdefault("ranges", []).append(_nat_range(ctx, opt, val))
        elif name in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT") and opt in (
                "--random", "--random-fully", "--persistent"):
            o[opt[2:]] = True
        elif name in ("MASQUERADE", "REDIRECT") and opt == "--to-ports":
            a, _, b = val.partition("-")
            o["ports"] = (int(a), int(b) if b else int(a))
        elif name == "MARK" and opt in ("--set-xmark", "--set-mark", "--or-mark", "--and-mark",
                                        "--xor-mark"):
            o["op"], o["value"] = opt[2:], val
        elif name == "CONNMARK" and opt in ("--set-xmark", "--set-mark", "--save-mark",
                                            "--restore-mark", "--mask", "--nfmask", "--ctmask",
                                            "--or-mark", "--and-mark", "--xor-mark"):
            if opt in ("--mask", "--nfmask", "--ctmask"):
                o[opt[2:]] = _int(val)
            else:
                o["op"], o["value"] = opt[2:], val
        elif name in ("LOG", "NFLOG", "TRACE", "ULOG"):
            pass  # logging only: no effect on the packet
        elif name == "CT" and opt == "--notrack":
            o["notrack"] = True
        elif name == "CT":
            t.unknown = opt
        elif name in simple or name in TERMINAL_TARGETS or name.isupper() is False:
            raise ctx.error(f"target {name} takes no option {opt}", opt)
        else:
            if not ctx.lenient:
                raise ctx.unsupported(f"unsupported option of target {name}", opt)
            t.unknown = opt
    if name == "DROP" and table == "nat":
        # libiptc/iptables refuses it before the kernel sees it (iptables >= 1.8).
        raise ctx.error('The "nat" table is not intended for filtering, the use of DROP is '
                        "therefore inhibited.", "-j DROP")
    if name == "REJECT" and table != "filter":
        # xt_REJECT is registered for the filter table only (.table = "filter").
        raise ctx.error(f"target REJECT is only valid in the filter table; the kernel refuses "
                        f"it in {table} (RULE_APPEND failed (Invalid argument))", "-j REJECT")
    if proto not in _PORT_PROTOS:
        if name in ("MASQUERADE", "REDIRECT") and "ports" in o:
            raise ctx.error(_NEED_PORT_PROTO, "--to-ports")
        if name in ("DNAT", "SNAT") and any(r["ports"] for r in o.get("ranges", ())):
            raise ctx.error(_NEED_PORT_PROTO,
                            "--to-destination" if name == "DNAT" else "--to-source")
    if name in ("DNAT", "SNAT") and "ranges" not in o:
        raise ctx.error(f"{name} needs --to-{'destination' if name == 'DNAT' else 'source'}",
                        "-j " + name)
    if name in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT") and table != "nat":
        raise ctx.error(f"target {name} is only valid in the nat table", "-j " + name)
    if name in ("MARK", "CONNMARK") and "op" not in o and name == "MARK":
        raise ctx.error("MARK needs --set-xmark/--set-mark/--or-mark/--and-mark/--xor-mark",
                        "-j MARK")
    if name == "CT" and t.unknown and not ctx.lenient:
        raise ctx.unsupported("unsupported CT target option", t.unknown)
    return t


_KNOWN_TARGETS = frozenset({
    "ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK",
    "CONNMARK", "LOG", "NFLOG", "TRACE", "ULOG", "CT", "NOTRACK",
})


# --------------------------------------------------------------------------- rules

_GENERIC = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-p": "-p", "--protocol": "-p",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
}


def _iface_test(attr: str, name: str, neg: bool) -> Callable[[PacketState], bool]:
    # iptables: a trailing "+" matches any interface with that prefix.
    if name.endswith("+"):
        prefix = name[:-1]
        def test(st: PacketState) -> bool:
            v = st.iif if attr == "i" else st.oif
            return (v is not None and v.startswith(prefix)) != neg
    else:
        def test(st: PacketState) -> bool:
            v = st.iif if attr == "i" else st.oif
            return (v == name) != neg
    return test


def _parse_rule(ctx: _Ctx, tokens: list[str], table: str, chain_names: set[str]) -> Rule:
    # tokens[0] == "-A", tokens[1] == chain
    chain = tokens[1]
    generic: list[Match] = []
    modules: list[tuple[str, list[_Opt]]] = []
    target: tuple[str, bool, list[_Opt]] | None = None
    cur: list[_Opt] | None = None  # options of the current -m module or target
    in_target = False
    proto: str | None = None
    proto_neg = False
    key_dst = key_dport = None
    key_proto = None
    i, n = 2, len(tokens)
    neg = False
    while i < n:
        tok = tokens[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        if tok in _GENERIC:
            g = _GENERIC[tok]
            if i + 1 >= n:
                raise ctx.error(f"option {tok} needs an argument", tok)
            val = tokens[i + 1]
            i += 2
            if in_target:
                raise ctx.error(f"option {tok} after the target", tok)
            if g in ("-s", "-d"):
                try:
                    net = Net.parse(val)
                except ValueError:
                    raise ctx.error(f"bad address {val!r}", tok) from None
                generic.append(Match(g, _net_test(g == "-s", net, neg)))
                if g == "-d":
                    if not neg and net.is_host:
                        key_dst = net.network
            elif g == "-p":
                p = val.lower()
                p = _PROTO_NUMBERS.get(p, p)
                if p not in ("tcp", "udp", "sctp", "icmp", "ipv6-icmp", "icmpv6", "all"):
                    raise ctx.unsupported(f"unsupported protocol {val!r}", tok)
                proto, proto_neg = p, neg
                if p != "all":
                    generic.append(Match("-p", _proto_test(p, neg)))
                    if not neg:
                        key_proto = p
            else:
                generic.append(Match(g, _iface_test(g[1], val, neg)))
            neg = False
            continue
        if tok in ("-m", "--match"):
            if i + 1 >= n:
                raise ctx.error("-m needs a module name", tok)
            if in_target:
                raise ctx.error("-m after the target", tok)
            cur = []
            modules.append((tokens[i + 1], cur))
            i += 2
            continue
        if tok in ("-j", "--jump", "-g", "--goto"):
            if i + 1 >= n:
                raise ctx.error(f"{tok} needs a target", tok)
            if target is not None:
                raise ctx.error("more than one target", tok)
            cur = []
            target = (tokens[i + 1], tok in ("-g", "--goto"), cur)
            in_target = True
            i += 2
            continue
        if tok.startswith("-"):
            if tok in _FLAG_OPTS:
                args: list[str] = []
                i += 1
            elif tok in _TWO_ARG_OPTS:
                args = tokens[i + 1:i + 3]
                i += 3
            else:
                args = tokens[i + 1:i + 2]
                if not args:
                    raise ctx.error(f"option {tok} needs an argument", tok)
                i += 2
            if in_target:
                assert cur is not None
                cur.append((neg, tok, args))
                neg = False
                continue
            # iptables merges the options of every loaded match: an option goes to the
            # first loaded match that defines it; failing that, "-p tcp/udp/sctp" loads
            # the protocol's match implicitly (xshared.c command_default).
            dest = next((o for m, o in modules if tok in _MODULE_OPTIONS.get(m, ())), None)
            if dest is None and proto in ("tcp", "udp", "sctp") and tok in _MODULE_OPTIONS[proto]:
                dest = []
                modules.append((proto, dest))
            if dest is None:
                if cur is None:
                    raise ctx.unsupported("unknown option", tok)
                dest = cur  # the current match's builder names it as unsupported
            dest.append((neg, tok, args))
            neg = False
            continue
        raise ctx.error(f"unexpected word {tok!r}", tok)
    matches = list(generic)
    for mod, opts in modules:
        builder = _MODULES.get(mod)
        if builder is None:
            matches.append(_unknown(ctx, "match module", "-m " + mod))
            continue
        if mod in ("tcp", "udp", "sctp") and (proto != mod or proto_neg):
            raise ctx.error(f"-m {mod} needs -p {mod}", "-m " + mod)
        try:
            built = builder(ctx, opts)
        except RuleParseError:
            raise
        except ValueError as e:
            raise ctx.error(f"bad value in -m {mod}: {e}", "-m " + mod) from None
        for m in built:
            if m.name.startswith(f"{mod}:dport="):
                key_dport = int(m.name.split("=", 1)[1])
                m.name = mod
        matches.extend(built)
    if target is None:
        tgt = Target(None)
    else:
        tname, goto, topts = target
        if goto or tname not in _KNOWN_TARGETS:
            # A chain jump. Whether the chain exists (here or, under --noflush, from an
            # earlier load) is checked by the loader, which refuses unknown targets.
            if topts and not goto and tname not in chain_names and \
                    tname.isupper() and "-" not in tname:
                # Options after -j X: X is a target extension (a chain jump takes none),
                # one the kernel model does not implement (TPROXY --on-port ...).
                if not ctx.lenient:
                    raise ctx.unsupported(f"unsupported target {tname}", "-j " + tname)
                ctx.warnings.append(f"{ctx.source or 'rules'}:{ctx.line}: unsupported target "
                                    f"'-j {tname}'")
                tgt = Target(tname, unknown="-j " + tname)
            elif topts:
                raise ctx.error(f"jump to chain {tname} takes no options", topts[0][1])
            else:
                tgt = Target(tname, goto=goto, options={"chain": True})
        else:
            try:
                tgt = _build_target(ctx, tname, goto, topts, table, proto)
            except RuleParseError:
                raise
            except ValueError as e:
                raise ctx.error(f"bad value for target {tname}: {e}", "-j " + tname) from None
    text = ctx.text.split(None, 2)[2] if len(ctx.text.split(None, 2)) > 2 else ""
    return Rule(chain, text, ctx.line, matches, tgt, key_dst, key_proto, key_dport)


def _requote(tokens: list[str]) -> list[str]:
    return [f'"{t}"' if (" " in t or not t) else t for t in tokens]


# --------------------------------------------------------------------------- whole dumps


#: Inputs with more ``-A`` lines than this compile rules of an already-seen shape lazily.
LAZY_THRESHOLD = 5000


def parse_iptables_save(
    text: str, *, source: str | None = None, lenient: bool = False,
    exact_kernel_probabilities: bool = False, warnings: list[str] | None = None,
    lazy: bool | None = None,
) -> list[ParsedTable]:
    """Parse ``iptables-save`` output or an ``iptables-restore`` payload.

    Returns the tables in input order. Chains referenced by a jump must be declared in the
    same table of the input or be built-in (checked here for the payload's own chains; the
    loader re-checks against chains kept from earlier loads under ``--noflush``).
    """
    warn = warnings if warnings is not None else []
    if lazy is None:
        lazy = text.count("\n-A ") > LAZY_THRESHOLD
    shapes: dict[tuple[str, ...], bool] | None = {} if lazy else None
    tables: list[ParsedTable] = []
    table: ParsedTable | None = None
    pending: list[tuple[int, str, list[str]]] = []
    filled: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line[:3] == "-A " and table is not None:
            # The hot path: one rule line.
            if "\"" in line or "\\" in line:
                try:
                    tokens = tokenize(line)
                except ValueError as e:
                    raise RuleParseError(str(e), line=lineno, text=line, source=source) from None
            else:
                tokens = line.split()
            if len(tokens) < 2:
                raise RuleParseError("-A needs a chain", line=lineno, text=line, option="-A",
                                     source=source)
            pending.append((lineno, line, tokens))
            filled.add(tokens[1])
            continue
        if not line or line.startswith("#"):
            continue
        ctx = _Ctx(lineno, line, source, lenient, exact_kernel_probabilities, warn)
        if line.startswith("*"):
            if table is not None:
                raise ctx.error(f"table {table.name!r} not committed before {line!r}")
            name = line[1:].strip()
            if name not in BUILTIN_CHAINS:
                raise ctx.error(f"unknown table {name!r}", line)
            table = ParsedTable(name)
            pending = []
            filled = set()
            continue
        if table is None:
            raise ctx.error("rule outside a table (missing *table line)")
        if line == "COMMIT":
            _finish_table(table, pending, source, lenient, exact_kernel_probabilities, warn,
                          shapes)
            tables.append(table)
            table = None
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                raise ctx.error("empty chain declaration")
            cname = parts[0]
            policy = parts[1] if len(parts) > 1 else "-"
            builtin = cname in BUILTIN_CHAINS[table.name]
            # iptables-restore: "-" on a built-in chain keeps its current policy.
            if builtin and policy not in ("ACCEPT", "DROP", "-"):
                raise ctx.error(f"bad policy {policy!r} for built-in chain {cname}", cname)
            if not builtin and policy != "-":
                raise ctx.error(f"user chain {cname} cannot have a policy", cname)
            if cname in table.chains:
                raise ctx.error(f"chain {cname} declared twice", cname)
            table.chains[cname] = Chain(cname, (None if policy == "-" else policy)
                                        if builtin else None)
            table.declared.append(cname)
            continue
        if line.startswith("["):
            # iptables-save -c: "[packets:bytes] -A ..."; counters are ignored.
            end = line.find("]")
            line = line[end + 1:].strip()
        try:
            tokens = tokenize(line)
        except ValueError as e:
            raise ctx.error(str(e)) from None
        if tokens[0] in ("-A", "--append"):
            if len(tokens) < 2:
                raise ctx.error("-A needs a chain", "-A")
            pending.append((lineno, line, tokens))
            filled.add(tokens[1])
        elif tokens[0] in ("-X", "--delete-chain"):
            if len(tokens) != 2:
                raise ctx.error("-X takes one chain", "-X")
            cname = tokens[1]
            if cname in BUILTIN_CHAINS[table.name]:
                raise ctx.error(f"cannot delete built-in chain {cname}", "-X")
            if cname in filled:
                raise ctx.error(f"chain {cname} deleted after rules were added", "-X")
            table.chains.pop(cname, None)
            table.deleted.append(cname)
        elif tokens[0] in ("-N", "--new-chain"):
            table.chains.setdefault(tokens[1], Chain(tokens[1]))
            table.declared.append(tokens[1])
        elif tokens[0] in ("-F", "--flush"):
            if len(tokens) > 1 and tokens[1] in table.chains:
                table.chains[tokens[1]].rules.clear()
                table.chains[tokens[1]].raw = 0
        else:
            raise ctx.unsupported(f"unsupported command {tokens[0]!r}", tokens[0])
    if table is not None:
        raise RuleParseError(f"table {table.name!r} has no COMMIT", source=source)
    return tables


def _finish_table(table: ParsedTable, pending: list[tuple[int, str, list[str]]],
                  source: str | None, lenient: bool, exact: bool, warn: list[str],
                  shapes: dict[tuple[str, ...], bool] | None = None) -> None:
    """Compile the table's rules; with ``shapes`` (large inputs), only rules of a new shape
    are compiled now, the rest are checked value by value and compiled on first use."""
    names = set(table.chains) | set(BUILTIN_CHAINS[table.name])
    opts = _Opts(table.name, source, lenient, exact, warn) if shapes is not None else None
    chains = table.chains
    for lineno, line, tokens in pending:
        cname = tokens[1]
        chain = chains.get(cname)
        if chain is None:
            # Appending to a chain not declared here: legal under --noflush when the chain
            # exists already; the loader checks. Built-in chains always exist.
            chain = Chain(cname, "ACCEPT" if cname in BUILTIN_CHAINS[table.name] else None)
            chains[cname] = chain
        if opts is not None:
            shape = _shape(tokens)
            if shape is not None and shape in shapes:  # type: ignore[operator]
                tgt, goto = _target_of(tokens)
                chain.rules.append(RawRule(cname, line, lineno, tgt, goto, opts))
                chain.raw += 1
                continue
        ctx = _Ctx(lineno, line, source, lenient, exact, warn)
        rule = _parse_rule(ctx, tokens, table.name, names)
        if opts is not None and shape is not None and not any(
                m.unknown for m in rule.matches) and rule.target.unknown is None:
            shapes[shape] = True  # type: ignore[index]
        chain.rules.append(rule)
    _check_target_hooks(table, source)


def _check_target_hooks(table: ParsedTable, source: str | None) -> None:
    """Refuse hook-restricted targets (``TARGET_HOOKS``) in chains reached from other hooks,
    as the kernel does when the rule is added (user chains: every built-in chain that jumps
    or goes to them, directly or not). Only the chains of this input are followed: under
    ``--noflush``, jumps from chains kept from an earlier load are not seen."""
    if not any(rule_target(r)[0] in TARGET_HOOKS for c in table.chains.values()
               for r in c.rules):
        return
    builtin = BUILTIN_CHAINS[table.name]
    # chain -> {hook: the line of the first jump on the way from it}
    reach: dict[str, dict[str, int | None]] = {b: {b: None} for b in builtin if b in table.chains}
    work = list(reach)
    while work:
        cname = work.pop()
        for r in table.chains[cname].rules:
            tname, is_chain = rule_target(r)
            if not is_chain or tname not in table.chains or tname in builtin:
                continue
            hooks = reach.setdefault(tname, {})
            grew = False
            for hook, via in reach[cname].items():
                if hook not in hooks:
                    hooks[hook] = via if via is not None else r.line
                    grew = True
            if grew:
                work.append(tname)
    for cname, chain in table.chains.items():
        for r in chain.rules:
            tname, _is_chain = rule_target(r)
            allowed = TARGET_HOOKS.get(tname or "")
            if allowed is None:
                continue
            for hook, via in sorted(reach.get(cname, {}).items()):
                if hook in allowed:
                    continue
                where = ("" if via is None else
                         f"; chain {cname} is reached from {hook} (the jump on line {via})")
                raise RuleParseError(
                    f"target {tname} is only valid in the {table.name} "
                    f"{'/'.join(sorted(allowed))} chain{'s' if len(allowed) > 1 else ''} and "
                    f"user chains reached only from there, not in {hook}{where}; the kernel refuses it (RULE_APPEND failed "
                    "(Invalid argument))",
                    line=r.line, text=getattr(r, "full", None) or f"-A {cname} {r.text}",
                    option="-j " + str(tname), source=source)

def _target_of(tokens: list[str]) -> tuple[str | None, bool]:
    for i in range(len(tokens) - 1, 1, -1):
        t = tokens[i]
        if t in ("-j", "--jump", "-g", "--goto") and i + 1 < len(tokens):
            return tokens[i + 1], t in ("-g", "--goto")
    return None, False


# Options whose value is one of a few words: part of a rule's shape.
_ENUM_OPTS = frozenset({"-m", "--match", "-p", "--protocol", "--ctstate", "--state",
                        "--mode", "--src-type", "--dst-type"})


_IPV4_CIDR = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
    r"(?:/(?:3[0-2]|[12]?\d))?")


def _check_addr(v: str) -> bool:
    # Fast path: dotted-quad IPv4, optional prefix length, no leading zeros (inet_pton);
    # everything else goes through ipaddress.
    if _IPV4_CIDR.fullmatch(v):
        return True
    try:
        Net.parse(v)
    except ValueError:
        return False
    return True


def _check_port(v: str) -> bool:
    try:
        _port_range(v)
    except ValueError:
        return False
    return True


def _check_int(v: str) -> bool:
    try:
        int(v, 0)
    except ValueError:
        return False
    return True


def _check_mark(v: str) -> bool:
    try:
        _mark_mask(v)
    except ValueError:
        return False
    return True


def _check_prob(v: str) -> bool:
    try:
        return 0.0 <= float(v) <= 1.0
    except ValueError:
        return False


_DNAT_RE = None


def _check_nat(v: str) -> bool:
    ip, sep, port = v.partition(":")
    if sep and port.isdigit() and int(port) <= 65535 and "-" not in ip and _check_addr(ip) \
            and "/" not in ip:
        return True
    try:
        _nat_range(_Ctx(0, "", None, False, False, []), "--to", v)
    except RuleParseError:
        return False
    return True


# Values checked per rule for rules of an already-compiled shape (the rest is free text
# such as comments and names, or part of the shape).
_VALUE_CHECKS: dict[str, Any] = {
    "-s": _check_addr, "--source": _check_addr, "-d": _check_addr, "--destination": _check_addr,
    "--dport": _check_port, "--sport": _check_port, "--destination-port": _check_port,
    "--source-port": _check_port, "--seconds": _check_int, "--hitcount": _check_int,
    "--every": _check_int, "--packet": _check_int, "--mark": _check_mark,
    "--set-xmark": _check_mark, "--set-mark": _check_mark, "--or-mark": _check_mark,
    "--and-mark": _check_mark, "--xor-mark": _check_mark, "--probability": _check_prob,
    "--to-destination": _check_nat, "--to-source": _check_nat,
    "--to-ports": lambda v: all(_check_port(p) for p in v.split("-", 1)),
    "--dports": lambda v: all(_check_port(p) for p in v.split(",")),
    "--sports": lambda v: all(_check_port(p) for p in v.split(",")),
    "--ports": lambda v: all(_check_port(p) for p in v.split(",")),
    "--destination-ports": lambda v: all(_check_port(p) for p in v.split(",")),
    "--source-ports": lambda v: all(_check_port(p) for p in v.split(",")),
    "--src-range": lambda v: all(_check_addr(p) and "/" not in p for p in v.split("-", 1)),
    "--dst-range": lambda v: all(_check_addr(p) and "/" not in p for p in v.split("-", 1)),
    "--mask": lambda v: _check_addr(v) or _check_int(v),
    "--nfmask": _check_int, "--ctmask": _check_int,
}


def _shape(tokens: list[str]) -> tuple[str, ...] | None:
    """The rule's option skeleton, or None if a value fails its check (then the full
    compile reports it with line and option)."""
    out: list[str] = []
    ap = out.append
    n = len(tokens)
    i = 2
    kinds = _SHAPE_KINDS
    known = _KNOWN_TARGETS
    while i < n:
        t = tokens[i]
        i += 1
        k = kinds.get(t)
        if k is None:
            # An option without a checked value (its value, if any, is free text and
            # skipped as a non-option token), or such a free-text value itself.
            if t[:1] == "-":
                ap(t)
            continue
        ap(t)
        if k is _K_BANG:
            continue
        if k is _K_ENUM:
            if i >= n:
                return None
            ap(tokens[i])
            i += 1
        elif k is _K_MATCH_SET:
            # NAME varies; the flags ("src,dst") are part of the shape.
            if i + 1 >= n:
                return None
            ap(tokens[i + 1])
            i += 2
        elif k is _K_JUMP:
            if i >= n:
                return None
            tgt = tokens[i]
            ap(tgt if tgt in known else "<chain>")
            i += 1
        else:  # a value check
            if i >= n or not k(tokens[i]):
                return None
            i += 1
    return tuple(out)


_JUMP_OPTS = frozenset({"-j", "--jump", "-g", "--goto"})

# What _shape does with a token, in one dict lookup (it runs for every rule of a big dump).
_K_BANG, _K_ENUM, _K_MATCH_SET, _K_JUMP = object(), object(), object(), object()
_SHAPE_KINDS: dict[str, Any] = {
    **_VALUE_CHECKS,
    **dict.fromkeys(_ENUM_OPTS, _K_ENUM),
    **dict.fromkeys(_JUMP_OPTS, _K_JUMP),
    "--match-set": _K_MATCH_SET,
    "!": _K_BANG,
}
