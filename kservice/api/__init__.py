"""The emulated kube-apiserver's Service API (pinned to v1.34).

Defaulting (:mod:`~kservice.api.defaults`), validation with upstream's exact messages
(:mod:`~kservice.api.validation`), dual-stack field initialisation
(:mod:`~kservice.api.families`), the ClusterIP and NodePort allocators
(:mod:`~kservice.api.ipalloc`, :mod:`~kservice.api.portalloc`), ServiceCIDR objects
(:mod:`~kservice.api.servicecidr`), the Service registry pipeline
(:mod:`~kservice.api.services`) and kubeadm ClusterConfiguration reading
(:mod:`~kservice.api.clusterconfig`).

:func:`install_service_api` registers the Service and ServiceCIDR strategies on a
:class:`~kservice.cluster.Cluster` and keeps their allocators in ``cluster.extensions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kservice.api.clusterconfig import load_cluster_config, read_cluster_configuration
from kservice.api.defaults import default_service, externally_accessible, needs_health_check
from kservice.api.families import init_ip_family_fields
from kservice.api.ipalloc import IPRangeAllocator, MismatchedNetwork, calculate_range_offset
from kservice.api.portalloc import PortAllocator, calculate_port_range_offset
from kservice.api.servicecidr import (
    MetaAllocator,
    ServiceCIDR,
    ServiceCIDRStrategy,
    ip_address_manifests,
    validate_service_cidr,
)
from kservice.api.services import (
    STATE_KEY,
    ServiceAPIState,
    ServiceStrategy,
    UnknownServerError,
    allocator_state,
    drop_type_dependent_fields,
    kubernetes_service,
    normalize_cluster_ips,
    patch_allocated_values,
)
from kservice.api.validation import (
    is_headless,
    service_warnings,
    validate_service,
    validate_service_cluster_ips_related_fields,
    validate_service_update,
)

if TYPE_CHECKING:
    from kservice.cluster import Cluster

__all__ = [
    "STATE_KEY",
    "IPRangeAllocator",
    "MetaAllocator",
    "MismatchedNetwork",
    "PortAllocator",
    "ServiceAPIState",
    "ServiceCIDR",
    "ServiceCIDRStrategy",
    "ServiceStrategy",
    "UnknownServerError",
    "allocator_state",
    "calculate_port_range_offset",
    "calculate_range_offset",
    "create_kubernetes_service",
    "default_service",
    "drop_type_dependent_fields",
    "externally_accessible",
    "init_ip_family_fields",
    "install_service_api",
    "ip_address_manifests",
    "is_headless",
    "kubernetes_service",
    "load_cluster_config",
    "needs_health_check",
    "normalize_cluster_ips",
    "patch_allocated_values",
    "read_cluster_configuration",
    "service_warnings",
    "validate_service",
    "validate_service_cidr",
    "validate_service_cluster_ips_related_fields",
    "validate_service_update",
]


def install_service_api(cluster: Cluster, *, legacy_bitmap: bool = False) -> None:
    """Register the Service and ServiceCIDR strategies; build allocators from the store.

    Idempotent. Allocators live in ``cluster.extensions[STATE_KEY]`` and are re-derived
    from stored objects on every :meth:`Cluster.rebuild` (as the repair controllers do).
    ``legacy_bitmap=True`` models a pre-1.34 apiserver whose flag range is also written to
    the bitmap allocator (20-bit range cap; IPv6 capped at 65536 addresses).
    """
    if "Service" in cluster.kinds and STATE_KEY in cluster.extensions:
        return
    cluster.extensions[STATE_KEY] = ServiceAPIState.from_config(
        cluster.config, legacy_bitmap=legacy_bitmap)
    cidrs = ServiceCIDRStrategy(STATE_KEY)
    cluster.register(ServiceStrategy())
    cluster.register(cidrs)
    cluster.subscribe(cidrs.on_event)
    ServiceStrategy().rebuild(cluster)


def create_kubernetes_service(cluster: Cluster) -> object:
    """Create ``default/kubernetes`` (first address of the primary range), as the apiserver does."""
    existing = cluster.find("Service", "kubernetes", "default")
    if existing is not None:
        return existing
    return cluster.create(kubernetes_service(cluster.config))
