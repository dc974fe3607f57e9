"""The fixed structure of kube-proxy's ``kube-proxy`` table, as data (v1.34 shape).

Everything in here is the same on every node and every sync; only sets, maps and the
per-service chains change. Each row carries the reason it exists, paraphrasing the
upstream comments in ``pkg/proxy/nftables/proxier.go`` (``nftablesBaseChains``,
``nftablesJumpChains``, ``setupNFTables``) and PR #132456 (v1.34: pre-DNAT filter chains).
"""

from __future__ import annotations

import attrs

__all__ = [
    "BASE_CHAINS",
    "CONTAINERS",
    "ELEMENT_STORAGE_ORDER",
    "FAMILY",
    "JUMP_CHAINS",
    "TABLE",
    "TABLE_COMMENT",
    "TOP_LEVEL_CHAINS",
    "BaseChain",
    "Container",
    "JumpChain",
]

TABLE = "kube-proxy"
TABLE_COMMENT = "rules for kube-proxy"
#: nft family per IP family; kube-proxy runs one proxier (one table) per family.
FAMILY = {"IPv4": "ip", "IPv6": "ip6"}

# Chain names (upstream constants).
FILTER_PREROUTING_PRE_DNAT = "filter-prerouting-pre-dnat"
FILTER_OUTPUT_PRE_DNAT = "filter-output-pre-dnat"
FILTER_INPUT = "filter-input"
FILTER_FORWARD = "filter-forward"
FILTER_OUTPUT = "filter-output"
NAT_PREROUTING = "nat-prerouting"
NAT_OUTPUT = "nat-output"
NAT_POSTROUTING = "nat-postrouting"
SERVICES = "services"
MASQUERADING = "masquerading"
MARK_MASQ = "mark-for-masquerade"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_CHECK = "firewall-check"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
REJECT_CHAIN = "reject-chain"
REJECT_CHAIN_COMMENT = "helper for @no-endpoint-services / @no-endpoint-nodeports"

# Set and map names.
CLUSTER_IPS = "cluster-ips"
NODEPORT_IPS = "nodeport-ips"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
FIREWALL_IPS = "firewall-ips"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"


@attrs.frozen
class BaseChain:
    name: str
    type: str
    hook: str
    priority: int
    reason: str


#: Base chains in upstream's ``nftablesBaseChains`` order (v1.34). Priorities are the
#: numbers knftables' dump prints (``dstnat`` = -100, ``srcnat`` = 100, ``filter`` = 0).
BASE_CHAINS: tuple[BaseChain, ...] = (
    BaseChain(FILTER_PREROUTING_PRE_DNAT, "filter", "prerouting", -110,
              "LoadBalancerSourceRanges must see the pre-DNAT destination: runs before dstnat"),
    BaseChain(FILTER_OUTPUT_PRE_DNAT, "filter", "output", -110,
              "the same firewall check for host-originated traffic, before dstnat"),
    BaseChain(FILTER_INPUT, "filter", "input", 0,
              "reject/drop for services without endpoints (reject only valid in input/forward/output "
              "on kernels < 5.9); NodePorts arrive here"),
    BaseChain(FILTER_FORWARD, "filter", "forward", 0,
              "reject/drop for forwarded traffic to services without endpoints; invalid ClusterIP ports"),
    BaseChain(FILTER_OUTPUT, "filter", "output", 0,
              "same for host-originated traffic; after DNAT, so a DNATed ClusterIP no longer matches "
              "cluster-ips-check (v1.34 merged filter-output-post-dnat into this chain)"),
    BaseChain(NAT_PREROUTING, "nat", "prerouting", -100, "service dispatch (DNAT) for arriving traffic"),
    BaseChain(NAT_OUTPUT, "nat", "output", -100, "service dispatch (DNAT) for host-originated traffic"),
    BaseChain(NAT_POSTROUTING, "nat", "postrouting", 100, "masquerade marked packets (srcnat)"),
)


@attrs.frozen
class JumpChain:
    dst: str
    src: str
    extra: str
    reason: str


