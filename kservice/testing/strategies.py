"""The curated hypothesis strategies of kservice: one import for every property test.

Re-exported from the area modules (so there is one place to look):

* Services, valid of every type and option combination, and invalid ones
  (:mod:`kservice.testing.services`);
* pods, workloads, nodes with zones, kube-proxy configurations, proxier endpoint lists
  (:mod:`kservice.testing.workloads`).

Added here, for the dataplane equivalence suite:

* :func:`cluster_configs` -- single-stack IPv4, single-stack IPv6 and dual-stack
  :class:`~kservice.config.ClusterConfig`;
* :func:`proxy_configs` -- the KubeProxyConfiguration knobs that change a node's rules
  (masqueradeAll, detect-local mode, clusterCIDR, nodePortAddresses, localhostNodePorts),
  always *valid* (kube-proxy's validation, ``pkg/proxy/apis/config/validation``);
* :func:`node_states` -- one node's :class:`~kservice.proxy.types.NodeProxyState` built the
  way kube-proxy sees a small cluster: whole Services (several ports sharing the
  Service-level fields), endpoints on this and other nodes in every EndpointSlice condition,
  topology hints, on a single- or dual-stack node. The node carries only what a Node object
  says (name, addresses, podCIDRs, labels), so :mod:`kservice.testing.repro` can write it
  as manifests that read back into an *equal* state;
* :func:`probe_packets` -- a packet at every frontend (ClusterIP, each NodePort address,
  localhost NodePorts, externalIPs, LB IPs, a non-service port of a VIP, no service) from
  every origin (a pod here, the endpoint itself, a pod elsewhere, the node, an outside
  client inside or outside the LB source ranges).

Everything is composite with keyword-only sub-strategy parameters and shrinks toward a
single-stack IPv4 node with one ClusterIP Service, one TCP port and one ready endpoint.

Which to use: :func:`node_states` / :func:`probe_packets` are what
:class:`kservice.testing.contract.BackendContract` draws by default, for every backend --
use them wherever a backend is compared with the reference semantics or with another mode.
The simpler :func:`kservice.testing.dataplane.node_proxy_states` / ``probes`` remain for
tests that need a node a network namespace reproduces as is (interfaces listed, no ``cni0``
bridge) or packets that every mode proxies alike (no localhost NodePorts).
"""

from __future__ import annotations

from typing import Any

import attrs
import netaddr
from hypothesis import strategies as st

from kservice.config import ClusterConfig
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    KubeProxyConfiguration,
    NFTablesConfiguration,
)
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.testing.services import (
    INVALID_MUTATIONS,
    dns1035_labels,
    iana_service_names,
    invalid_service_manifests,
    service_manifests,
    service_ports,
    services,
)
from kservice.testing.workloads import (
    ZONE_LABEL,
    label_sets,
    node_manifests,
    pod_manifests,
    proxy_endpoints,
    workload_manifests,
)
from kservice.testing.workloads import kube_proxy_configs as kube_proxy_config_files
from kservice.trace import Packet

__all__ = [
    "ADDRESS_PLAN",
    "INVALID_MUTATIONS",
    "NODE_NAME",
    "ZONE_LABEL",
    "cluster_configs",
    "dns1035_labels",
    "iana_service_names",
    "invalid_service_manifests",
    "kube_proxy_config_files",
    "label_sets",
    "node_manifests",
    "node_states",
    "pod_manifests",
    "probe_packets",
    "proxy_configs",
    "proxy_endpoints",
    "service_manifests",
    "service_ports",
    "services",
    "states_and_probes",
    "workload_manifests",
]

#: The node whose rules are traced. Other nodes only appear as endpoints' ``nodeName``.
NODE_NAME = "node-a"
OTHER_NODE = "node-b"

