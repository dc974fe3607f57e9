"""Upstream's test normaliser for iptables-restore payloads, as a public, tested helper.

``kube-proxy``'s unit tests never compare raw payloads: the service iteration order is Go map
order. They parse the payload (``iptablestest.ParseIPTablesDump``), sort it
(``sortIPTablesRules``) and compare strings; ``checkIPTablesRuleJumps`` then checks the
expected text for dangling jumps and unreferenced chains. This module ports the three, so
our payloads can be compared with the upstream goldens byte for byte (reference §6.1-§6.2).
"""

from __future__ import annotations

import re

import attrs

from backends.iptables.tables import TOP_LEVEL_CHAINS
from kservice.errors import RuleParseError

__all__ = [
    "DumpChain",
    "DumpTable",
    "check_iptables_rule_jumps",
    "parse_iptables_dump",
    "rule_comment",
    "service_key",
    "sort_iptables_rules",
]


@attrs.define
class DumpChain:
    name: str
    packets: int = 0
    bytes: int = 0
    rules: list[str] = attrs.field(factory=list)
    deleted: bool = False


@attrs.define
class DumpTable:
    name: str
    chains: list[DumpChain] = attrs.field(factory=list)

    def chain(self, name: str) -> DumpChain | None:
        for c in self.chains:
            if c.name == name:
                return c
        return None


_CHAIN_LINE = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]$")


def parse_iptables_dump(data: str) -> list[DumpTable]:
    """``ParseIPTablesDump``: tables, declared chains, raw rule lines and ``-X`` deletions."""
    tables: list[DumpTable] = []
    table: DumpTable | None = None
    chains_done = False
    for lineno, raw in enumerate(data.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def err(msg: str, lineno: int = lineno, line: str = line) -> RuleParseError:
            return RuleParseError(msg, line=lineno, text=line, source="dump")

        if line.startswith("*"):
            if table is not None:
                raise err(f"table {table.name!r} was not committed")
            name = line[1:]
            if any(t.name == name for t in tables):
                raise err(f"duplicate table {name!r}")
            table = DumpTable(name)
            tables.append(table)
            chains_done = False
            continue
        if table is None:
            raise err("line outside of a table")
        if line == "COMMIT":
            table = None
            continue
        if line.startswith(":"):
            if chains_done:
                raise err("chain declaration after the first rule")
            m = _CHAIN_LINE.match(line)
            if m is None:
                raise err("malformed chain line")
            table.chains.append(DumpChain(m[1], int(m[3]), int(m[4])))
            continue
        chains_done = True
        op, _, rest = line.partition(" ")
        name = rest.split(" ", 1)[0]
        chain = table.chain(name)
        if op == "-A":
            if chain is None:
                raise err(f"rule for undeclared chain {name!r}")
            chain.rules.append(line)
        elif op == "-X":
            if chain is None:
                raise err(f"deletion of undeclared chain {name!r}")
            if chain.rules:
                raise err(f"deletion of chain {name!r} that has rules")
            chain.deleted = True
        else:
            raise err(f"unknown line type {op!r}")
    if table is not None:
        raise RuleParseError(f"table {table.name!r} was not committed", source="dump")
    return tables


def rule_comment(rule: str) -> str | None:
    """The ``--comment`` value of a rule, surrounding quotes removed; None if absent."""
    i = rule.find(" --comment ")
    if i < 0:
        return None
    rest = rule[i + len(" --comment ") :]
    if rest.startswith('"'):
        end = rest.find('"', 1)
        return rest[1:end] if end > 0 else rest[1:]
    return rest.split(" ", 1)[0]


def service_key(rule: str) -> str | None:
    """``getServiceName``: the comment cut at the first space or ``:``; None without one."""
    comment = rule_comment(rule)
    if comment is None:
        return None
    return re.split(r"[ :]", comment, maxsplit=1)[0]


def _chain_order(name: str) -> tuple[int, str]:
    if name == "KUBE-NODEPORTS":
        return (0, "")
    if name == "KUBE-SERVICES":
        return (1, "")
    return (2, name) if name.startswith("KUBE-") else (3, name)


def _stable_sort_by_service(rules: list[str], *, last_marker: bool) -> list[str]:
    # Go's sort.SliceStable with a "less" over the service key. Every rule in these chains
    # carries a comment in practice; a rule without one is kept where it is relative to
    # its neighbours by giving it the key of the rule before it.
    keyed: list[tuple[int, str, int, str]] = []
    prev = ""
    for i, rule in enumerate(rules):
        key = service_key(rule)
        if key is None:
            key = prev
        prev = key
        comment = rule_comment(rule) or ""
        last = 1 if last_marker and "must be the last rule" in comment else 0
        keyed.append((last, key, i, rule))
    keyed.sort()
    return [r for *_, r in keyed]


def sort_iptables_rules(data: str) -> str:
    """``sortIPTablesRules``: the normalised text upstream compares against its goldens."""
    tables = parse_iptables_dump(data.lstrip(" \t\n"))
    tables.sort(key=lambda t: t.name)
    out: list[str] = []
    for table in tables:
        table.chains.sort(key=lambda c: _chain_order(c.name))
        for cname in ("KUBE-NODEPORTS", "KUBE-SERVICES"):
            chain = table.chain(cname)
            if chain is None:
                continue
            if cname == "KUBE-NODEPORTS" or table.name == "filter":
                chain.rules = _stable_sort_by_service(chain.rules, last_marker=False)
            elif table.name == "nat":
                chain.rules = _stable_sort_by_service(chain.rules, last_marker=True)
        out.append(f"*{table.name}\n")
        out.extend(f":{c.name} - [{c.packets}:{c.bytes}]\n" for c in table.chains)
        for c in table.chains:
            out.extend(r + "\n" for r in c.rules)
        out.extend(f"-X {c.name}\n" for c in table.chains if c.deleted)
        out.append("COMMIT\n")
    return "".join(out)


# Anchored at line starts: unanchored, "-A (\S*)" would also match inside a chain line such
# as ":KUBE-SVC-A - [0:0]" (impossible with hashed names, easy with hand-written ones).
_CREATED = re.compile(r"^:(\S*)", re.M)
_DELETED = re.compile(r"^-X (\S*)", re.M)
_FILLED = re.compile(r"^-A (\S*)", re.M)
_JUMPED = re.compile(r"-j (\S*)")
_NON_CHAIN_TARGETS = frozenset(
    {"ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT", "MASQUERADE"}
)


def check_iptables_rule_jumps(data: str) -> list[str]:
    """``checkIPTablesRuleJumps``: problems found per table (empty list = consistent)."""
    problems: list[str] = []
    for block in re.split(r"^\*", data.lstrip(" \t\n"), flags=re.M):
        if not block.strip():
            continue
        table = block.split("\n", 1)[0].strip()
        created = set(_CREATED.findall(block)) - set(_DELETED.findall(block))
        filled = set(_FILLED.findall(block))
        jumped = set(_JUMPED.findall(block)) - _NON_CHAIN_TARGETS
        for chain in sorted(jumped - created):
            problems.append(f"{table}: jump to chain {chain} that is not created")
        for chain in sorted(filled - created):
            problems.append(f"{table}: rules in chain {chain} that is not created")
        for chain in sorted(jumped - filled - {"KUBE-NODEPORTS"}):
            problems.append(f"{table}: jump to chain {chain} that has no rules")
        for chain in sorted(created - jumped - TOP_LEVEL_CHAINS):
            problems.append(f"{table}: chain {chain} is created but nothing jumps to it")
    return problems
