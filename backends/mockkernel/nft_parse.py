"""Read ``nft -f`` input and ``nft list ruleset`` output: the syntax kube-proxy's nftables mode uses.

Two input shapes become one list of :class:`Command`:

* **command form** (what knftables writes to ``nft -f``, one command per line):
  ``add|create|flush|delete table|chain|set|map|element|rule ...``, ``insert rule``,
  ``flush ruleset``; ``#`` comments and blank lines ignored;
* **block form** (what ``nft list ruleset`` prints): ``table ip NAME { ... }`` with nested
  ``chain``/``set``/``map`` blocks, base-chain declarations (``type filter hook input
  priority filter; policy accept;``), ``elements = { ... }`` spread over several lines,
  one rule per line.

Rules are parsed into expression tuples (see :func:`parse_rule`) the evaluator in
:mod:`backends.mockkernel.nft` runs. Only what kube-proxy's nftables mode writes is
understood -- payload/meta/ct/fib/numgen matches, set and map lookups, verdicts, NAT,
``update @set``, counters and comments; anything else raises
:class:`~kservice.errors.UnsupportedRule` naming the line, never a silent "no match".
"""

from __future__ import annotations

import ipaddress
import re
from fractions import Fraction
from typing import Any

import attrs

from kservice.errors import RuleParseError, UnsupportedRule

__all__ = [
    "ChainDecl",
    "Command",
    "Element",
    "NftRule",
    "SetDecl",
    "parse_nft",
    "parse_rule",
    "parse_type",
    "parse_value",
    "tokenize",
]

_RULE_TEXT = re.compile(r"^\s*(?:add|insert)\s+rule\s+(?:(?:ip|ip6|inet)\s+)?\S+\s+\S+\s+(.*?)\s*$")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};,]|[^\s{};,]+')
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items() if k != "ipv6-icmp"}
HOOK_NAMES = {"prerouting", "input", "forward", "output", "postrouting", "ingress"}
#: Standard priority names (nftables doc "STANDARD PRIORITY NAMES", ip/ip6/inet families).
STD_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0,
                  "security": 50, "srcnat": 100}
FAMILIES = ("ip", "ip6", "inet")
DATATYPES = ("ipv4_addr", "ipv6_addr", "inet_proto", "inet_service", "mark", "verdict")
_VERDICTS = ("accept", "drop", "return", "continue")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == '"' and tok[-1] == '"':
        return tok[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return tok


@attrs.frozen
class NftRule:
    """One parsed rule: the text (for rule paths), expressions, its comment."""

    text: str
    exprs: tuple[tuple[Any, ...], ...]
    comment: str | None = None
    line: int | None = None


@attrs.frozen
class Element:
    #: The key as typed values (ints for addresses/ports/protocols, ``(lo, hi)`` ranges
    #: for interval members).
    key: tuple[Any, ...]
    #: Verdict ``("goto", chain)`` / ``("drop",)`` ... or a data value; ``None`` for sets.
    value: Any = None
    comment: str | None = None
    timeout: float | None = None
    #: The key text as written (for listings and errors).
    text: str = ""


@attrs.frozen
class SetDecl:
    key_types: tuple[str, ...] | None = None
    value_type: str | None = None
    flags: tuple[str, ...] = ()
    timeout: float | None = None
    comment: str | None = None
    size: int | None = None
    elements: tuple[Element, ...] | None = None


@attrs.frozen
class ChainDecl:
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None
    comment: str | None = None


@attrs.frozen
class Command:
    """One ``nft`` command. ``obj`` is table/chain/set/map/element/rule/ruleset."""

    verb: str
    obj: str
    family: str = ""
    table: str = ""
    name: str = ""
    #: table: comment; chain: ChainDecl; set/map: SetDecl; element: tuple of raw element
    #: token lists (typed at apply time, when the set's type is known); rule: NftRule.
    body: Any = None
    line: int = 0
    text: str = ""


class _Ctx:
    """Where we are, for error messages."""

    def __init__(self, source: str | None, line: int, text: str, *, lenient: bool = False,
                 warnings: list[str] | None = None) -> None:
        self.source = source
        self.line = line
        self.text = text
        #: Lenient mode: a rule expression the model does not implement becomes an
        #: ``("unknown", option)`` expression (an UNKNOWN outcome when a packet reaches it)
        #: and a line in ``warnings``, instead of UnsupportedRule.
        self.lenient = lenient
        self.warnings = warnings if warnings is not None else []

    def err(self, msg: str, option: str | None = None) -> RuleParseError:
        return RuleParseError(msg, line=self.line, text=self.text.strip(), option=option,
                              source=self.source)

    def unsupported(self, msg: str, option: str | None = None) -> UnsupportedRule:
        return UnsupportedRule(msg, line=self.line, text=self.text.strip(), option=option,
                               source=self.source)


# --------------------------------------------------------------------------- values


def parse_time(tok: str, ctx: _Ctx) -> float:
    """``10800s``, ``3h``, ``1m30s``, ``1d``, ``500ms``, bare seconds."""
    if re.fullmatch(r"\d+", tok):
        return float(tok)
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+)(ms|d|h|m|s)", tok):
        if m.start() != pos:
            raise ctx.err(f"bad time value {tok!r}")
        pos = m.end()
        n = int(m.group(1))
        total += n * {"ms": 0.001, "d": 86400, "h": 3600, "m": 60, "s": 1}[m.group(2)]
    if pos != len(tok) or not tok:
        raise ctx.err(f"bad time value {tok!r}")
    return total


