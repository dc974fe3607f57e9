"""Endpoint controllers at scale.

* ``test_apply_10k_services_100k_pods``: 10,000 Services and 10,000 Deployments x 10 replicas
  (100,000 pods) applied through the full pipeline -- Service API allocation, the workload
  controllers, scheduling, pod IPAM, the EndpointSlice and Endpoints controllers. Targets:
  <= 10 s and <= 1.5 GiB peak RSS (``resource.getrusage``; tracemalloc would distort time).
  The objects are applied in one :meth:`~kservice.cluster.Cluster.transaction`, as
  ``kservice apply -f`` applies a file (that is also what lets the store defer the garbage
  collector's full passes during the load -- see ``Cluster.transaction``).
* ``test_readiness_change_to_slices_and_snapshot``: on that cluster, one pod's readiness
  flips; the change reaches its EndpointSlice, the legacy Endpoints and one node's proxier
  snapshot (:class:`~kservice.proxy.snapshot.NodeStateTracker`). Target: <= 5 ms.

Run: ``.venv/bin/python -m pytest benchmarks/bench_endpoints.py -p no:cacheprovider -s``
(``KSERVICE_BENCH_SERVICES`` scales the cluster down for a quick look).
"""

from __future__ import annotations

import gc
import os
import resource
import time
from typing import Any

import pytest

from kservice import endpoints, workloads
from kservice.api import install_service_api
from kservice.cluster import Cluster
from kservice.config import ClusterConfig
from kservice.models import Service
from kservice.models.meta import ObjectMeta
from kservice.models.workloads import Deployment, Node, NodeAddress, NodeStatus
from kservice.proxy.snapshot import NodeStateTracker

SERVICES = int(os.environ.get("KSERVICE_BENCH_SERVICES", "10000"))
REPLICAS = 10
NODES = 20


def _service(i: int) -> Service:
    return Service.from_manifest({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"svc{i}", "namespace": "default"},
        "spec": {"selector": {"app": f"app{i}"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})


def _deployment(i: int) -> Any:
    return Deployment.from_manifest({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"app{i}", "namespace": "default"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": f"app{i}"}},
                 "template": {"metadata": {"labels": {"app": f"app{i}"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx",
                                                       "ports": [{"name": "http",
                                                                  "containerPort": 8080}]}]}}}})


def build() -> Cluster:
    # /16 per node so 20 nodes hold 100k pods (kind's /24 would need 400 nodes).
    c = Cluster(ClusterConfig(pod_subnets=("10.0.0.0/8",), node_cidr_mask_size_v4=16))
    install_service_api(c)
    workloads.install(c)
    endpoints.install(c)
    with c.transaction():
        for n in range(NODES):
            c.create(Node(metadata=ObjectMeta(name=f"node{n:02d}"),
                          status=NodeStatus(addresses=(NodeAddress("InternalIP",
                                                                   f"172.18.0.{n + 2}"),))))
        for i in range(SERVICES):
            c.create(_service(i))
        for i in range(SERVICES):
            c.create(_deployment(i))
    return c


@pytest.fixture(scope="module")
def big() -> dict[str, Any]:
    # Time spent in the cyclic garbage collector is reported separately (it is included in
    # the wall and CPU figures): at this scale it was a third of the time before the store
    # deferred full collections during bulk transactions.
    gc_time = {"total": 0.0, "start": 0.0}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time["start"] = time.process_time()
        else:
            gc_time["total"] += time.process_time() - gc_time["start"]

    gc.callbacks.append(on_gc)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        c = build()
    finally:
        gc.callbacks.remove(on_gc)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cluster": c, "elapsed": elapsed, "cpu": cpu, "gc": gc_time["total"],
            "peak_mib": peak_mib}


def test_apply_10k_services_100k_pods(benchmark: Any, big: dict[str, Any]) -> None:
    c = big["cluster"]
    # The build is timed once by the fixture (it cannot be repeated cheaply); the benchmark
    # records that figure.
    benchmark.extra_info.update(seconds=round(big["elapsed"], 2),
                                cpu_seconds=round(big["cpu"], 2),
                                gc_seconds=round(big["gc"], 2),
                                peak_rss_mib=round(big["peak_mib"], 1))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n{SERVICES} services, {SERVICES * REPLICAS} pods: {big['elapsed']:.1f} s wall, "
          f"{big['cpu']:.1f} s CPU (of which GC {big['gc']:.1f} s), "
          f"peak RSS {big['peak_mib']:.0f} MiB")
    assert len(c.list("Pod")) == SERVICES * REPLICAS
    slices = c.list("EndpointSlice")
    assert len(slices) == SERVICES
    assert sum(len(s.endpoints) for s in slices) == SERVICES * REPLICAS
    assert big["peak_mib"] <= 1536


def test_readiness_change_to_slices_and_snapshot(benchmark: Any, big: dict[str, Any]) -> None:
    c = big["cluster"]
    tracker = NodeStateTracker(c, "node00", "IPv4")
    tracker.state()
    pods = [p for p in c.list("Pod", "default") if p.spec.node_name == "node00"][:50]
    flip = {"ready": False}

    def once() -> None:
        flip["ready"] = not flip["ready"]
        p = pods[0]
        workloads.set_pod_ready(c, p.metadata.name, "default", flip["ready"])
        tracker.state()

    benchmark.pedantic(once, rounds=50, iterations=1, warmup_rounds=2)
    mean = benchmark.stats.stats.mean
    print(f"\nreadiness change -> slice + Endpoints + node snapshot: {mean * 1000:.2f} ms")
    app = pods[0].metadata.labels["app"]
    (sl,) = [s for s in c.list("EndpointSlice", "default")
             if s.metadata.labels["kubernetes.io/service-name"] == f"svc{app[3:]}"]
    ep = next(e for e in sl.endpoints if e.target_ref.name == pods[0].metadata.name)
    assert ep.conditions.ready == flip["ready"]
    assert mean <= 0.005
