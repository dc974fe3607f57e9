"""EndpointSlice / Endpoints controllers: reference vectors 79-91 and properties.

Services go through the real Service API (``kservice.api.install_service_api``); pods are
either created through the Pod strategy or written the way kubelet reports them
(``put_raw`` with an explicit status) when a vector needs exact IPs or conditions.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kservice import endpoints as ep_ctrl
from kservice import workloads
from kservice.api import install_service_api
from kservice.cluster import Cluster
from kservice.config import ClusterConfig
from kservice.models import Service
from kservice.models.meta import ObjectMeta
from kservice.models.workloads import (
    Container,
    ContainerPort,
    Node,
    NodeAddress,
    NodeStatus,
    Pod,
    PodCondition,
    PodSpec,
    PodStatus,
)


def make_cluster(config: ClusterConfig | None = None) -> Cluster:
    c = Cluster(config or ClusterConfig())
    install_service_api(c)
    workloads.install(c)
    ep_ctrl.install(c)
    return c


def add_node(c: Cluster, name: str, zone: str | None = None) -> Node:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return c.create(Node(metadata=ObjectMeta(name=name, labels=labels),
                         status=NodeStatus(addresses=(NodeAddress("InternalIP", "172.18.0.9"),))))


def add_service(c: Cluster, name: str = "web", **spec: Any) -> Service:
    body: dict[str, Any] = {"selector": {"app": name},
                            "ports": [{"port": 80, "targetPort": 8080}]}
    body.update(spec)
    meta = {"name": name, "namespace": "default"}
    return c.create(Service.from_manifest({"apiVersion": "v1", "kind": "Service",
                                           "metadata": meta, "spec": body}))


def kubelet_pod(c: Cluster, name: str, *, ips: tuple[str, ...], node: str = "n1",
                labels: dict[str, str] | None = None, ready: bool = True,
                phase: str = "Running", ports: tuple[ContainerPort, ...] = (),
                deleting: bool = False, hostname: str = "", subdomain: str = "") -> Pod:
    """A pod as kubelet reports it (exact IPs and conditions), written like a controller."""
    meta = ObjectMeta(name=name, namespace="default", labels=labels or {"app": "web"},
                      deletion_timestamp="2026-01-01T00:00:00Z" if deleting else None)
    pod = Pod(
        metadata=meta,
        spec=PodSpec(containers=(Container(name="c", ports=ports),), node_name=node,
                     hostname=hostname, subdomain=subdomain),
        status=PodStatus(phase=phase, pod_ip=ips[0] if ips else "", pod_ips=ips,
                         conditions=(PodCondition("Ready", "True" if ready else "False"),)),
    )
    return c.put_raw(pod)


def slices_of(c: Cluster, svc: str = "web") -> list[Any]:
    return [s for s in c.list("EndpointSlice", "default")
            if s.metadata.labels.get("kubernetes.io/service-name") == svc]


def test_vector_79_one_ready_pod() -> None:
    c = make_cluster()
    add_node(c, "n1", "z1")
    svc = add_service(c)
    kubelet_pod(c, "web-1", ips=("10.244.1.5",))
    (sl,) = slices_of(c)
    m = sl.to_manifest()
    assert m["addressType"] == "IPv4"
    assert m["metadata"]["generateName"] == "web-"
    assert sl.metadata.name.startswith("web-") and len(sl.metadata.name) == len("web-") + 5
    assert m["metadata"]["labels"] == {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert m["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    (e,) = m["endpoints"]
    assert e["addresses"] == ["10.244.1.5"]
    assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert e["nodeName"] == "n1" and e["zone"] == "z1"
    assert e["targetRef"]["kind"] == "Pod" and e["targetRef"]["name"] == "web-1"
    (ref,) = sl.metadata.owner_references
    assert (ref.api_version, ref.kind, ref.name, ref.uid, ref.controller) == (
        "v1", "Service", "web", svc.metadata.uid, True)
    assert ep_ctrl.ANNOTATION_TRIGGER_TIME in sl.metadata.annotations


@pytest.mark.parametrize(("pnr", "ready"), [(False, False), (True, True)])
def test_vector_80_terminating_pod(pnr: bool, ready: bool) -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, publishNotReadyAddresses=pnr)
    kubelet_pod(c, "web-1", ips=("10.244.1.5",), deleting=True)
    (sl,) = slices_of(c)
    cond = sl.endpoints[0].conditions
    assert (cond.ready, cond.serving, cond.terminating) == (ready, True, True)
    legacy = c.get("Endpoints", "web", "default")
    # the legacy controller drops terminating pods unless publishNotReadyAddresses is set
    assert bool(legacy.subsets) == pnr


def test_vector_81_not_ready_pod() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "web-1", ips=("10.244.1.5",), ready=False)
    (sl,) = slices_of(c)
    cond = sl.endpoints[0].conditions
    assert (cond.ready, cond.serving, cond.terminating) == (False, False, False)
    (ss,) = c.get("Endpoints", "web", "default").subsets
    assert not ss.addresses and [a.ip for a in ss.not_ready_addresses] == ["10.244.1.5"]


def test_vector_82_terminal_or_ipless_pods_are_not_listed() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "done", ips=("10.244.1.5",), phase="Succeeded")
    kubelet_pod(c, "failed", ips=("10.244.1.6",), phase="Failed")
    kubelet_pod(c, "noip", ips=())
    (sl,) = slices_of(c)
    assert sl.endpoints == ()


def test_vector_83_named_port_resolving_differently_splits_slices() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, ports=[{"port": 80, "targetPort": "web"}])
    kubelet_pod(c, "a", ips=("10.244.1.5",), ports=(ContainerPort(8080, "web", "TCP"),))
    kubelet_pod(c, "b", ips=("10.244.1.6",), ports=(ContainerPort(9090, "web", "TCP"),))
    got = {(s.ports[0].port, tuple(e.target_ref.name for e in s.endpoints))
           for s in slices_of(c)}
    assert got == {(8080, ("a",)), (9090, ("b",))}


def test_vector_84_pod_without_the_named_port_gets_empty_ports() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, ports=[{"port": 80, "targetPort": "web"}])
    kubelet_pod(c, "c", ips=("10.244.1.7",), ports=(ContainerPort(53, "web", "UDP"),))
    kubelet_pod(c, "d", ips=("10.244.1.8",), ports=(ContainerPort(8080, "other", "TCP"),))
    (sl,) = slices_of(c)
    assert sl.ports == () and {e.target_ref.name for e in sl.endpoints} == {"c", "d"}


def test_named_port_found_in_sidecar() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, ports=[{"port": 80, "targetPort": "proxy"}])
    pod = kubelet_pod(c, "s", ips=("10.244.1.9",))
    side = Container(name="envoy", ports=(ContainerPort(15001, "proxy", "TCP"),),
                     restart_policy="Always")
    plain_init = Container(name="init", ports=(ContainerPort(1, "proxy", "TCP"),))
    c.put_raw(attrs.evolve(pod, spec=attrs.evolve(pod.spec,
                                                  init_containers=(plain_init, side))))
    (sl,) = slices_of(c)
    assert [p.port for p in sl.ports] == [15001]


def test_vector_85_250_pods_make_three_slices() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    for i in range(250):
        kubelet_pod(c, f"p{i:03d}", ips=(f"10.244.{1 + i // 200}.{2 + i % 200}",))
    counts = sorted(len(s.endpoints) for s in slices_of(c))
    assert sum(counts) == 250 and max(counts) <= 100 and len(counts) == 3
    assert counts == [50, 100, 100]
    assert ep_ctrl.recompute_all(c) == 0


def test_vector_86_placeholder_slice() -> None:
    c = make_cluster()
    add_service(c)
    (sl,) = slices_of(c)
    m = sl.to_manifest()
    assert sl.address_type == "IPv4" and m["endpoints"] is None and m["ports"] is None
    # a placeholder is replaced (not accompanied) once endpoints exist, and comes back after
    add_node(c, "n1")
    kubelet_pod(c, "p", ips=("10.244.1.2",))
    (sl2,) = slices_of(c)
    assert sl2.metadata.name == sl.metadata.name and len(sl2.endpoints) == 1
    c.delete("Pod", "p", "default")
    (sl3,) = slices_of(c)
    assert sl3.endpoints == () and sl3.ports == ()


def test_vector_87_dual_stack() -> None:
    cfg = ClusterConfig(service_subnets=("10.96.0.0/16", "fd00:10:96::/112"),
                        pod_subnets=("10.244.0.0/16", "fd00:10:244::/56"))
    c = make_cluster(cfg)
    workloads.seed_default(c)
    add_service(c, ipFamilyPolicy="RequireDualStack")
    pod = c.create(workloads.resolve_name(c, Pod(
        metadata=ObjectMeta(generate_name="web-", namespace="default", labels={"app": "web"}),
        spec=PodSpec(containers=(Container(name="c"),)))))
    assert len(pod.status.pod_ips) == 2
    by_type = {s.address_type: s for s in slices_of(c)}
    assert set(by_type) == {"IPv4", "IPv6"}
    assert by_type["IPv4"].endpoints[0].addresses == (pod.status.pod_ips[0],)
    assert by_type["IPv6"].endpoints[0].addresses == (pod.status.pod_ips[1],)
    assert ":" in pod.status.pod_ips[1]


def test_vector_88_headless_hostname() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, "db", clusterIP="None", selector={"app": "db"})
    kubelet_pod(c, "db-0", ips=("10.244.2.7",), labels={"app": "db"}, hostname="db-0",
                subdomain="db")
    kubelet_pod(c, "x", ips=("10.244.2.8",), labels={"app": "db"}, hostname="x",
                subdomain="other")
    (sl,) = slices_of(c, "db")
    assert sl.metadata.labels["service.kubernetes.io/headless"] == ""
    hosts = {e.target_ref.name: e.hostname for e in sl.endpoints}
    assert hosts == {"db-0": "db-0", "x": None}
    legacy = c.get("Endpoints", "db", "default")
    assert {a.ip: a.hostname for ss in legacy.subsets for a in ss.addresses} == {
        "10.244.2.7": "db-0", "10.244.2.8": ""}
    assert legacy.metadata.labels["service.kubernetes.io/headless"] == ""


def test_vector_89_prefer_close_hints() -> None:
    c = make_cluster()
    add_node(c, "n1", "z1")
    add_node(c, "n2")
    add_service(c, trafficDistribution="PreferClose")
    kubelet_pod(c, "a", ips=("10.244.1.2",))
    kubelet_pod(c, "b", ips=("10.244.1.3",), ready=False)
    kubelet_pod(c, "c", ips=("10.244.1.4",), node="n2")  # no zone: no hint
    (sl,) = slices_of(c)
    hints = {e.target_ref.name: e.hints_for_zones for e in sl.endpoints}
    assert hints == {"a": ("z1",), "b": None, "c": None}
    assert sl.to_manifest()["endpoints"][0]["hints"] == {"forZones": [{"name": "z1"}]}


def test_prefer_same_node_hints() -> None:
    c = make_cluster()
    add_node(c, "n1", "z1")
    add_service(c, trafficDistribution="PreferSameNode")
    kubelet_pod(c, "a", ips=("10.244.1.2",))
    (sl,) = slices_of(c)
    e = sl.endpoints[0]
    assert e.hints_for_nodes == ("n1",) and e.hints_for_zones == ("z1",)


def test_topology_mode_auto_balances_across_zones() -> None:
    c = make_cluster()
    add_node(c, "n1", "z1")
    add_node(c, "n2", "z2")
    c.create(Service.from_manifest({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default",
                     "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    for i in range(4):  # all four endpoints in z1; z2 has half the nodes
        kubelet_pod(c, f"p{i}", ips=(f"10.244.1.{i + 2}",))
    (sl,) = slices_of(c)
    zones = sorted(e.hints_for_zones[0] for e in sl.endpoints)
    assert zones == ["z1", "z1", "z2", "z2"]


def test_vector_90_legacy_endpoints_capacity() -> None:
    c = make_cluster(ClusterConfig(max_endpoints_per_slice=1000))
    add_node(c, "n1")
    for i in range(1200):
        kubelet_pod(c, f"p{i:04d}", ips=(f"10.244.{i // 250}.{i % 250 + 2}",))
    add_service(c)  # created last: one sync instead of 1200 (the work queue's batching)
    legacy = c.get("Endpoints", "web", "default")
    assert sum(len(ss.addresses) for ss in legacy.subsets) == 1000
    assert legacy.metadata.annotations["endpoints.kubernetes.io/over-capacity"] == "truncated"
    assert sum(len(s.endpoints) for s in slices_of(c)) == 1200  # slices are not capped


def test_vector_91_no_selector_or_external_name() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c, "plain", selector=None)
    c.create(Service.from_manifest({"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "ext", "namespace": "default"},
                                    "spec": {"type": "ExternalName",
                                             "externalName": "example.com",
                                             "selector": {"app": "web"}}}))
    kubelet_pod(c, "p", ips=("10.244.1.2",))
    assert slices_of(c, "plain") == [] and slices_of(c, "ext") == []
    assert c.find("Endpoints", "plain", "default") is None
    assert c.find("Endpoints", "ext", "default") is None


def test_user_slices_of_selectorless_service_are_kept() -> None:
    c = make_cluster()
    add_service(c, "ext", selector=None, ports=[{"port": 80}])
    sl = c.create(c.decode({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "ext-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "ext"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"port": 80}]}))
    assert sl.ports[0].name == "" and sl.ports[0].protocol == "TCP"  # defaulted
    assert ep_ctrl.recompute_all(c) == 0
    assert c.get("EndpointSlice", "ext-1", "default").endpoints[0].addresses == ("192.0.2.10",)


def test_endpoint_slice_validation_messages() -> None:
    c = make_cluster()
    from kservice.errors import InvalidObject

    with pytest.raises(InvalidObject) as ei:
        c.create(c.decode({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "x", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": []}, {"addresses": ["fd00::1"]}]}))
    msg = str(ei.value)
    assert "endpoints[0].addresses: Required value: must contain at least 1 address" in msg
    assert 'endpoints[1].addresses[0]: Invalid value: "fd00::1"' in msg


def test_service_deletion_removes_its_slices_and_endpoints() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "p", ips=("10.244.1.2",))
    c.delete("Service", "web", "default")
    assert slices_of(c) == [] and c.find("Endpoints", "web", "default") is None


def test_selector_change_moves_endpoints() -> None:
    c = make_cluster()
    add_node(c, "n1")
    svc = add_service(c)
    kubelet_pod(c, "a", ips=("10.244.1.2",))
    kubelet_pod(c, "b", ips=("10.244.1.3",), labels={"app": "other"})
    c.update(svc.evolve_spec(selector={"app": "other"}))
    (sl,) = slices_of(c)
    assert [e.target_ref.name for e in sl.endpoints] == ["b"]


def test_node_zone_change_updates_endpoints() -> None:
    c = make_cluster()
    node = add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "a", ips=("10.244.1.2",))
    c.update(attrs.evolve(node, metadata=attrs.evolve(
        node.metadata, labels={**node.metadata.labels, "topology.kubernetes.io/zone": "z9"})))
    assert slices_of(c)[0].endpoints[0].zone == "z9"


def test_pod_on_missing_node_is_skipped_unless_publish_not_ready() -> None:
    for pnr, n in ((False, 0), (True, 1)):
        c = make_cluster()
        add_service(c, publishNotReadyAddresses=pnr)
        kubelet_pod(c, "a", ips=("10.244.1.2",), node="ghost")
        assert len(slices_of(c)[0].endpoints) == n


# --------------------------------------------------------------------------- properties


def _expected(c: Cluster) -> dict[tuple[str, str], set[tuple[Any, ...]]]:
    """From-scratch oracle written from reference §4.1-4.4 (not from the controller)."""
    nodes = {n.metadata.name for n in c.list("Node")}
    out: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    for svc in c.list("Service"):
        if svc.spec.selector is None or svc.spec.type == "ExternalName":
            continue
        got: set[tuple[Any, ...]] = set()
        for pod in c.list("Pod", svc.metadata.namespace):
            if any(pod.metadata.labels.get(k) != v for k, v in svc.spec.selector.items()):
                continue
            if pod.status.phase in ("Succeeded", "Failed") or not pod.status.ips:
                continue
            if pod.spec.node_name not in nodes and not svc.spec.publish_not_ready_addresses:
                continue
            ports = []
            for sp in svc.spec.ports:
                tp = sp.target_port
                num = None
                if isinstance(tp, int):
                    num = tp
                else:
                    for ctr in (*pod.spec.containers, *[i for i in pod.spec.init_containers
                                                        if i.restart_policy == "Always"]):
                        for cp in ctr.ports:
                            if num is None and cp.name == tp and cp.protocol == sp.protocol:
                                num = cp.container_port
                if num is not None:
                    ports.append((sp.name, num, sp.protocol))
            for fam in svc.spec.ip_families:
                for ip in pod.status.ips:
                    if (":" in ip) == (fam == "IPv6"):
                        got.add((fam, ip, tuple(ports)))
                        break
        out[(svc.metadata.namespace, svc.metadata.name)] = got
    return out


def _actual(c: Cluster, max_eps: int) -> dict[tuple[str, str], set[tuple[Any, ...]]]:
    out: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    for sl in c.list("EndpointSlice"):
        assert len(sl.endpoints) <= max_eps
        key = (sl.metadata.namespace, sl.metadata.labels["kubernetes.io/service-name"])
        s = out.setdefault(key, set())
        ports = tuple((p.name, p.port, p.protocol) for p in sl.ports)
        for e in sl.endpoints:
            s.add((sl.address_type, e.addresses[0], ports))
    return out


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("pod"), st.sampled_from("abcdef"), st.sampled_from(["x", "y"]),
                  st.sampled_from(["http", "web"])),
        st.tuples(st.just("delete"), st.sampled_from("abcdef")),
        st.tuples(st.just("ready"), st.sampled_from("abcdef"), st.booleans()),
        st.tuples(st.just("terminate"), st.sampled_from("abcdef")),
        st.tuples(st.just("relabel"), st.sampled_from("abcdef"), st.sampled_from(["x", "y"])),
        st.tuples(st.just("selector"), st.sampled_from(["sx", "sy"]),
                  st.sampled_from(["x", "y"])),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None)
@given(ops=_ops, max_eps=st.integers(1, 3))
def test_incremental_equals_recompute_and_slices_hold_eligible_pods(
    ops: list[tuple[Any, ...]], max_eps: int
) -> None:
    c = make_cluster(ClusterConfig(max_endpoints_per_slice=max_eps))
    add_node(c, "n1", "z1")
    add_node(c, "n2")
    for name, app in (("sx", "x"), ("sy", "y")):
        add_service(c, name, selector={"app": app},
                    ports=[{"name": "a", "port": 80, "targetPort": "http"},
                           {"name": "b", "port": 81, "targetPort": 9000}])
    for op in ops:
        kind = op[0]
        existing = c.find("Pod", op[1], "default") if kind != "selector" else None
        if kind == "pod" and existing is None:
            c.create(Pod(metadata=ObjectMeta(name=op[1], namespace="default",
                                              labels={"app": op[2]}),
                         spec=PodSpec(containers=(Container(
                             name="c", ports=(ContainerPort(8000 + ord(op[1]), op[3]),)),))))
        elif kind == "delete" and existing is not None:
            workloads.delete_pod(c, op[1], "default")
        elif kind == "ready" and existing is not None:
            workloads.set_pod_ready(c, op[1], "default", op[2])
        elif kind == "terminate" and existing is not None:
            workloads.terminate_pod(c, op[1], "default")
        elif kind == "relabel" and existing is not None:
            c.update(attrs.evolve(existing, metadata=attrs.evolve(
                existing.metadata, labels={"app": op[2]})))
        elif kind == "selector":
            svc = c.get("Service", op[1], "default")
            c.update(svc.evolve_spec(selector={"app": op[2]}))
        actual = _actual(c, max_eps)
        for key, want in _expected(c).items():
            assert actual.get(key, set()) == want, key
    assert ep_ctrl.recompute_all(c) == 0
    # every slice's endpoints carry that slice's resolved ports (ports resolved per pod)
    for sl in c.list("EndpointSlice"):
        for e in sl.endpoints:
            pod = c.get("Pod", e.target_ref.name, "default")
            tports = {p.name: p.container_port for p in pod.spec.containers[0].ports}
            for p in sl.ports:
                assert p.port == (9000 if p.name == "b" else tports["http"])


def test_user_endpoints_of_selectorless_service_are_mirrored() -> None:
    c = make_cluster()
    add_service(c, "ext", selector=None, ports=[{"name": "http", "port": 80}])
    c.create(c.decode({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "ext", "namespace": "default", "labels": {"team": "a"}},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}, {"ip": "2001:db8::10"}],
                     "notReadyAddresses": [{"ip": "192.0.2.11"}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}))
    got = {s.address_type: s for s in slices_of(c, "ext")}
    assert set(got) == {"IPv4", "IPv6"}
    v4 = got["IPv4"]
    assert v4.metadata.labels["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert v4.metadata.labels["team"] == "a"
    assert v4.metadata.owner_references[0].kind == "Endpoints"
    assert [(e.addresses[0], e.conditions.ready) for e in v4.endpoints] == [
        ("192.0.2.10", True), ("192.0.2.11", False)]
    assert [(p.name, p.port) for p in v4.ports] == [("http", 8080)]
    assert ep_ctrl.recompute_all(c) == 0
    # the Service gains a selector: mirroring stops and its slices go
    svc = c.get("Service", "ext", "default")
    c.update(svc.evolve_spec(selector={"app": "nothing"}))
    assert all(s.metadata.labels["endpointslice.kubernetes.io/managed-by"] ==
               "endpointslice-controller.k8s.io" for s in slices_of(c, "ext"))


def test_controller_endpoints_are_not_mirrored() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "p", ips=("10.244.1.2",))
    assert c.get("Endpoints", "web", "default").metadata.labels[
        "endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert len(slices_of(c)) == 1


def test_restore_and_rollback_rebuild_the_indexes() -> None:
    c = make_cluster()
    add_node(c, "n1")
    add_service(c)
    kubelet_pod(c, "a", ips=("10.244.1.2",))
    stored = [o for _, _, _, o in c.objects_for_storage()]
    # a fresh process: install, restore verbatim (no events), then keep working
    d = make_cluster()
    d.load_objects(stored, c.resource_version)
    kubelet_pod(d, "b", ips=("10.244.1.3",))
    (sl,) = slices_of(d)
    assert sorted(e.target_ref.name for e in sl.endpoints) == ["a", "b"]
    assert ep_ctrl.recompute_all(d) == 0
    with pytest.raises(RuntimeError), d.transaction():
        kubelet_pod(d, "c", ips=("10.244.1.4",))
        raise RuntimeError("undo")
    kubelet_pod(d, "e", ips=("10.244.1.5",))
    (sl,) = slices_of(d)
    assert sorted(e.target_ref.name for e in sl.endpoints) == ["a", "b", "e"]


def test_kubernetes_service_gets_the_apiserver_endpoints() -> None:
    c = make_cluster()
    workloads.seed_default(c)
    c.create(Service.from_manifest({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443,
                                                      "targetPort": 6443}]}}))
    sl = c.get("EndpointSlice", "kubernetes", "default")
    assert [e.addresses for e in sl.endpoints] == [("172.18.0.2",)]
    assert [(p.name, p.port, p.protocol) for p in sl.ports] == [("https", 6443, "TCP")]
    assert dict(sl.metadata.labels) == {"kubernetes.io/service-name": "kubernetes"}
    ep = c.get("Endpoints", "kubernetes", "default")
    assert ep.metadata.labels["endpointslice.kubernetes.io/skip-mirror"] == "true"
    assert ep_ctrl.recompute_all(c) == 0