def parse_priority(tokens: list[str], ctx: _Ctx) -> int:
    """``-110``, ``filter``, ``dstnat - 10``, ``srcnat + 5``."""
    text = " ".join(tokens).replace(" ", "")
    m = re.fullmatch(r"([a-z]+)?([+-]?\d+)?", text)
    if not m or not text:
        raise ctx.err(f"bad priority {' '.join(tokens)!r}", "priority")
    name, num = m.group(1), m.group(2)
    base = 0
    if name:
        if name not in STD_PRIORITIES:
            raise ctx.unsupported(f"unknown standard priority {name!r}", "priority")
        base = STD_PRIORITIES[name]
    return base + (int(num) if num else 0)


def parse_type(text: str, ctx: _Ctx) -> tuple[tuple[str, ...], str | None]:
    """``ipv4_addr . inet_proto . inet_service : verdict`` -> (key types, value type)."""
    if ":" in text:
        key, value = (p.strip() for p in text.split(":", 1))
    else:
        key, value = text.strip(), None
    types = tuple(t.strip() for t in key.split("."))
    for t in (*types, *(() if value is None else (value,))):
        if t not in DATATYPES or (t == "verdict" and t != value):
            raise ctx.unsupported(f"set data type {t!r} is not supported by the mock kernel",
                                  "type")
    return types, value


def parse_value(dtype: str, tok: str, ctx: _Ctx, *, interval: bool = False) -> Any:
    """One typed value: an int, or ``(lo, hi)`` for a prefix/range when ``interval``."""
    if dtype in ("ipv4_addr", "ipv6_addr") and ("/" in tok or "-" in tok) and not interval:
        raise ctx.err(f"{tok!r}: you must add 'flags interval' to the set for "
                      "prefixes and ranges")
    try:
        if dtype in ("ipv4_addr", "ipv6_addr"):
            version = 4 if dtype == "ipv4_addr" else 6
            if "/" in tok or "-" in tok:
                if "/" in tok:
                    net = ipaddress.ip_network(tok, strict=False)
                    if net.version != version:
                        raise ValueError
                    return (int(net.network_address), int(net.broadcast_address))
                lo, hi = tok.split("-", 1)
                a, b = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
                return (int(a), int(b))
            a = ipaddress.ip_address(tok)
            if a.version != version:
                raise ValueError
            return int(a)
        if dtype == "inet_proto":
            if tok in PROTOCOLS:
                return PROTOCOLS[tok]
            return int(tok)
        if dtype in ("inet_service", "mark"):
            v = int(tok, 0)
            if dtype == "inet_service" and not 0 <= v <= 65535:
                raise ValueError
            return v
    except ValueError:
        raise ctx.err(f"{tok!r} is not a valid {dtype} value") from None
    raise ctx.unsupported(f"data type {dtype!r} is not supported")


def parse_verdict(tokens: list[str], ctx: _Ctx) -> tuple[str, ...]:
    if not tokens:
        raise ctx.err("missing verdict")
    v = tokens[0]
    if v in ("goto", "jump"):
        if len(tokens) != 2:
            raise ctx.err(f"{v} needs one chain name", v)
        return (v, tokens[1])
    if v in _VERDICTS and len(tokens) == 1:
        return (v,)
    raise ctx.unsupported(f"unsupported verdict {' '.join(tokens)!r}", v)


def split_top(tokens: list[str], sep: str = ",") -> list[list[str]]:
    """Split a token list at top-level ``sep`` (nested braces kept)."""
    out: list[list[str]] = [[]]
    depth = 0
    for t in tokens:
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
        if t == sep and depth == 0:
            out.append([])
        else:
            out[-1].append(t)
    return [x for x in out if x]


def parse_element_tokens(
    tokens: list[str], key_types: tuple[str, ...], value_type: str | None,
    interval: bool, ctx: _Ctx,
) -> Element:
    """``k1 . k2 [timeout T] [expires T] [comment "c"] [: value]``."""
    value: Any = None
    if value_type is not None:
        if ":" not in tokens:
            raise ctx.err("map element needs ': <value>'")
        i = tokens.index(":")
        vtoks = tokens[i + 1:]
        tokens = tokens[:i]
        if value_type == "verdict":
            value = parse_verdict(vtoks, ctx)
        else:
            if len(vtoks) != 1:
                raise ctx.err("bad map value")
            value = parse_value(value_type, vtoks[0], ctx)
    elif ":" in tokens:
        raise ctx.err("element of a set (not a map) cannot have a value")
    comment = timeout = None
    key_toks: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "comment" and i + 1 < len(tokens):
            comment = _unquote(tokens[i + 1])
            i += 2
        elif t in ("timeout", "expires") and i + 1 < len(tokens):
            if t == "timeout":
                timeout = parse_time(tokens[i + 1], ctx)
            i += 2
        else:
            key_toks.append(t)
            i += 1
    parts = split_top(key_toks, ".")
    if len(parts) != len(key_types) or any(len(p) != 1 for p in parts):
        raise ctx.err(f"element {' '.join(key_toks)!r} does not match the set type "
                      f"{' . '.join(key_types)}")
    key = tuple(parse_value(dt, p[0], ctx, interval=interval) for dt, p in zip(key_types, parts, strict=True))
    return Element(key=key, value=value, comment=comment, timeout=timeout,
                   text=" . ".join(p[0] for p in parts))


# --------------------------------------------------------------------------- rules

_ADDR_FIELDS = {("ip", "saddr"), ("ip", "daddr"), ("ip6", "saddr"), ("ip6", "daddr")}
_OPS = ("==", "!=")


def _is_term_end(tok: str) -> bool:
    return False


