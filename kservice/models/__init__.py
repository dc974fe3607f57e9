"""Frozen models of the Kubernetes objects kservice stores."""

from kservice.models.discovery import Endpoints, EndpointSlice
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
from kservice.models.workloads import DaemonSet, Deployment, Node, Pod, ReplicaSet, StatefulSet

__all__ = [
    "ClientIPConfig",
    "DaemonSet",
    "Deployment",
    "EndpointSlice",
    "Endpoints",
    "LoadBalancerIngress",
    "Node",
    "ObjectMeta",
    "OwnerReference",
    "Pod",
    "PortStatus",
    "ReplicaSet",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SessionAffinityConfig",
    "StatefulSet",
]