#: Address plan per family. Pods: this node's podCIDR inside the clusterCIDR, the other
#: node's podCIDR next to it. Services, externalIPs, LB ingress and clients come from
#: disjoint documentation ranges so that no address plays two roles by accident.
ADDRESS_PLAN: dict[str, dict[str, str]] = {
    "IPv4": {
        "node_ip": "172.18.0.2", "node_net": "172.18.0.0/16",
        "pod_cidr": "10.244.1.0/24", "cluster_cidr": "10.244.0.0/16",
        "remote_pods": "10.244.2.0/24", "services": "10.96.0.0/16",
        "external_ips": "203.0.113.0/24", "lb_vips": "198.51.100.0/24",
        "clients": "192.0.2.0/24", "other_clients": "100.64.0.0/24",
        "loopback": "127.0.0.1",
    },
    "IPv6": {
        "node_ip": "fc00:f853:ccd:e793::2", "node_net": "fc00:f853:ccd:e793::/64",
        "pod_cidr": "fd00:10:244:1::/64", "cluster_cidr": "fd00:10:244::/56",
        "remote_pods": "fd00:10:244:2::/64", "services": "fd00:10:96::/112",
        "external_ips": "2001:db8:e::/64", "lb_vips": "2001:db8:1b::/64",
        "clients": "2001:db8:c::/64", "other_clients": "2001:db8:d::/64",
        "loopback": "::1",
    },
}
_OTHER = {"IPv4": "IPv6", "IPv6": "IPv4"}
#: Endpoint target ports (containerPorts).
_TARGET_PORTS = (8080, 9376)


def host(cidr: str, index: int) -> str:
    """The ``index``-th address of ``cidr`` (canonical text, as kube-proxy prints it)."""
    net = netaddr.IPNetwork(cidr)
    return str(netaddr.IPAddress(net.first + index, net.version))


# --------------------------------------------------------------------------- cluster level


@st.composite
def cluster_configs(
    draw: st.DrawFn, *, stacks: st.SearchStrategy[str] | None = None,
) -> ClusterConfig:
    """Single-stack IPv4 / IPv6 or dual-stack cluster settings (shrinks to IPv4).

    Rules encoded (k8s-service-api §2, kube-apiserver ``--service-cluster-ip-range``): at
    most two service CIDRs, of different families, the primary first; the pod subnets
    (``--cluster-cidr``) follow the same families in the same order; the DNS address is the
    tenth of the primary service range (kubeadm).
    """
    stack = draw(stacks if stacks is not None else st.sampled_from(["IPv4", "IPv6", "IPv4,IPv6",
                                                                     "IPv6,IPv4"]))
    fams = stack.split(",")
    svc = {"IPv4": "10.96.0.0/16", "IPv6": "fd00:10:96::/112"}
    pods = {"IPv4": "10.244.0.0/16", "IPv6": "fd00:10:244::/56"}
    return ClusterConfig(
        service_subnets=tuple(svc[f] for f in fams),
        pod_subnets=tuple(pods[f] for f in fams),
        cluster_dns=(host(svc[fams[0]], 10),),
        seed=draw(st.integers(0, 3)),
    )


