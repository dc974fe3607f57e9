"""The resulting table as objects, and the two text forms of it.

:func:`build_table` applies a :class:`~backends.nftables.render.Desired`'s operations to an
in-memory table (what the kernel holds after a full sync on an empty ruleset);
:func:`dump` writes it the way knftables' fake ``Dump()`` does (the form upstream's golden
tests compare), :func:`list_ruleset` the way ``nft list ruleset`` (nftables 1.0.x) prints
it -- checked against the real ``nft`` in ``tests/test_nftables_kernel.py``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

import attrs

from backends.nftables import tables as T
from backends.nftables.render import Desired

__all__ = ["Chain", "Container", "Table", "build_table", "dump", "list_rule", "list_ruleset"]


class Chain:
    """One chain. A plain slotted class: a large sync makes 10^5 of them."""

    __slots__ = ("base", "comment", "name", "rules")

    def __init__(self, name: str, base: T.BaseChain | None = None,
                 comment: str | None = None, rules: list[str] | None = None) -> None:
        self.name = name
        self.base = base
        self.comment = comment
        self.rules: list[str] = rules if rules is not None else []

    def __repr__(self) -> str:
        return f"Chain({self.name!r}, base={self.base!r}, rules={self.rules!r})"


@attrs.define(slots=True)
class Container:
    name: str
    kind: str
    type: str
    flags: tuple[str, ...] = ()
    timeout: int | None = None
    comment: str | None = None
    #: key text -> (value text or None, comment or None), insertion ordered.
    elements: dict[str, tuple[str | None, str | None]] = attrs.field(factory=dict)


@attrs.define(slots=True)
class Table:
    family: str
    chains: dict[str, Chain] = attrs.field(factory=dict)
    containers: dict[str, Container] = attrs.field(factory=dict)


def fixed_container(name: str, addr: str) -> Container:
    spec = T.CONTAINERS[name]
    return Container(name, spec.kind, spec.type.format(addr=addr), comment=spec.comment)


def apply_ops(table: Table, ops: tuple[Any, ...], addr: str) -> None:
    """Apply render operations as a full sync would (``chain`` = add + flush)."""
    chains = table.chains
    conts = table.containers
    for op in ops:
        kind = op[0]
        if kind == "rule":
            chains[op[1]].rules.append(op[2])
        elif kind == "element":
            conts[op[1]].elements[op[2]] = (op[3], op[4])
        elif kind == "chain":
            ch = chains.get(op[1])
            if ch is None:
                chains[op[1]] = Chain(op[1])
            else:
                ch.rules.clear()
        elif kind == "set":
            if op[1] not in conts:
                conts[op[1]] = Container(op[1], "set", op[2], flags=op[3], timeout=op[4])
        elif kind == "basechain":
            bc = op[1]
            chains[bc.name] = Chain(bc.name, base=bc)
        elif kind == "commented-chain":
            ch = chains.setdefault(op[1], Chain(op[1]))
            ch.comment = op[2]
            ch.rules.clear()
        elif kind == "container":
            if op[1] not in conts:
                conts[op[1]] = fixed_container(op[1], addr)
        elif kind == "flush-container":
            conts[op[1]].elements.clear()
        elif kind == "delete-container":
            conts.pop(op[1], None)
        else:  # pragma: no cover - render only makes the kinds above
            raise ValueError(f"unknown op {kind!r}")


def build_table(desired: Desired) -> Table:
    table = Table(desired.family)
    apply_ops(table, desired.fixed, desired.addr_type)
    for frag in desired.fragments:
        apply_ops(table, frag.ops, desired.addr_type)
    return table


# --------------------------------------------------------------------------- knftables dump


def _q(s: str) -> str:
    return '"' + s + '"'


def chain_decl(c: Chain) -> str:
    parts = []
    if c.base is not None:
        parts.append(f"type {c.base.type} hook {c.base.hook} priority {c.base.priority} ;")
    if c.comment is not None:
        parts.append(f"comment {_q(c.comment)} ;")
    return f" {{ {' '.join(parts)} }}" if parts else ""


def container_decl(s: Container) -> str:
    parts = [f"type {s.type} ;"]
    if s.flags:
        parts.append(f"flags {','.join(s.flags)} ;")
    if s.timeout is not None:
        parts.append(f"timeout {s.timeout}s ;")
    if s.comment is not None:
        parts.append(f"comment {_q(s.comment)} ;")
    return f" {{ {' '.join(parts)} }}"


def element_body(key: str, value: str | None, comment: str | None) -> str:
    text = key
    if comment is not None:
        text += f" comment {_q(comment)}"
    if value is not None:
        text += f" : {value}"
    return f"{{ {text} }}"


def dump(table: Table) -> str:
    """knftables ``Fake.Dump()`` form: table, chains, sets, maps, rules, elements."""
    p = f"{table.family} {T.TABLE}"
    out = [f"add table {p} {{ comment {_q(T.TABLE_COMMENT)} ; }}"]
    chains = table.chains
    names = sorted(chains)  # sorted once, used twice
    for name in names:
        c = chains[name]
        if c.base is None and c.comment is None:
            out.append(f"add chain {p} {name}")
        else:
            out.append(f"add chain {p} {name}{chain_decl(c)}")
    conts = sorted(table.containers)
    for kind in ("set", "map"):
        for name in conts:
            s = table.containers[name]
            if s.kind == kind:
                out.append(f"add {kind} {p} {name}{container_decl(s)}")
    for name in names:
        rules = chains[name].rules
        if rules:
            pre = f"add rule {p} {name} "
            out.extend([pre + r for r in rules])
    for name in conts:
        pre = f"add element {p} {name} "
        for key, (value, comment) in table.containers[name].elements.items():
            out.append(pre + element_body(key, value, comment))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- nft list ruleset

# nft prints a standard priority name (+/- offset up to 10) where the name is valid for the
# family and hook, else the number (nftables src/rule.c prio2str, std_prio_family_hook_compat).
_STD_PRIOS = (("raw", -300), ("mangle", -150), ("dstnat", -100), ("filter", 0),
              ("security", 50), ("srcnat", 100))
_PRIO_HOOKS = {"dstnat": {"prerouting"}, "srcnat": {"postrouting"}}


def prio_text(prio: int, hook: str) -> str:
    best: tuple[str, int] | None = None
    for name, value in _STD_PRIOS:
        if name in _PRIO_HOOKS and hook not in _PRIO_HOOKS[name]:
            continue
        diff = prio - value
        if best is None or abs(diff) < abs(best[1]):
            best = (name, diff)
    if best is None or abs(best[1]) > 10:
        return str(prio)
    name, diff = best
    if diff == 0:
        return name
    return f"{name} {'+' if diff > 0 else '-'} {abs(diff)}"


def time_text(seconds: int) -> str:
    """nft's time format: ``3h``, ``1m30s``, ``1d``."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


