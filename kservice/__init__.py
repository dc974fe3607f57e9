"""kservice: a reference emulator of Kubernetes Service networking.

The core package does no I/O of its own (no sockets, subprocesses or backend imports): it
holds the models, the emulated apiserver (defaulting, validation, allocation), the
EndpointSlice controller and kube-proxy's per-node view. Dataplane backends and the mock
kernel live in the ``backends`` packages and are found through entry points.
"""

from kservice.backend import Backend, Rendering, available_backends, get_backend
from kservice.cluster import Cluster, Event
from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import (
    AllocationError,
    BackendError,
    FieldError,
    InternalError,
    InvalidInput,
    InvalidObject,
    KServiceError,
    NotFound,
)
from kservice.models import ObjectMeta, Service, ServicePort
from kservice.trace import Outcome, Packet, TraceResult

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CLUSTER_CONFIG",
    "AllocationError",
    "Backend",
    "BackendError",
    "Cluster",
    "ClusterConfig",
    "Event",
    "FieldError",
    "InternalError",
    "InvalidInput",
    "InvalidObject",
    "KServiceError",
    "NotFound",
    "ObjectMeta",
    "Outcome",
    "Packet",
    "Rendering",
    "Service",
    "ServicePort",
    "TraceResult",
    "available_backends",
    "get_backend",
]
