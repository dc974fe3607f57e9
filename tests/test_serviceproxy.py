"""The apiserver service proxy (kservice.serviceproxy) against reference vector 100."""

from __future__ import annotations

import random

import pytest
from _dns_fixtures import Passthrough, add, ep, make_cluster, pod, slice_, svc

from kservice.models.discovery import Endpoints
from kservice.serviceproxy import (
    proxy_url,
    resource_location,
    split_scheme_name_port,
)

P = "/api/v1/namespaces/default/services"


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    return make_cluster(
        svc("web", cluster_ip="10.96.5.5", selector={"app": "web"},
            ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                   {"name": "https", "port": 443, "protocol": "TCP"}]),
        slice_("web", endpoints=[ep("10.244.1.5", pod="web-1"), ep("10.244.1.6", pod="web-2"),
                                 ep("10.244.1.7", ready=False, pod="web-3")],
               ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "https", "port": 8443, "protocol": "TCP"}]),
        pod("web-1", "10.244.1.5"),
        pod("web-2", "10.244.1.6"),
        pod("web-3", "10.244.1.7"),
        svc("idle", cluster_ip="10.96.5.6", selector={"app": "idle"},
            ports=[{"port": 80, "protocol": "TCP"}]),
        slice_("idle", endpoints=[ep("10.244.2.2", ready=False, pod="idle-1")],
               ports=[{"port": 80, "protocol": "TCP"}]),
        svc("kubernetes", cluster_ip="10.96.0.1",
            ports=[{"name": "https", "port": 443, "protocol": "TCP"}]),
        # The apiserver's own endpoint: no targetRef (it is not a pod).
        slice_("kubernetes", endpoints=[ep("172.18.0.2")],
               ports=[{"name": "https", "port": 6443, "protocol": "TCP"}]),
    )


def test_split_scheme_name_port() -> None:
    assert split_scheme_name_port("web") == ("", "web", "")
    assert split_scheme_name_port("web:http") == ("", "web", "http")
    assert split_scheme_name_port("https:web:443") == ("https", "web", "443")
    for bad in ("ftp:web:80", "a:b:c:d", ":80", "https::443"):
        assert split_scheme_name_port(bad) is None