_MARK_OR = re.compile(r"\bmark set mark (or|xor) (0x[0-9a-fA-F]+|\d+)")
_MARK_AND = re.compile(r"\bmark and (0x[0-9a-fA-F]+|\d+) == (0x[0-9a-fA-F]+|\d+)")
_ANON = re.compile(r"\{ ([^{}]*) \}")


def _hex8(v: str) -> str:
    return f"0x{int(v, 0):08x}"


def _addr_sort_key(text: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def _anon(m: re.Match[str]) -> str:
    """An anonymous address set as nft lists it: sorted, ``, ``-separated, unwrapped if single."""
    items = [i.strip() for i in m.group(1).split(",") if i.strip()]
    try:
        items.sort(key=_addr_sort_key)
    except ValueError:
        return m.group(0)
    if len(items) == 1:
        return items[0]
    return "{ " + ", ".join(items) + " }"


def list_rule(rule: str) -> str:
    """A rule as ``nft list`` prints it back (only the forms kube-proxy writes)."""
    if "{" not in rule and "mark " not in rule:
        return rule  # the common case (jumps, dnat): printed as written
    if "mark set mark" not in rule and "mark and" not in rule:
        if "vmap {" in rule:
            return rule.replace(" , ", ", ")  # numgen's inline vmap
        if "update @" in rule:
            return rule
        return _ANON.sub(_anon, rule)
    rule = _MARK_OR.sub(
        lambda m: f"meta mark set meta mark {'|' if m.group(1) == 'or' else '^'} {_hex8(m.group(2))}",
        rule,
    )
    rule = _MARK_AND.sub(
        lambda m: f"meta mark & {_hex8(m.group(1))} == {_hex8(m.group(2))}", rule
    )

    if "vmap {" in rule:
        # Only numgen's inline vmap uses " , " between elements.
        rule = rule.replace(" , ", ", ")
    elif "update @" not in rule:
        rule = _ANON.sub(_anon, rule)
    return rule


def _elements_per_line(s: Container) -> int:
    # nft wraps named-set elements by key size: ipv4 2 per line, ipv6/concatenations 1
    # (observed with nftables 1.0.6; inet_service keys print 5).
    if s.kind == "map" or " . " in s.type or s.type == "ipv6_addr":
        return 1
    if s.type == "ipv4_addr":
        return 2
    return 5


#: A dotted-quad IPv4 address as ``ipaddress`` accepts it (no leading zeros).
_V4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


@lru_cache(maxsize=1 << 17)
def _elem_sort_key(key: str) -> tuple[Any, ...]:
    out: list[object] = []
    for part in key.split(" . "):
        if _V4.fullmatch(part):
            # The common case, without an ipaddress object (same key as below).
            a, b, c, d = part.split(".")
            out.append((0, 4, (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)))
            continue
        try:
            addr = ipaddress.ip_address(part)
            out.append((0, addr.version, int(addr)))
        except ValueError:
            out.append((1, int(part), "") if part.isdigit() else (2, 0, part))
    return tuple(out)


def list_ruleset(table: Table) -> str:
    """``nft list ruleset`` text for the table (tabs, as nft prints).

    Sets and maps come first, then chains, each in creation order; set elements are
    sorted by key (the kernel prints hash-table order, which is not reproducible).
    """
    lines = [f"table {table.family} {T.TABLE} {{", f'\tcomment "{T.TABLE_COMMENT}"']
    updated = {r.split("update @", 1)[1].split(" ", 1)[0]
               for ch in table.chains.values() for r in ch.rules if "update @" in r}
    blocks: list[list[str]] = []
    for s in table.containers.values():
        b = [f"\t{s.kind} {s.name} {{", f"\t\ttype {s.type}"]
        if s.name in updated:
            b.append("\t\tsize 65535")
        if s.flags:
            b.append(f"\t\tflags {','.join(s.flags)}")
        if s.timeout is not None:
            b.append(f"\t\ttimeout {time_text(s.timeout)}")
        if s.comment is not None:
            b.append(f'\t\tcomment "{s.comment}"')
        if s.elements:
            per = _elements_per_line(s)
            items = []
            for key in sorted(s.elements, key=_elem_sort_key):
                value, comment = s.elements[key]
                t = key + (f' comment "{comment}"' if comment is not None else "")
                t += f" : {value}" if value is not None else ""
                items.append(t)
            rows = [", ".join(items[i:i + per]) for i in range(0, len(items), per)]
            b.append("\t\telements = { " + ",\n\t\t\t     ".join(rows) + " }")
        b.append("\t}")
        blocks.append(b)
    for c in table.chains.values():
        b = [f"\tchain {c.name} {{"]
        if c.base is not None:
            b.append(f"\t\ttype {c.base.type} hook {c.base.hook} priority "
                     f"{prio_text(c.base.priority, c.base.hook)}; policy accept;")
        if c.comment is not None:
            b.append(f'\t\tcomment "{c.comment}"')
        b.extend(f"\t\t{list_rule(r)}" for r in c.rules)
        b.append("\t}")
        blocks.append(b)
    for i, b in enumerate(blocks):
        if i:
            lines.append("")
        lines.extend(b)
    lines.append("}")
    return "\n".join(lines) + "\n"
