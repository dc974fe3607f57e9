"""Strategies for incremental-sync tests: a node state and its successor.

``sync_pairs()`` draws ``(previous, current)`` node states of one family and one
configuration, as two consecutive kube-proxy syncs see them: either two unrelated service
sets (services appear, vanish and change together) or the previous set with one service
port replaced (the common one-service change). Both states are API-valid in the one way
incremental syncs care about (:func:`frontends_unique`).
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import assume
from hypothesis import strategies as st

from kservice.proxy.types import NodeProxyState
from kservice.testing.dataplane import node_proxy_states

__all__ = ["frontends_unique", "nftables_mode_divergence", "sync_pairs"]


def frontends_unique(state: NodeProxyState) -> bool:
    """No two ports share a frontend (IP, protocol, port) or a nodePort.

    The API refuses both (``spec.ports[i]: Duplicate value`` within a Service; ClusterIP,
    externalIP and nodePort allocation across Services -- externalIPs are not allocated, but
    two Services claiming one externalIP:port is a conflict kube-proxy cannot resolve
    either). With a shared key, kube-proxy writes the same map key twice and which one wins
    depends on iteration order.
    """
    seen: set[tuple[str, str, int]] = set()
    for sp in state.service_ports:
        keys = [(ip, sp.protocol, sp.port)
                for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_vips)]
        if sp.node_port:
            keys.append(("nodePort", sp.protocol, sp.node_port))
        for k in keys:
            if k in seen:
                return False
            seen.add(k)
    return True


@st.composite
def sync_pairs(draw: st.DrawFn, *, max_services: int = 4
               ) -> tuple[NodeProxyState, NodeProxyState]:
    """``(previous, current)`` for one node, family and configuration."""
    fam = draw(st.sampled_from(["IPv4", "IPv6"]))
    a = draw(node_proxy_states(family=st.just(fam), max_services=max_services)
             .filter(frontends_unique))
    b = draw(node_proxy_states(family=st.just(fam), configs=st.just(a.config),
                               max_services=max_services).filter(frontends_unique))
    if draw(st.booleans()):
        keep = [sp for sp in a.service_ports if sp.name != b.service_ports[0].name]
        b = attrs.evolve(a, service_ports=tuple(sorted([*keep, b.service_ports[0]],
                                                       key=lambda s: s.name)))
        assume(frontends_unique(b))
    return a, b


def nftables_mode_divergence(
    state: NodeProxyState,
    packet: Any,
    iptables_like: dict[tuple[str, str | None, str | None], Any],
    nftables: dict[tuple[str, str | None, str | None], Any],
) -> str | None:
    """Name the upstream iptables-vs-nftables difference that explains a mismatch.

    Both concern a service **without endpoints**, reached on an externalIP or LB IP
    (docs/divergences-nftables.md, "Modes compared"):

    * nftables drops a client outside ``loadBalancerSourceRanges`` before anything else
      (its firewall map is filled with or without endpoints); iptables has no firewall
      then (``usesFWChain`` needs endpoints) and rejects;
    * nftables also checks host-originated traffic (``service-endpoints-check`` from
      ``filter-output``); iptables lets it leave the node (KUBE-EXTERNAL-SERVICES is
      jumped from INPUT and FORWARD only).

    ``iptables_like`` is an iptables-mode trace or the reference semantics (which follow
    iptables mode); distributions are ``TraceResult.distribution()``.
    """
    import ipaddress

    from kservice.proxy.types import join_host_port

    from_node = packet.src in set(state.node.ips)
    for sp in state.service_ports:
        if sp.categorized.has_any or packet.dport != sp.port or \
                packet.proto != sp.protocol.lower():
            continue
        if packet.dst not in (*sp.external_ips, *sp.load_balancer_vips):
            continue
        outside_ranges = (
            packet.dst in sp.load_balancer_vips and bool(sp.load_balancer_source_ranges)
            and not any(ipaddress.ip_address(packet.src) in ipaddress.ip_network(c.strip(), strict=False)
                        for c in sp.load_balancer_source_ranges
                        if (":" in c) == (":" in packet.src)))
        nft_expected = ("DROP" if outside_ranges else "REJECT", None, None)
        # iptables mode lets host traffic leave; the reference semantics reject it.
        ipt_allowed: list[set[tuple[str, str | None, str | None]]] = [{("REJECT", None, None)}]
        if from_node:
            ipt_allowed.append({("ACCEPT", join_host_port(packet.dst, packet.dport), packet.src)})
        if set(nftables) == {nft_expected} and set(iptables_like) in ipt_allowed:
            return ("service without endpoints: "
                    + ("source-range drop; " if outside_ranges else "")
                    + ("host traffic checked in filter-output" if from_node else "reject"))
    return None
