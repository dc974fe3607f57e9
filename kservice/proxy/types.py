"""The per-node, per-family state every dataplane backend consumes.

This is the contract between the core and the backends, modelled on kube-proxy's
``ServicePort``/``Endpoint`` interfaces: a backend receives one immutable
:class:`NodeProxyState` (one node, one IP family) and turns it into artifacts. Endpoint
selection has already happened -- each :class:`ServicePortInfo` carries the result of the
shared :func:`kservice.proxy.categorize_endpoints` -- so no backend filters endpoints itself.
"""

from __future__ import annotations

import attrs

from kservice._frozen import FrozenDict, freeze_labels, to_frozenset, to_tuple
from kservice.proxy.config import KubeProxyConfiguration

__all__ = [
    "CategorizedEndpoints",
    "Endpoint",
    "NodeInfo",
    "NodeProxyState",
    "ProxierOptions",
    "ServicePortInfo",
    "ServicePortName",
    "join_host_port",
]


def join_host_port(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 bracketed."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@attrs.frozen(order=True)
class ServicePortName:
    """(namespace, service, port name, protocol): kube-proxy's key for one service port."""

    namespace: str
    name: str
    port: str = ""
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@attrs.frozen
class Endpoint:
    """One endpoint of one service port, as kube-proxy's endpoint cache holds it."""

    ip: str
    port: int
    #: ``nodeName`` equals this proxier's node name.
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone_hints: frozenset[str] = attrs.field(default=frozenset(), converter=to_frozenset)
    node_hints: frozenset[str] = attrs.field(default=frozenset(), converter=to_frozenset)
    node_name: str | None = None
    zone: str | None = None

    @property
    def string(self) -> str:
        """``ip:port`` (JoinHostPort): the sort key and the text in rule comments."""
        return join_host_port(self.ip, self.port)

    @property
    def serving_terminating(self) -> bool:
        return self.serving and self.terminating


@attrs.frozen
class CategorizedEndpoints:
    """The result of ``CategorizeEndpoints`` for one service port on one node."""

    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    all_reachable: tuple[Endpoint, ...] = ()
    has_any: bool = False


@attrs.frozen
class ServicePortInfo:
    """One service port as a proxier of one IP family sees it (reference §3.1)."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_vips: tuple[str, ...] = ()
    #: Masked networks (``10.0.0.0/24``), this family only.
    load_balancer_source_ranges: tuple[str, ...] = ()
    #: ClientIP affinity timeout; ``None`` when sessionAffinity is None.
    session_affinity_timeout: int | None = None
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    #: The service's targetPort as given (int or name), informational (userspace mode).
    target_port: int | str = 0
    #: Every endpoint of this port, deduplicated and sorted by :attr:`Endpoint.string`.
    endpoints: tuple[Endpoint, ...] = ()
    #: The shared categorisation for this node (never recomputed by a backend).
    categorized: CategorizedEndpoints = attrs.field(factory=CategorizedEndpoints)

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible
        )

    @property
    def protocol_lower(self) -> str:
        return self.protocol.lower()


@attrs.frozen
class NodeInfo:
    """What a proxier knows about the node it runs on."""

    name: str
    #: Node IPs of all families, primary first (InternalIP, then ExternalIP).
    ips: tuple[str, ...] = ()
    labels: FrozenDict[str, str] = attrs.field(factory=FrozenDict, converter=freeze_labels)
    pod_cidrs: tuple[str, ...] = ()
    #: (interface name, address/prefix) of the node's interfaces, for nodePortAddresses
    #: and the mock kernel's routing. ``lo`` included.
    interfaces: tuple[tuple[str, str], ...] = ()

    @property
    def zone(self) -> str | None:
        return self.labels.get("topology.kubernetes.io/zone") or None


@attrs.frozen
class ProxierOptions:
    """Knobs of the proxier's environment that are not in KubeProxyConfiguration.

    Defaults describe a current Linux node (iptables >= 1.6.2 so ``--random-fully`` exists,
    nfacct available). Upstream's unit tests use a fake with other values; the golden tests
    set these explicitly.
    """

    #: The masquerade mark text used verbatim; ``None`` = computed from masqueradeBit with
    #: Go's ``%#08x`` (``0x00004000`` for bit 14).
    masquerade_mark: str | None = None
    random_fully: bool = True
    #: nfacct counters that exist on the node.
    nfacct_counters: frozenset[str] = attrs.field(
        default=frozenset({"ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"}),
        converter=to_frozenset,
    )
    conntrack_tcp_liberal: bool = False
    large_cluster_endpoints_threshold: int = 1000


@attrs.frozen
class NodeProxyState:
    """Everything one proxier of one IP family needs to render a node's dataplane."""

    node: NodeInfo
    #: ``IPv4`` or ``IPv6``.
    family: str
    config: KubeProxyConfiguration = attrs.field(factory=KubeProxyConfiguration)
    options: ProxierOptions = attrs.field(factory=ProxierOptions)
    #: Sorted by ``name`` (namespace, service, port name, protocol).
    service_ports: tuple[ServicePortInfo, ...] = ()
    #: The cluster's ServiceCIDRs (all families; kube-proxy watches ServiceCIDR objects).
    #: nftables mode drops traffic to unallocated IPs inside them (``cluster-ips-check``).
    service_cidrs: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)

    @property
    def node_ip(self) -> str | None:
        """The node's primary IP of this family (used for LB source-range checks)."""
        for ip in self.node.ips:
            if (":" in ip) == (self.family == "IPv6"):
                return ip
        return None

    @property
    def masquerade_mark(self) -> str:
        if self.options.masquerade_mark is not None:
            return self.options.masquerade_mark
        bit = self.config.iptables.masquerade_bit
        return "0x%08x" % (1 << bit)  # Go's %#08x pads 8 digits after 0x.

    @property
    def total_endpoints(self) -> int:
        return sum(len(sp.endpoints) for sp in self.service_ports)
