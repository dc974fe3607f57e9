"""KEP-3453 (MinimizeIPTablesRestore) partial syncs: what changed, and which chains went stale.

On a partial sync kube-proxy still writes the whole filter table and every top-level nat rule
(steps 1-6 of each service port, POSTROUTING, MARK-MASQ, the NodePort tail), but the service
chains (``KUBE-EXT/FW/SVC/SVL/SEP``) only of services whose Service or EndpointSlices changed
since the last successful sync -- "changed" is per namespace/name and includes deletions. The
chains of unchanged services stay in the kernel and still count as active. Chains that exist
but are no longer active get a chain line (which flushes them) and ``-X`` (reference §3.9).

Here "the kernel" is what a full sync of ``previous`` left behind, so stale chains can be
computed from the changed services alone: a service chain's name hashes its own service port
name, so chains never move between services.
"""

from __future__ import annotations

from collections.abc import Iterable

from kservice.proxy.types import NodeProxyState, ServicePortInfo

__all__ = ["changed_ports", "changed_services", "group_by_service", "stale_chains"]

ServiceKey = tuple[str, str]


def group_by_service(ports: Iterable[ServicePortInfo]) -> dict[ServiceKey, tuple[ServicePortInfo, ...]]:
    """``{(namespace, name): ports}`` keeping each service's port order."""
    out: dict[ServiceKey, list[ServicePortInfo]] = {}
    for sp in ports:
        key = (sp.name.namespace, sp.name.name)
        bucket = out.get(key)
        if bucket is None:
            out[key] = [sp]
        else:
            bucket.append(sp)
    return {k: tuple(v) for k, v in out.items()}


def changed_ports(
    previous: NodeProxyState, state: NodeProxyState
) -> tuple[frozenset[ServiceKey], list[int], list[int]]:
    """Changed services, and the indexes of their ports in ``previous`` and in ``state``.

    Like the change trackers, a change that leaves the proxier's view identical (DeepEqual of
    the service-port and endpoint maps) is not a change. Both port lists are sorted by name,
    so one merge walk with an identity fast path finds the differences without allocating;
    a changed service's other ports (adjacent, same namespace/name) are included.
    """
    a = previous.service_ports
    b = state.service_ports
    changed: set[ServiceKey] = set()
    if a is b:
        return frozenset(), [], []
    i = j = 0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        x = a[i]
        y = b[j]
        if x is y:
            i += 1
            j += 1
            continue
        nx = x.name
        ny = y.name
        if nx == ny:
            if x != y:
                changed.add((nx.namespace, nx.name))
            i += 1
            j += 1
        elif nx < ny:  # a port that is gone
            changed.add((nx.namespace, nx.name))
            i += 1
        else:  # a new port
            changed.add((ny.namespace, ny.name))
            j += 1
    for x in a[i:]:
        changed.add((x.name.namespace, x.name.name))
    for y in b[j:]:
        changed.add((y.name.namespace, y.name.name))
    keys = frozenset(changed)
    return keys, _indexes(a, keys), _indexes(b, keys)


def _indexes(ports: tuple[ServicePortInfo, ...], keys: frozenset[ServiceKey]) -> list[int]:
    """Indexes of the ports of ``keys`` in a name-sorted port tuple (binary search)."""
    from bisect import bisect_left

    out: list[int] = []
    names = _NameView(ports)
    for ns, name in sorted(keys):
        k = bisect_left(names, (ns, name))
        while k < len(ports) and ports[k].name.namespace == ns and ports[k].name.name == name:
            out.append(k)
            k += 1
    return out


class _NameView:
    """A lazy ``[(namespace, name), ...]`` over ports, for :func:`bisect.bisect_left`."""

    def __init__(self, ports: tuple[ServicePortInfo, ...]) -> None:
        self._ports = ports

    def __len__(self) -> int:
        return len(self._ports)

    def __getitem__(self, k: int) -> ServiceKey:
        n = self._ports[k].name
        return (n.namespace, n.name)


def changed_services(previous: NodeProxyState, state: NodeProxyState) -> frozenset[ServiceKey]:
    """Services whose per-node proxy view differs (added, removed or modified)."""
    return changed_ports(previous, state)[0]


def stale_chains(previous_chains: Iterable[str], active_chains: Iterable[str]) -> tuple[str, ...]:
    """Service chains that existed and are not active any more, sorted (Go: set order)."""
    active = set(active_chains)
    return tuple(sorted({c for c in previous_chains if c not in active}))
