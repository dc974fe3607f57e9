"""Turn a :class:`~kservice.proxy.types.NodeProxyState` into kube-proxy's nftables objects.

A port of ``syncProxyRules``/``setupNFTables`` of ``pkg/proxy/nftables/proxier.go``
(v1.34 shape; reference §3.2-§3.5). The result is a :class:`Desired`: the fixed part of
the table plus one :class:`ServiceFragment` per service port, each an *ordered list of
operations* exactly as kube-proxy adds them to its transaction. Every output format (the
``nft -f`` transaction, the knftables dump, ``nft list ruleset``) and the partial sync are
written from these operations, so they cannot disagree.

Endpoint selection is not done here: each port's ``categorized`` field is the shared
``CategorizeEndpoints`` result.

Operations are plain tuples (they are made 10^5 times per large sync):

* ``("chain", name)`` -- ``ensureChain``: ``add chain`` + ``flush chain``;
* ``("rule", chain, text)`` -- ``add rule`` (``text`` includes any ``comment "..."``);
* ``("set", name, type, flags, timeout_seconds)`` -- an affinity set;
* ``("element", container, key, value, comment)`` -- ``key`` is the `` . ``-joined key text,
  ``value`` the verdict text or ``None`` for a set, ``comment`` or ``None``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

import attrs

from backends.nftables import names
from backends.nftables import tables as T
from kservice.errors import BackendError
from kservice.proxy.types import Endpoint, NodeProxyState, ServicePortInfo

__all__ = [
    "Desired",
    "ServiceFragment",
    "local_detector",
    "masquerade_mark",
    "nodeport_ips",
    "render_desired",
    "render_fragment",
]

Op = tuple[Any, ...]  # see module docstring


@attrs.frozen
class ServiceFragment:
    """Everything one service port contributes, in kube-proxy's transaction order."""

    #: ``ns/name`` -- the unit of partial-sync change tracking (upstream tracks
    #: NamespacedName, so all ports of a changed service are rewritten).
    service: str
    #: ``ns/name:port`` (the element comment text).
    port_name: str
    ops: tuple[Op, ...]


@attrs.frozen
class Desired:
    """The complete intended content of table ``<family> kube-proxy``."""

    family: str  # "ip" or "ip6"
    addr_type: str  # "ipv4_addr" or "ipv6_addr"
    #: The fixed part as ops (base chains are ``("basechain", BaseChain)``), setup order.
    fixed: tuple[Op, ...]
    #: Node IPs for ``nodeport-ips``; ``None`` when --nodeport-addresses matches all.
    nodeport_ips: tuple[str, ...] | None
    fragments: tuple[ServiceFragment, ...]
    #: One entry per ``state.service_ports`` item (``None`` for a skipped port) and the
    #: node-level settings they were rendered under: lets the next sync reuse them.
    port_fragments: tuple[ServiceFragment | None, ...] = ()
    context: tuple[Any, ...] = ()


# --------------------------------------------------------------------------- helpers


#: A dotted-quad IPv4 address without leading zeros is already in Go's canonical form.
_CANONICAL_V4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


@lru_cache(maxsize=1 << 17)
def _canon_ip(ip: str) -> str:
    """Go's ``net.IP.String()``: canonical (compressed) text."""
    if _CANONICAL_V4.fullmatch(ip):
        return ip  # the common case, without building an ipaddress object
    return str(ipaddress.ip_address(ip.strip()))


def _is_family(ip: str, family: str) -> bool:
    return (":" in ip) == (family == "IPv6")


def masquerade_mark(state: NodeProxyState) -> str:
    """The mark text: an explicit option wins, else Go's ``%#08x`` of the nftables bit."""
    if state.options.masquerade_mark is not None:
        return state.options.masquerade_mark
    return "0x%08x" % (1 << state.config.nftables.masquerade_bit)


