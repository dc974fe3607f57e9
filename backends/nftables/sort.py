"""Upstream's golden-test normaliser (``helpers_test.go`` ``sortNFTablesTransaction``).

Blank lines and ``#`` comment lines are dropped; the rest is *stably* sorted by object
type (table, chain, rule, set, map, element, then anything else), then by the object name
(the fifth word), then -- except for rules, whose relative order is meaningful -- by the
whole line. Two dumps compare equal after this exactly when they hold the same objects and
every chain has the same rules in the same order.
"""

from __future__ import annotations

import functools

__all__ = ["OBJECT_ORDER", "diff_nftables_transaction", "sort_nftables_transaction"]

#: Higher sorts earlier; anything else is 0 (upstream ``objectOrder``).
OBJECT_ORDER = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


def _less(li: str, lj: str) -> bool:
    wi = li.split(" ")
    wj = lj.split(" ")
    if len(wi) < 5 or len(wj) < 5:
        return False
    if wi[1] != wj[1]:
        # Upstream returns objectOrder[wi] >= objectOrder[wj], which also treats two
        # *different* unknown types as "less"; we keep that quirk.
        return OBJECT_ORDER.get(wi[1], 0) >= OBJECT_ORDER.get(wj[1], 0)
    if wi[4] != wj[4]:
        return wi[4] < wj[4]
    if wi[1] == "rule":
        return False
    return li < lj


def _cmp(a: str, b: str) -> int:
    if _less(a, b):
        return -1
    if _less(b, a):
        return 1
    return 0


def sort_nftables_transaction(tx: str) -> str:
    """Normalise an nft transaction/dump for comparison, as upstream's tests do."""
    lines = [ln for ln in tx.split("\n") if ln != "" and not ln.startswith("#")]
    # Python's sort is stable, like Go's sort.SliceStable.
    lines.sort(key=functools.cmp_to_key(_cmp))
    return "\n".join(lines)


def diff_nftables_transaction(expected: str, result: str) -> str:
    """A unified diff of the two normalised texts; empty when they are equal."""
    import difflib

    a = sort_nftables_transaction(expected).splitlines()
    b = sort_nftables_transaction(result).splitlines()
    if a == b:
        return ""
    return "\n".join(difflib.unified_diff(a, b, "expected", "result", lineterm=""))
