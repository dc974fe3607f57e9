"""A small in-memory iptables: tables of chains of rule texts, changed as the kernel would be.

It applies ``iptables-restore`` payloads with the semantics kube-proxy relies on
(``iptables-restore --noflush``): a ``:CHAIN`` line creates a user chain or *flushes* an
existing one (built-in chains only get their policy set), ``-A`` appends, ``-N``/``-F``
create/flush, and ``-X`` deletes a chain -- refused, as by the kernel, while another rule still
jumps to it. Without ``--noflush`` each ``*table`` first flushes every chain and deletes every
user chain. A payload is applied atomically: on any error the state is left unchanged.
It also implements ``EnsureChain``/``EnsureRule`` for the jump rules of a full sync.

Rules are kept as restore text (``-A CHAIN <args>``), which is what the partial-sync property
compares and what :mod:`backends.iptables.save` turns into ``iptables-save`` form. It is not a
packet tracer: the mock kernel (``backends.mockkernel``) is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import attrs

from backends.iptables.tables import BUILTIN_CHAINS
from kservice.errors import RuleParseError

__all__ = ["Chain", "IPTablesState", "jump_target"]

#: Built-in verdicts and the target extensions kube-proxy uses (anything else is a chain).
_TARGETS = frozenset(
    {"ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "DNAT", "SNAT", "MASQUERADE", "MARK",
     "REDIRECT", "LOG", "CONNMARK", "NOTRACK", "CT", "TPROXY"}
)


def jump_target(rule: str) -> str | None:
    """The ``-j``/``--jump`` target of a rule line, or None (e.g. a comment-only rule)."""
    i = rule.rfind(" -j ")
    if i < 0:
        return None
    rest = rule[i + 4 :]
    return rest.split(" ", 1)[0]


@attrs.define
class Chain:
    name: str
    #: ``-`` for a user chain, else the built-in chain's policy.
    policy: str = "-"
    #: Full restore lines ``-A <name> ...`` in order.
    rules: list[str] = attrs.field(factory=list)

    @property
    def builtin(self) -> bool:
        return self.policy != "-"


@attrs.define
class IPTablesState:
    """One IP family's tables (``mangle``, ``filter``, ``nat``) with their chains."""

    family: str = "IPv4"
    tables: dict[str, dict[str, Chain]] = attrs.field(factory=dict)

    @classmethod
    def empty(cls, family: str = "IPv4") -> IPTablesState:
        """A clean host: the built-in chains of each table, policy ACCEPT, no rules."""
        st = cls(family=family)
        for table, builtins in BUILTIN_CHAINS.items():
            st.tables[table] = {name: Chain(name, "ACCEPT") for name in builtins}
        return st

    def copy(self) -> IPTablesState:
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ queries
    def chain_names(self, table: str) -> list[str]:
        return list(self.tables.get(table, {}))

    def rules(self, table: str, chain: str) -> list[str]:
        return list(self.tables[table][chain].rules)

    def snapshot(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """``{table: {chain: rules}}``: a comparable value (chain order ignored)."""
        return {
            t: {c.name: tuple(c.rules) for c in chains.values()} for t, chains in self.tables.items()
        }

    # ------------------------------------------------------------------ EnsureChain / EnsureRule
    def ensure_chain(self, table: str, chain: str) -> bool:
        """``iptables -N`` unless it exists; True if it already existed."""
        chains = self._table(table)
        if chain in chains:
            return True
        chains[chain] = Chain(chain)
        return False

    def ensure_rule(self, table: str, chain: str, args: Iterable[str], *, prepend: bool) -> bool:
        """``EnsureRule``: ``-C`` then ``-I``/``-A`` if missing; True if it already existed.

        ``args`` is argv; an argument containing spaces is written quoted, as
        ``iptables-save`` would print it back.
        """
        text = " ".join(f'"{a}"' if " " in a else a for a in args)
        line = f"-A {chain} {text}"
        c = self._table(table).get(chain)
        if c is None:
            raise RuleParseError(f"chain {chain!r} does not exist in table {table!r}", text=line)
        if line in c.rules:
            return True
        if prepend:
            c.rules.insert(0, line)
        else:
            c.rules.append(line)
        return False

    def _table(self, table: str) -> dict[str, Chain]:
        if table not in self.tables:
            raise RuleParseError(f"unknown table {table!r}", option=f"*{table}")
        return self.tables[table]

    # ------------------------------------------------------------------ iptables-restore
    def apply_restore(self, text: str, *, noflush: bool = True, source: str = "restore") -> None:
        """Apply an ``iptables-restore`` payload (atomically)."""
        work = self.copy()
        work._apply(text, noflush=noflush, source=source)
        self.tables = work.tables

    def _apply(self, text: str, *, noflush: bool, source: str) -> None:
        table: dict[str, Chain] | None = None
        table_name = ""
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue

            def err(
                msg: str, option: str | None = None, lineno: int = lineno, line: str = line
            ) -> RuleParseError:
                return RuleParseError(msg, line=lineno, text=line, option=option, source=source)

            if line.startswith("*"):
                if table is not None:
                    raise err(f"table {table_name!r} not committed before {line!r}")
                table_name = line[1:]
                if table_name not in self.tables:
                    raise err(f"unknown table {table_name!r}", line)
                table = self.tables[table_name]
                if not noflush:
                    for name in list(table):
                        if table[name].builtin:
                            table[name].rules.clear()
                        else:
                            del table[name]
                continue
            if table is None:
                raise err("rule outside of a table (missing *table line)")
            if line == "COMMIT":
                table = None
                continue
            if line.startswith(":"):
                parts = line[1:].split()
                if len(parts) < 2:
                    raise err("malformed chain line", line)
                name, policy = parts[0], parts[1]
                existing = table.get(name)
                if existing is not None and existing.builtin:
                    if policy == "-":
                        raise err(f"built-in chain {name!r} needs a policy", policy)
                    existing.policy = policy
                elif policy != "-":
                    raise err(f"user chain {name!r} cannot have a policy", policy)
                elif existing is not None:
                    # --noflush: a chain line flushes the chain (without: already gone).
                    existing.rules.clear()
                else:
                    table[name] = Chain(name)
                continue
            op, _, rest = line.partition(" ")
            name = rest.split(" ", 1)[0]
            if op in ("-A", "--append"):
                chain = table.get(name)
                if chain is None:
                    raise err(f"chain {name!r} does not exist", name)
                target = jump_target(line)
                if target is not None and target not in table and target not in _TARGETS:
                    # The kernel refuses a jump to a chain that does not exist (yet).
                    raise err(f"jump to chain {target!r} that does not exist", "-j")
                chain.rules.append("-A " + rest)
            elif op in ("-X", "--delete-chain"):
                chain = table.get(name)
                if chain is None:
                    raise err(f"cannot delete chain {name!r}: no such chain", name)
                if chain.builtin:
                    raise err(f"cannot delete built-in chain {name!r}", name)
                if chain.rules:
                    raise err(f"cannot delete chain {name!r}: it is not empty", name)
                for other in table.values():
                    for r in other.rules:
                        if jump_target(r) == name:
                            raise err(f"cannot delete chain {name!r}: still referenced by {r!r}", name)
                del table[name]
            elif op in ("-F", "--flush"):
                if name not in table:
                    raise err(f"cannot flush chain {name!r}: no such chain", name)
                table[name].rules.clear()
            elif op in ("-N", "--new-chain"):
                if name in table:
                    raise err(f"chain {name!r} already exists", name)
                table[name] = Chain(name)
            else:
                raise err("unsupported restore command", op)
        if table is not None:
            raise RuleParseError(
                f"table {table_name!r} was not committed (missing COMMIT)", source=source
            )
