"""Turn a failing (node state, packet) into a reproducer a person can run.

:func:`state_manifests` writes a :class:`~kservice.proxy.types.NodeProxyState` back as the
objects kube-proxy reads -- the Services (with their clusterIP, nodePorts, externalIPs,
LB ingress in ``status``), one EndpointSlice per (Service, target port), the Node and a
KubeProxyConfiguration -- such that :func:`kservice.proxy.raw.state_from_objects` reads them
back into an **equal** state (a property test proves it, ``tests/test_equivalence.py``).
:func:`reproducer` adds the packet and the command lines; :func:`repro_yaml` is the text.

What cannot round-trip, said plainly rather than silently dropped:

* ``NodeInfo.interfaces`` (a Node object has no interface list): written as a YAML comment
  and as ``--iface`` flags of the dump-tracing command;
* :class:`~kservice.proxy.types.ProxierOptions` and ``service_cidrs`` (command-line/state of
  the proxier, not objects): must be the defaults, else :class:`UnrepresentableState`;
* ports of one Service that disagree on a Service-level field (clusterIP, policies, ...):
  impossible through the API, refused with :class:`UnrepresentableState`.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

from kservice.errors import InvalidInput
from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    IPVSConfiguration,
    KubeProxyConfiguration,
    NFTablesConfiguration,
)
from kservice.proxy.raw import LABEL_SERVICE_NAME
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    join_host_port,
)
from kservice.trace import Packet

__all__ = [
    "Reproducer",
    "UnrepresentableState",
    "config_manifest",
    "node_manifest",
    "repro_yaml",
    "reproducer",
    "state_manifests",
]


class UnrepresentableState(InvalidInput):
    """The state holds something no set of API objects can express."""


# Service-level fields ``serviceport.go`` copies onto every port of a Service.
_SERVICE_FIELDS = ("cluster_ip", "external_ips", "load_balancer_vips",
                   "load_balancer_source_ranges", "session_affinity_timeout",
                   "external_policy_local", "internal_policy_local", "health_check_node_port")


def config_manifest(cfg: KubeProxyConfiguration) -> dict[str, Any]:
    """A ``kubeproxy.config.k8s.io/v1alpha1`` document that loads back into ``cfg``.

    Every field is written (defaults included): the file then states the whole
    configuration the failure depends on, not only what differs from today's defaults.
    """
    ipt: IPTablesConfiguration = cfg.iptables
    nft: NFTablesConfiguration = cfg.nftables
    ipvs: IPVSConfiguration = cfg.ipvs
    dl: DetectLocalConfiguration = cfg.detect_local
    out: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": cfg.mode,
        "clusterCIDR": cfg.cluster_cidr,
        "detectLocalMode": cfg.detect_local_mode,
        "detectLocal": {"bridgeInterface": dl.bridge_interface,
                        "interfaceNamePrefix": dl.interface_name_prefix},
        "iptables": {"masqueradeAll": ipt.masquerade_all, "masqueradeBit": ipt.masquerade_bit,
                     "localhostNodePorts": ipt.localhost_node_ports,
                     "syncPeriod": ipt.sync_period, "minSyncPeriod": ipt.min_sync_period},
        "nftables": {"masqueradeAll": nft.masquerade_all, "masqueradeBit": nft.masquerade_bit,
                     "syncPeriod": nft.sync_period, "minSyncPeriod": nft.min_sync_period},
        "ipvs": {"scheduler": ipvs.scheduler, "strictARP": ipvs.strict_arp,
                 "excludeCIDRs": list(ipvs.exclude_cidrs), "syncPeriod": ipvs.sync_period,
                 "minSyncPeriod": ipvs.min_sync_period, "tcpTimeout": ipvs.tcp_timeout,
                 "tcpFinTimeout": ipvs.tcp_fin_timeout, "udpTimeout": ipvs.udp_timeout},
        "nodePortAddresses": list(cfg.node_port_addresses),
        "hostnameOverride": cfg.hostname_override,
        "conntrack": {"tcpBeLiberal": cfg.conntrack_tcp_be_liberal},
    }
    return out


def node_manifest(node: NodeInfo) -> dict[str, Any]:
    """The Node as kube-proxy reads it: InternalIP addresses in order, ``podCIDRs``."""
    meta: dict[str, Any] = {"name": node.name}
    if node.labels:
        meta["labels"] = dict(node.labels)
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": meta}
    if node.pod_cidrs:
        out["spec"] = {"podCIDRs": list(node.pod_cidrs)}
    if node.ips:
        out["status"] = {"addresses": [{"type": "InternalIP", "address": ip}
                                       for ip in node.ips]}
    return out


def _service_type(ports: list[ServicePortInfo]) -> str:
    first = ports[0]
    if first.load_balancer_vips or first.load_balancer_source_ranges \
            or first.health_check_node_port:
        return "LoadBalancer"
    if any(p.node_port for p in ports):
        return "NodePort"
    return "ClusterIP"


def _service_manifest(ns: str, name: str, ports: list[ServicePortInfo], family: str,
                      ) -> dict[str, Any]:
    first = ports[0]
    for p in ports[1:]:
        for f in _SERVICE_FIELDS:
            if getattr(p, f) != getattr(first, f):
                raise UnrepresentableState(
                    f"ports of Service {ns}/{name} disagree on {f} "
                    f"({getattr(first, f)!r} vs {getattr(p, f)!r}); one Service has one value")
    svc_type = _service_type(ports)
    if first.external_policy_local and svc_type == "ClusterIP" and not first.external_ips:
        raise UnrepresentableState(
            f"{ns}/{name}: externalTrafficPolicy Local on a Service that is not externally "
            "accessible (no nodePort, LB or externalIP)")
    spec: dict[str, Any] = {
        "type": svc_type,
        "clusterIP": first.cluster_ip,
        "clusterIPs": [first.cluster_ip],
        "ipFamilies": [family],
        "ports": [],
    }
    for p in ports:
        port: dict[str, Any] = {"port": p.port, "protocol": p.protocol}
        if p.name.port:
            port["name"] = p.name.port
        if p.target_port not in (0, ""):
            port["targetPort"] = p.target_port
        if p.node_port:
            port["nodePort"] = p.node_port
        spec["ports"].append(port)
    if first.external_ips:
        spec["externalIPs"] = list(first.external_ips)
    if first.load_balancer_source_ranges:
        spec["loadBalancerSourceRanges"] = list(first.load_balancer_source_ranges)
    if first.session_affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {
            "clientIP": {"timeoutSeconds": first.session_affinity_timeout}}
    if svc_type != "ClusterIP" or first.external_ips:
        spec["externalTrafficPolicy"] = "Local" if first.external_policy_local else "Cluster"
    spec["internalTrafficPolicy"] = "Local" if first.internal_policy_local else "Cluster"
    if first.health_check_node_port:
        spec["healthCheckNodePort"] = first.health_check_node_port
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": ns}, "spec": spec}
    if first.load_balancer_vips:
        out["status"] = {"loadBalancer": {"ingress": [{"ip": ip}
                                                      for ip in first.load_balancer_vips]}}
    return out


def _slice_endpoint(ep: Endpoint, node: NodeInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "addresses": [ep.ip],
        "conditions": {"ready": ep.ready, "serving": ep.serving,
                       "terminating": ep.terminating},
    }
    node_name = ep.node_name
    if node_name is None and ep.is_local:
        node_name = node.name
    if (node_name == node.name) != ep.is_local:
        raise UnrepresentableState(
            f"endpoint {ep.string}: is_local={ep.is_local} but nodeName={node_name!r} "
            f"(kube-proxy derives locality from nodeName == {node.name!r})")
    if node_name is not None:
        out["nodeName"] = node_name
    if ep.zone is not None:
        out["zone"] = ep.zone
    if ep.zone_hints or ep.node_hints:
        hints: dict[str, Any] = {}
        if ep.zone_hints:
            hints["forZones"] = [{"name": z} for z in sorted(ep.zone_hints)]
        if ep.node_hints:
            hints["forNodes"] = [{"name": n} for n in sorted(ep.node_hints)]
        out["hints"] = hints
    return out


def _slices(ns: str, name: str, ports: list[ServicePortInfo], node: NodeInfo, family: str,
            ) -> list[dict[str, Any]]:
    """One slice per (service port, endpoint port): a slice's ports apply to all of its
    endpoints, and one service port's endpoints may listen on different ports."""
    out = []
    for p in ports:
        by_port: dict[int, list[Endpoint]] = {}
        for ep in p.endpoints:
            by_port.setdefault(ep.port, []).append(ep)
        for target, eps in sorted(by_port.items()):
            suffix = (p.name.port or "") + "-" + p.protocol.lower() + f"-{target}"
            out.append({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-{suffix}".strip("-"), "namespace": ns,
                             "labels": {LABEL_SERVICE_NAME: name}},
                "addressType": family,
                "ports": [{"name": p.name.port, "port": target, "protocol": p.protocol}],
                "endpoints": [_slice_endpoint(ep, node) for ep in eps],
            })
    return out


