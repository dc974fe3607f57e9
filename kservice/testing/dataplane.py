"""Hypothesis strategies for one node's proxy state and for probe packets.

``node_proxy_states()`` draws a :class:`~kservice.proxy.types.NodeProxyState` the way a
kube-proxy would see a small cluster: service ports of every kind (ClusterIP, NodePort,
LoadBalancer with and without source ranges, externalIPs), traffic policies, ClientIP
affinity, and endpoints on this node and elsewhere in every condition (ready, not ready,
serving-terminating). Endpoint categorisation is the shared
:func:`kservice.proxy.categorize.categorize_endpoints` -- the strategies never decide it.

``probes(state)`` draws packets aimed at every frontend (ClusterIP, NodePort on each node
address, externalIPs, LB IPs, an address that is no service) from every origin (a pod on this
node, a pod elsewhere, the node itself, an outside client).

Everything shrinks toward one service with one endpoint on a single-stack IPv4 node.

Which to use: these are the *simple* strategies -- one family per node (IPv4 unless told),
the node's ``interfaces`` spelled out, no nodePortAddresses / localhost-NodePort probes,
no BridgeInterface/InterfaceNamePrefix detect-local, one port per Service. Use them for
rendering, partial-sync and real-kernel tests that need a node a netns can reproduce as is
(no ``cni0`` bridge) and packets every mode proxies alike. For agreement with the reference
semantics use the richer :func:`kservice.testing.strategies.node_states` /
:func:`~kservice.testing.strategies.probe_packets` -- the default of
:class:`kservice.testing.contract.BackendContract` for every backend. They are kept separate
(not aliases) because several users rely on the simple shape: the equivalence reproducer
test expects ``interfaces`` that no Node object carries, the real-kernel nft checks would
need a ``cni0`` bridge for ``iif cni0`` (BridgeInterface mode), and the iptables-vs-nftables
mock-kernel comparison would meet localhost NodePorts (an iptables-only feature).
"""

from __future__ import annotations

from typing import Any

import attrs
import netaddr
from hypothesis import strategies as st

from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import IPTablesConfiguration, KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.trace import Packet

__all__ = ["FAMILY_PLAN", "kube_proxy_configs", "node_proxy_states", "probes"]

#: Address plan per family: this node, its pods, other nodes' pods, services, outside.
FAMILY_PLAN: dict[str, dict[str, Any]] = {
    "IPv4": {
        "node_ip": "172.18.0.2", "node_prefix": 16,
        "pod_cidr": "10.244.1.0/24", "cluster_cidr": "10.244.0.0/16",
        "remote_pods": "10.244.2.0/24", "services": "10.96.0.0/24",
        "external_ips": "203.0.113.0/24", "lb_vips": "198.51.100.0/24",
        "clients": "192.0.2.0/24", "remote_node": "172.18.0.3", "loopback": "127.0.0.1",
    },
    "IPv6": {
        "node_ip": "fc00:f853:ccd:e793::2", "node_prefix": 64,
        "pod_cidr": "fd00:10:244:1::/64", "cluster_cidr": "fd00:10:244::/56",
        "remote_pods": "fd00:10:244:2::/64", "services": "fd00:10:96::/112",
        "external_ips": "2001:db8:e::/64", "lb_vips": "2001:db8:1b::/64",
        "clients": "2001:db8:c::/64", "remote_node": "fc00:f853:ccd:e793::3", "loopback": "::1",
    },
}


def _host(cidr: str, index: int) -> str:
    net = netaddr.IPNetwork(cidr)
    return str(netaddr.IPAddress(net.first + index, net.version))


def kube_proxy_configs(*, family: str = "IPv4") -> st.SearchStrategy[KubeProxyConfiguration]:
    """KubeProxyConfiguration variations that change rules: masqueradeAll, detect-local."""
    plan = FAMILY_PLAN[family]
    return st.builds(
        KubeProxyConfiguration,
        cluster_cidr=st.sampled_from([plan["cluster_cidr"], plan["cluster_cidr"]]),
        detect_local_mode=st.sampled_from(["ClusterCIDR", "ClusterCIDR", "NodeCIDR"]),
        iptables=st.builds(IPTablesConfiguration, masquerade_all=st.booleans()),
    )


@st.composite
def _endpoints(draw: st.DrawFn, *, family: str, max_endpoints: int, node: str) -> tuple[Endpoint, ...]:
    plan = FAMILY_PLAN[family]
    n = draw(st.integers(0, max_endpoints))
    out: dict[str, Endpoint] = {}
    for _ in range(n):
        local = draw(st.booleans())
        cidr = plan["pod_cidr"] if local else plan["remote_pods"]
        # .1 is the pods' gateway; pods start at .2 (kubelet's bridge plugins do the same).
        ip = _host(cidr, draw(st.integers(2, 40)))
        # Kubernetes rule (EndpointSlice conditions, k8s-service-api §4.2): ready implies
        # serving and not terminating unless publishNotReadyAddresses; we model the
        # controller's output, so the three valid combinations plus not-ready.
        cond = draw(st.sampled_from(["ready", "ready", "ready", "notready", "terminating",
                                     "terminating-notserving"]))
        ready, serving, terminating = {
            "ready": (True, True, False),
            "notready": (False, False, False),
            "terminating": (False, True, True),
            "terminating-notserving": (False, False, True),
        }[cond]
        ep = Endpoint(ip=ip, port=draw(st.sampled_from([8080, 9376])), is_local=local,
                      ready=ready, serving=serving, terminating=terminating,
                      node_name=node if local else "other-node")
        out[ep.string] = ep  # kube-proxy dedups by ip:port
    return tuple(out[k] for k in sorted(out))


