"""Frozen models of the Kubernetes objects kservice stores."""

from kservice.models.meta import ObjectMeta, OwnerReference
from kservice.models.service import (
    ClientIPConfig,
    LoadBalancerIngress,
    PortStatus,
    Service,
    ServicePort,
    ServiceSpec,
    ServiceStatus,
    SessionAffinityConfig,
)

__all__ = [
    "ClientIPConfig",
    "LoadBalancerIngress",
    "ObjectMeta",
    "OwnerReference",
    "PortStatus",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SessionAffinityConfig",
]
