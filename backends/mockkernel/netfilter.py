"""The iptables tables as hook programs: the branching chain walk.

Each table (``raw``, ``mangle``, ``nat``, ``filter``, ``security``) of one family is an
:class:`IptablesTable` registered at its hooks and priority (:data:`TABLE_HOOKS`). The walk
follows ``ipt_do_table``: rules in order, the generic part (``-s -d -p -i -o``) then the
matches in order, the target; jumps push, ``RETURN`` and the end of a user chain pop,
``-g`` replaces the frame, the end of a built-in chain applies its policy.

``statistic --mode random`` splits the walk into two branches with exact probabilities
(or samples, when the packet carries an RNG). Large chains (``KUBE-SERVICES``,
``KUBE-NODEPORTS``) are indexed by (destination, protocol, destination port); the index
gives the same answer as the linear walk (property-tested), it only skips rules that
cannot match.
"""

from __future__ import annotations

import bisect
from fractions import Fraction
from typing import Any, cast

from backends.mockkernel.engine import (
    ACCEPT,
    DROP,
    ONE,
    PRIORITY,
    REJECT,
    Branch,
    PacketState,
    Verdict,
)
from backends.mockkernel.netfilter_parse import (
    BUILTIN_CHAINS,
    Chain,
    ParsedTable,
    RawRule,
    Rule,
    parse_iptables_save,
    rule_target,
)
from kservice.errors import BackendError, RuleParseError, UnsupportedRule

__all__ = ["INDEX_THRESHOLD", "TABLE_HOOKS", "IptablesTable", "load_tables"]

