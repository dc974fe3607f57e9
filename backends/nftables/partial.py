"""Full and partial sync transactions, as kube-proxy sends them to ``nft -f``.

**Full sync** (first sync, after a failure, after a node-label change): ``setupNFTables``
re-creates the fixed part -- ``add table``; on the proxier's first sync an ``add chain`` +
``delete chain`` of every base chain (so a changed priority applies, PR #123162); every base
chain ``add`` + ``flush``; the jump chains and their rules; the sets and maps, with the six
element-holding containers flushed -- and then every service port writes its chains, rules,
affinity sets and elements.

**Partial sync** (upstream ``tryPartialSync``, v1.31+ with ``nftElementStorage``): the fixed
part is not touched. Services whose Service or EndpointSlices changed (tracked per
namespace/name, so all ports of a changed service) rewrite their chains (``add`` + ``flush``
+ rules) and affinity sets -- an affinity set is just ``add``ed again, also when only the
ClientIP timeout changed: the name does not depend on the timeout and the kernel (6.2+)
replaces an existing set's default timeout, so nothing is deleted (upstream does the same;
a full sync sends the very same ``add set``). Elements are diffed against what was programmed:
new keys are added, a key whose value changed is ``delete``d then ``add``ed, keys no
longer wanted are deleted. Service chains no longer in use are flushed now and deleted by a
later sync at least one second after (kernels < 6.2 still see a reference from the just
deleted map element); stale affinity sets are deleted at once.
"""

from __future__ import annotations

from backends.nftables import names
from backends.nftables import tables as T
from backends.nftables.model import Chain, chain_decl, container_decl, element_body, fixed_container
from backends.nftables.render import Desired, ServiceFragment

__all__ = [
    "changed_services",
    "full_transaction",
    "partial_transaction",
    "stale_chain_cleanup",
]


def _p(desired: Desired) -> str:
    return f"{desired.family} {T.TABLE}"


def _frag_lines(frag: ServiceFragment, p: str, out: list[str], *, elements: bool = True,
                objects: bool = True) -> None:
    for op in frag.ops:
        k = op[0]
        if k == "rule":
            if objects:
                out.append(f"add rule {p} {op[1]} {op[2]}")
        elif k == "element":
            if elements:
                out.append(f"add element {p} {op[1]} {element_body(op[2], op[3], op[4])}")
        elif k == "chain":
            if objects:
                out.append(f"add chain {p} {op[1]}")
                out.append(f"flush chain {p} {op[1]}")
        elif k == "set":
            if objects:
                flags = ",".join(op[3])
                out.append(f"add set {p} {op[1]} {{ type {op[2]} ; flags {flags} ; timeout {op[4]}s ; }}")


def full_transaction(desired: Desired, *, first_sync: bool = True,
                     existing_chains: tuple[str, ...] = (),
                     existing_sets: tuple[str, ...] = ()) -> str:
    """The ``nft -f`` input of a full sync.

    ``existing_chains``/``existing_sets`` are what ``nft list chains``/``sets`` returned
    before the sync (empty on a fresh node): stale service chains are flushed, stale
    affinity sets deleted.
    """
    p = _p(desired)
    out = [f'add table {p} {{ comment "{T.TABLE_COMMENT}" ; }}']
    if first_sync:
        for bc in T.BASE_CHAINS:
            out.append(f"add chain {p} {bc.name}")
            out.append(f"delete chain {p} {bc.name}")
    for op in desired.fixed:
        k = op[0]
        if k == "basechain":
            bc = op[1]
            out.append(f"add chain {p} {bc.name}{chain_decl(Chain(bc.name, base=bc))}")
            out.append(f"flush chain {p} {bc.name}")
        elif k == "chain":
            out.append(f"add chain {p} {op[1]}")
            out.append(f"flush chain {p} {op[1]}")
        elif k == "commented-chain":
            out.append(f'add chain {p} {op[1]} {{ comment "{op[2]}" ; }}')
            out.append(f"flush chain {p} {op[1]}")
        elif k == "rule":
            out.append(f"add rule {p} {op[1]} {op[2]}")
        elif k == "container":
            c = fixed_container(op[1], desired.addr_type)
            out.append(f"add {c.kind} {p} {c.name}{container_decl(c)}")
        elif k == "flush-container":
            out.append(f"flush {T.CONTAINERS[op[1]].kind} {p} {op[1]}")
        elif k == "delete-container":
            out.append(f"delete {T.CONTAINERS[op[1]].kind} {p} {op[1]}")
        elif k == "element":
            out.append(f"add element {p} {op[1]} {element_body(op[2], op[3], op[4])}")
    for frag in desired.fragments:
        _frag_lines(frag, p, out)
    _stale(desired, p, out, existing_chains, existing_sets)
    return "\n".join(out) + "\n"


def _active(desired: Desired) -> tuple[set[str], set[str]]:
    chains: set[str] = set()
    sets: set[str] = set()
    for frag in desired.fragments:
        for op in frag.ops:
            if op[0] == "chain":
                chains.add(op[1])
            elif op[0] == "set":
                sets.add(op[1])
    return chains, sets


def _stale(desired: Desired, p: str, out: list[str], existing_chains: tuple[str, ...],
           existing_sets: tuple[str, ...]) -> None:
    if not existing_chains and not existing_sets:
        return
    chains, sets = _active(desired)
    for c in existing_chains:
        if names.is_service_chain_name(c) and c not in chains:
            out.append(f"flush chain {p} {c}")
    for s in existing_sets:
        if names.is_affinity_set_name(s) and s not in sets:
            out.append(f"delete set {p} {s}")


