"""The ``iptables-restore`` payload of one sync (reference ``kube-proxy-iptables.md`` §3.6-§3.9).

Layout, exactly as ``syncProxyRules`` fills its four buffers::

    *filter
    :KUBE-SERVICES / KUBE-EXTERNAL-SERVICES / KUBE-FORWARD / KUBE-NODEPORTS / KUBE-PROXY-FIREWALL
    [:KUBE-FIREWALL + its anti-martian rule]        (IPv4 with localhostNodePorts)
    per-service filter rules                        (always all services)
    KUBE-FORWARD rules
    COMMIT
    *nat
    :KUBE-SERVICES / KUBE-NODEPORTS / KUBE-POSTROUTING / KUBE-MARK-MASQ
    per-service chain lines                         (partial sync: changed services only)
    chain lines of stale chains
    KUBE-POSTROUTING x3, KUBE-MARK-MASQ
    per service: top-level rules, then its own chains' rules (partial: changed only)
    -X <stale chain> ...
    KUBE-SERVICES -> KUBE-NODEPORTS tail rule(s)
    COMMIT

Service order is upstream's Go map order; here it is the state's sorted order, so output is
deterministic. The payload is meant for ``iptables-restore --noflush --counters``.
"""

from __future__ import annotations

import attrs

from backends.iptables.context import RenderContext
from backends.iptables.partial import changed_ports, stale_chains
from backends.iptables.render import PortCache, PortRules
from backends.iptables.tables import (
    FILTER_TOP_CHAINS,
    KUBE_FIREWALL,
    NAT_TOP_CHAINS,
    NODEPORTS_TAIL_COMMENT,
)
from kservice.proxy.types import NodeProxyState

__all__ = ["SyncResult", "render_restore"]

_FILTER_HEAD = "*filter\n" + "".join(f":{c.name} - [0:0]\n" for c in FILTER_TOP_CHAINS)
_NAT_HEAD = "*nat\n" + "".join(f":{c.name} - [0:0]\n" for c in NAT_TOP_CHAINS)
_FIREWALL = (
    f":{KUBE_FIREWALL.name} - [0:0]\n"
    '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" '
    "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"
)


@attrs.frozen
class SyncResult:
    """One sync's payload and what it did."""

    text: str
    #: False for a full sync (first sync, or the node-level context changed).
    partial: bool
    #: Services whose chains were (re)written; None on a full sync (all of them).
    changed: frozenset[tuple[str, str]] | None
    #: Chains deleted with ``-X``.
    stale: tuple[str, ...]
    #: ``-A`` lines kube-proxy *would* have in nat/filter (the rules-total metric).
    nat_rules: int
    filter_rules: int


def _global_filter_tail(ctx: RenderContext) -> str:
    lines = []
    if not ctx.conntrack_tcp_liberal:
        acct = " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts" if ctx.invalid_nfacct else ""
        lines.append(f"-A KUBE-FORWARD -m conntrack --ctstate INVALID{acct} -j DROP\n")
    m = ctx.mark
    lines.append(
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {m}/{m} -j ACCEPT\n'
    )
    lines.append(
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    )
    return "".join(lines)


def _global_nat_head(ctx: RenderContext) -> str:
    m = ctx.mark
    rf = " --random-fully" if ctx.random_fully else ""
    return (
        f"-A KUBE-POSTROUTING -m mark ! --mark {m}/{m} -j RETURN\n"
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {m}\n"
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"'
        f" -j MASQUERADE{rf}\n"
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {m}\n"
    )


def _nat_tail(ctx: RenderContext) -> str:
    if ctx.nodeport_ips is None:
        extra = ""
        if ctx.ipv6:
            extra = " ! -d ::1/128"
        elif not ctx.localhost_node_ports:
            extra = " ! -d 127.0.0.0/8"
        return (
            f"-A KUBE-SERVICES -m comment --comment {NODEPORTS_TAIL_COMMENT}"
            f" -m addrtype --dst-type LOCAL{extra} -j KUBE-NODEPORTS\n"
        )
    return "".join(
        f"-A KUBE-SERVICES -m comment --comment {NODEPORTS_TAIL_COMMENT} -d {ip} -j KUBE-NODEPORTS\n"
        for ip in ctx.nodeport_ips
    )