def _selector(tokens: list[str], i: int, ctx: _Ctx) -> tuple[tuple[str, ...], int]:
    """One concatenation component: ``ip daddr``, ``meta l4proto``, ``th dport`` ..."""
    t = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if (t, nxt) in _ADDR_FIELDS:
        return ("addr", t, nxt[0]), i + 2
    if t == "meta" and nxt == "l4proto":
        return ("l4proto",), i + 2
    if t == "th" and nxt in ("dport", "sport"):
        return ("port", nxt), i + 2
    raise ctx.unsupported(f"unsupported selector {t} {nxt}".strip(), t)


def _anon_set(tokens: list[str], i: int, ctx: _Ctx) -> tuple[list[str], int]:
    """Tokens inside ``{ ... }`` starting at tokens[i] == '{'; returns (items, next)."""
    depth = 0
    j = i
    while j < len(tokens):
        if tokens[j] == "{":
            depth += 1
        elif tokens[j] == "}":
            depth -= 1
            if depth == 0:
                return tokens[i + 1:j], j + 1
        j += 1
    raise ctx.err("unbalanced '{'")


def _addr_values(items: list[str], version: int, ctx: _Ctx) -> tuple[tuple[int, int], ...]:
    out = []
    for grp in split_top(items):
        if len(grp) != 1:
            raise ctx.err(f"bad address {' '.join(grp)!r}")
        tok = grp[0]
        try:
            if "/" in tok:
                net = ipaddress.ip_network(tok, strict=False)
                if net.version != version:
                    raise ValueError
                out.append((int(net.network_address), int(net.broadcast_address)))
            else:
                a = ipaddress.ip_address(tok)
                if a.version != version:
                    raise ValueError
                out.append((int(a), int(a)))
        except ValueError:
            raise ctx.err(f"{tok!r} is not an IPv{version} address or prefix") from None
    # An anonymous set has no order (nft lists it sorted).
    return tuple(sorted(out))


def _op(tokens: list[str], i: int) -> tuple[bool, int]:
    """Optional ``==``/``!=`` at tokens[i]: (negated, next index)."""
    if i < len(tokens) and tokens[i] in _OPS:
        return tokens[i] == "!=", i + 1
    return False, i


def _int(tok: str, ctx: _Ctx, what: str) -> int:
    try:
        return int(tok, 0)
    except ValueError:
        raise ctx.err(f"{tok!r} is not a valid {what}") from None


def _mark_value(tok: str, ctx: _Ctx) -> int:
    return _int(tok, ctx, "mark value")


def parse_rule(tokens: list[str], ctx: _Ctx, text: str | None = None) -> NftRule:
    """Parse a rule's tokens into expressions.

    Expression tuples (first item is the kind):

    * ``("addr", "s"|"d", neg, ranges, version)`` -- ``ip saddr [!=] X`` / anonymous set;
    * ``("addrset", "s"|"d", neg, set name)`` -- ``ip daddr @set``;
    * ``("lookup", selectors, set name, neg)`` -- ``sel . sel @set``;
    * ``("vmap", selectors, map name | None, inline elements | None)``;
    * ``("l4proto", neg, {numbers})``, ``("port", "dport", neg, {ports}, proto | None)``;
    * ``("fib", "s"|"d", neg, {types})``, ``("ctstate", neg, {states})``,
      ``("ctstatus", neg, {bits})``, ``("markcmp", mask | None, op, value)``,
      ``("iface", field, neg, name)``;
    * ``("numgen", mod, offset, {index: verdict})`` -- ``numgen random mod N vmap {...}``;
    * statements: ``("mark_set", op, value)``, ``("counter",)``, ``("verdict", v...)``,
      ``("dnat", ip, port|None)``, ``("snat", ip, port|None)``, ``("masquerade", flags)``,
      ``("reject",)``, ``("update", set name, field)``.
    """
    # The rule as written (rule paths show it); tokens joined when not given.
    text = text.strip() if text else " ".join(tokens)
    exprs: list[tuple[Any, ...]] = []
    comment: str | None = None
    try:
        comment = _parse_exprs(tokens, ctx, exprs)
    except UnsupportedRule as e:
        if not ctx.lenient:
            raise
        # The expressions before the unsupported one still decide whether a packet gets
        # that far (nft evaluates a rule's expressions in order); one that does meets an
        # expression the model cannot evaluate: UNKNOWN.
        option = e.option or "?"
        exprs.append(("unknown", option))
        ctx.warnings.append(f"{ctx.source or 'rules'}:{ctx.line}: {e.message} "
                            f"(option {option!r}); a packet reaching this rule gets an "
                            "UNKNOWN outcome")
    return NftRule(text=text, exprs=tuple(exprs), comment=comment, line=ctx.line)