def local_detector(state: NodeProxyState, ipx: str) -> tuple[str, str] | None:
    """(ifLocalNFT, ifNotLocalNFT) of the configured local-traffic detector, or ``None``.

    Forms from ``pkg/proxy/util/localdetector.go``: by CIDR ``ip saddr <cidr>`` /
    ``ip saddr != <cidr>``; by bridge ``iif <br>`` / ``iif != <br>``; by interface prefix
    ``iifname "<prefix>*"`` / ``iifname != "<prefix>*"``.
    """
    cfg = state.config
    mode = cfg.detect_local_mode or "ClusterCIDR"
    if mode == "ClusterCIDR":
        cidrs = [c.strip() for c in cfg.cluster_cidr.split(",") if c.strip()]
    elif mode == "NodeCIDR":
        cidrs = list(state.node.pod_cidrs)
    elif mode == "BridgeInterface":
        br = cfg.detect_local.bridge_interface
        return (f"iif {br}", f"iif != {br}") if br else None
    elif mode == "InterfaceNamePrefix":
        p = cfg.detect_local.interface_name_prefix
        return (f'iifname "{p}*"', f'iifname != "{p}*"') if p else None
    else:
        raise BackendError(f"unknown detectLocalMode {mode!r}")
    fam = [c for c in cidrs if _is_family(c, state.family)]
    if not fam:
        return None
    cidr = str(ipaddress.ip_network(fam[0], strict=False))
    return (f"{ipx} saddr {cidr}", f"{ipx} saddr != {cidr}")


def _node_addresses(state: NodeProxyState) -> list[str]:
    seen: list[str] = []
    for _iface, addr in state.node.interfaces:
        ip = _canon_ip(addr.split("/")[0])
        if ip not in seen:
            seen.append(ip)
    for ip in state.node.ips:
        ip = _canon_ip(ip)
        if ip not in seen:
            seen.append(ip)
    return [ip for ip in seen if _is_family(ip, state.family)]


def nodeport_ips(state: NodeProxyState) -> tuple[str, ...] | None:
    """``nodeport-ips`` content, or ``None`` for MatchAll (upstream ``NodePortAddresses``).

    nftables mode defaults an empty ``--nodeport-addresses`` to ``primary`` (the node's
    primary IP of this family). CIDRs select node addresses inside them; a family with
    no CIDR of its own, or a ``0.0.0.0/0``/``::/0`` CIDR, matches all. Loopback addresses
    are skipped (localhost NodePorts are unsupported in nftables mode).
    """
    spec = list(state.config.node_port_addresses) or ["primary"]
    out: list[str] = []
    cidrs = []
    primary = False
    for item in spec:
        if item == "primary":
            primary = True
            continue
        if _is_family(item, state.family):
            net = ipaddress.ip_network(item.strip(), strict=False)
            if net.prefixlen == 0:
                return None
            cidrs.append(net)
    if not cidrs and not primary:
        return None
    if primary and state.node_ip:
        out.append(_canon_ip(state.node_ip))
    for ip in _node_addresses(state):
        a = ipaddress.ip_address(ip)
        if any(a in n for n in cidrs) and ip not in out:
            out.append(ip)
    return tuple(ip for ip in out if not ipaddress.ip_address(ip).is_loopback)


def _service_cidrs(state: NodeProxyState) -> tuple[str, ...]:
    # Upstream joins the family's CIDRs with "," (no space) inside the anonymous set.
    cidrs = state.service_cidrs
    return tuple(
        str(ipaddress.ip_network(c.strip(), strict=False))
        for c in cidrs
        if _is_family(c, state.family)
    )


# --------------------------------------------------------------------------- fixed part


