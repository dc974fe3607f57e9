"""KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1), the parts that shape rules.

Defaults are upstream's (``pkg/proxy/apis/config/v1alpha1/defaults.go``).
Reading from a manifest and validation live in :mod:`kservice.proxy.configfile`.
"""

from __future__ import annotations

import attrs

__all__ = [
    "DetectLocalConfiguration",
    "IPTablesConfiguration",
    "IPVSConfiguration",
    "KubeProxyConfiguration",
    "NFTablesConfiguration",
]


@attrs.frozen
class IPTablesConfiguration:
    masquerade_all: bool = False
    masquerade_bit: int = 14
    localhost_node_ports: bool = True
    sync_period: str = "30s"
    min_sync_period: str = "1s"


@attrs.frozen
class IPVSConfiguration:
    scheduler: str = ""  # "" means rr
    strict_arp: bool = False
    exclude_cidrs: tuple[str, ...] = ()
    sync_period: str = "30s"
    min_sync_period: str = "0s"
    tcp_timeout: str = "0s"
    tcp_fin_timeout: str = "0s"
    udp_timeout: str = "0s"


@attrs.frozen
class NFTablesConfiguration:
    masquerade_all: bool = False
    masquerade_bit: int = 14
    sync_period: str = "30s"
    min_sync_period: str = "1s"


@attrs.frozen
class DetectLocalConfiguration:
    bridge_interface: str = ""
    interface_name_prefix: str = ""


@attrs.frozen
class KubeProxyConfiguration:
    #: ``iptables`` (the Linux default when empty), ``ipvs``, ``nftables``; kservice also
    #: accepts ``userspace`` (removed upstream in 1.26) for teaching.
    mode: str = "iptables"
    #: Comma-separated CIDRs (one per family), as the flag takes them.
    cluster_cidr: str = ""
    #: ``ClusterCIDR`` (default), ``NodeCIDR``, ``BridgeInterface``, ``InterfaceNamePrefix``.
    #: kube-proxy uses ClusterCIDR only when cluster_cidr is set; otherwise no detection.
    detect_local_mode: str = "ClusterCIDR"
    detect_local: DetectLocalConfiguration = attrs.field(factory=DetectLocalConfiguration)
    iptables: IPTablesConfiguration = attrs.field(factory=IPTablesConfiguration)
    ipvs: IPVSConfiguration = attrs.field(factory=IPVSConfiguration)
    nftables: NFTablesConfiguration = attrs.field(factory=NFTablesConfiguration)
    #: CIDRs or the special value ``primary``; empty means all node addresses.
    node_port_addresses: tuple[str, ...] = ()
    hostname_override: str = ""
    #: conntrack.tcpBeLiberal: when true, KUBE-FORWARD has no INVALID drop rule.
    conntrack_tcp_be_liberal: bool = False
