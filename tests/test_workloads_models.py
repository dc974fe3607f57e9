"""kservice.models.workloads / discovery: strict reading that still accepts real manifests."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given

from kservice.errors import InvalidInput
from kservice.models.discovery import Endpoints, EndpointSlice
from kservice.models.workloads import DaemonSet, Deployment, Node, Pod, StatefulSet
from kservice.testing.workloads import node_manifests, pod_manifests, workload_manifests

# A Pod as `kubectl get pod -o yaml` prints it from a kind cluster (trimmed, but with the
# fields kservice does not model: they must be accepted and written back unchanged).
REAL_POD = """
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: "2026-01-01T00:00:00Z"
  generateName: coredns-674b8bbfcf-
  labels: {k8s-app: kube-dns, pod-template-hash: 674b8bbfcf}
  name: coredns-674b8bbfcf-7vqmf
  namespace: kube-system
  ownerReferences:
  - {apiVersion: apps/v1, blockOwnerDeletion: true, controller: true, kind: ReplicaSet,
     name: coredns-674b8bbfcf, uid: 4b1d}
  resourceVersion: "512"
  uid: 9f0e
spec:
  containers:
  - args: [-conf, /etc/coredns/Corefile]
    image: registry.k8s.io/coredns/coredns:v1.12.1
    livenessProbe: {httpGet: {path: /health, port: 8080, scheme: HTTP}}
    name: coredns
    ports:
    - {containerPort: 53, name: dns, protocol: UDP}
    - {containerPort: 53, name: dns-tcp, protocol: TCP}
    - {containerPort: 9153, name: metrics, protocol: TCP}
    resources: {limits: {memory: 170Mi}, requests: {cpu: 100m, memory: 70Mi}}
    volumeMounts: [{mountPath: /etc/coredns, name: config-volume, readOnly: true}]
  dnsPolicy: Default
  nodeName: kind-control-plane
  tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
  volumes: [{configMap: {name: coredns}, name: config-volume}]
status:
  conditions:
  - {lastProbeTime: null, lastTransitionTime: "2026-01-01T00:00:10Z", status: "True",
     type: Ready}
  hostIP: 172.18.0.2
  hostIPs: [{ip: 172.18.0.2}]
  phase: Running
  podIP: 10.244.0.3
  podIPs: [{ip: 10.244.0.3}]
  qosClass: Burstable
"""


def test_real_pod_reads_and_round_trips() -> None:
    data = yaml.safe_load(REAL_POD)
    pod = Pod.from_manifest(data)
    assert pod.is_ready and pod.status.ips == ("10.244.0.3",)
    assert [p.name for p in pod.spec.containers[0].ports] == ["dns", "dns-tcp", "metrics"]
    out = pod.to_manifest()
    assert out["spec"]["volumes"] == data["spec"]["volumes"]
    assert out["spec"]["containers"][0]["resources"] == data["spec"]["containers"][0]["resources"]
    assert out["status"]["hostIPs"] == [{"ip": "172.18.0.2"}]
    assert Pod.from_manifest(out) == pod
    hash(pod)  # frozen all the way down


def test_wrong_types_in_typed_fields_are_refused_with_a_path() -> None:
    data = yaml.safe_load(REAL_POD)
    data["spec"]["containers"][0]["ports"][0]["containerPort"] = "53"
    with pytest.raises(InvalidInput) as ei:
        Pod.from_manifest(data)
    assert ei.value.path == "spec.containers[0].ports[0].containerPort"
    with pytest.raises(InvalidInput):
        Pod.from_manifest({"apiVersion": "v1", "kind": "Pod", "bogus": 1})


def test_workloads_read_their_own_fields() -> None:
    sts = StatefulSet.from_manifest(yaml.safe_load("""
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: x}]}}
"""))
    assert sts.spec.service_name == "web" and sts.replicas == 2
    assert sts.to_manifest()["spec"]["podManagementPolicy"] == "Parallel"
    ds = DaemonSet.from_manifest({"apiVersion": "apps/v1", "kind": "DaemonSet",
                                  "metadata": {"name": "d"},
                                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                                           "template": {"metadata": {"labels": {"a": "b"}},
                                                        "spec": {"containers": []}}}})
    assert ds.spec.replicas is None
    with pytest.raises(InvalidInput):
        Deployment.from_manifest({"apiVersion": "apps/v1", "kind": "Deployment",
                                  "spec": {"selector": {"matchExpressions": [
                                      {"key": "a", "operator": "Near"}]}}})
    with pytest.raises(InvalidInput):
        Deployment.from_manifest({"apiVersion": "extensions/v1beta1", "kind": "Deployment"})


def test_node_pod_cidrs_and_ips() -> None:
    node = Node.from_manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                               "spec": {"podCIDR": "10.244.1.0/24"},
                               "status": {"addresses": [
                                   {"type": "ExternalIP", "address": "203.0.113.4"},
                                   {"type": "InternalIP", "address": "172.18.0.3"}]}})
    assert node.pod_cidrs == ("10.244.1.0/24",)
    assert node.node_ips == ("172.18.0.3", "203.0.113.4")


def test_endpoint_slice_keeps_nil_pointers() -> None:
    sl = EndpointSlice.from_manifest({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "svc"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {},
                       "hints": {"forZones": [{"name": "z1"}]}}],
        "ports": [{"port": 80}]})
    e = sl.endpoints[0]
    assert e.conditions.ready is None and sl.ports[0].name is None
    assert e.hints_for_zones == ("z1",) and sl.service_name == "svc"
    assert EndpointSlice.from_manifest(sl.to_manifest()) == sl
    empty = EndpointSlice(address_type="IPv4").to_manifest()
    assert empty["endpoints"] is None and empty["ports"] is None


def test_legacy_endpoints_round_trip() -> None:
    data = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "n"}],
                         "notReadyAddresses": [{"ip": "10.0.0.2"}],
                         "ports": [{"port": 80, "protocol": "TCP"}]}]}
    ep = Endpoints.from_manifest(data)
    assert Endpoints.from_manifest(ep.to_manifest()) == ep


@given(nodes=node_manifests(), pod=pod_manifests(), wl=workload_manifests())
def test_shipped_strategies_produce_readable_manifests(nodes: list, pod: dict, wl: dict) -> None:
    for n in nodes:
        node = Node.from_manifest(n)
        assert Node.from_manifest(node.to_manifest()) == node
    p = Pod.from_manifest(pod)
    assert Pod.from_manifest(p.to_manifest()) == p
    names = [port.name for c in p.spec.containers for port in c.ports]
    assert len(names) == len(set(names))  # container port names unique within a container
    model = {"Deployment": Deployment, "StatefulSet": StatefulSet, "DaemonSet": DaemonSet}
    w = model[wl["kind"]].from_manifest(wl)
    assert w.spec.selector.matches(w.spec.template.metadata.labels)