#: Where each table hooks in, with the kernel's priority (iptable_*.c).
TABLE_HOOKS: dict[str, dict[str, int]] = {
    "raw": {h: PRIORITY["raw"] for h in ("PREROUTING", "OUTPUT")},
    "mangle": {h: PRIORITY["mangle"] for h in
               ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")},
    # iptable_nat: dst manipulation at PREROUTING/OUTPUT, src at POSTROUTING/INPUT.
    "nat": {"PREROUTING": PRIORITY["dstnat"], "OUTPUT": PRIORITY["dstnat"],
            "POSTROUTING": PRIORITY["srcnat"], "INPUT": PRIORITY["srcnat"]},
    "filter": {h: PRIORITY["filter"] for h in ("INPUT", "FORWARD", "OUTPUT")},
    "security": {h: PRIORITY["security"] for h in ("INPUT", "FORWARD", "OUTPUT")},
}

#: Chains longer than this get a (dst, proto, dport) index.
INDEX_THRESHOLD = 24
#: Bound on jump depth (the kernel refuses loops at load; this guards the walk).
MAX_DEPTH = 64
_ONE = ONE  # the shared object (see engine.ONE)
_MISSING: Any = object()

# Result kinds of a chain walk besides the verdicts: fell off the end / RETURN.
_FALL = "FALL"


class _Index:
    """(dst, proto, dport) -> sorted rule positions that can match such a packet."""

    def __init__(self, rules: list[Rule]) -> None:
        self.buckets: dict[tuple[int | None, str | None, int | None], list[int]] = {}
        for i, r in enumerate(rules):
            self.buckets.setdefault((r.key_dst, r.key_proto, r.key_dport), []).append(i)
        self.cache: dict[tuple[int, str, int], list[int]] = {}

    def candidates(self, dst: int, proto: str, dport: int) -> list[int]:
        key = (dst, proto, dport)
        got = self.cache.get(key)
        if got is not None:
            return got
        parts: list[list[int]] = []
        b = self.buckets
        for d in (dst, None):
            for p in (proto, None):
                for port in (dport, None):
                    lst = b.get((d, p, port))
                    if lst:
                        parts.append(lst)
        if len(parts) == 1:
            got = parts[0]
        else:
            got = sorted(i for part in parts for i in part)
        if len(self.cache) > 4096:
            self.cache.clear()
        self.cache[key] = got
        return got


class IptablesTable:
    """One iptables table of one family, as a :class:`~engine.HookProgram`."""

    def __init__(self, name: str, family: int, *, use_index: bool = True) -> None:
        self.name = name
        self.family = family
        self.families = (family,)
        self.hooks = dict(TABLE_HOOKS[name])
        self.is_nat = name == "nat"
        self.use_index = use_index
        self.chains: dict[str, Chain] = {
            c: Chain(c, "ACCEPT") for c in BUILTIN_CHAINS[name]
        }
        self._index: dict[str, _Index | None] = {}

    # ------------------------------------------------------------------ loading

    def apply(self, parsed: ParsedTable, *, noflush: bool, lenient: bool,
              source: str | None) -> None:
        """Apply one parsed ``*table`` section (``iptables-restore [--noflush]``)."""
        chains = self.chains
        if not noflush:
            chains = {c: Chain(c, "ACCEPT") for c in BUILTIN_CHAINS[self.name]}
        else:
            chains = dict(chains)
        for name in parsed.deleted:
            if name in chains:
                if any(rule_target(r)[0] == name for c in chains.values() if c.name != name
                       for r in c.rules):
                    # iptables-restore refuses to delete a chain still referenced.
                    raise RuleParseError(f"cannot delete chain {name}: still referenced",
                                         option="-X", source=source)
                del chains[name]
        for name in parsed.declared:
            pc = parsed.chains.get(name)
            if pc is None:
                continue
            policy = None
            if name in BUILTIN_CHAINS[self.name]:
                # A "-" policy (None here) keeps the chain's current one.
                policy = pc.policy or (chains[name].policy if name in chains else "ACCEPT")
            chains[name] = Chain(name, policy, list(pc.rules), pc.raw)
        declared = set(parsed.declared)
        for name, pc in parsed.chains.items():
            if name in declared:
                continue
            if name not in chains:
                r = pc.rules[0]
                raise RuleParseError(f"chain {name} does not exist", line=r.line,
                                     option="-A", source=source)
            chains[name] = Chain(name, chains[name].policy, chains[name].rules + pc.rules,
                                 chains[name].raw + pc.raw)
        # Resolve jumps: every non-builtin target must be a chain of this table.
        for c in chains.values():
            for r in c.rules:
                tname, is_chain = rule_target(r)
                if is_chain and tname not in chains:
                    assert tname is not None
                    if tname in BUILTIN_CHAINS[self.name]:
                        raise RuleParseError(f"cannot jump to built-in chain {tname}",
                                             line=r.line, option="-j " + tname, source=source)
                    looks_like_target = tname.isupper() and "-" not in tname
                    msg = (f"unsupported target {tname}" if looks_like_target
                           else f"jump to chain {tname} that does not exist")
                    if looks_like_target and lenient:
                        if isinstance(r, RawRule):
                            r.unknown_target = "-j " + tname
                        else:
                            r.target.unknown = "-j " + tname
                            r.target.options.pop("chain", None)
                        continue
                    cls = UnsupportedRule if looks_like_target else RuleParseError
                    raise cls(msg, line=r.line, option="-j " + tname, source=source)
        self.chains = chains
        self._index = {}

    def index_for(self, chain: Chain) -> _Index | None:
        idx = self._index.get(chain.name, _MISSING)
        if idx is _MISSING:
            chain.compile()
            idx = None
            if self.use_index and len(chain.rules) > INDEX_THRESHOLD:
                idx = _Index(chain.rules)
            self._index[chain.name] = idx
        return cast("_Index | None", idx)

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, hook: str, state: PacketState) -> list[Branch]:
        chain = self.chains[hook]
        if not chain.rules and (chain.policy or "ACCEPT") == "ACCEPT":
            # An empty built-in chain with an ACCEPT policy (mangle FORWARD, ...): the
            # packet passes untouched. Most hooks of a kube-proxy node look like this, and
            # every branch of a traced packet crosses them.
            return [(_ONE, state, ACCEPT)]
        out: list[Branch] = []
        for p, st, kind in self._walk(self.chains[hook], 0, state, 0):
            if kind == _FALL:
                pol = chain.policy or "ACCEPT"
                if pol != "ACCEPT":
                    st.rules.append(f"{self.name} {hook} policy {pol}")
                out.append((p, st, ACCEPT if pol == "ACCEPT" else DROP))
            elif kind == "ACCEPT":
                out.append((p, st, ACCEPT))
            elif kind == "DROP":
                out.append((p, st, DROP))
            elif kind == "REJECT":
                out.append((p, st, REJECT))
            else:
                out.append((p, st, Verdict("UNKNOWN", reason=kind[8:])))
        return out

    def _walk(self, chain: Chain, start: int, st: PacketState, depth: int
              ) -> list[tuple[Fraction, PacketState, str]]:
        """Walk ``chain`` from rule ``start``; return (prob, state, kind) branches.

        kind: ``ACCEPT``/``DROP``/``REJECT``, ``UNKNOWN:<option>`` or ``FALL`` (end of the
        chain or RETURN -- the caller continues after its jump).

        A ``statistic`` split forks the taken branch and walks on with the other one, its
        weight reduced, so every outcome is multiplied once per split it went through.
        """
        rules = chain.rules
        if not rules:
            return [(_ONE, st, _FALL)]
        if depth > MAX_DEPTH:
            raise BackendError(f"iptables {self.name}: jump depth over {MAX_DEPTH} "
                               f"(loop through {chain.name}?)")
        if chain.raw:
            chain.compile()
            rules = chain.rules
        idx = self._index.get(chain.name, _MISSING)
        if idx is _MISSING:
            idx = self.index_for(chain)
        positions: Any
        if idx is not None:
            cand = idx.candidates(st.dst_int, st.proto, st.dport)
            positions = cand[bisect.bisect_left(cand, start):] if start else cand
        else:
            positions = range(start, len(rules))
        rng = st.rng
        out: list[tuple[Fraction, PacketState, str]] = []
        weight = _ONE
        for i in positions:
            rule = rules[i]
            prob = _ONE
            comp: Fraction | None = None  # 1 - prob, when known without arithmetic
            matched = True
            tests = rule.tests
            if tests is not None:
                # Plain tests only (most rules): no split, nothing unknown.
                for test in tests:
                    if not test(st):
                        matched = False
                        break
                if not matched:
                    continue
            else:
                for m in rule.matches:
                    if m.unknown is not None:
                        st.rules.append(self._path(chain, rule))
                        out.append((weight, st, "UNKNOWN:" + m.unknown))
                        return out
                    if m.probability is not None:
                        if rng is not None:
                            if not rng.random() < m.probability:
                                matched = False
                                break
                        else:
                            if prob is _ONE:
                                prob, comp = m.probability, m.complement
                            else:
                                prob, comp = prob * m.probability, None
                            if prob == 0:
                                matched = False
                                break
                    elif not m.test(st):
                        matched = False
                        break
            if not matched:
                continue
            if prob is not _ONE and prob != 1:
                # Split: the rule matches with `prob` (a forked branch takes it) ...
                w = prob if weight is _ONE else weight * prob
                for p, s2, k in self._take(chain, i, st.fork(), depth):
                    out.append((w if p is _ONE else w * p, s2, k))
                # ... and with 1 - prob the walk goes on with this state.
                if comp is None:
                    comp = 1 - prob
                weight = comp if weight is _ONE else weight * comp
                continue
            t = rule.target
            if t.options.get("chain") and not t.goto and t.unknown is None:
                # A plain jump: when the sub-chain comes back as one branch, go on here
                # without recursion (the common case: KUBE-MARK-MASQ, FORWARD jumps).
                st.rules.append(rule.path or self._path(chain, rule))
                sub = self.chains[t.name]  # type: ignore[index]
                if not sub.rules:
                    continue  # an empty chain returns at once (KUBE-PROXY-FIREWALL, ...)
                res = self._walk(sub, 0, st, depth + 1)
                if len(res) == 1 and res[0][2] == _FALL and res[0][0] is _ONE:
                    st = res[0][1]
                    continue
                for p, s2, k in res:
                    w = p if weight is _ONE else weight * p
                    if k == _FALL:
                        for q, s3, k3 in self._walk(chain, i + 1, s2, depth):
                            out.append((w if q is _ONE else w * q, s3, k3))
                    else:
                        out.append((w, s2, k))
                return out
            for p, s2, k in self._take(chain, i, st, depth):
                out.append((weight if p is _ONE else weight * p, s2, k))
            return out
        out.append((weight, st, _FALL))
        return out

    def _path(self, chain: Chain, rule: Rule) -> str:
        """The rule-path entry ``<table> <chain> <rule text>`` (cached on the rule)."""
        rule.path = f"{self.name} {chain.name} {rule.text}"
        return rule.path

    def _take(self, chain: Chain, i: int, st: PacketState, depth: int
              ) -> list[tuple[Fraction, PacketState, str]]:
        """Rule ``i`` matched: apply its target, then continue as the target says."""
        rule = chain.rules[i]
        st.rules.append(rule.path or self._path(chain, rule))
        t = rule.target
        name = t.name
        if t.unknown is not None:
            return [(_ONE, st, "UNKNOWN:" + t.unknown)]
        if name is None:
            return self._walk(chain, i + 1, st, depth)
        if t.options.get("chain"):
            res = self._walk(self.chains[name], 0, st, depth + 1)
            if t.goto:
                return res  # a goto's fall-through returns from the current chain
            out: list[tuple[Fraction, PacketState, str]] = []
            for p, s, k in res:
                if k == _FALL:
                    out += [(p if q is _ONE else (q if p is _ONE else p * q), s2, k2)
                            for q, s2, k2 in self._walk(chain, i + 1, s, depth)]
                else:
                    out.append((p, s, k))
            return out
        if name in ("ACCEPT", "DROP", "REJECT"):
            return [(_ONE, st, name)]
        if name == "RETURN":
            return [(_ONE, st, _FALL)]
        verdict = _apply_target(self, rule, st)
        if verdict is not None:
            return [(_ONE, st, verdict)]
        return self._walk(chain, i + 1, st, depth)