def _parse_exprs(tokens: list[str], ctx: _Ctx, exprs: list[tuple[Any, ...]]) -> str | None:
    """Append the rule's expressions to ``exprs``; returns its comment."""
    comment: str | None = None
    n = len(tokens)
    i = 0
    while i < n:
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else ""
        if (t, nxt) in _ADDR_FIELDS or (t == "meta" and nxt == "l4proto") or (
                t == "th" and nxt in ("dport", "sport")):
            sel, j = _selector(tokens, i, ctx)
            if j < n and tokens[j] == ".":
                sels = [sel]
                while j < n and tokens[j] == ".":
                    s2, j = _selector(tokens, j + 1, ctx)
                    sels.append(s2)
                if j < n and tokens[j] == "vmap":
                    j += 1
                    if j < n and tokens[j].startswith("@"):
                        name = tokens[j][1:] or (tokens[j + 1] if j + 1 < n else "")
                        j += 1 if tokens[j] != "@" else 2
                        exprs.append(("vmap", tuple(sels), name, None))
                    else:
                        raise ctx.unsupported("inline concatenated vmap", "vmap")
                elif j < n and tokens[j].startswith("@"):
                    name = tokens[j][1:]
                    exprs.append(("lookup", tuple(sels), name, False))
                    j += 1
                else:
                    raise ctx.unsupported("concatenation must be followed by vmap @map or @set",
                                          tokens[j] if j < n else None)
                i = j
                continue
            if sel[0] == "addr":
                neg, j = _op(tokens, j)
                version = 4 if sel[1] == "ip" else 6
                if j >= n:
                    raise ctx.err(f"{t} {nxt} needs a value")
                v = tokens[j]
                if v == "vmap":
                    raise ctx.unsupported("address vmap", "vmap")
                if v.startswith("@") or v == "@":
                    name = v[1:] if v != "@" else tokens[j + 1]
                    exprs.append(("addrset", sel[2], neg, name))
                    i = j + (1 if v != "@" else 2)
                elif v == "{":
                    items, i = _anon_set(tokens, j, ctx)
                    exprs.append(("addr", sel[2], neg, _addr_values(items, version, ctx), version))
                else:
                    exprs.append(("addr", sel[2], neg, _addr_values([v], version, ctx), version))
                    i = j + 1
                continue
            if sel[0] == "l4proto":
                neg, j = _op(tokens, j)
                if j < n and tokens[j] == "{":
                    items, i = _anon_set(tokens, j, ctx)
                    vals = [g[0] for g in split_top(items)]
                else:
                    vals = [tokens[j]] if j < n else []
                    i = j + 1
                if not vals:
                    raise ctx.err("meta l4proto needs a value")
                exprs.append(("l4proto", neg, frozenset(
                    parse_value("inet_proto", v, ctx) for v in vals)))
                continue
            if sel[0] == "port":
                neg, j = _op(tokens, j)
                if j >= n:
                    raise ctx.err("th port needs a value")
                if tokens[j] == "{":
                    items, i = _anon_set(tokens, j, ctx)
                    vals = [g[0] for g in split_top(items)]
                else:
                    vals, i = [tokens[j]], j + 1
                exprs.append(("port", sel[1], neg,
                              frozenset(parse_value("inet_service", v, ctx) for v in vals), None))
                continue
        if t in ("tcp", "udp", "sctp") and nxt in ("dport", "sport"):
            neg, j = _op(tokens, i + 2)
            if j >= n:
                raise ctx.err(f"{t} {nxt} needs a value")
            if tokens[j] == "{":
                items, i = _anon_set(tokens, j, ctx)
                vals = [g[0] for g in split_top(items)]
            else:
                vals, i = [tokens[j]], j + 1
            exprs.append(("port", nxt, neg,
                          frozenset(parse_value("inet_service", v, ctx) for v in vals),
                          PROTOCOLS[t]))
            continue
        if t == "fib":
            if nxt not in ("saddr", "daddr") or i + 2 >= n or tokens[i + 2] != "type":
                raise ctx.unsupported("only 'fib saddr|daddr type [!=] local' is supported", "fib")
            neg, j = _op(tokens, i + 3)
            if j < n and tokens[j] == "{":
                items, i = _anon_set(tokens, j, ctx)
                types = [g[0] for g in split_top(items)]
            else:
                types, i = [tokens[j] if j < n else ""], j + 1
            for ty in types:
                if ty != "local":
                    raise ctx.unsupported(f"fib address type {ty!r}", "fib")
            exprs.append(("fib", nxt[0], neg, frozenset(types)))
            continue
        if t == "ct":
            if nxt not in ("state", "status"):
                raise ctx.unsupported(f"ct {nxt}", "ct")
            neg, j = _op(tokens, i + 2)
            if j < n and tokens[j] == "{":
                items, i = _anon_set(tokens, j, ctx)
                vals = [g[0] for g in split_top(items)]
            else:
                if j >= n:
                    raise ctx.err(f"ct {nxt} needs a value")
                vals, i = tokens[j].split(","), j + 1
                # "ct state established,related" is one token; "a , b" too after splitting.
                while i + 1 < n and tokens[i] == ",":
                    vals.append(tokens[i + 1])
                    i += 2
            allowed = ({"new", "established", "related", "invalid", "untracked"}
                       if nxt == "state" else {"dnat", "snat", "confirmed", "seen-reply",
                                               "assured", "expected"})
            for v in vals:
                if v not in allowed:
                    raise ctx.err(f"unknown ct {nxt} {v!r}", f"ct {nxt}")
            exprs.append(("ctstate" if nxt == "state" else "ctstatus", neg, frozenset(vals)))
            continue
        if t in ("mark", "meta") and (t == "mark" or nxt == "mark"):
            j = i + 1 if t == "mark" else i + 2
            if j < n and tokens[j] == "set":
                # mark set mark or|xor|and V   /  meta mark set meta mark |^& V  / mark set V
                k = j + 1
                if k < n and tokens[k] == "meta":
                    k += 1
                if k < n and tokens[k] == "mark" and k + 2 < n:
                    opname = {"or": "|", "|": "|", "xor": "^", "^": "^", "and": "&", "&": "&"}.get(
                        tokens[k + 1])
                    if opname is None:
                        raise ctx.unsupported(f"mark operation {tokens[k + 1]!r}", "mark")
                    exprs.append(("mark_set", opname, _mark_value(tokens[k + 2], ctx)))
                    i = k + 3
                elif k < n:
                    exprs.append(("mark_set", "=", _mark_value(tokens[k], ctx)))
                    i = k + 1
                else:
                    raise ctx.err("mark set needs a value")
                continue
            if j < n and tokens[j] in ("and", "&"):
                mask = _mark_value(tokens[j + 1], ctx) if j + 1 < n else 0
                neg, k = _op(tokens, j + 2)
                if k >= n:
                    raise ctx.err("mark comparison needs a value")
                exprs.append(("markcmp", mask, neg, _mark_value(tokens[k], ctx)))
                i = k + 1
                continue
            neg, k = _op(tokens, j)
            if k >= n:
                raise ctx.err("mark needs a value")
            exprs.append(("markcmp", None, neg, _mark_value(tokens[k], ctx)))
            i = k + 1
            continue
        if t in ("iifname", "oifname", "iif", "oif") or (
                t == "meta" and nxt in ("iifname", "oifname", "iif", "oif")):
            field = nxt if t == "meta" else t
            neg, j = _op(tokens, i + (2 if t == "meta" else 1))
            if j >= n:
                raise ctx.err(f"{field} needs a value")
            exprs.append(("iface", field, neg, _unquote(tokens[j])))
            i = j + 1
            continue
        if t == "numgen":
            m = tokens[i + 1:i + 4]
            if m[:1] != ["random"] or m[1:2] != ["mod"] or len(m) < 3:
                raise ctx.unsupported("only 'numgen random mod N' is supported", "numgen")
            mod = _int(m[2], ctx, "numgen modulus")
            if mod <= 0:
                raise ctx.err("numgen modulus must be positive", "numgen")
            j = i + 4
            offset = 0
            if j < n and tokens[j] == "offset":
                offset = _int(tokens[j + 1], ctx, "numgen offset")
                j += 2
            if j >= n or tokens[j] != "vmap" or j + 1 >= n or tokens[j + 1] != "{":
                raise ctx.unsupported("numgen must be followed by an inline vmap { ... }", "numgen")
            items, i = _anon_set(tokens, j + 1, ctx)
            table: dict[int, tuple[str, ...]] = {}
            for grp in split_top(items):
                if ":" not in grp:
                    raise ctx.err("vmap element needs ': verdict'", "vmap")
                c = grp.index(":")
                if c != 1:
                    raise ctx.err(f"bad numgen vmap key {' '.join(grp[:c])!r}", "vmap")
                table[_int(grp[0], ctx, "vmap key")] = parse_verdict(grp[c + 1:], ctx)
            exprs.append(("numgen", mod, offset, table))
            continue
        if t == "counter":
            i += 1
            while i + 1 < n and tokens[i] in ("packets", "bytes"):
                i += 2
            exprs.append(("counter",))
            continue
        if t == "comment":
            if i + 1 >= n:
                raise ctx.err("comment needs a string")
            comment = _unquote(tokens[i + 1])
            i += 2
            if i != n:
                raise ctx.err("comment must end the rule", "comment")
            continue
        if t in ("jump", "goto"):
            if i + 1 >= n:
                raise ctx.err(f"{t} needs a chain", t)
            exprs.append(("verdict", t, tokens[i + 1]))
            i += 2
            continue
        if t in ("accept", "drop", "return", "continue"):
            exprs.append(("verdict", t))
            i += 1
            continue
        if t == "reject":
            i += 1
            if i < n and tokens[i] == "with":
                # "reject with icmp type port-unreachable", "with tcp reset" ...: the
                # verdict is what matters for a trace.
                i += 1
                while i < n and tokens[i] not in ("comment",):
                    i += 1
            exprs.append(("reject",))
            continue
        if t in ("dnat", "snat"):
            j = i + 1
            if j < n and tokens[j] in ("ip", "ip6"):
                j += 1
            if j >= n or tokens[j] != "to" or j + 1 >= n:
                raise ctx.unsupported(f"only '{t} to ADDR[:PORT]' is supported", t)
            ip, port = _nat_target(tokens[j + 1], ctx)
            exprs.append((t, ip, port))
            i = j + 2
            continue
        if t == "masquerade":
            i += 1
            flags: list[str] = []
            while i < n and tokens[i] in ("fully-random", "random", "persistent", ","):
                if tokens[i] != ",":
                    flags.append(tokens[i])
                i += 1
            if i < n and tokens[i] == "to":
                raise ctx.unsupported("masquerade to :PORT", "masquerade")
            exprs.append(("masquerade", tuple(flags)))
            continue
        if t in ("update", "add") and (nxt.startswith("@")):
            name = nxt[1:] if nxt != "@" else tokens[i + 2]
            j = i + 2 if nxt != "@" else i + 3
            if j >= n or tokens[j] != "{":
                raise ctx.err(f"{t} @set needs '{{ expression }}'", t)
            items, i = _anon_set(tokens, j, ctx)
            if len(items) != 2 or (items[0], items[1]) not in _ADDR_FIELDS:
                raise ctx.unsupported(f"{t} @set {{ {' '.join(items)} }}: only 'ip saddr' "
                                      "style keys are supported", t)
            exprs.append(("update", name, items[1][0]))
            continue
        raise ctx.unsupported(f"unsupported expression starting at {t!r}", t)
    return comment


