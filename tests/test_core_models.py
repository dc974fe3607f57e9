"""Service and ObjectMeta read strictly from manifests and write back the same shape."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from kservice.errors import InvalidInput
from kservice.models import ObjectMeta, Service

FULL: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                 "annotations": {"a": "b"}},
    "spec": {
        "type": "LoadBalancer",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http",
                   "nodePort": 30080, "appProtocol": "kubernetes.io/h2c"}],
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.5",
        "clusterIPs": ["10.96.0.5"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "externalIPs": ["203.0.113.10"],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "externalTrafficPolicy": "Local",
        "internalTrafficPolicy": "Cluster",
        "healthCheckNodePort": 31000,
        "loadBalancerIP": "198.51.100.7",
        "loadBalancerSourceRanges": ["10.0.0.0/8"],
        "loadBalancerClass": "example.com/lb",
        "allocateLoadBalancerNodePorts": True,
        "publishNotReadyAddresses": True,
        "trafficDistribution": "PreferClose",
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7", "ipMode": "VIP"}]}},
}


def test_every_spec_field_round_trips() -> None:
    svc = Service.from_manifest(FULL)
    assert svc.to_manifest() == FULL
    assert svc.spec.ports[0].target_port == "http"
    assert svc.spec.session_affinity_config is not None
    assert svc.spec.session_affinity_config.client_ip is not None
    assert svc.spec.session_affinity_config.client_ip.timeout_seconds == 60


def test_models_are_frozen_and_change_through_evolve() -> None:
    svc = Service.from_manifest(FULL)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        svc.spec.type = "ClusterIP"  # type: ignore[misc]
    changed = svc.evolve_spec(session_affinity="None")
    assert changed.spec.session_affinity == "None"
    assert svc.spec.session_affinity == "ClientIP"
    assert hash(svc.metadata) == hash(ObjectMeta.from_manifest(FULL["metadata"]))


def test_unset_is_distinct_from_empty() -> None:
    svc = Service.from_manifest({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                                 "spec": {"ports": [{"port": 80}]}})
    assert svc.spec.type is None
    assert svc.spec.selector is None
    assert svc.spec.ports[0].protocol is None
    assert svc.spec.ports[0].target_port == 0
    # An empty selector is what the apiserver stores as nil.
    empty = Service.from_manifest({"kind": "Service", "spec": {"selector": {}}})
    assert empty.spec.selector is None


@pytest.mark.parametrize(
    ("manifest", "path", "fragment"),
    [
        ({"kind": "Service", "spec": {"ports": [{"port": "80"}]}}, "spec.ports[0].port",
         "cannot unmarshal string"),
        ({"kind": "Service", "spec": {"selecter": {}}}, "spec.selecter", "unknown field"),
        ({"kind": "Service", "metadata": {"labels": {"on": True}}}, "metadata.labels.on",
         "of type string"),
        ({"kind": "Service", "spec": {"ports": {"port": 80}}}, "spec.ports", "array"),
        ({"kind": "Service", "apiVersion": "v2"}, "apiVersion", "no matches"),
    ],
)
def test_strict_reading_names_the_field(manifest: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Service.from_manifest(manifest)
    assert info.value.path == path
    assert fragment in str(info.value)