def _fixed_ops(state: NodeProxyState, ipx: str, addr: str, mark: str,
               np_ips: tuple[str, ...] | None) -> tuple[Op, ...]:
    ops: list[Op] = []
    for bc in T.BASE_CHAINS:
        ops.append(("basechain", bc))
    created: set[str] = set()

    def ensure(chain: str) -> None:
        if chain not in created:
            created.add(chain)
            ops.append(("chain", chain))

    for jc in T.JUMP_CHAINS:
        ensure(jc.dst)
        ops.append(("rule", jc.src, f"{jc.extra} jump {jc.dst}".strip()))
    for chain in T.TOP_LEVEL_CHAINS:
        ensure(chain)
    ops.append(("rule", T.MARK_MASQ, f"mark set mark or {mark}"))
    ops.append(("rule", T.MASQUERADING, f"mark and {mark} == 0 return"))
    ops.append(("rule", T.MASQUERADING, f"mark set mark xor {mark}"))
    ops.append(("rule", T.MASQUERADING, "masquerade fully-random"))
    ops.append(("container", T.CLUSTER_IPS))
    ops.append(("rule", T.CLUSTER_IPS_CHECK,
                f'{ipx} daddr @{T.CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"'))
    cidrs = _service_cidrs(state)
    if cidrs:
        ops.append(("rule", T.CLUSTER_IPS_CHECK,
                    f'{ipx} daddr {{ {",".join(cidrs)} }} drop comment "Drop traffic to unallocated ClusterIPs"'))
    ops.append(("container", T.NODEPORT_IPS))
    if np_ips is None:
        ops.append(("delete-container", T.NODEPORT_IPS))
    else:
        ops.append(("flush-container", T.NODEPORT_IPS))
        for ip in np_ips:
            ops.append(("element", T.NODEPORT_IPS, ip, None, None))
    ops.append(("container", T.NO_ENDPOINT_SERVICES))
    ops.append(("container", T.NO_ENDPOINT_NODEPORTS))
    ops.append(("commented-chain", T.REJECT_CHAIN, T.REJECT_CHAIN_COMMENT))
    ops.append(("rule", T.REJECT_CHAIN, "reject"))
    ops.append(("rule", T.SERVICE_ENDPOINTS_CHECK,
                f"{ipx} daddr . meta l4proto . th dport vmap @{T.NO_ENDPOINT_SERVICES}"))
    no_localhost = "ip daddr != 127.0.0.0/8" if ipx == "ip" else "ip6 daddr != ::1"
    if np_ips is None:
        ops.append(("rule", T.NODEPORT_ENDPOINTS_CHECK,
                    f"{no_localhost} meta l4proto . th dport vmap @{T.NO_ENDPOINT_NODEPORTS}"))
    else:
        ops.append(("rule", T.NODEPORT_ENDPOINTS_CHECK,
                    f"{ipx} daddr @{T.NODEPORT_IPS} meta l4proto . th dport vmap @{T.NO_ENDPOINT_NODEPORTS}"))
    ops.append(("container", T.FIREWALL_IPS))
    ensure(T.FIREWALL_CHECK)
    ops.append(("rule", T.FIREWALL_CHECK,
                f"{ipx} daddr . meta l4proto . th dport vmap @{T.FIREWALL_IPS}"))
    ops.append(("container", T.SERVICE_IPS))
    ops.append(("container", T.SERVICE_NODEPORTS))
    ops.append(("rule", T.SERVICES, f"{ipx} daddr . meta l4proto . th dport vmap @{T.SERVICE_IPS}"))
    if np_ips is None:
        ops.append(("rule", T.SERVICES,
                    f"fib daddr type local {no_localhost} meta l4proto . th dport vmap @{T.SERVICE_NODEPORTS}"))
    else:
        ops.append(("rule", T.SERVICES,
                    f"{ipx} daddr @{T.NODEPORT_IPS} meta l4proto . th dport vmap @{T.SERVICE_NODEPORTS}"))
    for c in T.ELEMENT_STORAGE_ORDER:
        ops.append(("flush-container", c))
    return tuple(ops)


# --------------------------------------------------------------------------- per service