@st.composite
def proxy_configs(
    draw: st.DrawFn, *, family: str = "IPv4", dual_stack: bool = False,
    detect_local_modes: st.SearchStrategy[str] | None = None,
) -> KubeProxyConfiguration:
    """Valid KubeProxyConfigurations that change a node's rules.

    * ``clusterCIDR``: this family's, both families' (comma-separated, dual-stack
      kube-proxy), or empty -- ClusterCIDR detection then detects nothing (valid upstream);
    * ``detectLocalMode``: ClusterCIDR, NodeCIDR (needs the Node's podCIDRs), or
      BridgeInterface with ``bridgeInterface: cni0`` (validation requires the name; cni0 is
      the bridge the mock kernel and kind use);
    * ``masqueradeAll``: one ``--masquerade-all`` flag sets it for iptables and nftables
      alike (``linux.masqueradeAll`` in 1.33+), so both are drawn equal;
    * ``nodePortAddresses``: unset, ``[primary]`` (only valid alone), a CIDR holding the
      node IP, a CIDR holding no node address, and (IPv4) loopback plus the node's network,
      which makes localhost NodePorts reachable in iptables mode;
    * ``iptables.localhostNodePorts``: on (default) or off.
    """
    plan = ADDRESS_PLAN[family]
    cidrs = [plan["cluster_cidr"]]
    if dual_stack:
        cidrs.append(ADDRESS_PLAN[_OTHER[family]]["cluster_cidr"])
    cluster_cidr = draw(st.sampled_from([",".join(cidrs), ""]))
    mode = draw(detect_local_modes if detect_local_modes is not None
                else st.sampled_from(["ClusterCIDR", "NodeCIDR", "BridgeInterface"]))
    npa_options: list[tuple[str, ...]] = [(), ("primary",), (plan["node_net"],),
                                          (ADDRESS_PLAN[family]["other_clients"],)]
    if family == "IPv4":
        npa_options.append(("127.0.0.0/8", plan["node_net"]))
    masquerade_all = draw(st.booleans())
    return KubeProxyConfiguration(
        cluster_cidr=cluster_cidr,
        detect_local_mode=mode,
        detect_local=DetectLocalConfiguration(
            bridge_interface="cni0" if mode == "BridgeInterface" else ""),
        iptables=IPTablesConfiguration(masquerade_all=masquerade_all,
                                       localhost_node_ports=draw(st.booleans())),
        nftables=NFTablesConfiguration(masquerade_all=masquerade_all),
        node_port_addresses=draw(st.sampled_from(npa_options)),
    )


def _node(family: str, dual_stack: bool, zone: str | None) -> NodeInfo:
    """The traced node, exactly as :func:`kservice.proxy.raw.node_info_from_node` reads a
    Node: InternalIP addresses (the primary family first) and ``spec.podCIDRs``."""
    fams = [family, _OTHER[family]] if dual_stack else [family]
    return NodeInfo(
        name=NODE_NAME,
        ips=tuple(ADDRESS_PLAN[f]["node_ip"] for f in fams),
        labels={ZONE_LABEL: zone} if zone else {},
        pod_cidrs=tuple(ADDRESS_PLAN[f]["pod_cidr"] for f in fams),
    )


# --------------------------------------------------------------------------- services


@st.composite
def _pods(draw: st.DrawFn, *, family: str, max_endpoints: int, hints: bool,
          ) -> tuple[tuple[str, str, bool, bool, bool, frozenset[str]], ...]:
    """A Service's backing pods: (ip, node, ready, serving, terminating, zone hints).

    EndpointSlice conditions as the controller writes them (k8s-service-api §4.2): a ready
    endpoint is serving and not terminating; a terminating one is not ready and serving iff
    its readiness probe still passes; a not-ready one is not serving.
    """
    plan = ADDRESS_PLAN[family]
    n = draw(st.integers(0, max_endpoints))
    with_hints = hints and draw(st.integers(0, 3)) == 0
    out: dict[str, tuple[str, str, bool, bool, bool, frozenset[str]]] = {}
    for _ in range(n):
        local = draw(st.booleans())
        # .1 is the pods' gateway (the CNI bridge); pods start at .2.
        ip = host(plan["pod_cidr"] if local else plan["remote_pods"], draw(st.integers(2, 9)))
        cond = draw(st.sampled_from(["ready", "ready", "notready", "terminating",
                                     "terminating-notserving"]))
        ready, serving, terminating = {
            "ready": (True, True, False),
            "notready": (False, False, False),
            "terminating": (False, True, True),
            "terminating-notserving": (False, False, True),
        }[cond]
        zone_hints = frozenset(draw(st.sets(st.sampled_from(["z1", "z2"]), min_size=1,
                                            max_size=1))) if with_hints else frozenset()
        out[ip] = (ip, NODE_NAME if local else OTHER_NODE, ready, serving, terminating,
                   zone_hints)
    return tuple(out[k] for k in sorted(out))


