"""Node-level facts one sync derives from a :class:`NodeProxyState` before rendering.

kube-proxy computes these once, in ``NewProxier`` and at the top of ``syncProxyRules``: the
local-traffic detector (``--detect-local-mode``), whether localhost NodePorts are on, which
node addresses NodePorts listen on (``--nodeport-addresses``), large-cluster mode, the
masquerade mark. Per-service rendering depends only on :attr:`RenderContext.port_key`, so a
per-service-port cache stays valid as long as that key does.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Network, IPv6Network

import attrs

from kservice.proxy.types import NodeProxyState

__all__ = ["RenderContext", "parse_cidr_sloppy", "parse_ip_sloppy"]

Network = IPv4Network | IPv6Network


def parse_ip_sloppy(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``netutils.ParseIPSloppy``: IPv4 octets with leading zeros are decimal; None if invalid."""
    text = text.strip()
    if ":" not in text:
        parts = text.split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            return None
        octets = [int(p, 10) for p in parts]
        if any(o > 255 for o in octets):
            return None
        return ipaddress.IPv4Address(".".join(map(str, octets)))
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def parse_cidr_sloppy(text: str) -> Network | None:
    """``netutils.ParseCIDRSloppy`` then ``IPNet``: the masked network, None if invalid."""
    ip_text, sep, prefix = text.strip().partition("/")
    ip = parse_ip_sloppy(ip_text)
    if ip is None or not sep or not prefix.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{ip}/{int(prefix, 10)}", strict=False)
    except ValueError:
        return None


_ZERO = {"IPv4": ipaddress.ip_network("0.0.0.0/0"), "IPv6": ipaddress.ip_network("::/0")}
_V4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def _detector(state: NodeProxyState) -> tuple[str, str] | None:
    """(IfLocal, IfNotLocal) tokens of ``getLocalDetectors`` for this family; None = no-op."""
    cfg = state.config
    mode = cfg.detect_local_mode or "ClusterCIDR"  # the v1alpha1 default
    v6 = state.family == "IPv6"
    if mode in ("ClusterCIDR", "NodeCIDR"):
        # ClusterCIDR splits the flag on ","; NodeCIDR reads node.spec.podCIDRs. Both keep
        # the first CIDR of this family (MapCIDRsByIPFamily) and print IPNet.String().
        sources = cfg.cluster_cidr.strip().split(",") if mode == "ClusterCIDR" else state.node.pod_cidrs
        for text in sources:
            net = parse_cidr_sloppy(text)
            if net is not None and (net.version == 6) == v6:
                return f"-s {net}", f"! -s {net}"
        return None
    if mode == "BridgeInterface":
        br = cfg.detect_local.bridge_interface
        return f"-i {br}", f"! -i {br}"
    if mode == "InterfaceNamePrefix":
        prefix = cfg.detect_local.interface_name_prefix
        return f"-i {prefix}+", f"! -i {prefix}+"
    # Any other value: upstream logs "Defaulting to no-op detect-local".
    return None


