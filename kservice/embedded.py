"""An embedded cluster: the store with every kind installed and kubeadm's default objects.

:func:`new_cluster` is what the CLI, the demo and tests start from. It installs the Service
API (``kservice.api``) and, when present, the workload kinds and controllers
(``kservice.workloads``, ``kservice.endpoints``) and Ingress (``kservice.ingress``), then seeds what a fresh kubeadm cluster
holds before anything is applied: the ``default/kubernetes`` Service (the apiserver's own,
first address of the service range, port ``https`` 443/TCP, no selector -- its endpoints are
the apiserver's) and ``kube-system/kube-dns`` (CoreDNS: ``.10`` of the range, DNS on 53 over
UDP and TCP and metrics on 9153). Optional components add their defaults through a
``seed_default(cluster)`` hook.
"""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kservice.cluster import Cluster
from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import InternalError

__all__ = ["DEFAULT_SERVICES", "new_cluster"]

# Optional components, installed in this order when importable. Workloads first: the
# endpoints controller watches Pods; Ingress validates backends against Services.
OPTIONAL_COMPONENTS = (
    "kservice.proxy.configkind", "kservice.workloads", "kservice.endpoints", "kservice.ingress",
)


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        # Only "this component is not there" is tolerated; a broken import inside an
        # existing component is a bug and must surface.
        if exc.name == name:
            return None
        raise


def _install_service_api(cluster: Cluster) -> None:
    try:
        from kservice.api import install_service_api
    except ImportError as exc:
        raise InternalError(f"the Service API (kservice.api) is not installed: {exc}") from None
    install_service_api(cluster)


def _nth_ip(cidr: str, n: int) -> str:
    import netaddr

    return str(netaddr.IPNetwork(cidr).network + n)


def default_services(config: ClusterConfig) -> list[dict[str, Any]]:
    """kubeadm's Services for ``config``: ``kubernetes`` (.1) and ``kube-dns`` (.10)."""
    primary = config.service_subnets[0]
    dns_ip = config.cluster_dns[0] if config.cluster_dns else _nth_ip(primary, 10)
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": _nth_ip(primary, 1),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                           "targetPort": 6443}],
                "type": "ClusterIP",
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "clusterIP": dns_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
                "selector": {"k8s-app": "kube-dns"},
                "type": "ClusterIP",
            },
        },
    ]


DEFAULT_SERVICES = default_services(DEFAULT_CLUSTER_CONFIG)


def new_cluster(
    config: ClusterConfig | None = None,
    *,
    seed_defaults: bool = True,
    clock: Callable[[], datetime.datetime] | None = None,
) -> Cluster:
    """A cluster with every installed kind registered and, by default, kubeadm's objects.

    ``clock`` replaces the wall clock for timestamps (a fixed one makes output reproducible).
    """
    cluster = Cluster(config or DEFAULT_CLUSTER_CONFIG) if clock is None else Cluster(
        config or DEFAULT_CLUSTER_CONFIG, clock=clock)
    _install_service_api(cluster)
    components = [m for m in (_optional(n) for n in OPTIONAL_COMPONENTS) if m is not None]
    for mod in components:
        install = getattr(mod, "install", None)
        if install is not None:
            install(cluster)
    if seed_defaults:
        with cluster.transaction():
            for manifest in default_services(cluster.config):
                cluster.create(cluster.decode(manifest))
            for mod in components:
                seed = getattr(mod, "seed_default", None)
                if seed is not None:
                    seed(cluster)
    return cluster
