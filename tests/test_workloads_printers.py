"""kubectl table columns for nodes, pods, workloads, EndpointSlices and Endpoints."""

from __future__ import annotations

import datetime as dt

import pytest

from kservice.models.discovery import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    LegacyEndpointPort,
    SliceEndpoint,
)
from kservice.workloads._printers import (
    format_endpoints,
    format_slice_endpoints,
    format_slice_ports,
)

printers = pytest.importorskip("kservice.cli.printers")


def test_endpoints_column_matches_kubectl_format() -> None:
    # kube-dns in kind: three ports over two pods -> "+ 3 more..."
    ports = (LegacyEndpointPort("dns", 53, "UDP"), LegacyEndpointPort("dns-tcp", 53, "TCP"),
             LegacyEndpointPort("metrics", 9153, "TCP"))
    ep = Endpoints(subsets=(EndpointSubset(
        addresses=(EndpointAddress("10.244.0.2"), EndpointAddress("10.244.0.3")),
        ports=ports),))
    assert format_endpoints(ep) == "10.244.0.2:53,10.244.0.3:53,10.244.0.2:53 + 3 more..."
    assert format_endpoints(Endpoints()) == "<none>"
    only_not_ready = Endpoints(subsets=(EndpointSubset(
        not_ready_addresses=(EndpointAddress("10.0.0.1"),), ports=ports[:1]),))
    assert format_endpoints(only_not_ready) == ""
    headless = Endpoints(subsets=(EndpointSubset(addresses=(EndpointAddress("fd00::1"),)),))
    assert format_endpoints(headless) == "fd00::1"


def test_endpointslice_columns() -> None:
    assert format_slice_ports(()) == "<unset>"
    assert format_slice_ports([EndpointPort("a", 80), EndpointPort("b", None),
                               EndpointPort(None, None)]) == "80,b,*"
    eps = [SliceEndpoint(addresses=(f"10.0.0.{i}",)) for i in range(5)]
    assert format_slice_endpoints(eps) == "10.0.0.0,10.0.0.1,10.0.0.2 + 2 more..."
    assert format_slice_endpoints([]) == "<unset>"


def test_pod_columns_registered() -> None:
    from kservice import workloads
    from kservice.cluster import Cluster

    c = Cluster()
    workloads.seed_default(c)
    ctx = printers.PrintContext(now=dt.datetime.now(dt.UTC), cluster=c)
    out = printers.print_objects(c.list("Pod", "kube-system"), output="wide", ctx=ctx,
                                 cluster=c)
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "NOMINATED" in header and "GATES" in header
    assert "10.244.0.2" in out and "kind-control-plane" in out and "1/1" in out
    p = c.list("Pod", "kube-system")[0]
    workloads.terminate_pod(c, p.metadata.name, "kube-system")
    out = printers.print_objects([c.get("Pod", p.metadata.name, "kube-system")], output=None,
                                 ctx=ctx, cluster=c)
    assert "Terminating" in out