def test_numeric_port_maps_to_port_name_and_scheme(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/https:web:443/proxy/healthz")
    assert res.status == 200
    assert res.url in ("https://10.244.1.5:8443/healthz", "https://10.244.1.6:8443/healthz")


def test_kubernetes_service_is_not_proxyable(cluster) -> None:  # type: ignore[no-untyped-def]
    # isValidAddress requires a pod targetRef; the apiserver endpoint has none, so upstream
    # answers 503 with the whole id (kubernetes#105092) -- the reference's "typical"
    # https://<apiserver>:6443/healthz does not happen.
    res = proxy_url(cluster, f"{P}/https:kubernetes:443/proxy/healthz")
    assert (res.status, res.message) == (
        503, 'no endpoints available for service "https:kubernetes:443"')
    assert res.reason == "ServiceUnavailable"


def test_named_port(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/web:http/proxy/")
    assert res.status == 200
    assert res.url in ("http://10.244.1.5:8080/", "http://10.244.1.6:8080/")


def test_invalid_scheme(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/ftp:web:80/proxy/")
    assert (res.status, res.message, res.reason) == (
        400, 'invalid service request "ftp:web:80"', "BadRequest")


def test_unknown_port_number(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/web:8080/proxy/")
    assert (res.status, res.message) == (503, 'no service port 8080 found for service "web"')


def test_no_ready_endpoints(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/idle/proxy/")
    assert (res.status, res.message) == (503, 'no endpoints available for service "idle"')
    # With a port in the id, the message carries the whole id.
    res = proxy_url(cluster, f"{P}/idle:80/proxy/")
    assert (res.status, res.message) == (503, 'no endpoints available for service "idle:80"')


def test_unnamed_port_default(cluster) -> None:  # type: ignore[no-untyped-def]
    # "web" alone asks for the unnamed port; web's ports are all named.
    res = proxy_url(cluster, f"{P}/web/proxy/")
    assert (res.status, res.message) == (503, 'no endpoints available for service "web"')


def test_empty_path_redirects(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/web:http/proxy")
    assert (res.status, res.location) == (301, f"{P}/web:http/proxy/")
    res = proxy_url(cluster, f"{P}/web:http/proxy?a=1")
    assert res.location == f"{P}/web:http/proxy/?a=1"
    # Only GET and HEAD are redirected.
    post = proxy_url(cluster, f"{P}/web:http/proxy", method="POST")
    assert post.status == 200 and post.url is not None and post.url.endswith(":8080")
    # Resolution comes first: no endpoints beats the redirect.
    assert proxy_url(cluster, f"{P}/idle/proxy").status == 503


def test_removed_root_proxy(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, "/api/v1/proxy/namespaces/default/services/web/")
    assert (res.status, res.reason) == (404, "NotFound")


def test_missing_objects(cluster) -> None:  # type: ignore[no-untyped-def]
    assert proxy_url(cluster, f"{P}/nosuch:80/proxy/").message == 'services "nosuch" not found'
    assert proxy_url(cluster, f"{P}/nosuch/proxy/").message == 'endpoints "nosuch" not found'


def test_path_cleaning_and_query(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/web:http/proxy/a/../b//c/?x=1&y=2",
                    rng=random.Random(0))
    assert res.url is not None
    assert res.url.split(":8080", 1)[1] == "/b/c/?x=1&y=2"


def test_random_choice_is_seedable_and_only_valid(cluster) -> None:  # type: ignore[no-untyped-def]
    picks = {resource_location(cluster, "default", "web:http", rng=random.Random(s))
             for s in range(40)}
    assert picks == {"://10.244.1.5:8080", "://10.244.1.6:8080"}  # never the not-ready one
    a = resource_location(cluster, "default", "web:http", rng=random.Random(7))
    assert a == resource_location(cluster, "default", "web:http", rng=random.Random(7))


def test_endpoint_whose_pod_ip_differs_is_skipped(cluster) -> None:  # type: ignore[no-untyped-def]
    add(cluster, pod("web-2", "10.244.7.7"))  # the pod moved: 10.244.1.6 is stale
    picks = {resource_location(cluster, "default", "web:http", rng=random.Random(s))
             for s in range(20)}
    assert picks == {"://10.244.1.5:8080"}


def test_stored_legacy_endpoints_are_used() -> None:
    c = make_cluster(svc("leg", cluster_ip="10.96.8.8", ports=[{"name": "http", "port": 80,
                                                               "protocol": "TCP"}]),
                     pod("leg-1", "10.244.5.5"))
    c.register(Passthrough(Endpoints, "endpoints"))
    add(c, {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "leg", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.5.5", "targetRef": {
                "kind": "Pod", "name": "leg-1", "namespace": "default"}}],
                "notReadyAddresses": [{"ip": "10.244.5.6"}],
                "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}]})
    assert proxy_url(c, f"{P}/leg:80/proxy/x").url == "http://10.244.5.5:9090/x"


def test_cli(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from backends.ingresscli.cli import register

    parser = argparse.ArgumentParser()
    parser.add_argument("--state")
    register(parser.add_subparsers())
    state = str(tmp_path / "s.db")

    def run(*argv: str) -> int:
        args = parser.parse_args(["--state", state, *argv])
        return int(args.func(args))

    assert run("proxy-url", f"{P}/ftp:web:80/proxy/") == 1
    assert capsys.readouterr().err.strip() == (
        'Error from server (BadRequest): invalid service request "ftp:web:80"')
    assert run("proxy-url", "/api/v1/proxy/namespaces/default/services/web/", "-o", "json") == 1
    assert '"status": 404' in capsys.readouterr().out


def test_real_pipeline_kube_dns_metrics() -> None:
    from kservice.embedded import new_cluster

    c = new_cluster()
    if "Endpoints" not in c.kinds and "EndpointSlice" not in c.kinds:
        pytest.skip("endpoints controllers not installed in this tree yet")
    coredns = {ip for p in c.list("Pod", "kube-system") for ip in p.status.ips}
    res = proxy_url(c, "/api/v1/namespaces/kube-system/services/kube-dns:9153/proxy/metrics")
    assert res.status == 200 and res.url is not None
    host = res.url.removeprefix("http://").split(":")[0]
    assert host in coredns and res.url.endswith(":9153/metrics")


def test_path_query_parameter(cluster) -> None:  # type: ignore[no-untyped-def]
    res = proxy_url(cluster, f"{P}/web:http/proxy?path=/x/y", rng=random.Random(0))
    assert res.status == 200 and res.url is not None
    assert res.url.split(":8080", 1)[1] == "/x/y?path=/x/y"
    # A subpath wins over ?path=.
    res = proxy_url(cluster, f"{P}/web:http/proxy/z?path=/x", rng=random.Random(0))
    assert res.url is not None and res.url.split(":8080", 1)[1] == "/z?path=/x"