def _fragment(sp: ServicePortInfo, state: NodeProxyState, ipx: str, addr: str,
              detector: tuple[str, str] | None, masq_all: bool,
              node_ip: str | None) -> ServiceFragment:
    ops: list[Op] = []
    add = ops.append
    proto = sp.protocol_lower
    port = str(sp.port)
    spn = str(sp.name)
    n = names.service_port_names(sp)
    cat = sp.categorized
    fam = state.family

    # Endpoint chain names, keyed by (ip, port); computed once per endpoint.
    ep_hash = {(ep.ip, ep.port): names.endpoint_hash(n.base, ep.ip, ep.port)
               for ep in cat.all_reachable}

    def ep_chain(ep: Endpoint) -> str:
        h = ep_hash.get((ep.ip, ep.port)) or names.endpoint_hash(n.base, ep.ip, ep.port)
        return names.ENDPOINT_PREFIX + h

    def ep_set(ep: Endpoint) -> str:
        h = ep_hash.get((ep.ip, ep.port)) or names.endpoint_hash(n.base, ep.ip, ep.port)
        return names.AFFINITY_PREFIX + h

    created: set[str] = set()

    def ensure(chain: str) -> None:
        if chain not in created:
            created.add(chain)
            add(("chain", chain))

    for ep in cat.all_reachable:
        ensure(ep_chain(ep))

    has_endpoints = cat.has_any
    uses_cluster = bool(cat.cluster) and sp.uses_cluster_endpoints
    if uses_cluster:
        ensure(n.cluster_chain)
    uses_local = bool(cat.local) and sp.uses_local_endpoints
    if uses_local:
        ensure(n.local_chain)

    internal_chain = n.cluster_chain
    has_internal = has_endpoints
    if sp.internal_policy_local:
        internal_chain = n.local_chain
        if not cat.local:
            has_internal = False
    external_policy_chain = n.cluster_chain
    has_external = has_endpoints
    if sp.external_policy_local:
        external_policy_chain = n.local_chain
        if not cat.local:
            has_external = False
    ext_chain = n.external_chain
    uses_ext = has_endpoints and sp.externally_accessible
    if uses_ext:
        ensure(ext_chain)

    int_verdict = ext_verdict = ""
    if not has_endpoints:
        int_verdict = ext_verdict = f"goto {T.REJECT_CHAIN}"
    else:
        if not has_internal:
            int_verdict = "drop"
        if not has_external:
            ext_verdict = "drop"

    cip = _canon_ip(sp.cluster_ip)
    add(("element", T.CLUSTER_IPS, cip, None, None))
    if has_internal:
        add(("element", T.SERVICE_IPS, f"{cip} . {proto} . {port}", f"goto {internal_chain}", None))
    else:
        add(("element", T.NO_ENDPOINT_SERVICES, f"{cip} . {proto} . {port}", int_verdict, spn))

    for eip in sp.external_ips:
        if not _is_family(eip, fam):
            continue
        eip = _canon_ip(eip)
        if has_endpoints:
            add(("element", T.SERVICE_IPS, f"{eip} . {proto} . {port}", f"goto {ext_chain}", None))
        if not has_external:
            add(("element", T.NO_ENDPOINT_SERVICES, f"{eip} . {proto} . {port}", ext_verdict, spn))

    lb_vips = [_canon_ip(v) for v in sp.load_balancer_vips if _is_family(v, fam)]
    source_ranges = [
        str(ipaddress.ip_network(c.strip(), strict=False))
        for c in sp.load_balancer_source_ranges
        if c.strip() and _is_family(c.strip(), fam)
    ]
    uses_fw = bool(lb_vips) and bool(source_ranges)
    if uses_fw:
        ensure(n.firewall_chain)
    for lb in lb_vips:
        if has_endpoints:
            add(("element", T.SERVICE_IPS, f"{lb} . {proto} . {port}", f"goto {ext_chain}", None))
        if uses_fw:
            add(("element", T.FIREWALL_IPS, f"{lb} . {proto} . {port}", f"goto {n.firewall_chain}", None))
    if not has_external:
        for lb in lb_vips:
            add(("element", T.NO_ENDPOINT_SERVICES, f"{lb} . {proto} . {port}", ext_verdict, spn))

    if sp.node_port:
        np = str(sp.node_port)
        if has_endpoints:
            add(("element", T.SERVICE_NODEPORTS, f"{proto} . {np}", f"goto {ext_chain}", None))
        if not has_external:
            add(("element", T.NO_ENDPOINT_NODEPORTS, f"{proto} . {np}", ext_verdict, spn))

    # ---- rules (skipped for unchanged services in a partial sync)
    if has_internal:
        if masq_all:
            add(("rule", internal_chain, f"{ipx} daddr {cip} jump {T.MARK_MASQ}"))
        elif detector is not None:
            add(("rule", internal_chain, f"{ipx} daddr {cip} {detector[1]} jump {T.MARK_MASQ}"))

    if uses_ext:
        if not sp.external_policy_local:
            add(("rule", ext_chain, f"jump {T.MARK_MASQ}"))
        else:
            if detector is not None:
                add(("rule", ext_chain,
                     f'{detector[0]} goto {n.cluster_chain} comment "short-circuit pod traffic"'))
            add(("rule", ext_chain,
                 f'fib saddr type local jump {T.MARK_MASQ} comment "masquerade local traffic"'))
            add(("rule", ext_chain,
                 f'fib saddr type local goto {n.cluster_chain} comment "short-circuit local traffic"'))
        if has_external:
            add(("rule", ext_chain, f"goto {external_policy_chain}"))

    if uses_fw:
        sources = list(source_ranges)
        if node_ip is not None:
            nip = ipaddress.ip_address(node_ip)
            if any(nip in ipaddress.ip_network(c) for c in source_ranges):
                sources.extend(lb_vips)
        add(("rule", n.firewall_chain, f"{ipx} saddr != {{ {' , '.join(sources)} }} drop"))

    affinity = sp.session_affinity_timeout is not None
    if affinity:
        for ep in cat.all_reachable:
            add(("set", ep_set(ep), addr, ("dynamic", "timeout"), sp.session_affinity_timeout))

    def service_to_endpoints(chain: str, eps: tuple[Endpoint, ...]) -> None:
        if affinity:
            for ep in eps:
                add(("rule", chain, f"{ipx} saddr @{ep_set(ep)} goto {ep_chain(ep)}"))
        elems = " , ".join(f"{i} : goto {ep_chain(ep)}" for i, ep in enumerate(eps))
        add(("rule", chain, f"numgen random mod {len(eps)} vmap {{ {elems} }}"))

    if uses_cluster:
        service_to_endpoints(n.cluster_chain, cat.cluster)
    if uses_local:
        service_to_endpoints(n.local_chain, cat.local)

    for ep in cat.all_reachable:
        chain = ep_chain(ep)
        ip = _canon_ip(ep.ip)
        add(("rule", chain, f"{ipx} saddr {ip} jump {T.MARK_MASQ}"))
        if affinity:
            add(("rule", chain, f"update @{ep_set(ep)} {{ {ipx} saddr }}"))
        dst = f"[{ip}]:{ep.port}" if ":" in ip else f"{ip}:{ep.port}"
        add(("rule", chain, f"meta l4proto {proto} dnat to {dst}"))

    return ServiceFragment(
        service=f"{sp.name.namespace}/{sp.name.name}", port_name=spn, ops=tuple(ops)
    )