@st.composite
def _service(
    draw: st.DrawFn, index: int, *, family: str, node: NodeInfo, max_ports: int,
    max_endpoints: int, node_ports: list[int],
) -> list[ServicePortInfo]:
    """All ports of one Service, sharing the Service-level fields (as ``serviceport.go``
    copies them onto every port)."""
    plan = ADDRESS_PLAN[family]
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ClusterIP+externalIP"]))
    has_node_ports = kind in ("NodePort", "LoadBalancer")
    external_ips: tuple[str, ...] = ()
    if kind == "ClusterIP+externalIP" or (kind != "ClusterIP" and draw(st.integers(0, 4)) == 0):
        # spec.externalIPs: any type but ExternalName; not loopback/link-local (§1.2 item 12).
        external_ips = (host(plan["external_ips"], 10 + index),)
    vips: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    if kind == "LoadBalancer":
        # status.loadBalancer.ingress: none yet (pending), one, or two IPs.
        vips = tuple(host(plan["lb_vips"], 10 + 10 * index + i)
                     for i in range(draw(st.integers(0, 2))))
        # loadBalancerSourceRanges: masked CIDRs; kube-proxy keeps only its family's.
        ranges = draw(st.sampled_from([
            (), (str(netaddr.IPNetwork(plan["clients"]).cidr),),
            (str(netaddr.IPNetwork(plan["clients"]).cidr), plan["node_net"]),
        ]))
    externally = has_node_ports or bool(external_ips)
    # externalTrafficPolicy: only on externally-accessible Services (§1.2 item 17).
    etp_local = externally and draw(st.booleans())
    itp_local = draw(st.integers(0, 2)) == 0
    affinity = draw(st.sampled_from([None, None, 10800, 60]))
    pods = draw(_pods(family=family, max_endpoints=max_endpoints, hints=True))
    nports = draw(st.integers(1, max_ports))
    used: set[tuple[str, int]] = set()
    # .100 on: clear of the kubernetes (.1) and kube-dns (.10) Services of a kind cluster,
    # so a reproducer also applies on top of `kservice`'s default cluster.
    cluster_ip = host(plan["services"], 100 + index)
    out = []
    for i in range(nports):
        protocol = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP"]))
        # (protocol, port) pairs are unique within a Service (§1.2 item 5).
        free = [p for p in (80, 443, 53) if (protocol, p) not in used]
        port = draw(st.sampled_from(free))
        used.add((protocol, port))
        node_port = 0
        if has_node_ports:
            # Node ports are unique cluster-wide for a protocol; drawn from the default
            # range 30000-32767 and unique across all protocols to keep probes unambiguous.
            node_port = 30000 + 10 * index + i
            node_ports.append(node_port)
        target = draw(st.sampled_from(_TARGET_PORTS))
        # Port names: required and unique once a Service has several ports (§1.2 item 4).
        pname = f"p{i}" if nports > 1 else draw(st.sampled_from(["", "http"]))
        name = ServicePortName("default", f"svc{index}", pname, protocol)
        eps = tuple(Endpoint(ip=ip, port=target, is_local=nn == node.name, ready=r,
                             serving=s, terminating=t, zone_hints=zh, node_name=nn)
                    for ip, nn, r, s, t, zh in pods)
        eps = tuple(sorted(eps, key=lambda e: e.string))
        sp = ServicePortInfo(
            name=name, cluster_ip=cluster_ip, port=port, protocol=protocol,
            node_port=node_port, external_ips=external_ips, load_balancer_vips=vips,
            load_balancer_source_ranges=ranges, session_affinity_timeout=affinity,
            external_policy_local=etp_local, internal_policy_local=itp_local,
            # healthCheckNodePort: allocated for LoadBalancer + eTP Local only (§1.3).
            health_check_node_port=32000 + index if kind == "LoadBalancer" and etp_local else 0,
            target_port=target, endpoints=eps,
        )
        cat = categorize_endpoints(eps, sp, node.name, dict(node.labels))
        out.append(attrs.evolve(sp, categorized=cat))
    return out