def _by_service(d: Desired) -> dict[str, list[ServiceFragment]]:
    out: dict[str, list[ServiceFragment]] = {}
    for f in d.fragments:
        out.setdefault(f.service, []).append(f)
    return out


def changed_services(previous: Desired, current: Desired) -> set[str]:
    """Services (``ns/name``) whose fragments differ: what the change trackers report.

    Unchanged fragments are usually the very same objects, so this is a cheap identity
    walk.
    """
    return _changed(previous, current)


_Elements = dict[tuple[str, str], tuple[str | None, str | None]]


def _changed(previous: Desired, current: Desired) -> set[str]:
    pf, cf = previous.fragments, current.fragments
    if len(pf) == len(cf):
        # Same number of ports: compare position by position (unchanged fragments are
        # the same objects, so this is an identity walk). A port moving position also
        # shows up, as both services at that position.
        out: set[str] = set()
        for f, g in zip(pf, cf, strict=True):
            if f is not g and f != g:
                out.add(f.service)
                out.add(g.service)
        return out
    a, b = _by_service(previous), _by_service(current)
    return {s for s in a.keys() | b.keys() if a.get(s) != b.get(s)}


def _collect(frags: list[ServiceFragment]) -> tuple[_Elements, set[str], set[str]]:
    elements: _Elements = {}
    chains: set[str] = set()
    sets: set[str] = set()
    for f in frags:
        for op in f.ops:
            k = op[0]
            if k == "element":
                elements[(op[1], op[2])] = (op[3], op[4])
            elif k == "chain":
                chains.add(op[1])
            elif k == "set":
                sets.add(op[1])
    return elements, chains, sets


def partial_transaction(previous: Desired, current: Desired,
                        changed: set[str] | None = None) -> str:
    """The ``nft -f`` input of a partial sync from ``previous`` (already programmed).

    Only the changed services' fragments are looked at -- upstream walks every service but
    its element storage makes unchanged ones no-ops; the result is the same as long as no
    two services share an element key (the API guarantees that). Falls back to a full sync
    (upstream sets ``needFullSync``) when the fixed part changed, e.g. another node IP.
    """
    if previous.fixed != current.fixed or previous.family != current.family:
        prev_chains, prev_sets = _active(previous)
        return full_transaction(current, first_sync=False,
                                existing_chains=tuple(sorted(prev_chains)),
                                existing_sets=tuple(sorted(prev_sets)))
    if changed is None:
        changed = _changed(previous, current)
    if not changed:
        return ""
    p = _p(current)
    out: list[str] = []
    old_frags = [f for f in previous.fragments if f.service in changed]
    new_frags = [f for f in current.fragments if f.service in changed]
    old, old_chains, old_sets = _collect(old_frags)
    seen: set[tuple[str, str]] = set()
    new_chains: set[str] = set()
    new_sets: set[str] = set()
    for frag in new_frags:
        for op in frag.ops:
            k = op[0]
            if k == "element":
                key = (op[1], op[2])
                seen.add(key)
                prev = old.get(key)
                if prev is None:
                    out.append(f"add element {p} {op[1]} {element_body(op[2], op[3], op[4])}")
                elif prev[0] != op[3]:
                    # nftElementStorage.ensureElem: a new value is delete + add; a changed
                    # comment alone is not noticed (values are compared, comments are not).
                    out.append(f"delete element {p} {op[1]} {{ {op[2]} }}")
                    out.append(f"add element {p} {op[1]} {element_body(op[2], op[3], op[4])}")
            elif k == "rule":
                out.append(f"add rule {p} {op[1]} {op[2]}")
            elif k == "chain":
                new_chains.add(op[1])
                out.append(f"add chain {p} {op[1]}")
                out.append(f"flush chain {p} {op[1]}")
            elif k == "set":
                new_sets.add(op[1])
                out.append(f"add set {p} {op[1]} {{ type {op[2]} ; flags "
                           f"{','.join(op[3])} ; timeout {op[4]}s ; }}")
    for c in sorted(old_chains - new_chains):
        out.append(f"flush chain {p} {c}")
    for st in sorted(old_sets - new_sets):
        out.append(f"delete set {p} {st}")
    # cleanupLeftoverKeys, in storage order.
    for cont in T.ELEMENT_STORAGE_ORDER:
        for (cname, ktext) in old:
            if cname == cont and (cname, ktext) not in seen:
                out.append(f"delete element {p} {cname} {{ {ktext} }}")
    return "\n".join(out) + "\n" if out else ""


def stale_chain_cleanup(previous: Desired, current: Desired) -> str:
    """The follow-up transaction (>= 1 s later) deleting the chains the sync flushed."""
    if previous.fixed != current.fixed or previous.family != current.family:
        prev_chains, _ = _active(previous)
        chains, _ = _active(current)
    else:
        changed = _changed(previous, current)
        _e, prev_chains, _s = _collect([f for f in previous.fragments if f.service in changed])
        _e, chains, _s = _collect([f for f in current.fragments if f.service in changed])
    p = _p(current)
    out = [f"delete chain {p} {c}" for c in sorted(prev_chains - chains)]
    return "\n".join(out) + ("\n" if out else "")
