"""kservice.proxy.snapshot: node state from a live cluster; incremental tracker; change sets."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kservice import endpoints, workloads
from kservice.api import install_service_api
from kservice.cluster import Cluster
from kservice.models import Service
from kservice.proxy.raw import state_from_objects
from kservice.proxy.snapshot import ChangeTracker, NodeStateTracker, build_node_state


def kind() -> Cluster:
    c = Cluster()
    install_service_api(c)
    workloads.install(c)
    endpoints.install(c)
    workloads.seed_default(c)
    return c


def svc(c: Cluster, name: str, **spec: Any) -> Service:
    body: dict[str, Any] = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80,
                                                                  "targetPort": 8080}]}
    body.update(spec)
    return c.create(Service.from_manifest({"apiVersion": "v1", "kind": "Service",
                                           "metadata": {"name": name, "namespace": "default"},
                                           "spec": body}))


def deploy(c: Cluster, name: str, replicas: int) -> None:
    c.apply(c.decode({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": name, "namespace": "default"},
                      "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                               "template": {"metadata": {"labels": {"app": name}},
                                            "spec": {"containers": [{"name": "c"}]}}}}))


def test_live_state_equals_raw_state_of_the_same_objects() -> None:
    c = kind()
    svc(c, "web", type="NodePort", externalTrafficPolicy="Local")
    deploy(c, "web", 3)
    live = build_node_state(c, "kind-worker", "IPv4")
    dump = [o.to_manifest() for kind_ in ("Service", "EndpointSlice", "Node")
            for o in c.list(kind_)]
    # A real cluster stores the default ServiceCIDR the apiserver keeps for its flag range
    # (`kubectl get servicecidrs`); kube-proxy learns the service ranges from it.
    dump.append({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                 "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]}})
    # through YAML, as `kubectl get svc,endpointslices,nodes -A -o yaml` would hand it over
    raw = state_from_objects(yaml.safe_load(yaml.safe_dump({"kind": "List", "items": dump})),
                             "kind-worker", "IPv4", live.config)
    assert raw == live
    assert live.service_cidrs == ("10.96.0.0/12",)
    (port,) = [p for p in live.service_ports if p.name.name == "web"]
    assert port.external_policy_local and port.node_port >= 30000
    local = {e.ip for e in port.categorized.local}
    pods = {p.status.pod_ip for p in c.list("Pod", "default") if p.spec.node_name == "kind-worker"}
    assert local == pods and local
    assert live.node.ips == ("172.18.0.3",) and live.config.cluster_cidr == "10.244.0.0/16"


def test_tracker_follows_readiness_and_change_set_names_the_port() -> None:
    c = kind()
    svc(c, "web")
    svc(c, "other")
    deploy(c, "web", 2)
    deploy(c, "other", 1)
    tr = NodeStateTracker(c, "kind-worker", "IPv4")
    before = tr.state()
    assert tr.state() is before  # cached until something changes
    pod = c.list("Pod", "default")[0]
    app = pod.metadata.labels["app"]
    workloads.set_pod_ready(c, pod.metadata.name, "default", False)
    after = tr.state()
    assert after == build_node_state(c, "kind-worker", "IPv4")
    changes = ChangeTracker.changes(before, after)
    assert {(n.namespace, n.name) for n in changes.service_ports} == {("default", app)}
    assert changes.services == {("default", app)} and not changes.full
    assert ChangeTracker.changes(after, after).empty
    assert ChangeTracker.changes(None, after).full


def test_tracker_sees_service_and_node_changes() -> None:
    c = kind()
    tr = NodeStateTracker(c, "kind-worker", "IPv4")
    n0 = len(tr.state().service_ports)
    s = svc(c, "web")
    assert len(tr.state().service_ports) == n0 + 1
    c.delete("Service", s.metadata.name, "default")
    assert len(tr.state().service_ports) == n0
    node = c.get("Node", "kind-worker", "")
    import attrs

    c.update(attrs.evolve(node, metadata=attrs.evolve(
        node.metadata, labels={**node.metadata.labels, "topology.kubernetes.io/zone": "z1"})))
    assert tr.state().node.zone == "z1"


@settings(max_examples=15, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["scale", "ready", "svc"]),
                              st.sampled_from(["a", "b"]), st.integers(0, 3)), max_size=10))
def test_incremental_tracker_equals_full_rebuild(ops: list[tuple[str, str, int]]) -> None:
    c = kind()
    for name in ("a", "b"):
        svc(c, name)
        deploy(c, name, 1)
    tr = NodeStateTracker(c, "kind-worker2", "IPv4")
    tr.state()
    for op, name, n in ops:
        if op == "scale":
            workloads.scale(c, "Deployment", name, "default", n)
        elif op == "ready":
            pods = [p for p in c.list("Pod", "default") if p.metadata.labels["app"] == name]
            if pods:
                workloads.set_pod_ready(c, pods[0].metadata.name, "default", n % 2 == 0)
        else:
            s = c.get("Service", name, "default")
            c.update(s.evolve_spec(internal_traffic_policy="Local" if n % 2 else "Cluster"))
        assert tr.state() == build_node_state(c, "kind-worker2", "IPv4")
