"""v1 Service defaulting: ``SetDefaults_Service`` (pkg/apis/core/v1/defaults.go).

What this module owns: the defaults every decoded v1 Service gets before the registry sees
it. ``ipFamilyPolicy``, ``ipFamilies`` and ``clusterIPs`` are *not* v1 defaults -- the
registry fills them at allocation time (:mod:`kservice.api.families`).
"""

from __future__ import annotations

import attrs

from kservice.models import ClientIPConfig, Service, SessionAffinityConfig

__all__ = [
    "DEFAULT_CLIENT_IP_AFFINITY_SECONDS",
    "MAX_CLIENT_IP_AFFINITY_SECONDS",
    "default_service",
    "externally_accessible",
    "needs_health_check",
]

#: v1.DefaultClientIPServiceAffinitySeconds (3 hours).
DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
#: core.MaxClientIPServiceAffinitySeconds (1 day).
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def externally_accessible(svc: Service) -> bool:
    """pkg/api/service/util.go ``ExternallyAccessible``."""
    t = svc.spec.type
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(svc.spec.external_ips))


def needs_health_check(svc: Service) -> bool:
    """``NeedsHealthCheck``: only LoadBalancer + externalTrafficPolicy Local gets an HC port."""
    return svc.spec.type == "LoadBalancer" and svc.spec.external_traffic_policy == "Local"


def default_service(svc: Service) -> Service:
    """Apply ``SetDefaults_Service`` and return the defaulted copy (the input is untouched)."""
    spec = svc.spec
    changes: dict[str, object] = {}

    affinity = spec.session_affinity or "None"
    if affinity != spec.session_affinity:
        changes["session_affinity"] = affinity
    config = spec.session_affinity_config
    if affinity == "None":
        # Defaulting silently drops a config given with None, so validation's
        # "must not be set when session affinity is None" is unreachable through v1.
        config = None
    elif affinity == "ClientIP" and (
        config is None or config.client_ip is None or config.client_ip.timeout_seconds is None
    ):
        config = SessionAffinityConfig(ClientIPConfig(DEFAULT_CLIENT_IP_AFFINITY_SECONDS))
    if config is not spec.session_affinity_config:
        changes["session_affinity_config"] = config

    svc_type = spec.type or "ClusterIP"
    if svc_type != spec.type:
        changes["type"] = svc_type

    if any(not p.protocol or p.target_port in (0, "") for p in spec.ports):
        changes["ports"] = tuple(
            attrs.evolve(p, protocol=p.protocol or "TCP",
                         target_port=p.port if p.target_port in (0, "") else p.target_port)
            if not p.protocol or p.target_port in (0, "") else p
            for p in spec.ports)

    accessible = svc_type in ("LoadBalancer", "NodePort") or (
        svc_type == "ClusterIP" and bool(spec.external_ips))
    if accessible and not spec.external_traffic_policy:
        changes["external_traffic_policy"] = "Cluster"
    if spec.internal_traffic_policy is None and svc_type in ("ClusterIP", "NodePort", "LoadBalancer"):
        changes["internal_traffic_policy"] = "Cluster"
    if svc_type == "LoadBalancer" and spec.allocate_load_balancer_node_ports is None:
        changes["allocate_load_balancer_node_ports"] = True
    if changes:
        svc = attrs.evolve(svc, spec=attrs.evolve(spec, **changes))  # type: ignore[arg-type]

    if svc_type == "LoadBalancer" and any(
        i.ip and i.ip_mode is None for i in svc.status.load_balancer_ingress
    ):
        # LoadBalancerIPMode (GA 1.32): ipMode defaults to VIP wherever an ip is set.
        ingress = tuple(
            attrs.evolve(i, ip_mode="VIP") if i.ip and i.ip_mode is None else i
            for i in svc.status.load_balancer_ingress
        )
        svc = attrs.evolve(svc, status=attrs.evolve(svc.status, load_balancer_ingress=ingress))
    return svc
