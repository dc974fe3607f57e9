"""Per-service-port iptables rules: ``syncProxyRules``' loop body, one service port at a time.

Theory of operation (reference ``kube-proxy-iptables.md`` §3.3-§3.5, §4, §5). For each service
port kube-proxy writes, in this order:

1-6. "top-level" rules, rewritten on every sync, full or partial: the ClusterIP / externalIP /
     LB-IP captures in nat ``KUBE-SERVICES``, NodePort captures in nat ``KUBE-NODEPORTS``, and
     the filter REJECT/DROP rules for destinations without usable endpoints, the
     ``KUBE-PROXY-FIREWALL`` drops and the health-check ACCEPT;
8-13. the service's own nat chains (``KUBE-EXT``, ``KUBE-FW``, ``KUBE-SVC``, ``KUBE-SVL``,
     ``KUBE-SEP``), which a partial sync only rewrites when the service changed.

:func:`render_port` returns both groups as text (:class:`PortRules`); :class:`PortCache`
keeps them per service port so that a sync re-renders only what changed. Endpoint selection is
never done here: :attr:`ServicePortInfo.categorized` is the shared ``CategorizeEndpoints``
result.

Lines are built with f-strings from the exact upstream token sequences; comments that contain
spaces carry literal double quotes (the restore parser strips them), a bare ``<spn>`` does not.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import attrs

from backends.iptables.context import RenderContext
from backends.iptables.names import endpoint_chain, port_chain_hash
from kservice.proxy.types import (
    Endpoint,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
    join_host_port,
)

__all__ = ["PortCache", "PortRules", "probability", "render_port"]


@lru_cache(maxsize=4096)
def probability(n: int) -> str:
    """``fmt.Sprintf("%0.10f", 1.0/float64(n))`` (reference §5)."""
    return "%0.10f" % (1.0 / n)


@attrs.frozen(slots=True)
class PortRules:
    """What one service port contributes to a restore payload, as newline-terminated text."""

    #: Steps 1-6, filter table (REJECT/DROP, KUBE-PROXY-FIREWALL, health check).
    filter: str
    #: Steps 1-6, nat table (KUBE-SERVICES / KUBE-NODEPORTS captures).
    nat_top: str
    #: Steps 9-13 chain lines ``:KUBE-XXX-h - [0:0]`` (declaration order).
    chain_decls: str
    #: Steps 8-13 rules of the service's own chains.
    chain_rules: str
    #: Names of the nat chains this port keeps alive (stale-chain accounting).
    chains: tuple[str, ...]
    #: Number of ``-A`` lines in ``nat_top`` + ``chain_rules`` (the nat rules-total metric).
    nat_rule_count: int


def _ep_rules(
    out: list[str],
    chain: str,
    spn: str,
    eps: tuple[Endpoint, ...],
    info: dict[int, tuple[str, str]],
    affinity: int | None,
    large: bool,
) -> None:
    """``writeServiceToEndpointRules``: affinity checks, then the probability ladder.

    ``info`` maps ``id(endpoint)`` to its (``ip:port``, SEP chain).
    """
    if affinity is not None:
        for ep in eps:
            s, sep = info[id(ep)]
            c = "" if large else f' -m comment --comment "{spn} -> {s}"'
            out.append(
                f"-A {chain}{c} -m recent --name {sep} --rcheck --seconds {affinity} --reap -j {sep}"
            )
    n = len(eps)
    last = n - 1
    for i, ep in enumerate(eps):
        s, sep = info[id(ep)]
        c = "" if large else f' -m comment --comment "{spn} -> {s}"'
        if i < last:
            out.append(
                f"-A {chain}{c} -m statistic --mode random --probability {probability(n - i)} -j {sep}"
            )
        else:
            out.append(f"-A {chain}{c} -j {sep}")


def render_port(sp: ServicePortInfo, ctx: RenderContext) -> PortRules:
    """Render one service port (steps 1-13 of reference §3.4)."""
    spn = str(sp.name)
    p = sp.protocol_lower
    h = port_chain_hash(spn, p)
    svc = "KUBE-SVC-" + h
    svl = "KUBE-SVL-" + h
    ext = "KUBE-EXT-" + h
    fw = "KUBE-FW-" + h
    cat = sp.categorized
    cluster_eps = cat.cluster
    local_eps = cat.local
    has_any = cat.has_any
    itp_local = sp.internal_policy_local
    etp_local = sp.external_policy_local
    large = ctx.large_cluster

    uses_cluster_chain = bool(cluster_eps) and sp.uses_cluster_endpoints
    uses_local_chain = bool(local_eps) and sp.uses_local_endpoints
    internal_chain = svl if itp_local else svc
    has_internal = has_any and not (itp_local and not local_eps)
    external_policy_chain = svl if etp_local else svc
    has_external = has_any and not (etp_local and not local_eps)
    uses_ext = has_any and sp.externally_accessible
    uses_fw = has_any and bool(sp.load_balancer_vips) and bool(sp.load_balancer_source_ranges)
    lb_chain = fw if uses_fw else ext

    if not has_any:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f'"{spn} has no endpoints"'
    else:
        int_target = ext_target = ""
        int_comment = ext_comment = ""
        if not has_internal:
            int_target, int_comment = "DROP", f'"{spn} has no local endpoints"'
        if not has_external:
            ext_target, ext_comment = "DROP", f'"{spn} has no local endpoints"'

    filt: list[str] = []
    top: list[str] = []
    cip = sp.cluster_ip
    port = sp.port
    mp = f"-m {p} -p {p}"

    # 1. ClusterIP capture.
    if has_internal:
        top.append(
            f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" {mp} -d {cip} --dport {port} -j {internal_chain}'
        )
    else:
        filt.append(
            f"-A KUBE-SERVICES -m comment --comment {int_comment} {mp} -d {cip} --dport {port} -j {int_target}"
        )
    # 2. externalIPs.
    for eip in sp.external_ips:
        if has_any:
            top.append(
                f'-A KUBE-SERVICES -m comment --comment "{spn} external IP" {mp} -d {eip} --dport {port} -j {ext}'
            )
        if not has_external:
            filt.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} {mp} -d {eip} --dport {port} -j {ext_target}"
            )
    # 3. LoadBalancer VIPs.
    for lb in sp.load_balancer_vips:
        if has_any:
            top.append(
                f'-A KUBE-SERVICES -m comment --comment "{spn} loadbalancer IP" {mp} -d {lb} --dport {port} -j {lb_chain}'
            )
        if uses_fw:
            filt.append(
                f'-A KUBE-PROXY-FIREWALL -m comment --comment "{spn} traffic not accepted by {fw}" {mp} -d {lb} --dport {port} -j DROP'
            )
    # 4. No usable endpoints for external clients: a second, separate loop over LB VIPs.
    if not has_external:
        for lb in sp.load_balancer_vips:
            filt.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} {mp} -d {lb} --dport {port} -j {ext_target}"
            )
    # 5. NodePort (never subject to loadBalancerSourceRanges).
    np = sp.node_port
    if np:
        if has_any:
            if ctx.localhost_nfacct:
                top.append(
                    f"-A KUBE-NODEPORTS -m comment --comment {spn} {mp} -d 127.0.0.0/8 --dport {np} -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {ext}"
                )
            top.append(f"-A KUBE-NODEPORTS -m comment --comment {spn} {mp} --dport {np} -j {ext}")
        if not has_external:
            filt.append(
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m addrtype --dst-type LOCAL {mp} --dport {np} -j {ext_target}"
            )
    # 6. Health-check node port (always tcp), whether or not there are local endpoints.
    if sp.health_check_node_port:
        filt.append(
            f'-A KUBE-NODEPORTS -m comment --comment "{spn} health check node port" -m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT'
        )

    # 7. From here on a partial sync drops the output of unchanged services.
    decls: list[str] = []
    rules: list[str] = []
    chains: list[str] = []
    detector = ctx.detector

    # 8. Masquerade off-cluster traffic to the ClusterIP.
    if has_internal:
        base = f'-A {internal_chain} -m comment --comment "{spn} cluster IP" {mp} -d {cip} --dport {port}'
        if ctx.masquerade_all:
            rules.append(f"{base} -j KUBE-MARK-MASQ")
        elif detector is not None:
            rules.append(f"{base} {detector[1]} -j KUBE-MARK-MASQ")

    # 9. External-destination entry chain.
    if uses_ext:
        decls.append(f":{ext} - [0:0]")
        chains.append(ext)
        if not etp_local:
            rules.append(
                f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" -j KUBE-MARK-MASQ'
            )
        else:
            if detector is not None:
                rules.append(
                    f'-A {ext} -m comment --comment "pod traffic for {spn} external destinations" {detector[0]} -j {svc}'
                )
            rules.append(
                f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {spn} external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ'
            )
            rules.append(
                f'-A {ext} -m comment --comment "route LOCAL traffic for {spn} external destinations" -m addrtype --src-type LOCAL -j {svc}'
            )
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")

    # 10. loadBalancerSourceRanges.
    if uses_fw:
        decls.append(f":{fw} - [0:0]")
        chains.append(fw)
        head = f'-A {fw} -m comment --comment "{spn} loadbalancer IP"'
        allow_from_node = False
        node_ip = ctx.node_ip
        for cidr in sp.load_balancer_source_ranges:
            rules.append(f"{head} -s {cidr} -j {ext}")
            if not allow_from_node and _contains(cidr, node_ip):
                allow_from_node = True
        if allow_from_node:
            for lb in sp.load_balancer_vips:
                rules.append(f"{head} -s {lb} -j {ext}")
        rules.append(
            f'-A {fw} -m comment --comment "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"'
        )

    # 11-13. Endpoint dispatch and per-endpoint chains.
    reachable = cat.all_reachable
    # One ip:port string and SEP hash per endpoint object (the same objects appear in the
    # cluster, local and reachable lists).
    info: dict[int, tuple[str, str]] = {}
    for group in (reachable, cluster_eps, local_eps):
        for ep in group:
            if id(ep) not in info:
                s = join_host_port(ep.ip, ep.port)
                info[id(ep)] = (s, endpoint_chain(spn, p, s))
    affinity = sp.session_affinity_timeout
    if uses_cluster_chain:
        decls.append(f":{svc} - [0:0]")
        chains.append(svc)
        _ep_rules(rules, svc, spn, cluster_eps, info, affinity, large)
    if uses_local_chain:
        decls.append(f":{svl} - [0:0]")
        chains.append(svl)
        _ep_rules(rules, svl, spn, local_eps, info, affinity, large)
    c = "" if large else f" -m comment --comment {spn}"
    recent = ""
    for ep in reachable:
        s, sep = info[id(ep)]
        decls.append(f":{sep} - [0:0]")
        chains.append(sep)
        rules.append(f"-A {sep}{c} -s {ep.ip} -j KUBE-MARK-MASQ")
        if affinity is not None:
            recent = f" -m recent --name {sep} --set"
        rules.append(f"-A {sep}{c}{recent} {mp} -j DNAT --to-destination {s}")

    return PortRules(
        filter="".join(line + "\n" for line in filt),
        nat_top="".join(line + "\n" for line in top),
        chain_decls="\n".join(decls) + "\n" if decls else "",
        chain_rules="\n".join(rules) + "\n" if rules else "",
        chains=tuple(chains),
        nat_rule_count=len(top) + len(rules),
    )


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _contains(cidr: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    net = _network(cidr)
    return net.version == ip.version and ip in net


class PortCache:
    """Rendered :class:`PortRules` per service port, reused while port and context are unchanged.

    A hit needs the same :class:`ServicePortInfo` (identity, else equality) and the same
    :attr:`RenderContext.port_key`. Each :meth:`begin` starts a new generation; entries not
    used by the latest two renders are dropped, so memory tracks the live state. Lookups try
    the object's identity first (states derived with ``attrs.evolve`` share unchanged ports),
    then its name.
    """

    def __init__(self) -> None:
        self._names: dict[ServicePortName, _Entry] = {}
        self._prev_names: dict[ServicePortName, _Entry] = {}
        self._by_id: dict[int, _Entry] = {}
        self._names_stale = False
        self._generation_misses = 0
        self._prev_by_id: dict[int, _Entry] = {}
        self._contexts: list[tuple[NodeProxyState, RenderContext]] = []
        self._last: tuple[NodeProxyState, tuple[object, ...], list[PortRules]] | None = None
        self.hits = 0
        self.misses = 0

    def context(self, state: NodeProxyState) -> RenderContext:
        """:meth:`RenderContext.from_state`, remembered for the last few states."""
        for st, ctx in self._contexts:
            if st is state:
                return ctx
        ctx = RenderContext.from_state(state)
        self._contexts = [(state, ctx), *self._contexts[:3]]
        return ctx

    def begin(self) -> None:
        """Start rendering a new state (the one before stays available for lookups)."""
        if self._by_id:
            self._prev_by_id = self._by_id
            # Identity hits do not maintain the name index (they must stay cheap); rebuild
            # it lazily for the previous generation when a name lookup is needed.
            self._prev_names = {} if self._names_stale else self._names
            self._by_id = {}
            self._names = {}
            self._names_stale = False
        self._generation_misses = 0

    def get(
        self,
        sp: ServicePortInfo,
        ctx: RenderContext,
        key: tuple[object, ...] | None = None,
        *,
        store: bool = True,
    ) -> PortRules:
        """The rules of ``sp``; ``store=False`` looks up (or renders) without caching."""
        key = ctx.port_key if key is None else key
        ident = id(sp)
        for by_id in (self._by_id, self._prev_by_id):
            entry = by_id.get(ident)
            if entry is not None and entry[0] is sp and (entry[1] is key or entry[1] == key):
                self.hits += 1
                if store and by_id is not self._by_id:
                    self._by_id[ident] = entry
                    self._names_stale = True
                return entry[2]
        # Not the same object: look for an equal port by name. Building the previous
        # generation's name index costs O(ports); a few misses (the changed services of an
        # incremental update) are cheaper to render afresh, so only build it once misses
        # suggest the whole state was rebuilt from new objects.
        self._generation_misses += 1
        if self._generation_misses > _NAME_INDEX_AFTER and self._prev_by_id and not self._prev_names:
            self._prev_names = {e[0].name: e for e in self._prev_by_id.values()}
        name = sp.name
        for index in (self._names, self._prev_names):
            entry = index.get(name)
            if entry is not None and entry[0] == sp and entry[1] == key:
                self.hits += 1
                if store:
                    entry = (sp, key, entry[2])
                    self._by_id[ident] = entry
                    self._names[name] = entry
                return entry[2]
        self.misses += 1
        rules = render_port(sp, ctx)
        if store:
            entry = (sp, key, rules)
            self._by_id[ident] = entry
            self._names[name] = entry
        return rules

    # -------------------------------------------------------------- incremental fast path
    def remember(self, state: NodeProxyState, key: tuple[object, ...], rules: list[PortRules]) -> None:
        """Record the rules of the state just rendered, aligned with its ports."""
        self._last = (state, key, rules)

    def can_splice(self, previous: NodeProxyState, key: tuple[object, ...]) -> bool:
        """Whether ``previous`` is the state rendered last, under the same context key."""
        return self._last is not None and self._last[0] is previous and self._last[1] == key

    def splice(
        self,
        state: NodeProxyState,
        ctx: RenderContext,
        old_idx: list[int],
        new_idx: list[int],
    ) -> list[PortRules]:
        """The rules of ``state`` from the last render, re-rendering only ports at ``new_idx``.

        Valid when every port of the last state outside ``old_idx`` is, in order, the same
        object as a port of ``state`` outside ``new_idx`` (what :func:`changed_ports` finds),
        so an incremental sync costs list slicing, not a lookup per port.
        """
        assert self._last is not None
        prev_state, key, prev_rules = self._last
        prev_ports = prev_state.service_ports
        # A new generation: the previous ids stay reachable for stale-chain lookups.
        self._prev_by_id = self._by_id
        self._by_id = dict(self._by_id)
        for k in old_idx:
            self._by_id.pop(id(prev_ports[k]), None)
        self._prev_names = {}
        self._names = {}
        self._names_stale = True
        self._generation_misses = 0
        unchanged: list[PortRules] = []
        last = 0
        for k in old_idx:
            unchanged.extend(prev_rules[last:k])
            last = k + 1
        unchanged.extend(prev_rules[last:])
        out: list[PortRules] = []
        u = 0
        ports = state.service_ports
        key = ctx.port_key
        for k in new_idx:
            take = k - len(out)
            out.extend(unchanged[u : u + take])
            u += take
            out.append(self.get(ports[k], ctx, key))
        out.extend(unchanged[u:])
        if len(out) != len(ports):
            raise AssertionError("PortCache.splice: previous state does not align with the new one")
        return out

    def clear(self) -> None:
        self._last = None
        self._names.clear()
        self._prev_names.clear()
        self._by_id.clear()
        self._prev_by_id.clear()
        self._contexts.clear()


_Entry = tuple[ServicePortInfo, tuple[object, ...], PortRules]
#: Identity misses per render after which equal-by-value ports are looked up by name.
_NAME_INDEX_AFTER = 64