def _nat_target(tok: str, ctx: _Ctx) -> tuple[str, int | None]:
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", tok)
    if m:
        ip, port = m.group(1), m.group(2)
    elif tok.count(":") == 1:
        ip, port = tok.split(":")
    else:
        ip, port = tok, None
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise ctx.err(f"bad NAT address {tok!r}") from None
    return ip, (_int(port, ctx, "port") if port is not None else None)


# --------------------------------------------------------------------------- commands


def _decl_tokens(tokens: list[str], i: int, ctx: _Ctx) -> tuple[list[str], int]:
    if i < len(tokens) and tokens[i] == "{":
        return _anon_set(tokens, i, ctx)
    return [], i


def _chain_decl(items: list[str], ctx: _Ctx) -> ChainDecl:
    typ = hook = policy = comment = None
    prio: int | None = None
    for stmt in split_top(items, ";"):
        if stmt[0] == "type":
            if len(stmt) < 6 or stmt[2] != "hook" or stmt[4] != "priority":
                raise ctx.err("base chain needs 'type T hook H priority P'", "type")
            typ, hook = stmt[1], stmt[3]
            if typ not in ("filter", "nat", "route"):
                raise ctx.err(f"unknown chain type {typ!r}", "type")
            if hook not in HOOK_NAMES or hook == "ingress":
                raise ctx.unsupported(f"hook {hook!r}", "hook")
            prio = parse_priority(stmt[5:], ctx)
        elif stmt[0] == "policy":
            policy = stmt[1] if len(stmt) > 1 else ""
            if policy not in ("accept", "drop"):
                raise ctx.err(f"bad policy {policy!r}", "policy")
        elif stmt[0] == "comment":
            comment = _unquote(stmt[1])
        else:
            raise ctx.unsupported(f"chain option {stmt[0]!r}", stmt[0])
    return ChainDecl(type=typ, hook=hook, priority=prio, policy=policy, comment=comment)


