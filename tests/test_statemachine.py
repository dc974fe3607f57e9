"""A live cluster driven step by step; every node's dataplane checked after every step.

A hypothesis :class:`RuleBasedStateMachine` over a real :class:`~kservice.cluster.Cluster`
(``new_cluster()``: kind's three nodes, CoreDNS, the workload and EndpointSlice controllers).
Rules: add / delete a Service with its Deployment, scale, flip a pod's readiness, start a
graceful pod termination, change the Service type, patch session affinity, advance the
virtual clock; and send traffic that leaves state behind (a ClientIP client, an open TCP
flow).

After each step every node's :class:`NodeProxyState` is built from the store
(``build_node_state``) and synced into one mock kernel per (mode, node) that lives for the
whole run -- iptables, ipvs and nftables, as three kube-proxies would -- and:

* generated probes traced in each mode agree with the reference semantics, except for the
  documented divergences (the same classifiers as the contract tests);
* ClientIP affinity sticks: a client that was sent to endpoint E within the timeout is sent
  to E again (``kernel.send`` recorded it, a fresh source port is traced), as long as E is
  still a usable endpoint;
* conntrack wins over rules: an established TCP flow keeps its endpoint even after that
  endpoint has left the rules (scale-down, deletion), until the entry times out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from backends.iptables import IPTablesBackend
from backends.mockkernel import MockKernel
from backends.nftables import NFTablesBackend
from kservice import workloads
from kservice.backend import get_backend
from kservice.embedded import new_cluster
from kservice.proxy.snapshot import build_node_state
from kservice.proxy.types import NodeProxyState, ServicePortInfo
from kservice.semantics import expected_trace
from kservice.testing.repro import repro_yaml
from kservice.trace import Packet, TraceResult
from tests.test_contract_iptables import close, iptables_divergence
from tests.test_contract_nftables import nftables_divergence
from tests.test_equivalence import ipvs_mode_divergence

NAMES = ("web", "api")
NODES = ("kind-worker", "kind-worker2")
#: Each node's pods live in its podCIDR; a probe pod is the .250 of it (never an endpoint:
#: the IPAM hands out low addresses first).
MODES: dict[str, tuple[Callable[[], Any],
                       Callable[[NodeProxyState, Packet, TraceResult, TraceResult], str | None]]] = {
    "iptables": (IPTablesBackend, iptables_divergence),
    "ipvs": (lambda: type(get_backend("ipvs"))(), ipvs_mode_divergence),
    "nftables": (NFTablesBackend, nftables_divergence),
}
CLIENT = "192.0.2.9"
#: Modes whose kernel state (conntrack / affinity) survives a sync. IPVS reconciles its table
#: on a later sync (``IPVS.sync_to``) the way kube-proxy does, keeping persistence templates
#: and connections -- see ``test_ipvs_sync_keeps_persistence_and_connections``.
STATEFUL_MODES = ("iptables", "nftables", "ipvs")
#: Opens the TCP flows; never used by probes (with ClientIP affinity its sends would make
#: the probes sticky).
FLOW_CLIENT = "192.0.2.50"


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx",
                                                           "ports": [{"containerPort": 8080,
                                                                      "name": "http"}]}]}}}}


def _service(name: str, svc_type: str, affinity: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": svc_type, "selector": {"app": name},
                            "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}
    if affinity is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


@attrs.define
class Sticky:
    """A ClientIP client's first packet: where it went and when."""

    mode: str
    node: str
    service: str
    client: str
    endpoint: str
    at: float
    timeout: int


@attrs.define
class Flow:
    """An open TCP connection (its 5-tuple) and the endpoint conntrack bound it to."""

    mode: str
    node: str
    packet: Packet
    endpoint: str
    at: float


