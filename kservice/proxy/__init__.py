"""kube-proxy's view of the cluster: configuration, endpoint categorisation, node snapshots."""

from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    CategorizedEndpoints,
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
    join_host_port,
)

__all__ = [
    "CategorizedEndpoints",
    "Endpoint",
    "KubeProxyConfiguration",
    "NodeInfo",
    "NodeProxyState",
    "ProxierOptions",
    "ServicePortInfo",
    "ServicePortName",
    "categorize_endpoints",
    "join_host_port",
]