@st.composite
def _service_port(
    draw: st.DrawFn, index: int, *, family: str, max_endpoints: int, node: str,
    used_node_ports: set[int],
) -> ServicePortInfo:
    plan = FAMILY_PLAN[family]
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalIP"]))
    protocol = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP"]))
    port = draw(st.sampled_from([80, 443, 53, 6379]))
    node_port = 0
    if kind in ("NodePort", "LoadBalancer"):
        node_port = 30000 + 10 * index + draw(st.integers(0, 9))
        used_node_ports.add(node_port)
    external_ips: tuple[str, ...] = ()
    if kind == "ExternalIP":
        external_ips = (_host(plan["external_ips"], 10 + index),)
    vips: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    if kind == "LoadBalancer":
        vips = (_host(plan["lb_vips"], 10 + index),)
        if draw(st.booleans()):
            # loadBalancerSourceRanges: masked CIDRs of this family (reference §3.1).
            ranges = (str(netaddr.IPNetwork(plan["clients"]).cidr),)
    externally = bool(node_port or vips or external_ips)
    affinity = draw(st.sampled_from([None, None, 10800, 60]))
    endpoints = draw(_endpoints(family=family, max_endpoints=max_endpoints, node=node))
    sp = ServicePortInfo(
        name=ServicePortName("default", f"svc{index}", draw(st.sampled_from(["", "p"])),
                             protocol),
        cluster_ip=_host(plan["services"], 10 + index),
        port=port,
        protocol=protocol,
        node_port=node_port,
        external_ips=external_ips,
        load_balancer_vips=vips,
        load_balancer_source_ranges=ranges,
        session_affinity_timeout=affinity,
        # Validation (k8s-service-api §1.2 item 17): ETP only on externally-accessible ones.
        external_policy_local=externally and draw(st.booleans()),
        internal_policy_local=draw(st.booleans()),
        health_check_node_port=0,
        endpoints=endpoints,
    )
    if sp.external_policy_local and kind == "LoadBalancer":
        sp = attrs.evolve(sp, health_check_node_port=32000 + index)
    return sp


@st.composite
def node_proxy_states(
    draw: st.DrawFn,
    *,
    family: st.SearchStrategy[str] | None = None,
    configs: st.SearchStrategy[KubeProxyConfiguration] | None = None,
    max_services: int = 3,
    max_endpoints: int = 3,
) -> NodeProxyState:
    """A node's proxy state for one family (default IPv4); shrinks to one simple service."""
    fam = draw(family) if family is not None else "IPv4"
    plan = FAMILY_PLAN[fam]
    node = NodeInfo(
        name="node-a",
        ips=(plan["node_ip"],),
        pod_cidrs=(plan["pod_cidr"],),
        interfaces=(("eth0", f"{plan['node_ip']}/{plan['node_prefix']}"),
                    ("lo", "127.0.0.1/8" if fam == "IPv4" else "::1/128")),
    )
    config = draw(configs if configs is not None else kube_proxy_configs(family=fam))
    n = draw(st.integers(1, max_services))
    used: set[int] = set()
    ports = []
    for i in range(n):
        sp = draw(_service_port(i, family=fam, max_endpoints=max_endpoints, node=node.name,
                                used_node_ports=used))
        cat = categorize_endpoints(sp.endpoints, sp, node.name, dict(node.labels))
        ports.append(attrs.evolve(sp, categorized=cat))
    ports.sort(key=lambda s: s.name)
    return NodeProxyState(node=node, family=fam, config=config, service_ports=tuple(ports))


@st.composite
def probes(draw: st.DrawFn, state: NodeProxyState) -> Packet:
    """A packet aimed at one of the state's frontends (or at no service), from any origin."""
    plan = FAMILY_PLAN[state.family]
    targets: list[tuple[str, int, str]] = []
    for sp in state.service_ports:
        proto = sp.protocol.lower()
        targets.append((sp.cluster_ip, sp.port, proto))
        targets += [(ip, sp.port, proto) for ip in sp.external_ips]
        targets += [(ip, sp.port, proto) for ip in sp.load_balancer_vips]
        if sp.node_port:
            targets += [(ip, sp.node_port, proto) for ip in state.node.ips]
    targets.append((_host(plan["services"], 250), 80, "tcp"))  # an address that is no service
    dst, dport, proto = draw(st.sampled_from(targets))
    origin = draw(st.sampled_from(["local-pod", "remote-pod", "node", "external"]))
    src = {
        "local-pod": _host(plan["pod_cidr"], draw(st.integers(2, 40))),
        "remote-pod": _host(plan["remote_pods"], draw(st.integers(2, 40))),
        "node": plan["node_ip"],
        "external": _host(plan["clients"], draw(st.integers(5, 9))),
    }[origin]
    return Packet(src=src, dst=dst, dport=dport, sport=draw(st.integers(32768, 60999)),
                  proto=proto)
