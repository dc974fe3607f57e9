"""Hypothesis strategies for nodes, pods, workloads, proxier endpoints and kube-proxy configs.

Every strategy shrinks toward small clusters (few nodes, few pods, no zones). Constraints cite
the Kubernetes rule they encode. Use with :func:`kservice.workloads.install` and
:func:`kservice.endpoints.install` on a :class:`~kservice.cluster.Cluster`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    IPVSConfiguration,
    KubeProxyConfiguration,
)
from kservice.proxy.types import Endpoint, join_host_port

__all__ = [
    "kube_proxy_configs",
    "label_sets",
    "node_manifests",
    "pod_manifests",
    "proxy_endpoints",
    "workload_manifests",
]

ZONE_LABEL = "topology.kubernetes.io/zone"

# DNS-1123 labels, short: shrinks to "a".
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
#: IANA_SVC_NAME port names (<= 15 chars, lowercase letters/digits/hyphens, >= 1 letter).
port_names = st.sampled_from(["http", "web", "dns", "metrics", "grpc"])


def label_sets(keys: Sequence[str] = ("app", "tier"),
               values: Sequence[str] = ("a", "b")) -> st.SearchStrategy[dict[str, str]]:
    """Small label maps over a tiny vocabulary, so selectors and pods collide often."""
    return st.dictionaries(st.sampled_from(list(keys)), st.sampled_from(list(values)),
                           max_size=len(keys))


@st.composite
def node_manifests(draw: st.DrawFn, *, max_nodes: int = 4,
                   zones: Sequence[str] = ("z1", "z2")) -> list[dict[str, Any]]:
    """1..max_nodes Nodes ``n0..``, each maybe in a zone (the ``topology.kubernetes.io/zone``
    label is optional: nodes without it make zone-aware routing fall back)."""
    n = draw(st.integers(1, max_nodes))
    out = []
    for i in range(n):
        labels: dict[str, str] = {}
        zone = draw(st.one_of(st.none(), st.sampled_from(list(zones))))
        if zone:
            labels[ZONE_LABEL] = zone
        out.append({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": f"n{i}", "labels": labels},
                    "status": {"addresses": [{"type": "InternalIP",
                                              "address": f"172.18.0.{i + 2}"}]}})
    return out


def _container_ports(draw: st.DrawFn) -> list[dict[str, Any]]:
    # Container port names must be unique within a pod; protocols TCP/UDP.
    ports = []
    for name in draw(st.lists(port_names, unique=True, max_size=2)):
        ports.append({"name": name, "containerPort": draw(st.sampled_from([8080, 9090, 53])),
                      "protocol": draw(st.sampled_from(["TCP", "TCP", "UDP"]))})
    return ports


@st.composite
def pod_manifests(draw: st.DrawFn, *, namespace: str = "default",
                  labels: st.SearchStrategy[dict[str, str]] | None = None,
                  sidecars: bool = True) -> dict[str, Any]:
    """A bare Pod: labels from a small vocabulary, named container ports, maybe a sidecar
    (init container with ``restartPolicy: Always``, whose ports count for Services)."""
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "nginx",
                                            "ports": _container_ports(draw)}]}
    if sidecars and draw(st.booleans()):
        spec["initContainers"] = [{"name": "side", "image": "envoy", "restartPolicy": "Always",
                                   "ports": _container_ports(draw)}]
    if draw(st.booleans()):
        spec["hostname"] = draw(_names)
        spec["subdomain"] = draw(st.sampled_from(["s", "other"]))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": draw(_names), "namespace": namespace,
                         "labels": draw(labels if labels is not None else label_sets())},
            "spec": spec}


@st.composite
def workload_manifests(draw: st.DrawFn, *, namespace: str = "default",
                       kinds: Sequence[str] = ("Deployment", "StatefulSet", "DaemonSet"),
                       max_replicas: int = 4) -> dict[str, Any]:
    """An apps/v1 workload whose selector equals its template labels (required by the API)."""
    kind = draw(st.sampled_from(list(kinds)))
    labels = {"app": draw(st.sampled_from(["a", "b", "c"]))}
    tmpl = {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "nginx",
                                     "ports": _container_ports(draw)}]}}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": tmpl}
    if kind != "DaemonSet":
        spec["replicas"] = draw(st.integers(0, max_replicas))
    if kind == "StatefulSet":
        spec["serviceName"] = "s"
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": draw(_names), "namespace": namespace}, "spec": spec}


@st.composite
def proxy_endpoints(draw: st.DrawFn, *, node_names: Sequence[str] = ("node-a", "node-b"),
                    zones: Sequence[str] = ("z1", "z2"), max_size: int = 6,
                    ) -> list[Endpoint]:
    """A service port's endpoint list as the proxier holds it: unique ``ip:port`` and sorted
    by that string. Conditions are the combinations the EndpointSlice controller produces
    (ready implies serving; with publishNotReadyAddresses ready may hold without serving);
    hints only on some endpoints, so topology is sometimes all-or-nothing."""
    n = draw(st.integers(0, max_size))
    ips = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n, unique=True))
    out = []
    for i in ips:
        serving = draw(st.booleans())
        terminating = draw(st.booleans())
        ready = draw(st.booleans()) if not serving else (not terminating or draw(st.booleans()))
        node = draw(st.sampled_from(list(node_names)))
        zone_hints = draw(st.sets(st.sampled_from(list(zones)), max_size=1))
        node_hints = draw(st.sets(st.sampled_from(list(node_names)), max_size=1))
        out.append(Endpoint(ip=f"10.0.0.{i}", port=80, ready=ready, serving=serving,
                            terminating=terminating, node_name=node,
                            zone_hints=zone_hints, node_hints=node_hints))
    out.sort(key=lambda e: join_host_port(e.ip, e.port))
    return out


@st.composite
def kube_proxy_configs(draw: st.DrawFn) -> KubeProxyConfiguration:
    """Valid KubeProxyConfigurations (mode, masqueradeBit 0..31, detect-local with what each
    mode requires, nodePortAddresses CIDRs or ``primary`` alone, IPVS schedulers)."""
    mode = draw(st.sampled_from(["iptables", "ipvs", "nftables"]))
    detect = draw(st.sampled_from(["ClusterCIDR", "NodeCIDR", "BridgeInterface",
                                   "InterfaceNamePrefix"]))
    dl = DetectLocalConfiguration(
        bridge_interface="cbr0" if detect == "BridgeInterface" else "",
        interface_name_prefix="veth" if detect == "InterfaceNamePrefix" else "",
    )
    npa = draw(st.sampled_from([(), ("primary",), ("172.18.0.0/16",),
                                ("127.0.0.0/8", "172.18.0.0/16")]))
    return KubeProxyConfiguration(
        mode=mode,
        cluster_cidr=draw(st.sampled_from(["", "10.244.0.0/16", "10.244.0.0/16,fd00:10:244::/56"])),
        detect_local_mode=detect,
        detect_local=dl,
        iptables=IPTablesConfiguration(masquerade_bit=draw(st.integers(0, 31)),
                                       masquerade_all=draw(st.booleans())),
        ipvs=IPVSConfiguration(scheduler=draw(st.sampled_from(["", "rr", "wrr", "sh"]))),
        node_port_addresses=npa,
    )