def _apply_target(table: IptablesTable, rule: Rule, st: PacketState) -> str | None:
    """Apply a non-jump target; return a verdict kind, or None to continue the chain."""
    t = rule.target
    o = t.options
    name = t.name
    kernel = st.kernel
    if name in ("LOG", "NFLOG", "TRACE", "ULOG"):
        return None
    if name == "MARK":
        st.mark = _mark_op(st.mark, o["op"], o["value"])
        return None
    if name == "CONNMARK":
        _connmark(st, o)
        return None
    if name in ("CT", "NOTRACK"):
        if name == "NOTRACK" or o.get("notrack"):
            st.ct_state = "UNTRACKED"
            st.ct = None
            st.nat_done.update(("dst", "src"))
        return None
    if name == "DNAT":
        ip, port = _pick(o["ranges"], st, st.dst, st.dport)
        st.set_dst(ip, port)
        st.nat_done.add("dst")
        return "ACCEPT"
    if name == "REDIRECT":
        ip = kernel.redirect_address(st)
        if ip is None:
            return "DROP"
        ports = o.get("ports")
        st.set_dst(ip, ports[0] if ports and not (ports[0] <= st.dport <= ports[1]) else st.dport)
        st.nat_done.add("dst")
        return "ACCEPT"
    if name == "SNAT":
        ip, port = _pick(o["ranges"], st, st.src, st.sport)
        st.set_src(ip, port)
        st.nat_done.add("src")
        return "ACCEPT"
    if name == "MASQUERADE":
        ip = kernel.masquerade_address(st)
        if ip is None:
            return "DROP"  # no address on the outgoing interface: masquerade drops
        ports = o.get("ports")
        port = st.sport
        if ports and not (ports[0] <= port <= ports[1]):
            port = ports[0]
        st.set_src(ip, port)
        st.masqueraded = True
        st.nat_done.add("src")
        return "ACCEPT"
    raise BackendError(f"target {name} not implemented")