def _set_decl(items: list[str], ctx: _Ctx, is_map: bool) -> tuple[SetDecl, list[list[str]] | None]:
    key_types = value_type = comment = None
    flags: tuple[str, ...] = ()
    timeout = None
    size = None
    elements: list[list[str]] | None = None
    for stmt in split_top(items, ";"):
        head = stmt[0]
        if head == "type":
            key_types, value_type = parse_type(" ".join(stmt[1:]), ctx)
            if is_map and value_type is None:
                raise ctx.err("map type needs ': <value type>'", "type")
            if not is_map and value_type is not None:
                raise ctx.err("a set has no value type; use a map", "type")
        elif head == "flags":
            flags = tuple(f for f in stmt[1:] if f != ",")
            for f in flags:
                if f not in ("dynamic", "timeout", "interval", "constant"):
                    raise ctx.unsupported(f"set flag {f!r}", "flags")
        elif head == "timeout":
            timeout = parse_time(stmt[1], ctx)
        elif head == "comment":
            comment = _unquote(stmt[1])
        elif head == "size":
            size = _int(stmt[1], ctx, "size")
        elif head == "policy" or head == "gc-interval" or head == "auto-merge":
            continue
        elif head == "elements":
            if len(stmt) < 3 or stmt[1] != "=" or stmt[2] != "{":
                raise ctx.err("elements = { ... }", "elements")
            inner, _ = _anon_set(stmt, 2, ctx)
            elements = split_top(inner)
        else:
            raise ctx.unsupported(f"set option {head!r}", head)
    return SetDecl(key_types=key_types, value_type=value_type, flags=flags, timeout=timeout,
                   comment=comment, size=size), elements


def _command(tokens: list[str], ctx: _Ctx) -> list[Command]:
    verb = tokens[0]
    if verb not in ("add", "create", "flush", "delete", "insert", "destroy"):
        raise ctx.unsupported(f"unsupported command {verb!r}", verb)
    if len(tokens) < 2:
        raise ctx.err("incomplete command")
    obj = tokens[1]
    if obj == "ruleset" and verb == "flush":
        return [Command("flush", "ruleset", line=ctx.line, text=ctx.text)]
    if obj not in ("table", "chain", "set", "map", "element", "rule"):
        raise ctx.unsupported(f"unsupported object {obj!r}", obj)
    if verb == "insert" and obj != "rule":
        raise ctx.err("insert only applies to rules")
    i = 2
    family = "ip"
    if i < len(tokens) and tokens[i] in (*FAMILIES, "arp", "bridge", "netdev"):
        family = tokens[i]
        i += 1
        if family not in FAMILIES:
            raise ctx.unsupported(f"family {family!r}", family)
    if i >= len(tokens):
        raise ctx.err(f"{verb} {obj}: table name missing")
    table = tokens[i]
    i += 1
    base: dict[str, Any] = dict(verb=verb, obj=obj, family=family, table=table, line=ctx.line,
                                text=ctx.text)
    if obj == "table":
        items, i = _decl_tokens(tokens, i, ctx)
        comment = None
        for stmt in split_top(items, ";"):
            if stmt[0] == "comment":
                comment = _unquote(stmt[1])
            elif stmt[0] == "flags":
                raise ctx.unsupported("table flags", "flags")
        return [Command(**base, body=comment)]
    if i >= len(tokens):
        raise ctx.err(f"{verb} {obj}: name missing")
    name = tokens[i]
    i += 1
    if name.startswith("handle") or name == "handle":
        raise ctx.unsupported("handles", "handle")
    if obj == "chain":
        items, i = _decl_tokens(tokens, i, ctx)
        return [Command(**base, name=name, body=_chain_decl(items, ctx) if items else None)]
    if obj in ("set", "map"):
        items, i = _decl_tokens(tokens, i, ctx)
        decl, elems = _set_decl(items, ctx, obj == "map") if items else (None, None)
        cmds = [Command(**base, name=name, body=decl)]
        if elems:
            cmds.append(Command("add", "element", family, table, name, tuple(elems),
                                ctx.line, ctx.text))
        return cmds
    if obj == "element":
        if i >= len(tokens) or tokens[i] != "{":
            raise ctx.err("element list must be enclosed in { }")
        items, i = _anon_set(tokens, i, ctx)
        return [Command(**base, name=name, body=tuple(split_top(items)))]
    # rule
    rest = tokens[i:]
    if rest[:1] in (["position"], ["index"], ["handle"]):
        raise ctx.unsupported("rule positions/handles", rest[0])
    if verb in ("flush", "delete", "destroy"):
        raise ctx.unsupported(f"{verb} rule", verb)
    if not rest:
        raise ctx.err("empty rule")
    m = _RULE_TEXT.match(ctx.text.replace("\n", " "))
    return [Command(**base, name=name, body=parse_rule(rest, ctx, m.group(1) if m else None))]