#: Jumps from base chains to top-level regular chains, upstream ``nftablesJumpChains``
#: order (v1.34). ``ct state new``: the checks only matter for the first packet; later
#: packets follow conntrack.
JUMP_CHAINS: tuple[JumpChain, ...] = (
    JumpChain(NODEPORT_ENDPOINTS_CHECK, FILTER_INPUT, "ct state new",
              "NodePorts with no (usable) endpoints are dropped/rejected on input"),
    JumpChain(SERVICE_ENDPOINTS_CHECK, FILTER_INPUT, "ct state new",
              "service IPs with no endpoints that are local addresses (externalIPs, LB IPs)"),
    JumpChain(SERVICE_ENDPOINTS_CHECK, FILTER_FORWARD, "ct state new",
              "service IPs with no endpoints, forwarded traffic"),
    JumpChain(SERVICE_ENDPOINTS_CHECK, FILTER_OUTPUT, "ct state new",
              "service IPs with no endpoints, host-originated traffic"),
    JumpChain(FIREWALL_CHECK, FILTER_PREROUTING_PRE_DNAT, "ct state new",
              "LoadBalancerSourceRanges, on the pre-DNAT destination"),
    JumpChain(FIREWALL_CHECK, FILTER_OUTPUT_PRE_DNAT, "ct state new",
              "LoadBalancerSourceRanges for host-originated traffic"),
    JumpChain(SERVICES, NAT_OUTPUT, "", "service dispatch for host-originated traffic"),
    JumpChain(SERVICES, NAT_PREROUTING, "", "service dispatch for arriving traffic"),
    JumpChain(MASQUERADING, NAT_POSTROUTING, "", "SNAT what was marked for masquerade"),
    JumpChain(CLUSTER_IPS_CHECK, FILTER_FORWARD, "ct state new",
              "a ClusterIP packet still addressed to the ClusterIP after DNAT hit no service port"),
    JumpChain(CLUSTER_IPS_CHECK, FILTER_OUTPUT, "ct state new",
              "same for host-originated traffic"),
)

#: Other top-level chains ``setupNFTables`` ensures after the jump chains.
TOP_LEVEL_CHAINS: tuple[str, ...] = (SERVICES, CLUSTER_IPS_CHECK, MASQUERADING, MARK_MASQ)


@attrs.frozen
class Container:
    """A named set or map of the table. ``type`` uses ``{addr}`` for ipv4_addr/ipv6_addr."""

    name: str
    kind: str  # "set" or "map"
    type: str
    comment: str
    reason: str


CONTAINERS: dict[str, Container] = {
    c.name: c
    for c in (
        Container(CLUSTER_IPS, "set", "{addr}", "Active ClusterIPs",
                  "every ClusterIP, with or without endpoints: cluster-ips-check rejects other ports"),
        Container(NODEPORT_IPS, "set", "{addr}", "IPs that accept NodePort traffic",
                  "node IPs matching --nodeport-addresses (deleted when that matches all)"),
        Container(NO_ENDPOINT_SERVICES, "map", "{addr} . inet_proto . inet_service : verdict",
                  "vmap to drop or reject packets to services with no endpoints",
                  "filter-stage verdicts for service IPs without usable endpoints"),
        Container(NO_ENDPOINT_NODEPORTS, "map", "inet_proto . inet_service : verdict",
                  "vmap to drop or reject packets to service nodeports with no endpoints",
                  "filter-stage verdicts for NodePorts without usable endpoints"),
        Container(FIREWALL_IPS, "map", "{addr} . inet_proto . inet_service : verdict",
                  "destinations that are subject to LoadBalancerSourceRanges",
                  "LB IP:port -> firewall chain"),
        Container(SERVICE_IPS, "map", "{addr} . inet_proto . inet_service : verdict",
                  "ClusterIP, ExternalIP and LoadBalancer IP traffic",
                  "the service dispatch: destination -> service or external chain"),
        Container(SERVICE_NODEPORTS, "map", "inet_proto . inet_service : verdict",
                  "NodePort traffic", "NodePort dispatch -> external chain"),
    )
}

#: The element storages upstream keeps (``nftElementStorage``), in ``reset``/cleanup order.
ELEMENT_STORAGE_ORDER: tuple[str, ...] = (
    CLUSTER_IPS, SERVICE_IPS, FIREWALL_IPS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS,
    SERVICE_NODEPORTS,
)
