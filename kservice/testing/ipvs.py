"""Small builders for IPVS-mode tests: a service port with categorised endpoints, a node state.

They call the shared :func:`~kservice.proxy.categorize.categorize_endpoints`, so tests never
decide endpoint selection themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
)

__all__ = ["endpoint", "node_state", "service_port"]


def endpoint(ip: str, port: int, *, local: bool = False, node: str = "node-a",
             ready: bool = True, serving: bool | None = None, terminating: bool = False,
             remote: str = "node-b") -> Endpoint:
    """An endpoint on this node (``local``) or on ``remote``."""
    return Endpoint(
        ip=ip, port=port, is_local=local, ready=ready,
        serving=ready if serving is None else serving, terminating=terminating,
        node_name=node if local else remote,
    )


def service_port(ns: str, name: str, cluster_ip: str, port: int, *, port_name: str = "",
                 protocol: str = "TCP", endpoints: Iterable[Endpoint] = (),
                 node: str = "node-a", node_labels: dict[str, str] | None = None,
                 **fields: Any) -> ServicePortInfo:
    """A :class:`ServicePortInfo` whose ``categorized`` is computed for ``node``."""
    eps = tuple(sorted({e.string: e for e in endpoints}.values(), key=lambda e: e.string))
    sp = ServicePortInfo(
        name=ServicePortName(ns, name, port_name, protocol), cluster_ip=cluster_ip, port=port,
        protocol=protocol, endpoints=eps, **fields,
    )
    return attrs.evolve(sp, categorized=categorize_endpoints(eps, sp, node, node_labels or {}))


def node_state(ports: Sequence[ServicePortInfo], *, node: str = "node-a",
               family: str = "IPv4", ips: Sequence[str] = ("192.168.0.10",),
               interfaces: Sequence[tuple[str, str]] | None = None,
               config: KubeProxyConfiguration | None = None,
               options: ProxierOptions | None = None,
               pod_cidrs: Sequence[str] = ()) -> NodeProxyState:
    """One node's state; interfaces default to ``lo`` plus ``eth0`` holding each IP."""
    if interfaces is None:
        lo = "::1/128" if family == "IPv6" else "127.0.0.1/8"
        interfaces = (("lo", lo), *tuple(("eth0", f"{ip}/{64 if ':' in ip else 24}") for ip in ips))
    return NodeProxyState(
        node=NodeInfo(node, ips=tuple(ips), interfaces=tuple(interfaces),
                      pod_cidrs=tuple(pod_cidrs)),
        family=family,
        config=config or KubeProxyConfiguration(mode="ipvs"),
        options=options or ProxierOptions(),
        service_ports=tuple(sorted(ports, key=lambda p: p.name)),
    )