def parse_nft(text: str, *, source: str | None = None, lenient: bool = False,
              warnings: list[str] | None = None) -> list[Command]:
    """Parse ``nft -f`` input (command form) or ``nft list ruleset`` output (block form).

    ``lenient``: a rule expression the model does not implement is kept as an
    ``("unknown", option)`` expression and reported in ``warnings``."""
    warn = warnings if warnings is not None else []
    lines = text.split("\n")
    out: list[Command] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        lineno = i + 1
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        ctx = _Ctx(source, lineno, raw, lenient=lenient, warnings=warn)
        tokens = tokenize(stripped)
        if tokens[0] == "table":
            i = _parse_block_table(lines, i - 1, tokens, source, out, lenient=lenient,
                                   warnings=warn)
            continue
        # A command may span lines while braces are open (e.g. a long element list).
        depth = stripped.count("{") - stripped.count("}")
        while depth > 0 and i < len(lines):
            raw += "\n" + lines[i]
            depth += lines[i].count("{") - lines[i].count("}")
            i += 1
        ctx = _Ctx(source, lineno, raw, lenient=lenient, warnings=warn)
        tokens = tokenize(raw.replace("\n", " "))
        out.extend(_command(tokens, ctx))
    return out


@attrs.frozen
class _Tok:
    text: str
    line: int  # 1-based
    start: int
    end: int


_NL = "\n"


class _Stream:
    """Statements of nft's block syntax: ``;``- or newline-separated, ``{ }`` blocks
    nested (``table {``, ``chain {``, ``set {``), newlines inside an expression's braces
    (``elements = { ... }`` over several lines) part of the statement. Lines are read as
    they are needed; a newline marker closes every line (a newline ends a statement, as
    ``;`` does); whole-line ``#`` comments are skipped."""

    def __init__(self, lines: list[str], start: int, source: str | None, *,
                 lenient: bool = False, warnings: list[str] | None = None) -> None:
        self.lenient = lenient
        self.warnings = warnings if warnings is not None else []
        self.lines = lines
        self.next_line = start
        self.toks: list[_Tok] = []
        self.pos = 0
        self.source = source

    def ctx(self, tok: _Tok) -> _Ctx:
        return _Ctx(self.source, tok.line, self.lines[tok.line - 1], lenient=self.lenient,
                    warnings=self.warnings)

    def peek(self) -> _Tok | None:
        while self.pos >= len(self.toks):
            if self.next_line >= len(self.lines):
                return None
            k = self.next_line
            self.next_line += 1
            raw = self.lines[k]
            if raw.strip().startswith("#"):
                continue
            self.toks += [_Tok(m.group(0), k + 1, m.start(), m.end())
                          for m in _TOKEN.finditer(raw)]
            self.toks.append(_Tok(_NL, k + 1, len(raw), len(raw)))
        return self.toks[self.pos]

    def skip_separators(self) -> None:
        while (t := self.peek()) is not None and t.text in (";", _NL):
            self.pos += 1

    def expect_separator(self, after: _Tok) -> None:
        """nft wants ``;`` or a newline after a block's closing brace."""
        t = self.peek()
        if t is not None and t.text not in (";", _NL):
            raise self.ctx(t).err(f"syntax error, unexpected {t.text!r} after the '}}' on "
                                  f"column {after.start + 1}, expecting newline or semicolon",
                                  t.text)

    def statement(self) -> list[_Tok]:
        """Tokens up to ``;``/newline at depth 0 (consumed) or the block's ``}`` (kept);
        a block opener (``KW NAME {``) ends the statement with its ``{`` consumed."""
        out: list[_Tok] = []
        depth = 0
        while (t := self.peek()) is not None:
            if depth == 0 and t.text in (";", _NL):
                self.pos += 1
                return out
            if depth == 0 and t.text == "}":
                if out and not (out[0].text == "elements" and out[-1].text == "}"):
                    # `chain c { tcp dport 1 drop }`: nft -f refuses it too (only a set's
                    # `elements = { ... }` may end its block without a separator).
                    raise self.ctx(t).err("syntax error, unexpected '}', expecting newline "
                                          "or semicolon", "}")
                return out
            self.pos += 1
            if t.text == _NL:
                continue
            if t.text == "{":
                if depth == 0 and _opens_block(out):
                    out.append(t)
                    return out
                depth += 1
            elif t.text == "}":
                depth -= 1
            out.append(t)
        return out

    def text(self, stmt: list[_Tok]) -> str:
        """The statement as written (rule paths show it)."""
        parts: list[str] = []
        k = 0
        while k < len(stmt):
            first = stmt[k]
            while k + 1 < len(stmt) and stmt[k + 1].line == first.line:
                k += 1
            parts.append(self.lines[first.line - 1][first.start:stmt[k].end])
            k += 1
        return " ".join(parts)


