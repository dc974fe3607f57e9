"""Workload strategies and controllers: kind seed, scheduling, IPAM, expansion, scaling."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kservice import workloads
from kservice.cluster import Cluster
from kservice.config import ClusterConfig
from kservice.errors import InvalidObject
from kservice.models.meta import ObjectMeta
from kservice.models.workloads import Container, Node, Pod, PodSpec
from kservice.testing.workloads import workload_manifests

SUFFIX = re.compile(r"^[bcdfghjklmnpqrstvwxz2456789]{5}$")


def kind_cluster(seed: int = 0) -> Cluster:
    c = Cluster(ClusterConfig(seed=seed))
    workloads.seed_default(c)
    return c


def test_seed_default_is_kind() -> None:
    c = kind_cluster()
    nodes = {n.metadata.name: n for n in c.list("Node")}
    assert {n: (x.addresses_of("InternalIP"), x.pod_cidrs) for n, x in nodes.items()} == {
        "kind-control-plane": (("172.18.0.2",), ("10.244.0.0/24",)),
        "kind-worker": (("172.18.0.3",), ("10.244.1.0/24",)),
        "kind-worker2": (("172.18.0.4",), ("10.244.2.0/24",)),
    }
    assert all(n.zone is None for n in nodes.values())
    pods = c.list("Pod", "kube-system")
    assert len(pods) == 2
    for p in pods:
        prefix, hash_, suffix = p.metadata.name.rsplit("-", 2)
        assert prefix == "coredns" and SUFFIX.match(suffix) and SUFFIX.match(hash_[:5])
        assert p.metadata.labels["k8s-app"] == "kube-dns"
        assert p.spec.node_name == "kind-control-plane" and p.is_ready
        ports = {(cp.name, cp.container_port, cp.protocol) for cp in p.spec.containers[0].ports}
        assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    # host-local IPAM: .0 network and .1 gateway are skipped
    assert sorted(p.status.pod_ip for p in pods) == ["10.244.0.2", "10.244.0.3"]
    from kservice.proxy.configkind import stored_config

    cfg = stored_config(c)
    assert cfg is not None
    assert cfg.mode == "iptables" and cfg.cluster_cidr == "10.244.0.0/16"


def test_names_are_deterministic_per_seed() -> None:
    a = [p.metadata.name for p in kind_cluster(1).list("Pod")]
    assert a == [p.metadata.name for p in kind_cluster(1).list("Pod")]
    assert a != [p.metadata.name for p in kind_cluster(2).list("Pod")]


def _deploy(c: Cluster, name: str = "web", replicas: int = 3, **spec: object) -> object:
    body = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}}
    return c.apply(c.decode({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": name, "namespace": "default"},
                             "spec": body}))[0]


def test_deployment_expands_and_spreads_over_workers() -> None:
    c = kind_cluster()
    _deploy(c, replicas=4)
    (rs,) = c.list("ReplicaSet", "default")
    h = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{h}" and rs.metadata.owner_references[0].kind == "Deployment"
    pods = c.list("Pod", "default")
    assert len(pods) == 4
    assert all(p.metadata.name.startswith(f"web-{h}-") for p in pods)
    # the control plane's NoSchedule taint keeps ordinary pods on the workers, evenly
    nodes = sorted(p.spec.node_name for p in pods)
    assert nodes == ["kind-worker", "kind-worker", "kind-worker2", "kind-worker2"]
    for p in pods:
        node = c.get("Node", p.spec.node_name, "")
        assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(node.pod_cidrs[0])
    assert len({p.status.pod_ip for p in pods}) == 4


def test_scale_by_reapply_and_scale() -> None:
    c = kind_cluster()
    _deploy(c, replicas=3)
    _deploy(c, replicas=5)
    assert len(c.list("Pod", "default")) == 5
    workloads.scale(c, "Deployment", "web", "default", 1)
    assert len(c.list("Pod", "default")) == 1
    # a template change rolls out a new ReplicaSet and scales the old one to zero
    _deploy(c, replicas=2, hostname="x")
    rss = {r.metadata.name: r.replicas for r in c.list("ReplicaSet", "default")}
    assert sorted(rss.values()) == [0, 2]
    assert len(c.list("Pod", "default")) == 2


def test_deleted_pod_is_replaced_and_terminating_pod_too() -> None:
    c = kind_cluster()
    _deploy(c, replicas=2)
    first = c.list("Pod", "default")[0]
    workloads.delete_pod(c, first.metadata.name, "default")
    names = {p.metadata.name for p in c.list("Pod", "default")}
    assert len(names) == 2 and first.metadata.name not in names
    victim = sorted(names)[0]
    workloads.delete_pod(c, victim, "default", graceful=True)
    pods = c.list("Pod", "default")
    assert len(pods) == 3  # the terminating one is still there, still serving
    t = c.get("Pod", victim, "default")
    assert t.is_terminating and t.is_ready


def test_statefulset_pods_have_ordinals_hostname_subdomain() -> None:
    c = kind_cluster()
    c.apply(c.decode({"apiVersion": "apps/v1", "kind": "StatefulSet",
                      "metadata": {"name": "db", "namespace": "default"},
                      "spec": {"serviceName": "db", "replicas": 3,
                               "selector": {"matchLabels": {"app": "db"}},
                               "template": {"metadata": {"labels": {"app": "db"}},
                                            "spec": {"containers": [{"name": "c"}]}}}}))
    pods = {p.metadata.name: p for p in c.list("Pod", "default")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    assert all(p.spec.hostname == n and p.spec.subdomain == "db" for n, p in pods.items())
    workloads.scale(c, "StatefulSet", "db", "default", 1)
    assert [p.metadata.name for p in c.list("Pod", "default")] == ["db-0"]
    c.delete("Pod", "db-0", "default")
    assert [p.metadata.name for p in c.list("Pod", "default")] == ["db-0"]


def test_daemonset_one_pod_per_untainted_node_and_follows_nodes() -> None:
    c = kind_cluster()
    c.apply(c.decode({"apiVersion": "apps/v1", "kind": "DaemonSet",
                      "metadata": {"name": "agent", "namespace": "default"},
                      "spec": {"selector": {"matchLabels": {"app": "agent"}},
                               "template": {"metadata": {"labels": {"app": "agent"}},
                                            "spec": {"containers": [{"name": "c"}]}}}}))
    assert sorted(p.spec.node_name for p in c.list("Pod", "default")) == [
        "kind-worker", "kind-worker2"]
    c.create(Node(metadata=ObjectMeta(name="kind-worker3")))
    assert len(c.list("Pod", "default")) == 3
    c.delete("Node", "kind-worker3", "")
    assert len(c.list("Pod", "default")) == 2


def test_set_pod_ready_and_validation() -> None:
    c = kind_cluster()
    p = c.list("Pod", "kube-system")[0]
    p2 = workloads.set_pod_ready(c, p.metadata.name, "kube-system", False)
    assert not p2.is_ready
    assert p2.status.extra["containerStatuses"][0]["ready"] is False
    with pytest.raises(InvalidObject) as ei:
        _deploy(c, "bad", replicas=1)
        c.apply(c.decode({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "x", "namespace": "default"},
                          "spec": {"selector": {"matchLabels": {"app": "x"}},
                                   "template": {"metadata": {"labels": {"app": "y"}},
                                                "spec": {"containers": [{"name": "c"}]}}}}))
    assert "`selector` does not match template `labels`" in str(ei.value)
    with pytest.raises(InvalidObject) as ei:
        c.create(Pod(metadata=ObjectMeta(name="p", namespace="default"),
                     spec=PodSpec(containers=(Container(name="c", ports=()),),
                                  hostname="Bad_Host")))
    assert "spec.hostname" in str(ei.value)


def test_unschedulable_pod_stays_pending() -> None:
    c = Cluster()
    workloads.install(c)
    p = c.create(Pod(metadata=ObjectMeta(name="p", namespace="default"),
                     spec=PodSpec(containers=(Container(name="c"),))))
    assert p.status.phase == "Pending" and not p.status.ips


def test_pod_ips_follow_host_local_round_robin() -> None:
    c = kind_cluster()
    _deploy(c, replicas=2)
    pods = c.list("Pod", "default")
    freed = pods[0].status.pod_ip
    node = pods[0].spec.node_name
    c.delete("Pod", pods[0].metadata.name, "default")
    new = next(p for p in c.list("Pod", "default") if p.metadata.name != pods[1].metadata.name)
    # the replacement goes to the emptier node -- the one just freed -- and host-local hands
    # out the address after the last one it gave, not the freed one
    assert new.spec.node_name == node
    net = ipaddress.ip_network(c.get("Node", node, "").pod_cidrs[0])
    assert new.status.pod_ip == str(ipaddress.ip_address(freed) + 1) != freed
    assert ipaddress.ip_address(new.status.pod_ip) in net


def test_ipam_wraps_and_reports_a_full_range() -> None:
    from kservice.errors import RangeFull
    from kservice.workloads._ipam import PodIPAM

    ipam = PodIPAM()
    got = [ipam.allocate("n", "10.0.0.0/29") for _ in range(5)]  # .2-.6 (.7 is broadcast)
    assert got == [f"10.0.0.{i}" for i in range(2, 7)]
    with pytest.raises(RangeFull):
        ipam.allocate("n", "10.0.0.0/29")
    ipam.release("n", "10.0.0.0/29", "10.0.0.3")
    assert ipam.allocate("n", "10.0.0.0/29") == "10.0.0.3"  # wrapped around
    assert ipam.allocate("n", "fd00::/126") == "fd00::2"


@settings(max_examples=20, deadline=None)
@given(specs=st.lists(workload_manifests(), max_size=4), seed=st.integers(0, 3))
def test_workloads_expand_to_the_right_number_of_pods(specs: list[dict], seed: int) -> None:
    c = kind_cluster(seed)
    seen: dict[tuple[str, str], dict] = {}
    for m in specs:
        key = (m["kind"], m["metadata"]["name"])
        if any(k[1] == key[1] and k[0] != key[0] for k in seen):
            continue  # same name, other kind: pod names would collide (not what we test)
        try:
            c.apply(c.decode(m))
        except InvalidObject:
            continue  # e.g. a selector change on re-apply: immutable
        seen[key] = m
    ctrl = c.extensions["workloads.controller"]
    for kind, name in seen:
        obj = c.get(kind, name, "default")
        if kind == "Deployment":
            pods = [p for rs in ctrl.dependents(c, "ReplicaSet", obj)
                    for p in ctrl.dependents(c, "Pod", rs)]
            want = obj.replicas
        elif kind == "StatefulSet":
            pods = ctrl.dependents(c, "Pod", obj)
            want = obj.replicas
            assert sorted(p.metadata.name for p in pods) == sorted(
                f"{name}-{i}" for i in range(want))
        else:
            pods = ctrl.dependents(c, "Pod", obj)
            want = 2  # the two untainted workers
        assert len(pods) == want, (kind, name)
    ips = [ip for p in c.list("Pod") for ip in p.status.ips]
    assert len(ips) == len(set(ips))  # IPAM never hands out an address twice
