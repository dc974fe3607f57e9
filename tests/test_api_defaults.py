"""SetDefaults_Service (reference §1.1, vectors 1-7) on models, without the registry."""

from __future__ import annotations

from typing import Any

import pytest

from kservice import Service
from kservice.api import default_service, externally_accessible, needs_health_check


def model(spec: dict[str, Any], status: dict[str, Any] | None = None) -> Service:
    m: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "foo"},
                         "spec": spec}
    if status is not None:
        m["status"] = status
    return Service.from_manifest(m)


def test_plain_defaults() -> None:
    s = default_service(model({"ports": [{"port": 80}]}))
    assert (s.spec.type, s.spec.session_affinity, s.spec.internal_traffic_policy) == (
        "ClusterIP", "None", "Cluster")
    assert (s.spec.ports[0].protocol, s.spec.ports[0].target_port) == ("TCP", 80)
    # Not v1 defaults: the registry fills these at allocation time.
    assert s.spec.ip_family_policy is None and s.spec.ip_families == () and s.spec.cluster_ips == ()
    assert s.spec.external_traffic_policy is None


@pytest.mark.parametrize("target", [0, ""])
def test_unset_target_port_becomes_port(target: Any) -> None:
    s = default_service(model({"ports": [{"port": 8443, "targetPort": target}]}))
    assert s.spec.ports[0].target_port == 8443


@pytest.mark.parametrize("cfg", [None, {}, {"clientIP": {}}])
def test_client_ip_timeout_defaulted(cfg: Any) -> None:
    spec: dict[str, Any] = {"ports": [{"port": 80}], "sessionAffinity": "ClientIP"}
    if cfg is not None:
        spec["sessionAffinityConfig"] = cfg
    s = default_service(model(spec))
    assert s.spec.session_affinity_config.client_ip.timeout_seconds == 10800


def test_client_ip_explicit_timeout_kept() -> None:
    s = default_service(model({"ports": [{"port": 80}], "sessionAffinity": "ClientIP",
                               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))
    assert s.spec.session_affinity_config.client_ip.timeout_seconds == 60


def test_none_affinity_drops_config() -> None:
    s = default_service(model({"ports": [{"port": 80}],
                               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))
    assert s.spec.session_affinity_config is None


@pytest.mark.parametrize(("spec", "etp"), [
    ({"type": "NodePort"}, "Cluster"),
    ({"type": "LoadBalancer"}, "Cluster"),
    ({"type": "ClusterIP", "externalIPs": ["203.0.113.10"]}, "Cluster"),
    ({"type": "ClusterIP"}, None),
    ({"type": "ExternalName", "externalName": "x.example.com"}, None),
    ({"type": "NodePort", "externalTrafficPolicy": "Local"}, "Local"),
])
def test_external_traffic_policy(spec: dict[str, Any], etp: str | None) -> None:
    s = default_service(model({"ports": [{"port": 80}], **spec}))
    assert s.spec.external_traffic_policy == etp


def test_itp_not_defaulted_for_external_name() -> None:
    s = default_service(model({"type": "ExternalName", "externalName": "x.example.com"}))
    assert s.spec.internal_traffic_policy is None
    assert s.spec.allocate_load_balancer_node_ports is None


def test_load_balancer_defaults_and_ip_mode() -> None:
    s = default_service(model({"type": "LoadBalancer", "ports": [{"port": 80}]},
                              {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"},
                                                            {"hostname": "lb.example.com"}]}}))
    assert s.spec.allocate_load_balancer_node_ports is True
    assert [i.ip_mode for i in s.status.load_balancer_ingress] == ["VIP", None]


def test_defaulting_is_idempotent() -> None:
    s = default_service(model({"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "web"}],
                               "sessionAffinity": "ClientIP"}))
    assert default_service(s) == s


def test_helpers() -> None:
    lb_local = default_service(model({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                      "ports": [{"port": 80}]}))
    np_local = default_service(model({"type": "NodePort", "externalTrafficPolicy": "Local",
                                      "ports": [{"port": 80}]}))
    assert needs_health_check(lb_local) and not needs_health_check(np_local)
    assert externally_accessible(np_local)
