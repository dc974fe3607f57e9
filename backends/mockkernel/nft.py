"""The mock kernel's nftables: tables, chains, typed sets and maps, and the branching walk.

:class:`NftRuleset` holds what ``nft list ruleset`` would show. :meth:`NftRuleset.run`
applies a parsed ``nft -f`` input *atomically*, as the kernel applies one netlink batch:
every command is checked against the state built so far (missing chain, set or element,
an element key of the wrong type, a map key re-added with another value, deleting a chain
still referenced by a jump/goto or a verdict-map element, or a set still used by a rule)
and on the first error nothing is changed and a
:class:`~kservice.errors.BackendError` names the line -- what ``nft -f`` does.

Every base chain is a :class:`~backends.mockkernel.engine.HookProgram` registered at its
hook and numeric priority, so nft chains interleave with iptables tables as in the kernel.
The walk follows ``nft_do_chain``: rules in order; ``jump`` pushes, ``goto`` replaces the
frame, ``return``/end of a regular chain pops, the end of a base chain applies its policy;
``accept``/``drop``/``reject`` and NAT statements end the base chain. ``numgen random mod N``
splits the walk into N branches of probability exactly 1/N.

ClientIP affinity: ``update @set { ip saddr }`` writes the source with the set's timeout on
the kernel's virtual clock (only when the packet is committed, i.e. ``MockKernel.send``);
``ip saddr @set`` matches unexpired entries.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import attrs

from backends.mockkernel.engine import ACCEPT, DROP, ONE, REJECT, Branch, PacketState, Verdict
from backends.mockkernel.nft_parse import (
    PROTO_NAMES,
    Command,
    Element,
    NftRule,
    _Ctx,
    parse_element_tokens,
    parse_nft,
)
from kservice.errors import BackendError

__all__ = ["NftChain", "NftChainProgram", "NftRuleset", "NftSet", "NftTable", "nft_apply",
           "nft_state"]

_HOOKS = {"prerouting": "PREROUTING", "input": "INPUT", "forward": "FORWARD",
          "output": "OUTPUT", "postrouting": "POSTROUTING"}
_ONE = ONE  # the shared object (see engine.ONE)
MAX_DEPTH = 64


class NftError(BackendError):
    """``nft -f`` refused the input (the whole transaction is rolled back)."""

    def __init__(self, msg: str, cmd: Command | None, source: str | None) -> None:
        where = source or "nft"
        if cmd is not None:
            where += f":{cmd.line}"
        text = f"{where}: Error: {msg}"
        if cmd is not None and cmd.text:
            text += f"\n    {cmd.text.strip()}"
        super().__init__(text)
        self.line = cmd.line if cmd is not None else None


@attrs.define(slots=True)
class NftChain:
    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    policy: str = "accept"
    comment: str | None = None
    rules: list[NftRule] = attrs.field(factory=list)

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@attrs.define(slots=True)
class NftSet:
    name: str
    is_map: bool
    key_types: tuple[str, ...]
    value_type: str | None = None
    flags: tuple[str, ...] = ()
    timeout: float | None = None
    comment: str | None = None
    size: int | None = None
    #: key -> element; ``expires`` kept beside for dynamic sets.
    elements: dict[tuple[Any, ...], Element] = attrs.field(factory=dict)
    expires: dict[tuple[Any, ...], float] = attrs.field(factory=dict)

    @property
    def interval(self) -> bool:
        return "interval" in self.flags

    def type_text(self) -> str:
        t = " . ".join(self.key_types)
        return f"{t} : {self.value_type}" if self.value_type else t


@attrs.define(slots=True)
class NftTable:
    family: str
    name: str
    comment: str | None = None
    chains: dict[str, NftChain] = attrs.field(factory=dict)
    sets: dict[str, NftSet] = attrs.field(factory=dict)


def _chain_refs(table: NftTable) -> dict[str, int]:
    """How many rules and verdict-map elements refer to each chain (the kernel's use count)."""
    refs: dict[str, int] = {}

    def verdict(v: Any) -> None:
        if isinstance(v, tuple) and len(v) == 2 and v[0] in ("jump", "goto"):
            refs[v[1]] = refs.get(v[1], 0) + 1

    for ch in table.chains.values():
        for r in ch.rules:
            for e in r.exprs:
                if e[0] == "verdict" and len(e) == 3:
                    refs[e[2]] = refs.get(e[2], 0) + 1
                elif e[0] == "numgen":
                    for v in e[3].values():
                        verdict(v)
    for s in table.sets.values():
        if s.value_type == "verdict":
            for el in s.elements.values():
                verdict(el.value)
    return refs


def _set_refs(table: NftTable) -> dict[str, int]:
    refs: dict[str, int] = {}
    for ch in table.chains.values():
        for r in ch.rules:
            for e in r.exprs:
                name = None
                if e[0] in ("addrset", "update"):
                    name = e[3] if e[0] == "addrset" else e[1]
                elif e[0] in ("vmap", "lookup"):
                    name = e[2]
                if name:
                    refs[name] = refs.get(name, 0) + 1
    return refs


class NftRuleset:
    """All nftables tables of one network namespace."""

    def __init__(self, clock: Any = None) -> None:
        self.tables: dict[tuple[str, str], NftTable] = {}
        #: The kernel's virtual clock (element timeouts); ``None``: timeouts not tracked.
        self.clock = clock

    # ------------------------------------------------------------------ applying

    def run(self, text: str, *, source: str | None = None, check: bool = False,
            lenient: bool = False, warnings: list[str] | None = None) -> None:
        """``nft -f`` (``check=True``: ``nft -c -f``, validate only). ``lenient``: rules
        with expressions the model does not implement load (warnings appended to
        ``warnings``) and give a packet that reaches them an UNKNOWN outcome."""
        cmds = parse_nft(text, source=source, lenient=lenient, warnings=warnings)
        work = copy.deepcopy(self.tables)
        for cmd in cmds:
            self._apply(work, cmd, source)
        if not check:
            self.tables = work

    def _table(self, tables: dict[tuple[str, str], NftTable], cmd: Command, source: str | None) -> NftTable:
        t = tables.get((cmd.family, cmd.table))
        if t is None:
            raise NftError(f"Could not process rule: No such file or directory "
                           f"(table {cmd.family} {cmd.table})", cmd, source)
        return t

    def _apply(self, tables: dict[tuple[str, str], NftTable], cmd: Command, source: str | None) -> None:
        verb, obj = cmd.verb, cmd.obj
        destroy = verb == "destroy"
        if destroy:
            verb = "delete"
        if obj == "ruleset":
            tables.clear()
            return
        key = (cmd.family, cmd.table)
        if obj == "table":
            if verb in ("add", "create"):
                if key in tables:
                    if verb == "create":
                        raise NftError("Could not process rule: File exists", cmd, source)
                    if cmd.body is not None:
                        tables[key].comment = cmd.body
                else:
                    tables[key] = NftTable(cmd.family, cmd.table, comment=cmd.body)
            elif verb == "flush":
                t = self._table(tables, cmd, source)
                for ch in t.chains.values():
                    ch.rules.clear()
                for s in t.sets.values():
                    s.elements.clear()
                    s.expires.clear()
            elif verb == "delete":
                if key not in tables and destroy:
                    return
                self._table(tables, cmd, source)
                del tables[key]
            return
        if destroy and key not in tables:
            return
        t = self._table(tables, cmd, source)
        if obj == "chain":
            self._chain(t, cmd, verb, source, destroy)
        elif obj in ("set", "map"):
            self._set(t, cmd, verb, source, destroy)
        elif obj == "element":
            self._element(t, cmd, verb, source, destroy)
        elif obj == "rule":
            rch = t.chains.get(cmd.name)
            if rch is None:
                raise NftError(f"Could not process rule: No such file or directory "
                               f"(chain {cmd.name})", cmd, source)
            self._check_rule_refs(t, cmd.body, cmd, source)
            if verb == "insert":
                rch.rules.insert(0, cmd.body)
            else:
                rch.rules.append(cmd.body)

    def _chain(self, t: NftTable, cmd: Command, verb: str, source: str | None,
               destroy: bool) -> None:
        ch = t.chains.get(cmd.name)
        decl = cmd.body
        if verb in ("add", "create"):
            if ch is None:
                ch = NftChain(cmd.name)
                if decl is not None:
                    ch.type, ch.hook, ch.priority = decl.type, decl.hook, decl.priority
                    ch.policy = decl.policy or "accept"
                    ch.comment = decl.comment
                    if ch.hook is not None:
                        self._check_base(t, ch, cmd, source)
                t.chains[cmd.name] = ch
                return
            if verb == "create":
                raise NftError("Could not process rule: File exists", cmd, source)
            if decl is not None:
                if decl.hook is not None and (decl.type, decl.hook, decl.priority) != (
                        ch.type, ch.hook, ch.priority):
                    # The kernel cannot change a base chain's hook/type/priority in place.
                    raise NftError("Could not process rule: Device or resource busy "
                                   f"(chain {cmd.name} exists with another hook or priority)",
                                   cmd, source)
                if decl.hook is None and ch.hook is not None and decl.type is None and \
                        decl.comment is None:
                    pass
                if decl.policy:
                    ch.policy = decl.policy
                if decl.comment is not None:
                    ch.comment = decl.comment
            return
        if ch is None:
            if destroy:
                return
            raise NftError(f"Could not process rule: No such file or directory "
                           f"(chain {cmd.name})", cmd, source)
        if verb == "flush":
            ch.rules.clear()
        elif verb == "delete":
            refs = _chain_refs(t).get(cmd.name, 0)
            if refs:
                raise NftError(f"Could not process rule: Device or resource busy "
                               f"(chain {cmd.name} is referenced {refs} time(s))", cmd, source)
            del t.chains[cmd.name]

    def _check_base(self, t: NftTable, ch: NftChain, cmd: Command, source: str | None) -> None:
        if ch.type == "nat" and ch.hook == "forward":
            raise NftError("Could not process rule: Operation not supported "
                           "(nat chains cannot use the forward hook)", cmd, source)
        if t.family == "ip6" and ch.hook not in _HOOKS:
            raise NftError("bad hook", cmd, source)

    def _set(self, t: NftTable, cmd: Command, verb: str, source: str | None,
             destroy: bool) -> None:
        s = t.sets.get(cmd.name)
        decl = cmd.body
        if verb in ("add", "create"):
            if decl is None or decl.key_types is None:
                raise NftError(f"set {cmd.name} needs a type", cmd, source)
            if s is None:
                addr = "ipv4_addr" if t.family == "ip" else "ipv6_addr"
                bad = {"ipv4_addr", "ipv6_addr"} - {addr}
                if t.family != "inet" and bad & set(decl.key_types):
                    pass  # nft allows it; lookups from the wrong family just never match
                t.sets[cmd.name] = NftSet(
                    cmd.name, cmd.obj == "map", decl.key_types, decl.value_type,
                    decl.flags, decl.timeout, decl.comment, decl.size)
                return
            if verb == "create":
                raise NftError("Could not process rule: File exists", cmd, source)
            if (s.key_types, s.value_type) != (decl.key_types, decl.value_type) or (
                    s.is_map != (cmd.obj == "map")):
                raise NftError(f"Could not process rule: File exists (set {cmd.name} "
                               f"exists with type {s.type_text()})", cmd, source)
            if decl.flags and set(decl.flags) != set(s.flags):
                raise NftError(f"Could not process rule: File exists (set {cmd.name} "
                               "exists with other flags)", cmd, source)
            # Linux >= 6.2 (and stable 6.1.y; 123b99619cca "honor set timeout and garbage
            # collection updates"): re-adding a set replaces its default timeout -- none
            # given means none. Elements already in the set keep their expiry.
            s.timeout = decl.timeout
            return
        if s is None:
            if destroy:
                return
            raise NftError(f"Could not process rule: No such file or directory "
                           f"({cmd.obj} {cmd.name})", cmd, source)
        if verb == "flush":
            s.elements.clear()
            s.expires.clear()
        elif verb == "delete":
            if _set_refs(t).get(cmd.name):
                raise NftError(f"Could not process rule: Device or resource busy "
                               f"({cmd.obj} {cmd.name} is used by a rule)", cmd, source)
            del t.sets[cmd.name]

    def _element(self, t: NftTable, cmd: Command, verb: str, source: str | None,
                 destroy: bool) -> None:
        s = t.sets.get(cmd.name)
        if s is None:
            raise NftError(f"Could not process rule: No such file or directory "
                           f"(set {cmd.name})", cmd, source)
        ctx = _Ctx(source, cmd.line, cmd.text)
        for toks in cmd.body:
            if verb == "delete":
                if ":" in toks:
                    toks = toks[: toks.index(":")]
                el = parse_element_tokens(list(toks), s.key_types, None, s.interval, ctx)
                if el.key not in s.elements:
                    if destroy:
                        continue
                    raise NftError(f"Could not process rule: No such file or directory "
                                   f"(element {el.text} not in {cmd.name})", cmd, source)
                del s.elements[el.key]
                s.expires.pop(el.key, None)
                continue
            el = parse_element_tokens(list(toks), s.key_types, s.value_type, s.interval, ctx)
            if s.value_type == "verdict" and el.value[0] in ("goto", "jump") and \
                    el.value[1] not in t.chains:
                raise NftError(f"Could not process rule: No such file or directory "
                               f"(chain {el.value[1]})", cmd, source)
            old = s.elements.get(el.key)
            if old is not None:
                if verb == "create" or (s.is_map and old.value != el.value):
                    raise NftError(f"Could not process rule: File exists (element {el.text} "
                                   f"of {cmd.name})", cmd, source)
                continue
            s.elements[el.key] = el
            timeout = el.timeout if el.timeout is not None else s.timeout
            if timeout is not None and self.clock is not None:
                s.expires[el.key] = self.clock.now + timeout

    def _check_rule_refs(self, t: NftTable, rule: NftRule, cmd: Command,
                         source: str | None) -> None:
        for e in rule.exprs:
            names: list[str] = []
            if e[0] == "verdict" and len(e) == 3:
                if e[2] not in t.chains:
                    raise NftError(f"Could not process rule: No such file or directory "
                                   f"(chain {e[2]})", cmd, source)
            elif e[0] == "numgen":
                for v in e[3].values():
                    if v[0] in ("goto", "jump") and v[1] not in t.chains:
                        raise NftError(f"Could not process rule: No such file or directory "
                                       f"(chain {v[1]})", cmd, source)
            elif e[0] == "addrset":
                names = [e[3]]
            elif e[0] in ("vmap", "lookup"):
                names = [e[2]]
            elif e[0] == "update":
                names = [e[1]]
            for n in names:
                if n not in t.sets:
                    raise NftError(f"Could not process rule: No such file or directory "
                                   f"(set {n})", cmd, source)
                s = t.sets[n]
                if e[0] == "vmap" and s.value_type != "verdict":
                    raise NftError(f"{n} is not a verdict map", cmd, source)
                if e[0] in ("vmap", "lookup") and len(e[1]) != len(s.key_types):
                    raise NftError(f"datatype mismatch, map {n} expects "
                                   f"{' . '.join(s.key_types)}", cmd, source)
                if e[0] == "update" and "dynamic" not in s.flags and "timeout" not in s.flags:
                    pass

    # ------------------------------------------------------------------ views

    def base_chains(self) -> Iterable[tuple[NftTable, NftChain]]:
        for t in self.tables.values():
            for ch in t.chains.values():
                if ch.is_base:
                    yield t, ch

    def list_ruleset(self) -> str:
        """The state in ``nft list ruleset`` block form (loadable again with :meth:`run`).

        Rules print as they were written; elements in key order; element expiry omitted.
        """
        out: list[str] = []
        for (fam, name), t in self.tables.items():
            out.append(f"table {fam} {name} {{")
            if t.comment is not None:
                out.append(f'\tcomment "{t.comment}"')
            for s in t.sets.values():
                out.append(f"\t{'map' if s.is_map else 'set'} {s.name} {{")
                out.append(f"\t\ttype {s.type_text()}")
                if s.flags:
                    out.append(f"\t\tflags {','.join(s.flags)}")
                if s.timeout is not None:
                    out.append(f"\t\ttimeout {int(s.timeout)}s")
                if s.comment is not None:
                    out.append(f'\t\tcomment "{s.comment}"')
                if s.elements:
                    items = []
                    for key in sorted(s.elements, key=repr):
                        el = s.elements[key]
                        text = el.text
                        if el.comment is not None:
                            text += f' comment "{el.comment}"'
                        if el.value is not None:
                            text += " : " + (" ".join(el.value) if isinstance(el.value, tuple)
                                             else str(el.value))
                        items.append(text)
                    out.append("\t\telements = { " + ",\n\t\t\t     ".join(items) + " }")
                out.append("\t}")
            for c in t.chains.values():
                out.append(f"\tchain {c.name} {{")
                if c.is_base:
                    out.append(f"\t\ttype {c.type} hook {c.hook} priority {c.priority}; "
                               f"policy {c.policy};")
                if c.comment is not None:
                    out.append(f'\t\tcomment "{c.comment}"')
                out.extend(f"\t\t{r.text}" for r in c.rules)
                out.append("\t}")
            out.append("}")
        return "\n".join(out) + ("\n" if out else "")

    def canonical(self) -> dict[str, Any]:
        """A comparable snapshot: rules as parsed expressions (so `mark or 0x4000` equals
        `meta mark set meta mark | 0x00004000`), element expiry and line numbers left out."""
        out: dict[str, Any] = {}
        for (fam, name), t in sorted(self.tables.items()):
            out[f"{fam} {name}"] = {
                "comment": t.comment,
                "chains": {
                    c.name: (c.type, c.hook, c.priority, c.policy if c.is_base else None,
                             c.comment, tuple((r.exprs, r.comment) for r in c.rules))
                    for c in t.chains.values()
                },
                "sets": {
                    s.name: (s.is_map, s.type_text(), tuple(sorted(s.flags)), s.timeout,
                             s.comment, frozenset((k, e.value, e.comment)
                                                  for k, e in s.elements.items()))
                    for s in t.sets.values()
                },
            }
        return out


# --------------------------------------------------------------------------- evaluation


class _Walk:
    """One walk of a base chain (one hook visit)."""

    def __init__(self, table: NftTable, base: NftChain, hook: str) -> None:
        self.table = table
        self.base = base
        self.hook = hook
        self.prefix = f"{table.family} {table.name}"


def _addr_of(st: PacketState, which: str) -> int:
    return st.src_int if which == "s" else st.dst_int


def _sel_value(sel: tuple[Any, ...], st: PacketState) -> Any:
    if sel[0] == "addr":
        return st.src_int if sel[2] == "s" else st.dst_int
    if sel[0] == "l4proto":
        return _PROTO_NUM.get(st.proto, -1)
    if sel[0] == "port":
        return st.dport if sel[1] == "dport" else st.sport
    raise BackendError(f"unknown selector {sel}")


_PROTO_NUM = {v: k for k, v in PROTO_NAMES.items()}


def _family_ok(sels: tuple[Any, ...], st: PacketState) -> bool:
    for s in sels:
        if s[0] == "addr" and (s[1] == "ip") != (st.version == 4):
            return False
    return True


def _set_lookup(s: NftSet, key: tuple[Any, ...], now: float | None) -> Element | None:
    el = s.elements.get(key)
    if el is None and s.interval:
        for k, e in s.elements.items():
            if all(_member(v, part) for v, part in zip(key, k, strict=True)):
                el = e
                break
    if el is not None and now is not None:
        exp = s.expires.get(el.key)
        if exp is not None and exp <= now:
            return None
    return el


def _member(value: Any, part: Any) -> bool:
    if isinstance(part, tuple):
        return bool(part[0] <= value <= part[1])
    return bool(value == part)


class NftChainProgram:
    """One nft base chain as a hook program."""

    def __init__(self, ruleset: NftRuleset, family: str, table: str, chain: str,
                 hook: str, priority: int, is_nat: bool) -> None:
        self.ruleset = ruleset
        self.family = family
        self.table_name = table
        self.chain_name = chain
        self.name = f"nft {family} {table} {chain}"
        self.hooks = {_HOOKS[hook]: priority}
        self.is_nat = is_nat

    # -- HookProgram
    def evaluate(self, hook: str, state: PacketState) -> list[Branch]:
        t = self.ruleset.tables.get((self.family, self.table_name))
        ch = t.chains.get(self.chain_name) if t else None
        if t is None or ch is None or (self.family == "ip" and state.version != 4) or (
                self.family == "ip6" and state.version != 6):
            return [(_ONE, state, ACCEPT)]
        w = _Walk(t, ch, hook)
        out: list[Branch] = []
        for p, st, res in self._run(w, ch, state, _ONE, 0):
            if res == "FALL":
                res = "drop" if ch.policy == "drop" else "accept"
            if res.startswith("UNKNOWN:"):
                out.append((p, st, Verdict("UNKNOWN", reason=res[len("UNKNOWN:"):])))
                continue
            out.append((p, st, _VERDICT[res]))
        return out

    def _run(self, w: _Walk, chain: NftChain, st: PacketState, p: Fraction,
             depth: int) -> list[tuple[Fraction, PacketState, str]]:
        """Walk ``chain``; results are 'FALL' (returned to caller) or a final verdict."""
        if depth > MAX_DEPTH:
            raise BackendError(f"nft: jump depth exceeded at chain {chain.name}")
        return self._rules(w, chain, 0, st, p, depth)

    def _rules(self, w: _Walk, chain: NftChain, start: int, st: PacketState, p: Fraction,
               depth: int) -> list[tuple[Fraction, PacketState, str]]:
        rules = chain.rules
        for idx in range(start, len(rules)):
            rule = rules[idx]
            res = self._rule(w, chain, idx, rule, st, p, depth)
            if res is None:
                continue  # no match: next rule
            return res
        return [(p, st, "FALL")]

    def _rule(self, w: _Walk, chain: NftChain, idx: int, rule: NftRule, st: PacketState,
              p: Fraction, depth: int) -> list[tuple[Fraction, PacketState, str]] | None:
        """Evaluate one rule. ``None``: the rule did not match (or ended without verdict
        and the walk continues with the next rule -- signalled by recursing)."""
        kernel = st.kernel
        now = kernel.clock.now if kernel is not None and getattr(kernel, "clock", None) else None
        for e in rule.exprs:
            kind = e[0]
            if kind == "addr":
                if e[4] != st.version:
                    return None
                v = _addr_of(st, e[1])
                hit = any(lo <= v <= hi for lo, hi in e[3])
                if hit == e[2]:
                    return None
            elif kind == "addrset":
                s = w.table.sets.get(e[3])
                hit = s is not None and _set_lookup(s, (_addr_of(st, e[1]),), now) is not None
                if hit == e[2]:
                    return None
            elif kind == "lookup":
                if not _family_ok(e[1], st):
                    return None
                s = w.table.sets[e[2]]
                key = tuple(_sel_value(sel, st) for sel in e[1])
                if (_set_lookup(s, key, now) is not None) == e[3]:
                    return None
            elif kind == "l4proto":
                if (_PROTO_NUM.get(st.proto, -1) in e[2]) == e[1]:
                    return None
            elif kind == "port":
                if e[4] is not None and _PROTO_NUM.get(st.proto) != e[4]:
                    return None
                v = st.dport if e[1] == "dport" else st.sport
                if (v in e[3]) == e[2]:
                    return None
            elif kind == "fib":
                ip = st.src if e[1] == "s" else st.dst
                local = bool(kernel.is_local(ip)) if kernel is not None else False
                if local == e[2]:
                    return None
            elif kind == "ctstate":
                if (st.ct_state.lower() in e[2]) == e[1]:
                    return None
            elif kind == "ctstatus":
                bits = {b.lower() for b in st.ct_status}
                if bool(bits & e[2]) == e[1]:
                    return None
            elif kind == "markcmp":
                v = st.mark & e[1] if e[1] is not None else st.mark
                if (v == e[3]) == e[2]:
                    return None
            elif kind == "iface":
                name = st.iif if e[1] in ("iifname", "iif") else st.oif
                pat = e[3]
                hit = name is not None and (name.startswith(pat[:-1]) if pat.endswith("*")
                                            else name == pat)
                if hit == e[2]:
                    return None
            elif kind == "mark_set":
                op, val = e[1], e[2]
                st.mark = {"|": st.mark | val, "^": st.mark ^ val, "&": st.mark & val,
                           "=": val}[op] & 0xFFFFFFFF
            elif kind == "counter":
                pass
            elif kind == "unknown":
                # Lenient mode: the parser could not read the rule from here on.
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                return [(p, st, "UNKNOWN:" + e[1])]
            elif kind == "update":
                s = w.table.sets.get(e[1])
                if s is None:
                    raise BackendError(f"nft: set {e[1]} vanished")
                if st.commit and now is not None:
                    key = (_addr_of(st, e[2]),)
                    s.elements[key] = Element(key=key, text=str(ipaddress.ip_address(key[0])))
                    if s.timeout is not None:
                        s.expires[key] = now + s.timeout
            elif kind == "vmap":
                if not _family_ok(e[1], st):
                    return None
                s = w.table.sets[e[2]]
                key = tuple(_sel_value(sel, st) for sel in e[1])
                el = _set_lookup(s, key, now)
                if el is None:
                    return None
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                return self._verdict(w, chain, idx, el.value, st, p, depth)
            elif kind == "numgen":
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                mod, offset, table = e[1], e[2], e[3]
                out: list[tuple[Fraction, PacketState, str]] = []
                share = Fraction(1, mod)
                rng = getattr(st, "rng", None)
                if rng is not None:
                    # A sent packet: the kernel draws one number (nft_ng_random_eval:
                    # reciprocal_scale(get_random_u32(), mod)); uniform over 0..mod-1.
                    i = rng.randrange(mod)
                    v = table.get(i + offset)
                    if v is None:
                        return self._rules(w, chain, idx + 1, st, p, depth)
                    return self._verdict(w, chain, idx, v, st, p, depth)
                for i in range(mod):
                    b = st.fork() if i < mod - 1 else st
                    v = table.get(i + offset)
                    if v is None:  # no element for this value: rule does not match
                        out.extend(self._rules(w, chain, idx + 1, b, p * share, depth))
                    else:
                        out.extend(self._verdict(w, chain, idx, v, b, p * share, depth))
                return out
            elif kind == "verdict":
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                return self._verdict(w, chain, idx, e[1:], st, p, depth)
            elif kind == "reject":
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                return [(p, st, "reject")]
            elif kind == "dnat":
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                if self.is_nat is False or w.base.hook not in ("prerouting", "output"):
                    raise BackendError(f"nft: dnat in chain {chain.name} reached from "
                                       f"{w.base.name} (hook {w.base.hook}); the kernel only "
                                       "allows it in nat prerouting/output chains")
                st.set_dst(e[1], e[2])
                st.nat_done.add("dst")
                return [(p, st, "accept")]
            elif kind in ("snat", "masquerade"):
                st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
                if self.is_nat is False or w.base.hook not in ("postrouting", "input"):
                    raise BackendError(f"nft: {kind} reached from {w.base.name} (hook "
                                       f"{w.base.hook}); only nat postrouting/input allow it")
                if kind == "snat":
                    st.set_src(e[1], e[2])
                else:
                    mip: str | None = (kernel.masquerade_address(st)
                                       if kernel is not None else None)
                    if mip is None:
                        return [(p, st, "drop")]
                    st.set_src(mip, None)
                    st.masqueraded = True
                st.nat_done.add("src")
                return [(p, st, "accept")]
            else:  # pragma: no cover - the parser only makes the kinds above
                raise BackendError(f"nft: cannot evaluate {kind}")
        # Every match held and no verdict statement: the rule falls through.
        st.rules.append(f"{w.prefix} {chain.name} {rule.text}")
        return self._rules(w, chain, idx + 1, st, p, depth)

    def _verdict(self, w: _Walk, chain: NftChain, idx: int, v: tuple[Any, ...], st: PacketState,
                 p: Fraction, depth: int) -> list[tuple[Fraction, PacketState, str]]:
        kind = v[0]
        if kind in ("accept", "drop"):
            return [(p, st, kind)]
        if kind == "return":
            return [(p, st, "FALL")]
        if kind == "continue":
            return self._rules(w, chain, idx + 1, st, p, depth)
        target = w.table.chains.get(v[1])
        if target is None:
            raise BackendError(f"nft: chain {v[1]} does not exist")
        if target.is_base:
            raise BackendError(f"nft: cannot {kind} to base chain {v[1]}")
        sub = self._run(w, target, st, p, depth + 1)
        if kind == "goto":
            return sub  # FALL propagates to our caller, as goto replaced our frame
        out: list[tuple[Fraction, PacketState, str]] = []
        for q, s2, res in sub:
            if res == "FALL":
                out.extend(self._rules(w, chain, idx + 1, s2, q, depth))
            else:
                out.append((q, s2, res))
        return out


_VERDICT = {"accept": ACCEPT, "drop": DROP, "reject": REJECT}


# --------------------------------------------------------------------------- kernel glue


def nft_state(kernel: Any) -> NftRuleset:
    """The kernel's nftables state (created on first use)."""
    rs = getattr(kernel, "nft", None)
    if not isinstance(rs, NftRuleset):
        rs = NftRuleset(getattr(kernel, "clock", None))
        kernel.nft = rs
    return rs


def _sync_programs(kernel: Any, rs: NftRuleset) -> None:
    registered: dict[str, tuple[Any, ...]] = getattr(kernel, "_nft_programs", {})
    wanted: dict[str, tuple[Any, ...]] = {}
    for t, ch in rs.base_chains():
        name = f"nft {t.family} {t.name} {ch.name}"
        wanted[name] = (t.family, t.name, ch.name, ch.hook, ch.priority, ch.type == "nat")
    for name, spec in registered.items():
        if wanted.get(name) != spec:
            kernel.unregister(name)
    for name, spec in wanted.items():
        if registered.get(name) != spec:
            kernel.register(NftChainProgram(rs, *spec))
    kernel._nft_programs = wanted


def nft_apply(kernel: Any, text: str, *, source: str | None = None, check: bool = False) -> None:
    """``nft -f`` against the mock kernel: apply atomically, then (re)attach base chains."""
    rs = nft_state(kernel)
    rs.run(text, source=source, check=check, lenient=bool(getattr(kernel, "lenient", False)),
           warnings=getattr(kernel, "warnings", None))
    if not check:
        _sync_programs(kernel, rs)