def _pick(ranges: list[dict[str, Any]], st: PacketState, ip: str, port: int) -> tuple[str, int]:
    # One range per rule in practice. The kernel hashes the tuple to pick an address of a
    # range (find_best_ips_proto); we take the first address (an approximation: the
    # kernel's choice is per-flow pseudo-random, not modelled), and keep the
    # port when it is inside the port range (nf_nat_l4proto_unique_tuple), else its start.
    r = ranges[0]
    ips = r["ips"] or [ip]
    pr = r["ports"]
    if pr is not None and not (pr[0] <= port <= pr[1]):
        port = pr[0]
    return ips[0], port


def _mark_op(mark: int, op: str, value: str) -> int:
    v, _, m = value.partition("/")
    val = int(v, 0)
    mask = int(m, 0) if m else None
    if op == "set-xmark":
        return (mark & ~(mask if mask is not None else 0xFFFFFFFF) & 0xFFFFFFFF) ^ val
    if op == "set-mark":
        mk = mask if mask is not None else 0xFFFFFFFF
        return (mark & ~mk & 0xFFFFFFFF) | val
    if op == "or-mark":
        return mark | val
    if op == "and-mark":
        return mark & val
    if op == "xor-mark":
        return mark ^ val
    raise BackendError(f"MARK op {op} not implemented")


def _connmark(st: PacketState, o: dict[str, Any]) -> None:
    op = o["op"]
    ctmark = int(st.notes.get("ctmark", st.ct.mark if st.ct is not None else 0))
    if op in ("set-xmark", "set-mark", "or-mark", "and-mark", "xor-mark"):
        ctmark = _mark_op(ctmark, op, o["value"])
    elif op == "save-mark":
        nf, ct = o.get("nfmask", o.get("mask", 0xFFFFFFFF)), o.get("ctmask", o.get("mask", 0xFFFFFFFF))
        ctmark = (ctmark & ~ct & 0xFFFFFFFF) ^ (st.mark & nf)
    elif op == "restore-mark":
        nf, ct = o.get("nfmask", o.get("mask", 0xFFFFFFFF)), o.get("ctmask", o.get("mask", 0xFFFFFFFF))
        st.mark = (st.mark & ~nf & 0xFFFFFFFF) ^ (ctmark & ct)
    st.notes["ctmark"] = ctmark
    return None


def load_tables(
    tables: dict[str, IptablesTable], text: str, *, family: int, noflush: bool,
    lenient: bool, exact_kernel_probabilities: bool, source: str | None,
    warnings: list[str], use_index: bool = True,
) -> list[str]:
    """Parse ``text`` and apply it to ``tables`` (created on demand); returns table names."""
    parsed = parse_iptables_save(text, source=source, lenient=lenient,
                                 exact_kernel_probabilities=exact_kernel_probabilities,
                                 warnings=warnings)
    for pt in parsed:
        tbl = tables.get(pt.name)
        if tbl is None:
            tbl = IptablesTable(pt.name, family, use_index=use_index)
            tables[pt.name] = tbl
        tbl.apply(pt, noflush=noflush, lenient=lenient, source=source)
    return [pt.name for pt in parsed]