def _opens_block(head: list[_Tok]) -> bool:
    words = [t.text for t in head]
    return (len(words) == 2 and words[0] in ("chain", "set", "map")) or (
        words[:1] == ["table"] and len(words) in (2, 3))


def _parse_block_table(lines: list[str], start: int, head: list[str], source: str | None,
                       out: list[Command], *, lenient: bool = False,
                       warnings: list[str] | None = None) -> int:
    """``table F NAME { ... }`` as ``nft list ruleset`` prints it (or written on fewer
    lines with ``;`` separators, as ``nft -f`` accepts); returns the next line index."""
    st = _Stream(lines, start, source, lenient=lenient, warnings=warnings)
    first = st.statement()
    ctx = st.ctx(first[0]) if first else _Ctx(source, start + 1, lines[start])
    words = [t.text for t in first]
    if len(words) == 4 and words[3] == "{":
        family, table = words[1], words[2]
    elif len(words) == 3 and words[2] == "{":
        family, table = "ip", words[1]
    else:
        raise ctx.err("expected 'table FAMILY NAME {'")
    if family not in FAMILIES:
        raise ctx.unsupported(f"family {family!r}", family)
    out.append(Command("add", "table", family, table, line=start + 1, text=lines[start]))
    # nft creates a block's objects in dependency order -- chains, then sets and maps,
    # then elements (which may name chains), then rules (which may name both) -- so a
    # listing loads back whatever order it prints objects in.
    final = out
    out = []
    while True:
        st.skip_separators()
        tok = st.peek()
        if tok is None:
            raise ctx.err(f"unterminated table {table}")
        if tok.text == "}":
            st.pos += 1
            order = {"table": 0, "chain": 1, "set": 2, "map": 2, "element": 3, "rule": 4}
            final.extend(sorted(out, key=lambda c: order[c.obj]))
            # `table a { ... }; table b { ... }` on one line: the rest of the line is read
            # again by the caller, at its own columns (positions in errors stay right).
            st.expect_separator(tok)
            while (rest := st.peek()) is not None and rest.line == tok.line and \
                    rest.text == ";":
                st.pos += 1
            if rest is not None and rest.line == tok.line and rest.text != _NL:
                raw_line = lines[tok.line - 1]
                lines[tok.line - 1] = " " * rest.start + raw_line[rest.start:]
                return tok.line - 1
            return tok.line
        stmt = st.statement()
        sctx = st.ctx(stmt[0])
        toks = [t.text for t in stmt]
        raw = lines[stmt[0].line - 1]
        if toks[0] == "comment" and len(toks) == 2:
            out.append(Command("add", "table", family, table, body=_unquote(toks[1]),
                               line=stmt[0].line, text=raw))
            continue
        if toks[0] == "flags":
            raise sctx.unsupported("table flags", "flags")
        if toks[0] in ("chain", "set", "map") and len(toks) == 3 and toks[2] == "{":
            kind, name = toks[0], toks[1]
            body: list[list[_Tok]] = []
            while True:
                st.skip_separators()
                t = st.peek()
                if t is None:
                    raise sctx.err(f"unterminated {kind} {name}")
                if t.text == "}":
                    st.pos += 1
                    st.expect_separator(t)
                    break
                inner = st.statement()
                if inner and inner[-1].text == "{" and _opens_block(inner[:-1]):
                    raise st.ctx(inner[0]).err(f"unexpected {inner[0].text!r} inside "
                                               f"{kind} {name}")
                if inner:
                    body.append(inner)
            if kind == "chain":
                _block_chain(family, table, name, body, st, out, stmt[0].line, raw)
            else:
                _block_set(family, table, kind, name, body, st, out, stmt[0].line, raw)
            continue
        raise sctx.unsupported(f"unexpected {toks[0]!r} in table block", toks[0])


def _block_chain(family: str, table: str, name: str, body: list[list[_Tok]], st: _Stream,
                 out: list[Command], lineno: int, raw: str) -> None:
    decl_items: list[str] = []
    rules: list[Command] = []
    for stmt in body:
        ctx = st.ctx(stmt[0])
        toks = [t.text for t in stmt]
        if toks[0] == "type" or toks[0] == "policy":
            decl_items += [*toks, ";"]
            continue
        if toks[0] == "comment" and len(toks) == 2:
            decl_items += [*toks, ";"]
            continue
        text = st.text(stmt)
        rules.append(Command("add", "rule", family, table, name, parse_rule(toks, ctx, text),
                             stmt[0].line, st.lines[stmt[0].line - 1]))
    ctx = _Ctx(st.source, lineno, raw)
    decl = _chain_decl(decl_items, ctx) if decl_items else None
    out.append(Command("add", "chain", family, table, name, decl, lineno, raw))
    out.extend(rules)


def _block_set(family: str, table: str, kind: str, name: str, body: list[list[_Tok]],
               st: _Stream, out: list[Command], lineno: int, raw: str) -> None:
    items: list[str] = []
    for stmt in body:
        items += [t.text for t in stmt]
        items.append(";")
    ctx = _Ctx(st.source, lineno, raw)
    decl, elems = _set_decl(items, ctx, kind == "map")
    out.append(Command("add", kind, family, table, name, decl, lineno, raw))
    if elems:
        out.append(Command("add", "element", family, table, name, tuple(elems), lineno, raw))


def probability(mod: int) -> Fraction:
    """Each ``numgen random mod N`` value is equally likely: exactly 1/N."""
    return Fraction(1, mod)