@st.composite
def node_states(
    draw: st.DrawFn,
    *,
    families: st.SearchStrategy[str] | None = None,
    dual_stack: st.SearchStrategy[bool] | None = None,
    configs: st.SearchStrategy[KubeProxyConfiguration] | None = None,
    zones: st.SearchStrategy[str | None] | None = None,
    max_services: int = 3,
    max_ports: int = 2,
    max_endpoints: int = 3,
) -> NodeProxyState:
    """One node's proxier snapshot for one family (see module docstring)."""
    family = draw(families if families is not None else st.sampled_from(["IPv4", "IPv6"]))
    dual = draw(dual_stack if dual_stack is not None else st.booleans())
    # topology.kubernetes.io/zone is optional on a Node; without it topology hints are
    # ignored (CategorizeEndpoints needs the node's zone).
    zone = draw(zones if zones is not None else st.sampled_from([None, "z1", "z2"]))
    node = _node(family, dual, zone)
    config = draw(configs if configs is not None
                  else proxy_configs(family=family, dual_stack=dual))
    n = draw(st.integers(1, max_services))
    node_ports: list[int] = []
    ports: list[ServicePortInfo] = []
    for i in range(n):
        ports += draw(_service(i, family=family, node=node, max_ports=max_ports,
                               max_endpoints=max_endpoints, node_ports=node_ports))
    ports.sort(key=lambda p: p.name)
    return NodeProxyState(node=node, family=family, config=config, service_ports=tuple(ports))


# --------------------------------------------------------------------------- probes


def frontends(state: NodeProxyState) -> list[tuple[str, int, str]]:
    """Every (dst, dport, proto) a Service of ``state`` answers on, plus two that no
    Service does: a non-service port of a ClusterIP and an unallocated service address."""
    plan = ADDRESS_PLAN[state.family]
    out: list[tuple[str, int, str]] = []
    for sp in state.service_ports:
        proto = sp.protocol.lower()
        out.append((sp.cluster_ip, sp.port, proto))
        out += [(ip, sp.port, proto) for ip in sp.external_ips]
        out += [(ip, sp.port, proto) for ip in sp.load_balancer_vips]
        if sp.node_port:
            out += [(ip, sp.node_port, proto) for ip in state.node.ips
                    if (":" in ip) == (state.family == "IPv6")]
            # Localhost NodePorts (IPv4 only, iptables.localhostNodePorts); ::1 is probed
            # to check that no mode answers there.
            out.append((plan["loopback"], sp.node_port, proto))
    out.append((host(plan["services"], 250), 80, "tcp"))
    return out


@st.composite
def probe_packets(
    draw: st.DrawFn, state: NodeProxyState, *,
    origins: st.SearchStrategy[str] | None = None,
) -> Packet:
    """A packet at one of ``state``'s frontends from one origin.

    Origins: ``local-pod`` / ``remote-pod`` (any pod IP, endpoints included -- a pod
    reaching its own Service is the hairpin case), ``node`` (the node's IP; ``127.0.0.1``
    for a localhost NodePort, the only source a loopback destination can have),
    ``client`` (outside the cluster, inside the LB source ranges) and ``stranger``
    (outside them).
    """
    plan = ADDRESS_PLAN[state.family]
    dst, dport, proto = draw(st.sampled_from(frontends(state)))
    origin = draw(origins if origins is not None else
                  st.sampled_from(["local-pod", "remote-pod", "node", "client", "stranger"]))
    if dst in ("127.0.0.1", "::1"):
        origin = "node"
    src = {
        "local-pod": lambda: host(plan["pod_cidr"], draw(st.integers(2, 9))),
        "remote-pod": lambda: host(plan["remote_pods"], draw(st.integers(2, 9))),
        "node": lambda: plan["loopback"] if dst in ("127.0.0.1", "::1") else plan["node_ip"],
        "client": lambda: host(plan["clients"], draw(st.integers(5, 6))),
        "stranger": lambda: host(plan["other_clients"], 7),
    }[origin]()
    return Packet(src=src, dst=dst, dport=dport, sport=draw(st.integers(32768, 60999)),
                  proto=proto)


def states_and_probes(**kwargs: Any) -> st.SearchStrategy[tuple[NodeProxyState, Packet]]:
    """``(state, packet)`` pairs: :func:`node_states` (``kwargs``) then a probe."""
    return node_states(**kwargs).flatmap(
        lambda s: st.tuples(st.just(s), probe_packets(s)))