class ClusterDataplane(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cluster = new_cluster()
        self.specs: dict[str, tuple[str, int | None]] = {}
        self.kernels: dict[tuple[str, str], MockKernel] = {}
        self.backends: dict[tuple[str, str], Any] = {}
        self.synced: dict[tuple[str, str], NodeProxyState] = {}
        self.states: dict[str, NodeProxyState] = {}
        self.sticky: list[Sticky] = []
        self.flows: list[Flow] = []
        self.rng = random.Random(0)
        self.sport = 20000

    # ----------------------------------------------------------------- sync

    def sync(self) -> None:
        """Every node's kube-proxies sync the store's current state (partial after the first)."""
        for node in NODES:
            state = build_node_state(self.cluster, node, "IPv4")
            self.states[node] = state
            for mode, (factory, _) in MODES.items():
                key = (mode, node)
                if key not in self.kernels:
                    self.kernels[key] = MockKernel(state.node)
                    self.backends[key] = factory()
                backend = self.backends[key]
                backend.load(self.kernels[key], backend.render(state, self.synced.get(key)))
                self.synced[key] = state
        # Affinity is promised only while the endpoint stays in use: once it leaves the
        # rules its affinity memory goes with them (nftables deletes the endpoint's
        # affinity set; the kernel frees an xt_recent list with the last rule naming it),
        # so a later comeback is scheduled afresh.
        self.sticky = [s for s in self.sticky if s.endpoint in self._usable(s.node, s.service)]

    def _usable(self, node: str, name: str) -> set[str]:
        sp = self._port(node, name)
        return {e.string for e in sp.categorized.cluster} if sp is not None else set()

    def _port(self, node: str, name: str) -> ServicePortInfo | None:
        for sp in self.states[node].service_ports:
            if sp.name.namespace == "default" and sp.name.name == name:
                return sp
        return None

    def _next_sport(self) -> int:
        self.sport += 1
        return self.sport

    # ----------------------------------------------------------------- rules

    @initialize(name=st.sampled_from(NAMES), svc_type=st.sampled_from(["ClusterIP", "NodePort"]),
                affinity=st.sampled_from([None, 60, 10800]), replicas=st.integers(1, 3))
    def start(self, name: str, svc_type: str, affinity: int | None, replicas: int) -> None:
        # Start with one Service and its pods, so that every rule has something to act on.
        self.add_service(name, svc_type, affinity, replicas)

    @precondition(lambda self: len(self.specs) < len(NAMES))
    @rule(name=st.sampled_from(NAMES), svc_type=st.sampled_from(["ClusterIP", "NodePort"]),
          affinity=st.sampled_from([None, 60, 10800]), replicas=st.integers(0, 3))
    def add_service(self, name: str, svc_type: str, affinity: int | None, replicas: int) -> None:
        if name in self.specs:
            return
        c = self.cluster
        c.apply(c.decode(_deployment(name, replicas)))
        c.apply(c.decode(_service(name, svc_type, affinity)))
        self.specs[name] = (svc_type, affinity)
        self.sync()

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def delete_service(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        self.cluster.delete("Service", name, "default")
        self.cluster.delete("Deployment", name, "default")
        del self.specs[name]
        self._forget(name)
        self.sync()

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data(), replicas=st.integers(0, 4))
    def scale(self, data: st.DataObject, replicas: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        workloads.scale(self.cluster, "Deployment", name, "default", replicas)
        self.sync()

    def _pods(self, name: str) -> list[Any]:
        return sorted((p for p in self.cluster.list("Pod", "default")
                       if p.metadata.labels.get("app") == name),
                      key=lambda p: p.metadata.name)

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data(), ready=st.booleans())
    def pod_readiness(self, data: st.DataObject, ready: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        pods = self._pods(name)
        if pods:
            pod = data.draw(st.sampled_from(pods))
            workloads.set_pod_ready(self.cluster, pod.metadata.name, "default", ready)
            self.sync()

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def pod_terminating(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        pods = [p for p in self._pods(name) if not p.is_terminating]
        if pods:
            pod = data.draw(st.sampled_from(pods))
            workloads.terminate_pod(self.cluster, pod.metadata.name, "default")
            self.sync()

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def change_type(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        svc_type, affinity = self.specs[name]
        new = "ClusterIP" if svc_type == "NodePort" else "NodePort"
        self.cluster.apply(self.cluster.decode(_service(name, new, affinity)))
        self.specs[name] = (new, affinity)
        self._forget(name)
        self.sync()

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data(), affinity=st.sampled_from([None, 60, 10800]))
    def patch_affinity(self, data: st.DataObject, affinity: int | None) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        svc_type, _ = self.specs[name]
        self.cluster.apply(self.cluster.decode(_service(name, svc_type, affinity)))
        self.specs[name] = (svc_type, affinity)
        self._forget(name, flows=False)
        self.sync()

    @rule(seconds=st.sampled_from([1, 30, 61, 600]))
    def advance_clock(self, seconds: int) -> None:
        for k in self.kernels.values():
            k.clock.advance(seconds)

    @precondition(lambda self: any(a is not None for _, a in self.specs.values()))
    @rule(data=st.data(), client=st.integers(100, 102))
    def client_with_affinity(self, data: st.DataObject, client: int) -> None:
        name = data.draw(st.sampled_from(sorted(n for n, (_, a) in self.specs.items()
                                                if a is not None)))
        src = f"192.0.2.{client}"
        for (mode, node), kernel in self.kernels.items():
            sp = self._port(node, name)
            if sp is None or not sp.categorized.cluster or sp.session_affinity_timeout is None:
                continue
            out = kernel.send(Packet(src, sp.cluster_ip, sp.port, self._next_sport()), self.rng)
            assert out.verdict == "ACCEPT" and out.delivered_to, (mode, node, out)
            self.sticky = [s for s in self.sticky
                           if (s.mode, s.node, s.service, s.client) != (mode, node, name, src)]
            self.sticky.append(Sticky(mode, node, name, src, out.delivered_to,
                                      kernel.clock.now, sp.session_affinity_timeout))

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def open_flow(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.specs)))
        for (mode, node), kernel in self.kernels.items():
            sp = self._port(node, name)
            if sp is None or not sp.categorized.cluster:
                continue
            pkt = Packet(FLOW_CLIENT, sp.cluster_ip, sp.port, self._next_sport())
            out = kernel.send(pkt, self.rng)
            assert out.verdict == "ACCEPT" and out.delivered_to, (mode, node, out)
            self.flows.append(Flow(mode, node, pkt, out.delivered_to, kernel.clock.now))

    def _forget(self, name: str, *, flows: bool = True) -> None:
        """A deleted/retyped Service, or new affinity settings: affinity starts afresh."""
        self.sticky = [s for s in self.sticky if s.service != name]
        if flows and name not in self.specs:
            # The ClusterIP is released with the Service (and may be handed out again).
            self.flows = [f for f in self.flows if not self._flow_of(f, name)]

    def _flow_of(self, flow: Flow, name: str) -> bool:
        sp = self._port(flow.node, name)
        return sp is None or sp.cluster_ip == flow.packet.dst

    # ----------------------------------------------------------------- invariants

    @invariant()
    def modes_agree_with_the_reference(self) -> None:
        for node in NODES:
            state = self.states[node]
            pod = state.node.pod_cidrs[0].rsplit(".", 1)[0] + ".250"
            packets = []
            for sp in state.service_ports:
                if sp.name.namespace != "default" or sp.name.name not in self.specs:
                    continue
                proto = sp.protocol.lower()
                packets.append(Packet(pod, sp.cluster_ip, sp.port, 1111, proto))
                packets.append(Packet(state.node.ips[0], sp.cluster_ip, sp.port, 1112, proto))
                if sp.node_port:
                    packets.append(Packet(CLIENT, state.node.ips[0], sp.node_port, 1113, proto))
            for pkt in packets:
                expected = expected_trace(state, pkt)
                for mode, (_, divergence) in MODES.items():
                    actual = self.kernels[(mode, node)].trace(pkt, mode=mode)
                    if close(expected, actual) or divergence(state, pkt, expected, actual):
                        continue
                    raise AssertionError(
                        f"{mode} on {node} disagrees with the reference for {pkt}:\n"
                        f"expected {expected.distribution()}\nactual   {actual.distribution()}\n"
                        + repro_yaml(state, pkt, mode))

    @invariant()
    def affinity_sticks(self) -> None:
        for s in self.sticky:
            if s.mode not in STATEFUL_MODES:
                continue
            kernel = self.kernels[(s.mode, s.node)]
            sp = self._port(s.node, s.service)
            if sp is None or kernel.clock.now - s.at >= s.timeout:
                continue
            got = kernel.trace(Packet(s.client, sp.cluster_ip, sp.port, self._next_sport()),
                               mode=s.mode)
            assert {o.delivered_to for o in got.outcomes} == {s.endpoint}, (
                f"{s.mode} on {s.node}: ClientIP client {s.client} of {s.service} went to "
                f"{s.endpoint} {kernel.clock.now - s.at:.0f}s ago (timeout {s.timeout}s) and "
                f"is now sent to {got.distribution()}")

    @invariant()
    def established_flows_keep_their_endpoint(self) -> None:
        for f in self.flows:
            if f.mode not in STATEFUL_MODES:
                continue
            kernel = self.kernels[(f.mode, f.node)]
            if kernel.clock.now - f.at >= 86400:
                continue
            got = kernel.trace(f.packet, mode=f.mode)
            assert {o.delivered_to for o in got.outcomes} == {f.endpoint}, (
                f"{f.mode} on {f.node}: the established flow {f.packet} went to {f.endpoint}; "
                f"its next packet now goes to {got.distribution()}")


TestClusterDataplane = ClusterDataplane.TestCase
# Each step syncs 2 nodes x 3 modes and traces their probes: half the profile's examples
# (dev 12, ci 30, deep 1000), up to 20 steps each.
TestClusterDataplane.settings = settings(
    settings(), max_examples=max(3, settings().max_examples // 2), stateful_step_count=20)


def test_ipvs_sync_keeps_persistence_and_connections() -> None:
    """What kube-proxy's IPVS reconcile guarantees: a sync that only adds a destination
    leaves existing persistence templates and connections alone."""
    from kservice.testing.ipvs import endpoint, node_state, service_port

    one = [endpoint("10.244.2.7", 8080)]
    two = [*one, endpoint("10.244.2.8", 8080)]
    sp1 = service_port("ns", "web", "10.96.0.10", 80, session_affinity_timeout=10800,
                       endpoints=one)
    sp2 = service_port("ns", "web", "10.96.0.10", 80, session_affinity_timeout=10800,
                       endpoints=two)
    s1 = node_state([sp1], ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
    s2 = node_state([sp2], ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
    backend = type(get_backend("ipvs"))()
    kernel = MockKernel(s1.node)
    backend.load(kernel, backend.render(s1))
    first = kernel.send(Packet("10.244.1.5", "10.96.0.10", 80, 1000), random.Random(1))
    assert first.delivered_to == "10.244.2.7:8080"
    backend.load(kernel, backend.render(s2, s1))
    flow = kernel.trace(Packet("10.244.1.5", "10.96.0.10", 80, 1000), mode="ipvs")
    sticky = kernel.trace(Packet("10.244.1.5", "10.96.0.10", 80, 2000), mode="ipvs")
    assert {o.delivered_to for o in flow.outcomes} == {"10.244.2.7:8080"}
    assert {o.delivered_to for o in sticky.outcomes} == {"10.244.2.7:8080"}
