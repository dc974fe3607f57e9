"""Nodes, Pods and workloads in the emulated cluster: strategies, controllers, operations.

:func:`install` registers the Node, Pod, Deployment, ReplicaSet, StatefulSet and DaemonSet
kinds and the workload controller; :func:`seed_default` builds the cluster ``kind create
cluster`` (with two workers) gives you. The operations below stand in for what kubelet and
``kubectl`` do to pods at run time.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.cluster import Cluster
from kservice.errors import InvalidInput
from kservice.models.meta import ObjectMeta
from kservice.models.workloads import (
    Container,
    ContainerPort,
    Deployment,
    LabelSelector,
    Node,
    NodeAddress,
    NodeSpec,
    NodeStatus,
    Pod,
    PodSpec,
    PodTemplate,
    WorkloadSpec,
    deep_freeze,
)
from kservice.workloads._controller import WorkloadController
from kservice.workloads._strategies import (
    DaemonSetStrategy,
    DeploymentStrategy,
    NodeStrategy,
    PodStrategy,
    ReplicaSetStrategy,
    StatefulSetStrategy,
    pick_node,
    resolve_name,
)

__all__ = [
    "KIND_NODES",
    "delete_pod",
    "install",
    "pick_node",
    "resolve_name",
    "scale",
    "seed_default",
    "set_pod_ready",
    "terminate_pod",
]

#: kind's default cluster with two workers: (name, InternalIP, control plane?).
KIND_NODES = (
    ("kind-control-plane", "172.18.0.2", True),
    ("kind-worker", "172.18.0.3", False),
    ("kind-worker2", "172.18.0.4", False),
)
KUBELET_VERSION = "v1.34.0"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.1"


def install(cluster: Cluster) -> None:
    """Register the kinds and the workload controller (idempotent)."""
    if cluster.extensions.get("workloads.installed"):
        return
    for st in (NodeStrategy(), PodStrategy(), DeploymentStrategy(), ReplicaSetStrategy(),
               StatefulSetStrategy(), DaemonSetStrategy()):
        cluster.register(st)  # type: ignore[arg-type]
    controller = WorkloadController()
    cluster.extensions["workloads.controller"] = controller
    cluster.subscribe(controller)
    cluster.extensions["workloads.installed"] = True
    try:
        from kservice.workloads._printers import register_printers
    except ImportError:  # pragma: no cover - the CLI printers are optional
        return
    register_printers()


def _kind_node(name: str, ip: str, control_plane: bool) -> Node:
    labels = {"kubernetes.io/hostname": name}
    extra: dict[str, Any] = {"providerID": f"kind://docker/kind/{name}"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        extra["taints"] = [{"effect": "NoSchedule",
                            "key": "node-role.kubernetes.io/control-plane"}]
    return Node(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=NodeSpec(extra=extra),
        status=NodeStatus(
            addresses=(NodeAddress("InternalIP", ip), NodeAddress("Hostname", name)),
            extra={"nodeInfo": {"architecture": "amd64", "containerRuntimeVersion":
                                "containerd://2.1.3", "kernelVersion": "6.8.0-generic",
                                "kubeProxyVersion": "", "kubeletVersion": KUBELET_VERSION,
                                "operatingSystem": "linux",
                                "osImage": "Debian GNU/Linux 12 (bookworm)"}},
        ),
    )


def _coredns() -> Deployment:
    labels = {"k8s-app": "kube-dns"}
    container = Container(
        name="coredns",
        ports=(ContainerPort(53, "dns", "UDP"), ContainerPort(53, "dns-tcp", "TCP"),
               ContainerPort(9153, "metrics", "TCP")),
        extra={"image": COREDNS_IMAGE, "args": ["-conf", "/etc/coredns/Corefile"],
               "imagePullPolicy": "IfNotPresent"},
    )
    spec = PodSpec(
        containers=(container,),
        node_selector={"kubernetes.io/os": "linux"},
        extra={"dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
               "serviceAccountName": "coredns",
               "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                               {"effect": "NoSchedule",
                                "key": "node-role.kubernetes.io/control-plane"}]},
    )
    return Deployment(
        metadata=ObjectMeta(name="coredns", namespace="kube-system", labels=labels),
        spec=WorkloadSpec(selector=LabelSelector(match_labels=labels), replicas=2,
                          template=PodTemplate(metadata=ObjectMeta(labels=labels), spec=spec)),
    )


def seed_default(cluster: Cluster) -> None:
    """The kind cluster: 3 nodes, CoreDNS on the control plane, a kube-proxy configuration.

    CoreDNS is created after the control-plane node and before the workers join, which is
    why kind runs both replicas on ``kind-control-plane`` (10.244.0.2 and .3). The control
    plane keeps its ``NoSchedule`` taint, so ordinary workloads land on the workers.
    """
    install(cluster)
    name, ip, cp = KIND_NODES[0]
    cluster.apply(_kind_node(name, ip, cp))
    cluster.apply(_coredns())
    for name, ip, cp in KIND_NODES[1:]:
        cluster.apply(_kind_node(name, ip, cp))
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.configkind import KubeProxyConfigObject
    from kservice.proxy.configkind import install as install_kp

    # Stored (not kept in memory) so every later command renders with the same kube-proxy.
    install_kp(cluster)
    cluster.apply(KubeProxyConfigObject.from_config(KubeProxyConfiguration(
        mode="iptables", cluster_cidr=",".join(cluster.config.pod_subnets))))


def _get(cluster: Cluster, kind: str, name: str, namespace: str) -> Any:
    return cluster.get(kind, name, namespace)


def scale(cluster: Cluster, kind: str, name: str, namespace: str, replicas: int) -> Any:
    """``kubectl scale``: set ``spec.replicas`` of a Deployment/ReplicaSet/StatefulSet."""
    if kind not in ("Deployment", "ReplicaSet", "StatefulSet"):
        raise InvalidInput(f'cannot scale kind "{kind}"',
                           hint="scalable kinds: Deployment, ReplicaSet, StatefulSet")
    obj = _get(cluster, kind, name, namespace)
    return cluster.update(attrs.evolve(obj, spec=attrs.evolve(obj.spec, replicas=replicas)))


def set_pod_ready(cluster: Cluster, name: str, namespace: str, ready: bool) -> Pod:
    """What kubelet writes when a readiness probe starts passing or failing."""
    pod: Pod = _get(cluster, "Pod", name, namespace)
    pod = pod.with_ready(ready)
    statuses = pod.status.extra.get("containerStatuses")
    if statuses:
        extra = dict(pod.status.extra)
        extra["containerStatuses"] = deep_freeze(
            [{**dict(cs), "ready": ready} for cs in statuses])
        pod = attrs.evolve(pod, status=attrs.evolve(pod.status, extra=extra))
    return cluster.put_raw(pod)  # type: ignore[no-any-return]


def terminate_pod(cluster: Cluster, name: str, namespace: str,
                  grace_period_seconds: int = 30) -> Pod:
    """A graceful delete in progress: ``deletionTimestamp`` set, the pod still serving.

    Its controller starts a replacement at once, as a ReplicaSet does.
    """
    pod: Pod = _get(cluster, "Pod", name, namespace)
    if pod.is_terminating:
        return pod
    now = cluster.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = attrs.evolve(pod.metadata, deletion_timestamp=now,
                        deletion_grace_period_seconds=grace_period_seconds)
    return cluster.put_raw(attrs.evolve(pod, metadata=meta))  # type: ignore[no-any-return]


def delete_pod(cluster: Cluster, name: str, namespace: str, graceful: bool = False) -> Any:
    """``kubectl delete pod``: graceful = :func:`terminate_pod`; otherwise gone at once
    (``--grace-period=0 --force``, or the end of a graceful delete)."""
    if graceful:
        return terminate_pod(cluster, name, namespace)
    return cluster.delete("Pod", name, namespace)