def render_restore(
    state: NodeProxyState,
    previous: NodeProxyState | None = None,
    *,
    cache: PortCache | None = None,
    full: bool = False,
) -> SyncResult:
    """The payload kube-proxy writes for ``state``.

    Without ``previous`` this is the first (full) sync on a host without kube-proxy chains.
    With ``previous`` (what the last successful sync programmed) it is a partial sync: only
    changed services' chains are written, and stale chains are deleted. If the node-level
    context changed (configuration, options, node, large-cluster mode) the sync is full --
    upstream restarts (config) or does a full sync (node labels) in most of those cases;
    for a large-cluster-mode flip upstream would keep the old chains of unchanged services,
    which kservice does not reproduce.

    ``full=True`` forces a full sync even when only services changed (upstream does one at
    startup, hourly, after a failed restore, or when the canary chain vanished); stale
    chains are still deleted relative to ``previous``.
    """
    if cache is None:
        cache = PortCache()
    ctx = cache.context(state)
    key = ctx.port_key
    prev_ctx = cache.context(previous) if previous is not None else None

    partial = False
    changed: frozenset[tuple[str, str]] | None = None
    stale: tuple[str, ...] = ()
    write: list[bool] | None = None
    ports: list[PortRules]
    if previous is not None and prev_ctx == ctx and not full:
        assert prev_ctx is not None
        partial = True
        changed, old_idx, new_idx = changed_ports(previous, state)
        if cache.can_splice(previous, key):
            ports = cache.splice(state, ctx, old_idx, new_idx)
        else:
            cache.begin()
            ports = [cache.get(sp, ctx, key) for sp in state.service_ports]
        write = [False] * len(ports)
        new_chains: list[str] = []
        for k in new_idx:
            write[k] = True
            new_chains.extend(ports[k].chains)
        old_chains: list[str] = []
        prev_ports = previous.service_ports
        for k in old_idx:
            old_chains.extend(cache.get(prev_ports[k], prev_ctx, store=False).chains)
        stale = stale_chains(old_chains, new_chains)
    else:
        cache.begin()
        get = cache.get
        ports = [get(sp, ctx, key) for sp in state.service_ports]
        if previous is not None:
            assert prev_ctx is not None
            prev_key = prev_ctx.port_key
            old_all = [c for sp in previous.service_ports
                       for c in cache.get(sp, prev_ctx, prev_key, store=False).chains]
            stale = stale_chains(old_all, (c for pr in ports for c in pr.chains))
    cache.remember(state, key, ports)

    out: list[str] = [_FILTER_HEAD]
    filter_rules = 0
    if ctx.localhost_node_ports:  # IPv4 only by construction
        out.append(_FIREWALL)
        filter_rules += 1
    for pr in ports:
        if pr.filter:
            out.append(pr.filter)
            filter_rules += pr.filter.count("\n")
    tail = _global_filter_tail(ctx)
    filter_rules += tail.count("\n")
    out.append(tail)
    out.append("COMMIT\n")
    out.append(_NAT_HEAD)

    if write is None:
        write = [True] * len(ports)
    for pr, w in zip(ports, write, strict=True):
        if w and pr.chain_decls:
            out.append(pr.chain_decls)
    for chain in stale:
        out.append(f":{chain} - [0:0]\n")
    head = _global_nat_head(ctx)
    out.append(head)
    nat_rules = 4
    for pr, w in zip(ports, write, strict=True):
        out.append(pr.nat_top)
        if w:
            out.append(pr.chain_rules)
        nat_rules += pr.nat_rule_count
    for chain in stale:
        out.append(f"-X {chain}\n")
    nat_tail = _nat_tail(ctx)
    nat_rules += nat_tail.count("\n")
    out.append(nat_tail)
    out.append("COMMIT\n")
    return SyncResult(
        text="".join(out),
        partial=partial,
        changed=changed,
        stale=stale,
        nat_rules=nat_rules,
        filter_rules=filter_rules,
    )
