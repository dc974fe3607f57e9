"""The shared top-level read (kservice/models/_toplevel.py) as every kind sees it.

Each kind's header errors are pinned here word for word (kind mismatch, then the
RESTMapper's ``no matches for kind`` with that kind's own hint), together with the read
order a user's error depends on: the header before the body, the body before the
unknown-field check.
"""

from __future__ import annotations

from typing import Any

import pytest

from kservice.api.servicecidr import ServiceCIDR
from kservice.errors import InvalidInput
from kservice.ingress.models import Ingress, IngressClass
from kservice.models import (
    DaemonSet,
    Deployment,
    Endpoints,
    EndpointSlice,
    Node,
    Pod,
    ReplicaSet,
    Service,
    StatefulSet,
)

#: (model, served apiVersion, hint on an unknown apiVersion). Service and ServiceCIDR keep
#: their older plural wording; the rest use the generic one.
KINDS: list[tuple[Any, str, str]] = [
    (Service, "v1", 'Services are apiVersion "v1"'),
    (Node, "v1", 'Node is apiVersion "v1"'),
    (Pod, "v1", 'Pod is apiVersion "v1"'),
    (Deployment, "apps/v1", 'Deployment is apiVersion "apps/v1"'),
    (ReplicaSet, "apps/v1", 'ReplicaSet is apiVersion "apps/v1"'),
    (StatefulSet, "apps/v1", 'StatefulSet is apiVersion "apps/v1"'),
    (DaemonSet, "apps/v1", 'DaemonSet is apiVersion "apps/v1"'),
    (EndpointSlice, "discovery.k8s.io/v1", 'EndpointSlice is apiVersion "discovery.k8s.io/v1"'),
    (Endpoints, "v1", 'Endpoints is apiVersion "v1"'),
    (Ingress, "networking.k8s.io/v1", 'Ingress is apiVersion "networking.k8s.io/v1"'),
    (IngressClass, "networking.k8s.io/v1", 'IngressClass is apiVersion "networking.k8s.io/v1"'),
    (ServiceCIDR, "networking.k8s.io/v1", 'ServiceCIDRs are apiVersion "networking.k8s.io/v1"'),
]
IDS = [k[0].__name__ for k in KINDS]


def _manifest(model: Any, version: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": version, "kind": model.__name__,
            "metadata": {"name": "x", "namespace": "ns", "labels": {"app": "a"}}, **extra}


@pytest.mark.parametrize(("model", "version", "hint"), KINDS, ids=IDS)
def test_wrong_kind_is_named(model: Any, version: str, hint: str) -> None:
    data = _manifest(model, version)
    data["kind"] = "Frobber"
    with pytest.raises(InvalidInput) as ei:
        model.from_manifest(data)
    assert ei.value.message == f'expected kind "{model.__name__}", got "Frobber"'
    assert ei.value.path == "kind"


@pytest.mark.parametrize(("model", "version", "hint"), KINDS, ids=IDS)
def test_unserved_version_names_kind_version_and_hint(model: Any, version: str,
                                                      hint: str) -> None:
    with pytest.raises(InvalidInput) as ei:
        model.from_manifest(_manifest(model, "example.com/v9"))
    assert ei.value.message == f'no matches for kind "{model.__name__}" in version "example.com/v9"'
    assert ei.value.path == "apiVersion"
    assert ei.value.hint == hint


@pytest.mark.parametrize(("model", "version", "hint"), KINDS, ids=IDS)
def test_header_is_checked_before_the_body(model: Any, version: str, hint: str) -> None:
    # A bad version and a bad metadata type: the version is what the user hears about.
    data = _manifest(model, "example.com/v9")
    data["metadata"] = 7
    with pytest.raises(InvalidInput) as ei:
        model.from_manifest(data)
    assert ei.value.path == "apiVersion"


@pytest.mark.parametrize(("model", "version", "hint"), KINDS, ids=IDS)
def test_body_errors_come_before_unknown_fields(model: Any, version: str, hint: str) -> None:
    data = _manifest(model, version, zzz=1)
    data["metadata"] = 7
    with pytest.raises(InvalidInput) as ei:
        model.from_manifest(data)
    assert ei.value.path == "metadata"
    data["metadata"] = {"name": "x"}
    with pytest.raises(InvalidInput) as ei:
        model.from_manifest(data, "items[3]")
    assert ei.value.message == 'unknown field "items[3].zzz"'


@pytest.mark.parametrize(("model", "version", "hint"), KINDS, ids=IDS)
def test_absent_header_reads_and_is_written_back(model: Any, version: str, hint: str) -> None:
    data = _manifest(model, version)
    del data["apiVersion"], data["kind"]
    obj = model.from_manifest(data)
    out = obj.to_manifest()
    assert (out["apiVersion"], out["kind"]) == (version, model.__name__)
    assert out["metadata"]["name"] == "x"
    assert (obj.name, obj.namespace, dict(obj.labels)) == ("x", "ns", {"app": "a"})
    # The written manifest reads back to the same value.
    assert model.from_manifest(out) == obj


def test_beta_versions_each_kind_serves() -> None:
    # ServiceCIDR was served as v1beta1/v1alpha1 before GA; the Ingress beta shapes are
    # refused (removed in v1.22) unless a legacy read is asked for.
    for v in ("networking.k8s.io/v1beta1", "networking.k8s.io/v1alpha1"):
        assert ServiceCIDR.from_manifest(_manifest(ServiceCIDR, v)).cidrs == ()
    with pytest.raises(InvalidInput) as ei:
        Ingress.from_manifest(_manifest(Ingress, "extensions/v1beta1"))
    assert ei.value.hint is not None and "removed in Kubernetes v1.22" in ei.value.hint
    assert Ingress.from_manifest(_manifest(Ingress, "extensions/v1beta1"),
                                 allow_legacy=True).name == "x"
    with pytest.raises(InvalidInput):
        IngressClass.from_manifest(_manifest(IngressClass, "networking.k8s.io/v1beta1"))


def test_head_key_order_is_the_apiservers() -> None:
    # apiVersion, kind, metadata first: the order `kubectl get -o json` prints (sorted keys).
    for model in (Service, Node, Pod, Deployment, Endpoints, Ingress, IngressClass, ServiceCIDR):
        keys = list(model.from_manifest(_manifest(model, model.api_version)).to_manifest())
        assert keys[:3] == ["apiVersion", "kind", "metadata"], model.__name__
