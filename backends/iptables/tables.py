"""The fixed structure kube-proxy's iptables mode installs, as data with the reason beside it.

Everything here is independent of Services: the chains kube-proxy owns, the jump rules it
hooks into the built-in chains on every full sync (``iptablesJumpChains``), the node-level
rules written on every sync, and the built-in chains of each table as ``iptables-save``
lists them. Reference: ``kube-proxy-iptables.md`` §1 and §3.6.
"""

from __future__ import annotations

import attrs

__all__ = [
    "BUILTIN_CHAINS",
    "CANARY_CHAIN",
    "CANARY_TABLES",
    "FILTER_TOP_CHAINS",
    "JUMP_RULES",
    "NAT_TOP_CHAINS",
    "NODEPORTS_TAIL_COMMENT",
    "SAVE_TABLE_ORDER",
    "TOP_LEVEL_CHAINS",
    "JumpRule",
    "TopChain",
]


@attrs.frozen
class TopChain:
    """A kube-proxy chain that is declared on every sync (never deleted as stale)."""

    table: str
    name: str
    reason: str


#: filter chains, in the order ``syncProxyRules`` declares them.
FILTER_TOP_CHAINS: tuple[TopChain, ...] = (
    TopChain("filter", "KUBE-SERVICES", "REJECT/DROP ClusterIPs without (local) endpoints"),
    TopChain(
        "filter",
        "KUBE-EXTERNAL-SERVICES",
        "REJECT/DROP externalIPs, LB IPs and NodePorts without usable endpoints",
    ),
    TopChain("filter", "KUBE-FORWARD", "drop INVALID; accept masquerade-marked and established"),
    TopChain("filter", "KUBE-NODEPORTS", "ACCEPT health-check node ports"),
    TopChain(
        "filter",
        "KUBE-PROXY-FIREWALL",
        "DROP LB-IP traffic that left KUBE-FW-* without being DNATed (source not allowed)",
    ),
)

#: nat chains, in declaration order.
NAT_TOP_CHAINS: tuple[TopChain, ...] = (
    TopChain("nat", "KUBE-SERVICES", "entry point: ClusterIPs, externalIPs, LB IPs, then NodePorts"),
    TopChain("nat", "KUBE-NODEPORTS", "NodePorts -> KUBE-EXT-*"),
    TopChain("nat", "KUBE-POSTROUTING", "MASQUERADE packets carrying the masquerade mark"),
    TopChain("nat", "KUBE-MARK-MASQ", "sets the masquerade mark"),
)

#: Declared only for IPv4 with localhostNodePorts (shared with the kubelet).
KUBE_FIREWALL = TopChain(
    "filter", "KUBE-FIREWALL", "drop martian 127.0.0.0/8 traffic that route_localnet lets in"
)

#: Chains the upstream test checker (``checkIPTablesRuleJumps``) allows to be unreferenced.
TOP_LEVEL_CHAINS: frozenset[str] = frozenset(
    {
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-FORWARD",
        "KUBE-MARK-MASQ",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    }
)


@attrs.frozen
class JumpRule:
    """One ``EnsureChain`` + ``EnsureRule(Prepend, ...)`` kube-proxy runs on a full sync."""

    table: str
    src: str
    extra: tuple[str, ...]
    comment: str
    dst: str
    reason: str

    def args(self) -> tuple[str, ...]:
        """argv after ``-A <src>``: extra args, ``-m comment --comment C`` if any, ``-j dst``."""
        comment = ("-m", "comment", "--comment", self.comment) if self.comment else ()
        return (*self.extra, *comment, "-j", self.dst)


_NEW = ("-m", "conntrack", "--ctstate", "NEW")

#: ``iptablesJumpChains`` + ``iptablesKubeletJumpChains`` in list order. Each is *prepended*,
#: so on a clean host a built-in chain ends up holding them in reverse order.
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", "INPUT", _NEW, "kubernetes externally-visible service portals",
             "KUBE-EXTERNAL-SERVICES", "reject/drop external traffic to services without endpoints"),
    JumpRule("filter", "FORWARD", _NEW, "kubernetes externally-visible service portals",
             "KUBE-EXTERNAL-SERVICES", "same, for traffic routed through the node"),
    JumpRule("filter", "INPUT", (), "kubernetes health check service ports",
             "KUBE-NODEPORTS", "accept health-check node ports even under a DROP policy"),
    JumpRule("filter", "FORWARD", _NEW, "kubernetes service portals",
             "KUBE-SERVICES", "reject ClusterIP traffic from pods to services without endpoints"),
    JumpRule("filter", "OUTPUT", _NEW, "kubernetes service portals",
             "KUBE-SERVICES", "reject ClusterIP traffic from the host to services without endpoints"),
    JumpRule("filter", "FORWARD", (), "kubernetes forwarding rules",
             "KUBE-FORWARD", "accept masqueraded/established service traffic under a DROP policy"),
    JumpRule("filter", "INPUT", _NEW, "kubernetes load balancer firewall",
             "KUBE-PROXY-FIREWALL", "loadBalancerSourceRanges for traffic to local LB IPs"),
    JumpRule("filter", "OUTPUT", _NEW, "kubernetes load balancer firewall",
             "KUBE-PROXY-FIREWALL", "loadBalancerSourceRanges for host-originated traffic"),
    JumpRule("filter", "FORWARD", _NEW, "kubernetes load balancer firewall",
             "KUBE-PROXY-FIREWALL", "loadBalancerSourceRanges for routed traffic"),
    JumpRule("nat", "OUTPUT", (), "kubernetes service portals",
             "KUBE-SERVICES", "DNAT host-originated service traffic"),
    JumpRule("nat", "PREROUTING", (), "kubernetes service portals",
             "KUBE-SERVICES", "DNAT incoming and pod service traffic"),
    JumpRule("nat", "POSTROUTING", (), "kubernetes postrouting rules",
             "KUBE-POSTROUTING", "masquerade marked traffic on the way out"),
    JumpRule("filter", "INPUT", (), "", "KUBE-FIREWALL",
             "kubelet's anti-martian hook, ensured again by kube-proxy (not removed by --cleanup)"),
    JumpRule("filter", "OUTPUT", (), "", "KUBE-FIREWALL",
             "kubelet's anti-martian hook, ensured again by kube-proxy (not removed by --cleanup)"),
)

#: The iptables monitor's canary: an empty chain whose disappearance means someone flushed
#: the tables, which forces a full resync. Never part of the restore payload.
CANARY_CHAIN = "KUBE-PROXY-CANARY"
CANARY_TABLES: tuple[str, ...] = ("mangle", "nat", "filter")

#: Built-in chains and their policy, in the order ``iptables-save`` prints them (hook order).
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}

#: iptables-nft-save walks its builtin table list in this order (mangle, ..., filter, nat).
SAVE_TABLE_ORDER: tuple[str, ...] = ("mangle", "filter", "nat")

NODEPORTS_TAIL_COMMENT = (
    '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'
)
