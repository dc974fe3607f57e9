"""Real packets through real netfilter agree with the mock kernel's prediction.

One lab per module and mode (iptables, nftables): kind's three nodes, a ``web`` Deployment
(3 pods on the two workers) behind Services of every type and policy, CoreDNS on the
control plane. For each probe, the mock kernel traces the packet on the node that decides
its fate, with the *same* rendering the lab's kernel was loaded with, and
:func:`backends.lab.probe.disagreements` compares: the pods reached (set and shares, a
chi-square test with p < 1e-5 as the failure threshold), REJECT = refused, DROP = timed
out, and the source address each pod saw. A few hypothesis-drawn Services run on their
own labs at the end.

Needs root, ``ip``, ``iptables-restore`` and ``nft``; skips otherwise (fails in CI).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.lab.executor import load_meta
from backends.lab.session import Check, Lab, running_lab
from kservice.cluster import Cluster
from kservice.embedded import new_cluster

pytestmark = pytest.mark.kernel

LB_VIP = "172.18.255.200"
LB_LOCAL_VIP = "172.18.255.201"
EXTERNAL_IP = "198.51.100.50"
ALLOWED_CLIENT = "203.0.113.7"
WORKER, WORKER2, CP = "kind-worker", "kind-worker2", "kind-control-plane"
WORKER_IP, WORKER2_IP, CP_IP = "172.18.0.3", "172.18.0.4", "172.18.0.2"


def _deployment(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{
                                  "name": "c", "image": "registry.k8s.io/serve_hostname",
                                  "ports": [{"name": "http", "containerPort": 9376},
                                            {"name": "dns", "containerPort": 5353,
                                             "protocol": "UDP"}]}]}}},
    }


def _service(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


def set_lb_status(cluster: Cluster, name: str, ip: str) -> None:
    """What a cloud controller / MetalLB writes: status.loadBalancer.ingress."""
    live = cluster.get("Service", name, "default")
    m = live.to_manifest()
    m["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
    cluster.put_raw(attrs.evolve(live, status=cluster.decode(m).status))


def scenario_cluster() -> Cluster:
    cluster = new_cluster()
    objs = [
        _deployment("web", 3, {"app": "web"}),
        # Named targetPort "http" -> 9376 on every pod (named ports).
        _service("web", {"type": "ClusterIP", "clusterIP": "10.96.100.10"}),
        _service("web-np", {"type": "NodePort",
                            "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                       "nodePort": 30080}]}),
        _service("web-local", {"type": "NodePort", "externalTrafficPolicy": "Local",
                               "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                          "nodePort": 30081}]}),
        _service("web-int-local", {"clusterIP": "10.96.100.11",
                                   "internalTrafficPolicy": "Local"}),
        _service("web-aff", {"clusterIP": "10.96.100.12", "sessionAffinity": "ClientIP"}),
        _service("web-lb", {"type": "LoadBalancer",
                            "loadBalancerSourceRanges": ["203.0.113.0/24"],
                            "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                       "nodePort": 30082}]}),
        _service("web-eip", {"clusterIP": "10.96.100.13", "externalIPs": [EXTERNAL_IP]}),
        _service("web-udp", {"clusterIP": "10.96.100.14",
                             "ports": [{"name": "dns", "port": 53, "targetPort": "dns",
                                        "protocol": "UDP"}]}),
        _service("web-lb-local", {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                  "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                             "nodePort": 30083}]}),
        # A hostNetwork pod: its endpoint is the node's own address.
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "hostweb", "namespace": "default", "labels": {"app": "hostweb"}},
         "spec": {"nodeName": WORKER2, "hostNetwork": True,
                  "containers": [{"name": "c", "ports": [{"name": "https",
                                                          "containerPort": 8443}]}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web-host", "namespace": "default"},
         "spec": {"clusterIP": "10.96.100.16", "selector": {"app": "hostweb"},
                  "ports": [{"port": 443, "targetPort": "https"}]}},
        # Bare pods (no controller replaces them) for serving-terminating endpoints.
        *({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"term-{i}", "namespace": "default", "labels": {"app": "term"}},
           "spec": {"nodeName": WORKER,
                    "containers": [{"name": "c", "ports": [{"containerPort": 9376}]}]}}
          for i in (1, 2)),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "term", "namespace": "default"},
         "spec": {"clusterIP": "10.96.100.17", "selector": {"app": "term"},
                  "ports": [{"port": 80, "targetPort": 9376}]}},
        # ExternalName: DNS only, kube-proxy renders nothing for it (the rules still load).
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web-extname", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "example.com"}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "empty", "namespace": "default"},
         "spec": {"clusterIP": "10.96.100.15", "selector": {"app": "nothing"},
                  "ports": [{"port": 80, "targetPort": 9376}]}},
    ]
    with cluster.transaction():
        for m in objs:
            cluster.apply(cluster.decode(m))
    set_lb_status(cluster, "web-lb", LB_VIP)
    set_lb_status(cluster, "web-lb-local", LB_LOCAL_VIP)
    # Both "term" pods terminating while still serving: kube-proxy falls back to them.
    from kservice.workloads import terminate_pod

    for i in (1, 2):
        terminate_pod(cluster, f"term-{i}", "default")
    return cluster


def _modes() -> list[str]:
    return ["iptables", "nftables"]


@pytest.fixture(scope="module", params=_modes())
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, Cluster]]:
    mode = request.param
    require_kernel_tools("iptables-restore" if mode == "iptables" else "nft")
    _require_backend(mode)
    cluster = scenario_cluster()
    name = f"kc{os.getpid() % 10000}{mode[0]}"
    with running_lab(cluster, name, mode) as lab:
        if not (load_meta(name) or {}).get("bridge_nf"):
            # Same-node pod replies bypass conntrack without br_netfilter: the lab would
            # run and disagree, for a reason that is the host's, not the rules'.
            _skip_or_fail("br_netfilter is not available (modprobe br_netfilter)")
        yield lab, cluster


def require_kernel_tools(*binaries: str) -> None:
    """The ``kernel_tools`` policy for a module-scoped fixture (which cannot request the
    function-scoped fixture): skip without root or tools; in CI the skip becomes a failure."""
    missing = [b for b in ("ip", "sysctl", *binaries) if shutil.which(b) is None]
    reason = ("kernel tests need root (network namespaces)" if os.geteuid() != 0 else
              "missing binaries: " + ", ".join(missing) if missing else None)
    if reason is not None:
        _skip_or_fail(reason)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1":
        pytest.fail(f"KSERVICE_REQUIRE_KERNEL=1 but {reason}")
    pytest.skip(reason)


def _require_backend(mode: str) -> None:
    """The nftables backend is built in parallel; a backend that cannot render is a skip
    here (a failure in CI, as any kernel-test skip)."""
    from kservice.backend import get_backend
    from kservice.errors import KServiceError

    try:
        get_backend(mode)
    except KServiceError as exc:
        pytest.skip(f"backend {mode} does not load: {exc}")


def pods_on(cluster: Cluster, node: str, app: str = "web") -> list[str]:
    return sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in cluster.list("Pod")
                  if p.spec.node_name == node and p.metadata.labels.get("app") == app)


def assert_agrees(check: Check) -> None:
    assert check.agree, check.report()
    if not check.confirmed:
        # Agreed on a re-probe only: not a failure, but shown in pytest's warnings summary.
        warnings.warn(LabOneOff("disagreed once, then agreed:\n" + check.report()),
                      stacklevel=2)


class LabOneOff(UserWarning):
    """A lab probe that disagreed once and agreed when repeated."""


def web_pod(cluster: Cluster, node: str) -> str:
    pods = pods_on(cluster, node)
    assert pods, f"no web pod on {node}"
    return f"pod/{pods[0]}"


def coredns_pod(cluster: Cluster) -> str:
    """A CoreDNS pod: the control plane's only pods, so a client on a node without web."""
    return "pod/" + sorted(f"{p.metadata.namespace}/{p.metadata.name}"
                           for p in cluster.list("Pod") if p.spec.node_name == CP)[0]