def render_fragment(state: NodeProxyState, sp: ServicePortInfo) -> ServiceFragment:
    """One service port's fragment: what a partial sync recomputes for a changed service."""
    ipx = T.FAMILY[state.family]
    addr = "ipv4_addr" if ipx == "ip" else "ipv6_addr"
    return _fragment(sp, state, ipx, addr, local_detector(state, ipx),
                     state.config.nftables.masquerade_all, state.node_ip)


def render_desired(state: NodeProxyState,
                   base: tuple[NodeProxyState, Desired] | None = None) -> Desired:
    """Compute the complete table for ``state`` (a full sync's worth of operations).

    ``base`` is an earlier (state, result): a port that is the very same
    :class:`ServicePortInfo` object as in the base state, under the same node-level
    settings, reuses its fragment (ports are immutable, so it would render identically).
    This is what lets a proxier re-render only the services that changed, as kube-proxy's
    change trackers do.
    """
    if state.family not in T.FAMILY:
        raise BackendError(f"unknown IP family {state.family!r}; expected IPv4 or IPv6")
    ipx = T.FAMILY[state.family]
    addr = "ipv4_addr" if ipx == "ip" else "ipv6_addr"
    mark = masquerade_mark(state)
    np_ips = nodeport_ips(state)
    detector = local_detector(state, ipx)
    masq_all = state.config.nftables.masquerade_all
    node_ip = state.node_ip
    ctx = (state.family, detector, masq_all, node_ip)
    fam = state.family
    ports = state.service_ports

    reuse: list[ServiceFragment | None]
    if base is not None and base[1].context == ctx:
        bports, bfrags = base[0].service_ports, base[1].port_fragments
        if len(bports) == len(ports):
            # The common case: same ports in the same order, a few replaced.
            reuse = [bf if sp is bp else None
                     for sp, bp, bf in zip(ports, bports, bfrags, strict=True)]
        else:
            # Base ports are alive (the base state holds them), so ids cannot collide.
            by_id = {id(bp): bf for bp, bf in zip(bports, bfrags, strict=True)}
            reuse = [by_id.get(id(sp)) for sp in ports]
    else:
        reuse = [None] * len(ports)
    port_frags: list[ServiceFragment | None] = []
    for sp, frag in zip(ports, reuse, strict=True):
        if frag is None and sp.cluster_ip and sp.cluster_ip != "None" and \
                _is_family(sp.cluster_ip, fam):
            frag = _fragment(sp, state, ipx, addr, detector, masq_all, node_ip)
        port_frags.append(frag)
    frags = tuple(f for f in port_frags if f is not None)
    return Desired(
        family=ipx,
        addr_type=addr,
        fixed=_fixed_ops(state, ipx, addr, mark, np_ips),
        nodeport_ips=np_ips,
        fragments=frags,
        port_fragments=tuple(port_frags),
        context=ctx,
    )
