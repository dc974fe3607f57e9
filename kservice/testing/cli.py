"""Test support for the CLI and manifest tests: a stand-in Service API.

:class:`PassthroughServiceStrategy` stores Services with v1 defaulting only -- no
allocation, no validation. It lets the store, printers and manifest loader be tested
without :mod:`kservice.api`; it is NOT the apiserver, and tests of API behaviour must use
the real ``kservice.api.install_service_api``. :func:`install_service_api` picks the real
one when it is importable.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.cluster import Cluster
from kservice.models import Service

__all__ = ["PassthroughServiceStrategy", "install_service_api", "real_api_available"]


def real_api_available() -> bool:
    try:
        import kservice.api
    except ImportError:
        return False
    return hasattr(kservice.api, "install_service_api")


class PassthroughServiceStrategy:
    kind = "Service"
    api_version = "v1"
    resource = "services"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Service:
        return Service.from_manifest(data, path)

    def create(self, cluster: Cluster, obj: Service) -> Service:
        # SetDefaults_Service's type/protocol/targetPort/sessionAffinity, nothing else.
        ports = tuple(
            attrs.evolve(p, protocol=p.protocol or "TCP",
                         target_port=p.target_port if p.target_port not in (0, "") else p.port)
            for p in obj.spec.ports
        )
        changes: dict[str, Any] = {
            "type": obj.spec.type or "ClusterIP",
            "ports": ports,
            "session_affinity": obj.spec.session_affinity or "None",
            "cluster_ips": obj.spec.cluster_ips or ((obj.spec.cluster_ip,)
                                                    if obj.spec.cluster_ip else ()),
        }
        spec = attrs.evolve(obj.spec, **changes)
        return attrs.evolve(obj, spec=spec)

    def update(self, cluster: Cluster, old: Service, new: Service) -> Service:
        return self.create(cluster, new)

    def delete(self, cluster: Cluster, obj: Service) -> None:
        return None

    def rebuild(self, cluster: Cluster) -> None:
        return None


def install_service_api(cluster: Cluster) -> None:
    """The real Service API when available, else the passthrough stand-in."""
    if real_api_available():
        from kservice.api import install_service_api as real  # type: ignore[attr-defined]

        real(cluster)
    else:
        cluster.register(PassthroughServiceStrategy())