# --------------------------------------------------------------------------- scenarios


def test_topology_places_web_pods_on_both_workers(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    assert pods_on(cluster, WORKER) and pods_on(cluster, WORKER2)
    # Every Service type is in the scenario; ExternalName has no proxy rules at all.
    types = {s.spec.type for s in cluster.list("Service")}
    assert types >= {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}
    assert all("web-extname" not in str(sp.name) for st in lb.states.values()
               for sp in st.service_ports)


def test_cluster_ip_from_a_pod_includes_hairpin(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    # From a web pod: one of the three endpoints is the client itself (hairpin: masqueraded
    # to the bridge address), one is local, one remote.
    check = lb.check(web_pod(cluster, WORKER), "10.96.100.10:80", count=60)
    assert_agrees(check)
    assert len(check.observed.answers) == 3


def test_cluster_ip_from_another_node(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    assert_agrees(lb.check(coredns_pod(cluster), "10.96.100.10:80", count=45))


def test_cluster_ip_from_the_node_itself(lab: tuple[Lab, Cluster]) -> None:
    lb, _ = lab
    assert_agrees(lb.check(f"node/{WORKER}", "10.96.100.10:80", count=30))


def test_udp_cluster_ip_and_kube_dns(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    assert_agrees(lb.check(web_pod(cluster, WORKER2), "10.96.100.14:53/udp", count=45))
    assert_agrees(lb.check(web_pod(cluster, WORKER2), "10.96.0.10:53/udp", count=30))
    assert_agrees(lb.check(web_pod(cluster, WORKER2), "10.96.0.10:53/tcp", count=30))


@pytest.mark.parametrize("node_ip", [WORKER_IP, WORKER2_IP, CP_IP])
def test_node_port_cluster_policy_from_outside(lab: tuple[Lab, Cluster], node_ip: str) -> None:
    lb, _ = lab
    assert_agrees(lb.check("external", f"{node_ip}:30080", count=45))


@pytest.mark.parametrize("node_ip", [WORKER_IP, WORKER2_IP, CP_IP])
def test_node_port_local_policy_keeps_client_ip(lab: tuple[Lab, Cluster], node_ip: str) -> None:
    lb, _ = lab
    # The control plane has no web pod: a Local NodePort drops there.
    count = 3 if node_ip == CP_IP else 30
    check = lb.check("external", f"{node_ip}:30081", count=count, timeout=0.4)
    assert_agrees(check)


def test_internal_traffic_policy_local(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    assert_agrees(lb.check(web_pod(cluster, WORKER), "10.96.100.11:80", count=30))
    # No web pod on the control plane: internalTrafficPolicy Local drops.
    assert_agrees(lb.check(coredns_pod(cluster), "10.96.100.11:80", count=3, timeout=0.4))


def test_session_affinity_sticks(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    check = lb.check(coredns_pod(cluster), "10.96.100.12:80", count=20, sticky=True)
    assert_agrees(check)


def test_load_balancer_source_ranges(lab: tuple[Lab, Cluster]) -> None:
    lb, _ = lab
    allowed = lb.check("external", f"{LB_VIP}:80", count=30, bind=ALLOWED_CLIENT, via=WORKER)
    assert_agrees(allowed)
    assert allowed.observed.answers
    denied = lb.check("external", f"{LB_VIP}:80", count=3, timeout=0.4, via=WORKER2)
    assert_agrees(denied)


def test_external_ip(lab: tuple[Lab, Cluster]) -> None:
    lb, _ = lab
    assert_agrees(lb.check("external", f"{EXTERNAL_IP}:80", count=30, via=WORKER2))


def test_service_without_endpoints_rejects(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    check = lb.check(web_pod(cluster, WORKER), "10.96.100.15:80", count=10)
    assert_agrees(check)
    assert check.observed.refused == 10


@pytest.mark.parametrize("source", ["web-pod-worker", f"node/{WORKER2}", f"node/{CP}"])
def test_kubernetes_service_reaches_the_apiserver(lab: tuple[Lab, Cluster], source: str) -> None:
    # default/kubernetes -> 172.18.0.2:6443: the apiserver answers on the control plane's
    # own address (a hostNetwork static pod; the lab runs a responder there).
    lb, cluster = lab
    if source == "web-pod-worker":
        source = web_pod(cluster, WORKER)
    check = lb.check(source, "10.96.0.1:443", count=5)
    api = "kube-system/kube-apiserver-kind-control-plane"
    assert check.observed.answers == {api: 5}, check.report()
    # From the control plane itself the packet is masqueraded out of lo: the kernel picks
    # a universe-scope address (the node IP), not 127.0.0.1 -- the mock kernel agrees.
    assert_agrees(check)


def test_localhost_node_port(lab: tuple[Lab, Cluster]) -> None:
    lb, _ = lab
    # iptables mode answers NodePorts on 127.0.0.1 (route_localnet); nftables does not.
    assert_agrees(lb.check(f"node/{WORKER}", "127.0.0.1:30080", count=30, timeout=0.4))


def test_pod_to_another_nodes_node_port(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    # Not a local address on the client's node: forwarded to kind-worker2, decided there.
    check = lb.check(web_pod(cluster, WORKER), f"{WORKER2_IP}:30080", count=45)
    assert_agrees(check)
    assert any("[node kind-worker2]" in r for o in check.trace.outcomes for r in o.rules)


def test_pod_and_node_to_local_policy_node_ports(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    assert_agrees(lb.check(web_pod(cluster, WORKER), f"{WORKER_IP}:30081", count=30))
    # From a pod of another node: kube-proxy treats pod traffic as cluster traffic and does
    # not masquerade it, so replies from endpoints on a third node bypass the control plane
    # and the client drops them -- the trace delivers the first packet, the lab expects a
    # timeout (probe.expectation: asymmetric replies). Only the client's own pod (hairpin,
    # masqueraded) answers.
    check = lb.check(web_pod(cluster, WORKER2), f"{CP_IP}:30081", count=18, timeout=0.3)
    assert_agrees(check)
    assert check.expected.asymmetric and check.observed.timeout
    assert_agrees(lb.check(f"node/{WORKER2}", f"{WORKER2_IP}:30081", count=30, timeout=0.4))
    assert_agrees(lb.check(f"node/{CP}", f"{CP_IP}:30081", count=30, timeout=0.4))


def test_in_cluster_clients_of_load_balancer_and_external_ips(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    # Pods reaching a LoadBalancer IP or an externalIP are short-circuited on their node.
    assert_agrees(lb.check(coredns_pod(cluster), f"{LB_LOCAL_VIP}:80", count=30))
    assert_agrees(lb.check(coredns_pod(cluster), f"{LB_VIP}:80", count=30, timeout=0.4))
    assert_agrees(lb.check(web_pod(cluster, WORKER), f"{EXTERNAL_IP}:80", count=30))
    assert_agrees(lb.check(f"node/{WORKER}", f"{EXTERNAL_IP}:80", count=30))


@pytest.mark.parametrize("via", [WORKER, WORKER2, CP])
def test_load_balancer_local_policy(lab: tuple[Lab, Cluster], via: str) -> None:
    lb, _ = lab
    assert_agrees(lb.check("external", f"{LB_LOCAL_VIP}:80", count=30, timeout=0.4, via=via))


@pytest.mark.parametrize("source", [
    "web-pod-worker", "web-pod-worker2", f"node/{WORKER}", f"node/{WORKER2}"])
def test_host_network_endpoint(lab: tuple[Lab, Cluster], source: str) -> None:
    lb, cluster = lab
    if source.startswith("web-pod-"):
        source = web_pod(cluster, WORKER if source.endswith("worker") else WORKER2)
    check = lb.check(source, "10.96.100.16:443", count=10)
    assert check.observed.answers == {"default/hostweb": 10}, check.report()
    assert_agrees(check)


def test_serving_terminating_fallback(lab: tuple[Lab, Cluster]) -> None:
    lb, cluster = lab
    check = lb.check(coredns_pod(cluster), "10.96.100.17:80", count=30)
    assert_agrees(check)
    assert set(check.observed.answers) == {"default/term-1", "default/term-2"}


# --------------------------------------------------------------------------- generated


@st.composite
def small_services(draw: st.DrawFn) -> dict[str, Any]:
    """One Service over 1-3 web pods: any type, both traffic policies, ClientIP affinity,
    LoadBalancer source ranges; shrinks to a ClusterIP over one pod."""
    svc_type = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    spec: dict[str, Any] = {"type": svc_type, "clusterIP": "10.96.200.10"}
    if svc_type != "ClusterIP":
        spec["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
        spec["ports"] = [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30090}]
    if svc_type == "LoadBalancer" and draw(st.booleans()):
        spec["loadBalancerSourceRanges"] = ["203.0.113.0/24"]
    spec["internalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
    return {"spec": spec, "replicas": draw(st.integers(1, 3)),
            "probe_node": draw(st.sampled_from([WORKER, WORKER2, CP]))}


@pytest.mark.parametrize("mode", _modes())
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=small_services())
def test_generated_small_clusters(kernel_tools: None, mode: str, case: dict[str, Any]) -> None:
    if shutil.which("nft" if mode == "nftables" else "iptables-restore") is None:
        pytest.skip(f"{mode} tools missing")
    _require_backend(mode)
    cluster = new_cluster()
    with cluster.transaction():
        cluster.apply(cluster.decode(_deployment("web", case["replicas"], {"app": "web"})))
        cluster.apply(cluster.decode(_service("gen", case["spec"])))
    if case["spec"]["type"] == "LoadBalancer":
        set_lb_status(cluster, "gen", LB_VIP)
    sticky = case["spec"].get("sessionAffinity") == "ClientIP"
    name = f"kg{os.getpid() % 10000}{mode[0]}"
    with running_lab(cluster, name, mode) as lb:
        node = case["probe_node"]
        pods = pods_on(cluster, node) or sorted(
            f"{p.metadata.namespace}/{p.metadata.name}" for p in cluster.list("Pod")
            if p.spec.node_name == node and not p.spec.host_network)
        sources = [f"pod/{pods[0]}"] if pods else []
        sources.append(f"node/{node}")
        probes: list[tuple[str, str, dict[str, Any]]] = [
            (s, "10.96.200.10:80", {}) for s in sources]
        if case["spec"]["type"] != "ClusterIP":
            probes.append(("external", f"{lb.plan.node(node).ip}:30090", {}))
        if case["spec"]["type"] == "LoadBalancer":
            probes.append(("external", f"{LB_VIP}:80", {"via": node}))
            probes.append(("external", f"{LB_VIP}:80", {"via": node, "bind": ALLOWED_CLIENT}))
        for source, target, kw in probes:
            c = lb.check(source, target, count=30, timeout=0.4, sticky=sticky, **kw)
            assert c.agree, f"scenario {case}\n" + c.report()


def test_unallocated_service_ip_and_wrong_port(lab: tuple[Lab, Cluster]) -> None:
    # No Service owns 10.96.250.250: no rule in either mode (the emulated cluster stores no
    # ServiceCIDR object, so nftables' "Drop traffic to unallocated ClusterIPs" is absent):
    # routed out of the cluster, nobody answers. A Service's ClusterIP on a port it does not
    # serve: nftables mode rejects it ("Reject traffic to invalid ports of ClusterIPs"),
    # iptables mode has no rule for it.
    lb, cluster = lab
    pod = web_pod(cluster, WORKER)
    assert_agrees(lb.check(pod, "10.96.250.250:80", count=3, timeout=0.3))
    check = lb.check(pod, "10.96.100.10:81", count=5, timeout=0.3)
    assert_agrees(check)
    if lb.mode == "nftables":
        assert check.observed.refused == 5


# --------------------------------------------------------------------------- semantics

#: The reference semantics says a NodePort answers on 127.0.0.1 whatever the mode, but
#: kube-proxy's nftables mode never implemented localhost NodePorts (route_localnet and
#: the 127.0.0.0/8 rules are iptables-only): the real kernel refuses, as the mock does.
SEMANTICS_NFTABLES_LOCALHOST = "nftables node/kind-worker -> 127.0.0.1:30080"


def test_reference_semantics_agree_with_the_kernel(lab: tuple[Lab, Cluster]) -> None:
    """``kservice.semantics.expected_trace`` (what Kubernetes promises, no rule text) against
    real packets, for every single-node probe of the scenario."""
    from backends.lab.probe import disagreements, expectation, parse_target
    from kservice.semantics import expected_trace

    lb, cluster = lab
    w, w2, dns = web_pod(cluster, WORKER), web_pod(cluster, WORKER2), coredns_pod(cluster)
    probes: list[tuple[str, str, dict[str, Any]]] = [
        (w, "10.96.100.10:80", {}), (dns, "10.96.100.10:80", {}),
        (f"node/{WORKER}", "10.96.100.10:80", {}), (w2, "10.96.100.14:53/udp", {}),
        ("external", f"{WORKER_IP}:30080", {}), ("external", f"{CP_IP}:30080", {}),
        ("external", f"{WORKER_IP}:30081", {}), ("external", f"{CP_IP}:30081", {}),
        (w, "10.96.100.11:80", {}), (dns, "10.96.100.11:80", {}),
        ("external", f"{LB_VIP}:80", {"via": WORKER, "bind": ALLOWED_CLIENT}),
        ("external", f"{LB_VIP}:80", {"via": WORKER2}),
        ("external", f"{EXTERNAL_IP}:80", {"via": WORKER2}), (w, "10.96.100.15:80", {}),
        (f"node/{WORKER}", "127.0.0.1:30080", {}), (w, f"{WORKER_IP}:30081", {}),
        (f"node/{WORKER2}", f"{WORKER2_IP}:30081", {}), (dns, f"{LB_LOCAL_VIP}:80", {}),
        (w, f"{EXTERNAL_IP}:80", {}), ("external", f"{LB_LOCAL_VIP}:80", {"via": CP}),
        (f"node/{WORKER2}", "10.96.100.16:443", {}), (dns, "10.96.100.17:80", {}),
    ]
    found: dict[str, list[str]] = {}
    for source, target, kw in probes:
        node, packet, _trace = lb.predict(source, target, **kw)
        sem = expectation(lb.plan, expected_trace(lb.states[node], packet),
                          parse_target(target)[2])
        count = 3 if set(sem.shares) == {"timeout"} else 30
        for _round in range(2):  # a disagreement must repeat to count (as Lab.check)
            obs = lb.probe(source, target, count=count, timeout=0.3, **kw)
            problems = disagreements(obs, sem, oracle="the reference semantics")
            if not problems:
                break
        if problems:
            found[f"{lb.mode} {source} -> {target}"] = problems
    known = {SEMANTICS_NFTABLES_LOCALHOST} if lb.mode == "nftables" else set()
    assert set(found) == known, found