def state_manifests(state: NodeProxyState) -> list[dict[str, Any]]:
    """KubeProxyConfiguration, Node, then each Service followed by its EndpointSlices."""
    if state.options != ProxierOptions():
        raise UnrepresentableState("non-default ProxierOptions are kube-proxy flags, not "
                                   f"objects: {state.options}")
    if state.service_cidrs:
        raise UnrepresentableState("service_cidrs come from ServiceCIDR objects, which "
                                   "state_from_objects does not read")
    docs: list[dict[str, Any]] = [config_manifest(state.config), node_manifest(state.node)]
    groups: dict[tuple[str, str], list[ServicePortInfo]] = {}
    for sp in state.service_ports:
        groups.setdefault((sp.name.namespace, sp.name.name), []).append(sp)
    for (ns, name), ports in groups.items():
        docs.append(_service_manifest(ns, name, ports, state.family))
        docs += _slices(ns, name, ports, state.node, state.family)
    return docs


@attrs.frozen
class Reproducer:
    """Everything needed to replay one failure."""

    manifests: tuple[dict[str, Any], ...]
    packet: Packet
    node: str
    family: str
    mode: str
    #: ``kservice trace`` on the manifests (the brief's form).
    command: str
    #: Works today: render the node's rules from the raw manifests, trace the dump.
    dump_commands: tuple[str, ...]
    #: Caveats (e.g. interfaces that are not part of any object).
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Services + endpoints: how big the reproducer is (for shrinking checks)."""
        svcs = [m for m in self.manifests if m["kind"] == "Service"]
        eps = sum(len(m["endpoints"]) for m in self.manifests if m["kind"] == "EndpointSlice")
        return len(svcs) + eps

    def yaml(self) -> str:
        head = [f"# kservice reproducer: node {self.node}, {self.family}, mode {self.mode}",
                f"# packet: {self.packet.proto} {join_host_port(self.packet.src, self.packet.sport)}"
                f" -> {join_host_port(self.packet.dst, self.packet.dport)}",
                f"#   {self.command}"]
        head += [f"#   {c}" for c in self.dump_commands]
        head += [f"# NOTE: {n}" for n in self.notes]
        body = yaml.safe_dump_all(list(self.manifests), sort_keys=False,
                                  default_flow_style=False)
        return "\n".join(head) + "\n" + body


_DUMP_FORMAT = {"iptables": ("save", "--rules"), "nftables": ("ruleset", "--nft")}


def reproducer(state: NodeProxyState, packet: Packet, mode: str = "iptables",
               *, filename: str = "repro.yaml") -> Reproducer:
    """The manifests for ``state`` plus the command lines replaying ``packet`` in ``mode``."""
    manifests = state_manifests(state)
    src = join_host_port(packet.src, packet.sport)
    dst = join_host_port(packet.dst, packet.dport)
    where = f"--node {state.node.name} --src {src} --dst {dst} --proto {packet.proto}"
    command = f"kservice trace --raw -f {filename} --mode {mode} {where}"
    node_flags = " ".join([f"--node-ip {ip}" for ip in state.node.ips]
                          + [f"--pod-cidr {c}" for c in state.node.pod_cidrs]
                          + [f"--iface {n}={c}" for n, c in state.node.interfaces])
    dumps: tuple[str, ...] = ()
    if mode in _DUMP_FORMAT:
        fmt, flag = _DUMP_FORMAT[mode]
        dump = f"{state.node.name}.{fmt}"
        dumps = (
            f"kservice render --raw -f {filename} --mode {mode} --node {state.node.name} "
            f"--family {state.family} --format {fmt} > {dump}",
            f"kservice trace {flag} {dump} {node_flags} --src {src} --dst {dst} "
            f"--proto {packet.proto}",
        )
    notes = []
    if state.node.interfaces:
        notes.append("the node's interfaces are not part of the Node object: "
                     + ", ".join(f"{n}={c}" for n, c in state.node.interfaces))
    return Reproducer(manifests=tuple(manifests), packet=packet, node=state.node.name,
                      family=state.family, mode=mode, command=command, dump_commands=dumps,
                      notes=tuple(notes))


def repro_yaml(state: NodeProxyState, packet: Packet, mode: str = "iptables") -> str:
    """:func:`reproducer` as text; never raises (a failure report must not fail)."""
    try:
        return reproducer(state, packet, mode).yaml()
    except InvalidInput as exc:
        return f"# no manifest reproducer: {exc}\n"
