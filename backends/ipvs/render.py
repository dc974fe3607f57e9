"""Render one node's IPVS-mode dataplane from a :class:`NodeProxyState`.

This is kube-proxy's ``pkg/proxy/ipvs/proxier.go`` ``syncProxyRules`` (≈ v1.34) as a pure
function: it decides the virtual servers and their destinations, the addresses bound on
``kube-ipvs0``, the entries of every ipset and the iptables-restore payload, and returns
them as one :class:`~backends.ipvs.model.IPVSNode`. It performs no I/O; the text formats
live in :mod:`backends.ipvs.formats`, the incremental commands in
:mod:`backends.ipvs.reconcile`.

Endpoint choice is never recomputed here: each service port's ``categorized`` field is the
shared ``CategorizeEndpoints`` result, and IPVS mode only picks between its ``local`` and
``cluster`` lists (reference §2.3).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from backends.ipvs.model import (
    FLAG_PERSISTENT,
    FLAG_SOURCE_HASH,
    IPSet,
    IPVSNode,
    RealServer,
    VirtualServer,
)
from kservice.errors import BackendError
from kservice.proxy.types import Endpoint, NodeProxyState, ServicePortInfo

__all__ = [
    "DUMMY_DEVICE",
    "FILTER_CHAINS",
    "IPSET_INFO",
    "IPSET_WITH_IPTABLES_CHAIN",
    "JUMP_RULES",
    "NAT_CHAINS",
    "chosen_endpoints",
    "ipset_name",
    "node_addresses",
    "nodeport_ips",
    "render_node",
]

#: kube-proxy's dummy interface holding every service VIP as a local address.
DUMMY_DEVICE = "kube-ipvs0"

# --------------------------------------------------------------------------- ipsets

#: ``ipsetInfo`` in upstream order (reference §2.6): (name, type, comment).
#: The order is kube-proxy's creation order and the order kservice renders them in.
IPSET_INFO: tuple[tuple[str, str, str], ...] = (
    # Hairpin: a pod reaching its own service must be masqueraded or the reply bypasses IPVS.
    ("KUBE-LOOP-BACK", "hash:ip,port,ip",
     "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    ("KUBE-CLUSTER-IP", "hash:ip,port",
     "Kubernetes service cluster ip + port for masquerade purpose"),
    ("KUBE-EXTERNAL-IP", "hash:ip,port",
     "Kubernetes service external ip + port for masquerade and filter purpose"),
    ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port",
     "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER", "hash:ip,port", "Kubernetes service lb portal"),
    ("KUBE-LOAD-BALANCER-FW", "hash:ip,port",
     "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port",
     "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    ("KUBE-LOAD-BALANCER-SOURCE-IP", "hash:ip,port,ip",
     "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net",
     "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    ("KUBE-NODE-PORT-TCP", "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port",
     "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    ("KUBE-NODE-PORT-UDP", "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port",
     "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    # SCTP cannot use bitmap:port (no proto in bitmap), so it is keyed by node IP too.
    ("KUBE-NODE-PORT-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    ("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "hash:ip,port",
     "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    ("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port", "Kubernetes health check node port"),
    # Everything bound on kube-ipvs0; KUBE-IPVS-FILTER rejects other ports on these (#72236).
    ("KUBE-IPVS-IPS", "hash:ip", "Addresses on the ipvs interface"),
)

_INFO = {name: (typ, comment) for name, typ, comment in IPSET_INFO}


def ipset_name(base: str, family: str) -> str:
    """The set's name in this family: IPv6 sets are ``KUBE-6-...`` cut to 31 characters
    (IPSET_MAXNAMELEN is 32 including the NUL)."""
    if family == "IPv6":
        return ("KUBE-6-" + base[len("KUBE-"):])[:31]
    return base


@attrs.frozen
class _SetRule:
    set: str
    table: str
    chain: str
    proto: str
    match: str
    target: str
    why: str


#: ``ipsetWithIptablesChain``: one rule per non-empty set, written in this order.
IPSET_WITH_IPTABLES_CHAIN: tuple[_SetRule, ...] = (
    _SetRule("KUBE-LOOP-BACK", "nat", "KUBE-POSTROUTING", "", "dst,dst,src", "MASQUERADE",
             "a pod talking to itself through a VIP must be SNATed or its reply skips IPVS"),
    _SetRule("KUBE-LOAD-BALANCER", "nat", "KUBE-SERVICES", "", "dst,dst", "KUBE-LOAD-BALANCER",
             "LB traffic goes through its own chain to decide on masquerade"),
    _SetRule("KUBE-LOAD-BALANCER-LOCAL", "nat", "KUBE-LOAD-BALANCER", "", "dst,dst", "RETURN",
             "eTP=Local LB traffic keeps its source: no masquerade"),
    _SetRule("KUBE-NODE-PORT-LOCAL-TCP", "nat", "KUBE-NODE-PORT", "tcp", "dst", "RETURN",
             "eTP=Local NodePorts keep the client source"),
    _SetRule("KUBE-NODE-PORT-TCP", "nat", "KUBE-NODE-PORT", "tcp", "dst", "KUBE-MARK-MASQ",
             "other NodePorts are masqueraded (the endpoint may be on another node)"),
    _SetRule("KUBE-NODE-PORT-LOCAL-UDP", "nat", "KUBE-NODE-PORT", "udp", "dst", "RETURN",
             "as TCP"),
    _SetRule("KUBE-NODE-PORT-UDP", "nat", "KUBE-NODE-PORT", "udp", "dst", "KUBE-MARK-MASQ",
             "as TCP"),
    _SetRule("KUBE-NODE-PORT-LOCAL-SCTP-HASH", "nat", "KUBE-NODE-PORT", "sctp", "dst,dst",
             "RETURN", "SCTP sets are hash:ip,port, so two dimensions are matched"),
    _SetRule("KUBE-NODE-PORT-SCTP-HASH", "nat", "KUBE-NODE-PORT", "sctp", "dst,dst",
             "KUBE-MARK-MASQ", "as TCP"),
    _SetRule("KUBE-LOAD-BALANCER-FW", "filter", "KUBE-PROXY-FIREWALL", "", "dst,dst",
             "KUBE-SOURCE-RANGES-FIREWALL", "LBs with loadBalancerSourceRanges are filtered"),
    _SetRule("KUBE-LOAD-BALANCER-SOURCE-CIDR", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "",
             "dst,dst,src", "RETURN", "allowed client CIDRs pass"),
    _SetRule("KUBE-LOAD-BALANCER-SOURCE-IP", "filter", "KUBE-SOURCE-RANGES-FIREWALL", "",
             "dst,dst,src", "RETURN", "the node itself may reach the LB when its IP is allowed"),
)

# --------------------------------------------------------------------------- chains

#: ``iptablesChains`` (table, chain), declared with ``:CHAIN - [0:0]`` in this order.
NAT_CHAINS: tuple[str, ...] = (
    "KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ",
)
FILTER_CHAINS: tuple[str, ...] = (
    "KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
    "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER",
)

#: ``iptablesJumpChain`` (table, from, comment, to, why). Ensured with ``-C`` then ``-I``
#: (prepend) in this order, so the last one for a built-in chain ends up first in it.
JUMP_RULES: tuple[tuple[str, str, str, str, str], ...] = (
    ("nat", "OUTPUT", "kubernetes service portals", "KUBE-SERVICES",
     "node-originated traffic to VIPs needs the accept/masquerade decisions"),
    ("nat", "PREROUTING", "kubernetes service portals", "KUBE-SERVICES",
     "traffic arriving from pods and other hosts"),
    ("nat", "POSTROUTING", "kubernetes postrouting rules", "KUBE-POSTROUTING",
     "masquerade what was marked, and hairpin traffic"),
    ("filter", "FORWARD", "kubernetes forwarding rules", "KUBE-FORWARD",
     "accept marked/established forwarded traffic even with a DROP FORWARD policy"),
    ("filter", "INPUT", "kubernetes health check rules", "KUBE-NODE-PORT",
     "accept health check node ports"),
    ("filter", "INPUT", "kube-proxy firewall rules", "KUBE-PROXY-FIREWALL",
     "loadBalancerSourceRanges filtering (IPVS delivers locally, so INPUT)"),
    ("filter", "FORWARD", "kube-proxy firewall rules", "KUBE-PROXY-FIREWALL",
     "same filtering for forwarded traffic"),
    ("filter", "INPUT", "kubernetes ipvs access filter", "KUBE-IPVS-FILTER",
     "reject non-service ports on VIPs bound to kube-ipvs0 (#72236)"),
    ("filter", "OUTPUT", "kubernetes ipvs access filter", "KUBE-IPVS-OUT-FILTER",
     "block node access to LBs whose source ranges exclude the node"),
)

#: The iptables rules of KUBE-IPVS-FILTER (set, match) in write order: traffic to real
#: service (ip, port) pairs returns; any other NEW connection to a bound VIP is rejected.
IPVS_FILTER_RETURNS: tuple[tuple[str, str], ...] = (
    ("KUBE-LOAD-BALANCER", "dst,dst"),
    ("KUBE-CLUSTER-IP", "dst,dst"),
    ("KUBE-EXTERNAL-IP", "dst,dst"),
    ("KUBE-EXTERNAL-IP-LOCAL", "dst,dst"),
    ("KUBE-HEALTH-CHECK-NODE-PORT", "dst"),
)


# --------------------------------------------------------------------------- sysctls

#: What the IPVS proxier ensures at start (NewProxier), in order, with the reason.
#: ``net/ipv4/vs/conn_reuse_mode=0`` is only set on kernels older than the fix of issue
#: #93297 and is left out here (current kernels).
BASE_SYSCTLS: tuple[tuple[str, str, str], ...] = (
    ("net/ipv4/vs/conntrack", "1", "keep conntrack entries for IPVS connections so "
     "iptables SNAT (masquerade) works on them"),
    ("net/ipv4/vs/expire_nodest_conn", "1", "drop connections whose destination was removed"),
    ("net/ipv4/vs/expire_quiescent_template", "1",
     "expire persistence templates pointing at weight-0 (terminating) destinations"),
    ("net/ipv4/ip_forward", "1", "the node forwards to pods"),
)
#: With ``ipvs.strictARP``: do not answer ARP for the VIPs bound on kube-ipvs0.
STRICT_ARP_SYSCTLS: tuple[tuple[str, str, str], ...] = (
    ("net/ipv4/conf/all/arp_ignore", "1", "reply only for addresses of the receiving interface"),
    ("net/ipv4/conf/all/arp_announce", "2", "use the best local source for ARP requests"),
)


def go_duration_seconds(text: str) -> int:
    """A Go duration (``900s``, ``15m``, ``1h30m``, ``0``) in whole seconds."""
    import re

    t = text.strip()
    if t in ("", "0"):
        return 0
    parts = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+)", t)
    if not parts:
        raise BackendError(f"invalid duration {text!r} (Go syntax, e.g. 900s, 15m)")
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = sum(float(n) * unit[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", t))
    return int(total)


def _sysctls(state: NodeProxyState) -> tuple[tuple[str, str], ...]:
    rows = list(BASE_SYSCTLS)
    if state.config.ipvs.strict_arp:
        rows += STRICT_ARP_SYSCTLS
    return tuple((k, v) for k, v, _why in rows)


def _timeouts(state: NodeProxyState) -> tuple[int, int, int] | None:
    c = state.config.ipvs
    got = (go_duration_seconds(c.tcp_timeout), go_duration_seconds(c.tcp_fin_timeout),
           go_duration_seconds(c.udp_timeout))
    return got if any(got) else None


# --------------------------------------------------------------------------- node addresses


def _is_family(ip: str, family: str) -> bool:
    return (":" in ip) == (family == "IPv6")


def node_addresses(state: NodeProxyState) -> tuple[str, ...]:
    """``GetAllLocalAddressesExcept(kube-ipvs0)`` for this family, in interface order.

    Loopback and IPv6 link-local addresses are left out, as upstream's netlink helper does.
    Without interface data the node's own IPs of this family stand in.
    """
    out: list[str] = []
    if state.node.interfaces:
        for ifname, cidr in state.node.interfaces:
            if ifname == DUMMY_DEVICE:
                continue
            ip = ipaddress.ip_interface(cidr).ip
            if not _is_family(str(ip), state.family) or ip.is_loopback:
                continue
            if ip.version == 6 and ip.is_link_local:
                continue
            if str(ip) not in out:
                out.append(str(ip))
    else:
        out = [ip for ip in state.node.ips if _is_family(ip, state.family)]
    return tuple(out)


def nodeport_ips(state: NodeProxyState) -> tuple[str, ...]:
    """The addresses that get one NodePort virtual server each (reference §2.1 step 7)."""
    npa = [c for c in state.config.node_port_addresses if c]
    if not npa:
        return node_addresses(state)
    nets = []
    primary = False
    for c in npa:
        if c == "primary":
            primary = True
            continue
        net = ipaddress.ip_network(c, strict=False)
        if _is_family(str(net.network_address), state.family):
            nets.append(net)
    candidates: list[str] = []
    if state.node.interfaces:
        candidates = [str(ipaddress.ip_interface(c).ip) for _, c in state.node.interfaces]
    else:
        candidates = list(state.node.ips)
    out: list[str] = []
    for ip in candidates:
        if not _is_family(ip, state.family):
            continue
        addr = ipaddress.ip_address(ip)
        if addr.is_loopback:
            continue
        if any(addr in n for n in nets) or (primary and ip == state.node_ip):
            if ip not in out:
                out.append(ip)
    return tuple(out)


# --------------------------------------------------------------------------- endpoints


def chosen_endpoints(sp: ServicePortInfo, only_local: bool) -> tuple[Endpoint, ...]:
    """``syncEndpoint``'s choice: local endpoints when the policy is Local and there are
    some, else the cluster endpoints -- including when the policy is Local but this node has
    none (PR #97081: keeps local pods working; external clients then get no usable reply)."""
    cat = sp.categorized
    if only_local and cat.local:
        return cat.local
    return cat.cluster


def _real_servers(eps: Iterable[Endpoint]) -> tuple[RealServer, ...]:
    uniq = {e.string: RealServer(e.ip, e.port, 1) for e in eps}
    return tuple(uniq[k] for k in sorted(uniq))


# --------------------------------------------------------------------------- detect-local


def not_local_args(state: NodeProxyState) -> tuple[str, ...] | None:
    """The local-traffic detector's ``IfNotLocal()`` tokens, or ``None`` when none."""
    cfg = state.config
    mode = cfg.detect_local_mode or "ClusterCIDR"
    if mode == "ClusterCIDR":
        for c in (x.strip() for x in cfg.cluster_cidr.split(",")):
            if c and _is_family(c.split("/")[0], state.family):
                return ("!", "-s", c)
        return None
    if mode == "NodeCIDR":
        for c in state.node.pod_cidrs:
            if _is_family(c.split("/")[0], state.family):
                return ("!", "-s", c)
        return None
    if mode == "BridgeInterface":
        br = cfg.detect_local.bridge_interface
        return ("!", "-i", br) if br else None
    if mode == "InterfaceNamePrefix":
        pre = cfg.detect_local.interface_name_prefix
        return ("!", "-i", pre + "+") if pre else None
    raise BackendError(f"unknown detectLocalMode {mode!r}")


# --------------------------------------------------------------------------- render


class _Builder:
    """Accumulates one sync's wanted state, as syncProxyRules' locals do."""

    def __init__(self, state: NodeProxyState) -> None:
        self.state = state
        self.scheduler = state.config.ipvs.scheduler or "rr"
        self.entries: dict[str, set[str]] = {name: set() for name, _, _ in IPSET_INFO}
        self.services: dict[str, VirtualServer] = {}
        self.dests: dict[str, tuple[RealServer, ...]] = {}
        self.bound: dict[str, None] = {}
        self.node_addrs = frozenset(node_addresses(state))
        self.node_ips: tuple[str, ...] = ()
        if any(sp.node_port for sp in state.service_ports):
            self.node_ips = nodeport_ips(state)
        self._rs_cache: dict[int, tuple[tuple[Endpoint, ...], tuple[RealServer, ...]]] = {}
        #: (lbIP, proto, port) of LBs whose source ranges exclude the node IP.
        self.lb_no_node_access: list[tuple[str, str, int]] = []

    def vs(self, sp: ServicePortInfo, address: str, port: int) -> VirtualServer:
        flags, timeout = 0, 0
        if sp.session_affinity_timeout is not None:
            flags |= FLAG_PERSISTENT
            timeout = sp.session_affinity_timeout
        if self.scheduler == "mh":
            flags |= FLAG_SOURCE_HASH
        return VirtualServer(address, port, sp.protocol.upper(), self.scheduler, flags, timeout)

    def add_vs(self, v: VirtualServer, sp: ServicePortInfo, only_local: bool, bind: bool) -> None:
        # A key seen twice (two services claiming one externalIP:port) is last-writer-wins,
        # as upstream's second syncService/syncEndpoint overwrites the first.
        self.services.pop(v.key, None)
        self.services[v.key] = v
        eps = chosen_endpoints(sp, only_local)
        # The same endpoint tuple serves several frontends (ClusterIP, NodePort per node
        # IP, LB ...): convert it once.
        cached = self._rs_cache.get(id(eps))
        if cached is None or cached[0] is not eps:
            cached = (eps, _real_servers(eps))
            self._rs_cache[id(eps)] = cached
        self.dests[v.key] = cached[1]
        if bind:
            self.bound.setdefault(v.address, None)

    def service_port(self, sp: ServicePortInfo) -> None:
        proto = sp.protocol.lower()
        e = self.entries
        for ep in sp.endpoints:
            if ep.is_local:
                e["KUBE-LOOP-BACK"].add(f"{ep.ip},{proto}:{ep.port},{ep.ip}")
        e["KUBE-CLUSTER-IP"].add(f"{sp.cluster_ip},{proto}:{sp.port}")
        # ClusterIP: always bound; internalTrafficPolicy decides the endpoints.
        self.add_vs(self.vs(sp, sp.cluster_ip, sp.port), sp, sp.internal_policy_local, True)

        for ip in sp.external_ips:
            entry = f"{ip},{proto}:{sp.port}"
            e["KUBE-EXTERNAL-IP-LOCAL" if sp.external_policy_local else "KUBE-EXTERNAL-IP"].add(
                entry)
            # Not bound when the address already lives on a real interface of the node.
            self.add_vs(self.vs(sp, ip, sp.port), sp, sp.external_policy_local,
                        ip not in self.node_addrs)

        node_ip = self.state.node_ip
        for lb in sp.load_balancer_vips:
            entry = f"{lb},{proto}:{sp.port}"
            e["KUBE-LOAD-BALANCER"].add(entry)
            if sp.external_policy_local:
                e["KUBE-LOAD-BALANCER-LOCAL"].add(entry)
            if sp.load_balancer_source_ranges:
                e["KUBE-LOAD-BALANCER-FW"].add(entry)
                allow_from_node = False
                for cidr in sp.load_balancer_source_ranges:
                    e["KUBE-LOAD-BALANCER-SOURCE-CIDR"].add(f"{lb},{proto}:{sp.port},{cidr}")
                    if node_ip and ipaddress.ip_address(node_ip) in ipaddress.ip_network(
                            cidr, strict=False):
                        allow_from_node = True
                if allow_from_node:
                    e["KUBE-LOAD-BALANCER-SOURCE-IP"].add(f"{lb},{proto}:{sp.port},{lb}")
                else:
                    self.lb_no_node_access.append((lb, proto, sp.port))
            self.add_vs(self.vs(sp, lb, sp.port), sp, sp.external_policy_local,
                        lb not in self.node_addrs)

        if sp.node_port:
            if not self.node_ips:
                # Upstream `continue`s here: the health check port below is skipped too.
                return
            if proto == "sctp":
                np_entries = [f"{ip},sctp:{sp.node_port}" for ip in self.node_ips]
                np_set, np_local = "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
            else:
                np_entries = [str(sp.node_port)]
                np_set = f"KUBE-NODE-PORT-{proto.upper()}"
                np_local = f"KUBE-NODE-PORT-LOCAL-{proto.upper()}"
            e[np_set].update(np_entries)
            if sp.external_policy_local:
                e[np_local].update(np_entries)
            for ip in self.node_ips:
                self.add_vs(self.vs(sp, ip, sp.node_port), sp, sp.external_policy_local, False)

        if sp.health_check_node_port:
            e["KUBE-HEALTH-CHECK-NODE-PORT"].add(str(sp.health_check_node_port))

    def build(self) -> IPVSNode:
        for sp in self.state.service_ports:
            self.service_port(sp)
        self.entries["KUBE-IPVS-IPS"] = set(self.bound)
        fam = "inet6" if self.state.family == "IPv6" else "inet"
        sets = tuple(
            IPSet(ipset_name(name, self.state.family), typ, comment, fam,
                  frozenset(self.entries[name]))
            for name, typ, comment in IPSET_INFO
        )
        return IPVSNode(
            node=self.state.node.name,
            family=self.state.family,
            services=self.services,
            destinations=self.dests,
            bound=tuple(self.bound),
            ipsets=sets,
            iptables_restore=self._iptables(),
            sysctls=_sysctls(self.state),
            timeouts=_timeouts(self.state),
        )

    # ----------------------------------------------------------------- iptables

    def _iptables(self) -> str:
        st = self.state
        fam = st.family
        name = {base: ipset_name(base, fam) for base, _, _ in IPSET_INFO}
        nonempty = {base for base, ents in self.entries.items() if ents}
        mark = st.masquerade_mark
        nat: list[str] = ["*nat", *(f":{c} - [0:0]" for c in NAT_CHAINS)]
        flt: list[str] = ["*filter", *(f":{c} - [0:0]" for c in FILTER_CHAINS)]
        nat_rules: list[str] = []
        flt_rules: list[str] = []

        def cm(base: str) -> str:
            return f'-m comment --comment "{_INFO[base][1]}"'

        lo = "::1/128" if fam == "IPv6" else "127.0.0.0/8"
        nat_rules.append(f"-A KUBE-SERVICES -s {lo} -j RETURN")
        for r in IPSET_WITH_IPTABLES_CHAIN:
            if r.set not in nonempty:
                continue
            proto = f" -p {r.proto}" if r.proto else ""
            line = (f"-A {r.chain}{proto} {cm(r.set)} -m set --match-set {name[r.set]} "
                    f"{r.match} -j {r.target}")
            (flt_rules if r.table == "filter" else nat_rules).append(line)

        if "KUBE-CLUSTER-IP" in nonempty:
            base = f"-A KUBE-SERVICES {cm('KUBE-CLUSTER-IP')} -m set --match-set " \
                   f"{name['KUBE-CLUSTER-IP']}"
            detector = not_local_args(st)
            if st.config.iptables.masquerade_all:
                nat_rules.append(f"{base} dst,dst -j KUBE-MARK-MASQ")
            elif detector is not None:
                nat_rules.append(f"{base} dst,dst {' '.join(detector)} -j KUBE-MARK-MASQ")
            else:
                # No detector: masquerade node traffic whose source is a VIP on kube-ipvs0.
                nat_rules.append(f"{base} src,dst -j KUBE-MARK-MASQ")

        def external_ip_rules(args: str) -> None:
            # "traffic from off-machine" (not from a bridge, not from a local process) ...
            nat_rules.append(f"{args} -m physdev ! --physdev-is-in -m addrtype ! --src-type "
                             "LOCAL -j ACCEPT")
            # ... or to an external IP that happens to be local (e.g. GCE LB routes).
            nat_rules.append(f"{args} -m addrtype --dst-type LOCAL -j ACCEPT")

        if "KUBE-EXTERNAL-IP" in nonempty:
            args = f"-A KUBE-SERVICES {cm('KUBE-EXTERNAL-IP')} -m set --match-set " \
                   f"{name['KUBE-EXTERNAL-IP']} dst,dst"
            nat_rules.append(f"{args} -j KUBE-MARK-MASQ")
            external_ip_rules(args)
        if "KUBE-EXTERNAL-IP-LOCAL" in nonempty:
            args = f"-A KUBE-SERVICES {cm('KUBE-EXTERNAL-IP-LOCAL')} -m set --match-set " \
                   f"{name['KUBE-EXTERNAL-IP-LOCAL']} dst,dst"
            external_ip_rules(args)

        nat_rules.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
        nat_rules.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
        flt_rules.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
        for ip, proto, port in self.lb_no_node_access:
            flt_rules.append(f"-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} "
                             f"--vproto {proto} --vport {port} -j DROP")
        # acceptIPVSTraffic: keep later rules (of other software) from dropping VIP traffic.
        for base in ("KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER"):
            if base in nonempty:
                nat_rules.append(f"-A KUBE-SERVICES -m set --match-set {name[base]} dst,dst "
                                 "-j ACCEPT")
        flt_rules.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
                         f"-m mark --mark {mark}/{mark} -j ACCEPT")
        flt_rules.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack '
                         'rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')
        flt_rules.append(f"-A KUBE-NODE-PORT {cm('KUBE-HEALTH-CHECK-NODE-PORT')} -m set "
                         f"--match-set {name['KUBE-HEALTH-CHECK-NODE-PORT']} dst -j ACCEPT")
        for base, match in IPVS_FILTER_RETURNS:
            flt_rules.append(f"-A KUBE-IPVS-FILTER -m set --match-set {name[base]} {match} "
                             "-j RETURN")
        flt_rules.append("-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set "
                         f"{name['KUBE-IPVS-IPS']} dst -j REJECT")
        nat_rules.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
        nat_rules.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
        masq = ('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring '
                'SNAT" -j MASQUERADE')
        if st.options.random_fully:
            masq += " --random-fully"
        nat_rules.append(masq)
        nat_rules.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")
        nat_rules.append("COMMIT")
        flt_rules.append("COMMIT")
        return "\n".join([*nat, *nat_rules, *flt, *flt_rules]) + "\n"


def render_node(state: NodeProxyState) -> IPVSNode:
    """Everything IPVS mode programs for ``state`` (one node, one family) after a full sync."""
    if state.family not in ("IPv4", "IPv6"):
        raise BackendError(f"unknown IP family {state.family!r}; expected IPv4 or IPv6")
    return _Builder(state).build()