@attrs.frozen
class RenderContext:
    """Everything outside a service port that shapes its rules, computed once per sync."""

    family: str
    mark: str
    masquerade_all: bool
    #: (IfLocal, IfNotLocal) tokens, None when the detector is a no-op.
    detector: tuple[str, str] | None
    #: localhostNodePorts after the loopback check (always False for IPv6).
    localhost_node_ports: bool
    #: KUBE-NODEPORTS gets the ``-d 127.0.0.0/8 ... -m nfacct`` rule.
    localhost_nfacct: bool
    invalid_nfacct: bool
    random_fully: bool
    conntrack_tcp_liberal: bool
    large_cluster: bool
    #: The proxier's nodeIP, for the LB source-range ``allowFromNode`` check.
    node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    #: None = match-all (``-m addrtype --dst-type LOCAL`` tail rule); else the node IPs
    #: inside ``--nodeport-addresses``, one tail rule each.
    nodeport_ips: tuple[str, ...] | None

    @property
    def ipv6(self) -> bool:
        return self.family == "IPv6"

    #: The fields per-service-port rendering reads (cache validity key), built once.
    port_key: tuple[object, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        key = (self.family, self.masquerade_all, self.detector, self.localhost_nfacct,
               self.large_cluster, str(self.node_ip))
        object.__setattr__(self, "port_key", key)

    @classmethod
    def from_state(cls, state: NodeProxyState) -> RenderContext:
        if state.family not in ("IPv4", "IPv6"):
            from kservice.errors import BackendError

            raise BackendError(f"iptables: unknown IP family {state.family!r} (IPv4 or IPv6)")
        v6 = state.family == "IPv6"
        opts = state.options
        cfg = state.config

        # NewNodePortAddresses: keep this family's CIDRs; none left means match-all.
        npa_texts = list(cfg.node_port_addresses)
        if npa_texts == ["primary"]:
            # server.go turns "primary" into the node's primary IP of each family (unless
            # loopback) as a host CIDR; a family without one falls back to match-all.
            npa_texts = []
            for version in (4, 6):
                for text in state.node.ips:
                    ip = parse_ip_sloppy(text)
                    if ip is not None and ip.version == version:
                        if not ip.is_loopback:
                            npa_texts.append(f"{ip}/{32 if version == 4 else 128}")
                        break
        cidrs = [n for n in map(parse_cidr_sloppy, npa_texts) if n is not None and (n.version == 6) == v6]
        if not cidrs:
            cidrs = [_ZERO[state.family]]
        match_all = any(n.prefixlen == 0 for n in cidrs)
        contains_v4_loopback = not v6 and any(
            n.network_address.is_loopback or _V4_LOOPBACK in n for n in cidrs
        )
        localhost = bool(cfg.iptables.localhost_node_ports) and not v6 and contains_v4_loopback

        nodeport_ips: tuple[str, ...] | None = None
        if not match_all:
            found: list[str] = []
            # GetNodeIPs reads every interface address of the host. NodeInfo.interfaces may
            # be empty (a state built from the Node object, which lists none): the node's
            # own IPs are interface addresses on any real host, and lo always holds
            # 127.0.0.1 and ::1, so both are candidates too (lo first, as the kernel lists it).
            candidates = [addr.partition("/")[0] for _ifname, addr in state.node.interfaces]
            if not any(name == "lo" for name, _ in state.node.interfaces):
                candidates[:0] = ["127.0.0.1", "::1"]
            candidates += list(state.node.ips)
            for text in candidates:
                ip = parse_ip_sloppy(text)
                if ip is None or (ip.version == 6) != v6:
                    continue
                if any(ip in n for n in cidrs) and str(ip) not in found:
                    # Loopback is skipped for IPv6 and when localhostNodePorts is off.
                    if ip.is_loopback and (v6 or not localhost):
                        continue
                    found.append(str(ip))
            nodeport_ips = tuple(found)

        node_ip_text = state.node_ip
        node_ip = parse_ip_sloppy(node_ip_text) if node_ip_text else None
        if node_ip is None:
            # server.go falls back to the loopback address when no node IP is known.
            node_ip = ipaddress.ip_address("::1" if v6 else "127.0.0.1")

        return cls(
            family=state.family,
            mark=state.masquerade_mark,
            masquerade_all=cfg.iptables.masquerade_all,
            detector=_detector(state),
            localhost_node_ports=localhost,
            localhost_nfacct=localhost and "localhost_nps_accepted_pkts" in opts.nfacct_counters,
            invalid_nfacct="ct_state_invalid_dropped_pkts" in opts.nfacct_counters,
            random_fully=opts.random_fully,
            # conntrack.tcpBeLiberal makes kube-proxy set the sysctl it then reads back.
            conntrack_tcp_liberal=opts.conntrack_tcp_liberal or cfg.conntrack_tcp_be_liberal,
            large_cluster=state.total_endpoints > opts.large_cluster_endpoints_threshold,
            node_ip=node_ip,
            nodeport_ips=nodeport_ips,
        )
