"""Test-only helpers for the DNS tests: a store that keeps objects exactly as given.

The DNS zone reads stored objects only, so these tests put Services, EndpointSlices and
Pods into a :class:`~kservice.cluster.Cluster` through a pass-through strategy, without the
apiserver pipeline (allocation, controllers) that other modules own and test.
"""

from __future__ import annotations

from typing import Any

from kservice.cluster import Cluster
from kservice.config import ClusterConfig
from kservice.models import Service
from kservice.models.discovery import EndpointSlice
from kservice.models.workloads import Pod


class Passthrough:
    def __init__(self, model: Any, resource: str) -> None:
        self.model = model
        self.kind = model.kind
        self.api_version = model.api_version
        self.resource = resource
        self.namespaced = True

    def decode(self, data: Any, path: str = "") -> Any:
        return self.model.from_manifest(data, path)

    def create(self, cluster: Cluster, obj: Any) -> Any:
        return obj

    def update(self, cluster: Cluster, old: Any, new: Any) -> Any:
        return new

    def delete(self, cluster: Cluster, obj: Any) -> None:
        return None

    def rebuild(self, cluster: Cluster) -> None:
        return None


def make_cluster(*manifests: dict[str, Any], config: ClusterConfig | None = None) -> Cluster:
    c = Cluster(config or ClusterConfig())
    for model, res in ((Service, "services"), (EndpointSlice, "endpointslices"), (Pod, "pods")):
        c.register(Passthrough(model, res))
    for m in manifests:
        add(c, m)
    return c


def add(c: Cluster, manifest: dict[str, Any]) -> Any:
    obj = c.decode(manifest)
    return c.apply(obj)[0]


def svc(name: str, ns: str = "default", *, cluster_ip: str | None = None,
        cluster_ips: list[str] | None = None, ports: list[dict[str, Any]] | None = None,
        type: str = "ClusterIP", external_name: str | None = None,
        selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = cluster_ips or [cluster_ip]
    if ports is not None:
        spec["ports"] = ports
    if external_name is not None:
        spec["externalName"] = external_name
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def slice_(svc_name: str, name: str | None = None, ns: str = "default", *,
           address_type: str = "IPv4", endpoints: list[dict[str, Any]] | None = None,
           ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc_name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": address_type, "endpoints": endpoints or [],
            "ports": ports or []}


def ep(ip: str | list[str], *, ready: bool | None = True, hostname: str | None = None,
       pod: str | None = None, ns: str = "default") -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip] if isinstance(ip, str) else ip,
                           "conditions": {} if ready is None else {"ready": ready}}
    if hostname is not None:
        out["hostname"] = hostname
    if pod is not None:
        out["targetRef"] = {"kind": "Pod", "name": pod, "namespace": ns}
    return out


def pod(name: str, ip: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
