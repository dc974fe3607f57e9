"""Ingress models, validation (vector 99), legacy conversion and routing (vector 98)."""

from __future__ import annotations

from typing import Any

import pytest
from _dns_fixtures import add, ep, make_cluster, slice_, svc

from kservice.errors import InvalidInput, InvalidObject
from kservice.ingress import (
    Ingress,
    NoRoute,
    host_matches,
    ingress_from_legacy,
    install,
    path_match,
    route,
    validate_ingress,
)


def ing(name: str = "x", *, rules: list[dict[str, Any]] | None = None,
        default: dict[str, Any] | None = None, ns: str = "default",
        **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if rules is not None:
        spec["rules"] = rules
    if default is not None:
        spec["defaultBackend"] = default
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns, **meta}, "spec": spec}


def backend(name: str, port: int | str = 80) -> dict[str, Any]:
    p = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": name, "port": p}}


def paths(*items: tuple[str, str | None, str], host: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": [
        {"path": p, **({"pathType": t} if t else {}), "backend": backend(b)}
        for p, t, b in items]}}
    if host is not None:
        out["host"] = host
    return out


def errors(manifest: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_ingress(Ingress.from_manifest(manifest))]


# ------------------------------------------------------------------ vector 99: validation


def test_path_without_pathtype() -> None:
    assert errors(ing(rules=[paths(("/", None, "s"))])) == [
        "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]


def test_relative_prefix_path() -> None:
    assert errors(ing(rules=[paths(("foo", "Prefix", "s"))])) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path']


@pytest.mark.parametrize("path,detail", [
    ("/a//b", "must not contain '//'"), ("/a/./b", "must not contain '/./'"),
    ("/a/../b", "must not contain '/../'"), ("/a%2fb", "must not contain '%2f'"),
    ("/a%2Fb", "must not contain '%2F'"), ("/a/..", "cannot end with '/..'"),
    ("/a/.", "cannot end with '/.'"),
])
def test_bad_path_sequences(path: str, detail: str) -> None:
    assert errors(ing(rules=[paths((path, "Prefix", "s"))])) == [
        f'spec.rules[0].http.paths[0].path: Invalid value: "{path}": {detail}']


def test_implementation_specific_allows_empty_path() -> None:
    assert errors(ing(rules=[paths(("", "ImplementationSpecific", "s"))])) == []
    assert errors(ing(rules=[paths(("x", "ImplementationSpecific", "s"))])) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path']


def test_ip_host() -> None:
    assert errors(ing(rules=[paths(("/", "Prefix", "s"), host="1.2.3.4")])) == [
        'spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address']


@pytest.mark.parametrize("host", ["*.*.foo.com", "*foo.com", "f*.foo.com", "*"])
def test_bad_wildcards(host: str) -> None:
    (msg,) = errors(ing(rules=[paths(("/", "Prefix", "s"), host=host)]))
    assert msg.startswith(f'spec.rules[0].host: Invalid value: "{host}": a wildcard DNS-1123 '
                          "subdomain must start with '*.'")
    assert msg.endswith("regex used for validation is "
                        r"'\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def test_host_with_port_fails() -> None:
    (msg,) = errors(ing(rules=[paths(("/", "Prefix", "s"), host="foo.com:80")]))
    assert msg.startswith('spec.rules[0].host: Invalid value: "foo.com:80": a lowercase RFC 1123 '
                          "subdomain")


def test_empty_spec_full_message() -> None:
    with pytest.raises(InvalidObject) as info:
        c = make_cluster()
        install(c)
        c.create(c.decode(ing()))
    assert str(info.value) == (
        'Ingress.networking.k8s.io "x" is invalid: spec: Invalid value: '
        "[]networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified")


def test_backend_errors() -> None:
    no_port = ing(rules=[{"http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s"}}}]}}])
    assert errors(no_port) == [
        "spec.rules[0].http.paths[0].backend: Required value: port name or number is required"]
    both = ing(default={"service": {"name": "s", "port": {"name": "http", "number": 80}}})
    assert errors(both) == [
        'spec.defaultBackend: Invalid value: "": cannot set both port name & port number']
    neither = ing(default={})
    assert errors(neither) == [
        'spec.defaultBackend: Invalid value: "": resource or service backend is required']
    two = ing(default={**backend("s"), "resource": {"kind": "Bucket", "name": "b"}})
    assert errors(two) == [
        'spec.defaultBackend: Invalid value: "": cannot set both resource and service backends']
    bad_name = ing(default=backend("Web_1"))
    (msg,) = errors(bad_name)
    assert msg.startswith('spec.defaultBackend.service.name: Invalid value: "Web_1": a DNS-1035 label')
    assert errors(ing(default=backend("s", 70000))) == [
        "spec.defaultBackend.service.port.number: Invalid value: 70000: "
        "must be between 1 and 65535, inclusive"]
    assert errors(ing(default=backend("s", "http--x"))) == [
        'spec.defaultBackend.service.port.name: Invalid value: "http--x": '
        "must not contain consecutive hyphens"]
    assert errors(ing(default={"service": {"port": {"number": 80}}})) == [
        "spec.defaultBackend.service.name: Required value"]


def test_unsupported_path_type() -> None:
    assert errors(ing(rules=[paths(("/", "Regex", "s"))])) == [
        'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": '
        'supported values: "Exact", "ImplementationSpecific", "Prefix"']


def test_rule_without_http_is_fine_but_empty_paths_is_not() -> None:
    assert errors(ing(rules=[{"host": "a.com"}])) == []
    assert errors(ing(rules=[{"host": "a.com", "http": {"paths": []}}])) == [
        "spec.rules[0].http.paths: Required value"]


def test_class_annotation_mismatch() -> None:
    m = ing(default=backend("s"), annotations={"kubernetes.io/ingress.class": "nginx"})
    m["spec"]["ingressClassName"] = "traefik"
    assert errors(m) == [
        'annotations.kubernetes.io/ingress.class: Invalid value: "nginx": '
        "must match `ingressClassName` when both are specified"]


def test_tls_hosts_and_secret() -> None:
    m = ing(default=backend("s"))
    m["spec"]["tls"] = [{"hosts": ["*.foo.com", "Bad_Host"], "secretName": "Sec"}]
    msgs = errors(m)
    assert [x.split(":")[0] for x in msgs] == ["spec.tls[0].hosts[1]", "spec.tls[0].secretName"]


def test_update_ratchets_invalid_secret_name() -> None:
    c = make_cluster()
    install(c)
    m = ing(default=backend("s"))
    m["spec"]["tls"] = [{"hosts": ["a.com"], "secretName": "ok"}]
    c.create(c.decode(m))
    old = c.get("Ingress", "x")
    bad = Ingress.from_manifest({**m, "spec": {**m["spec"], "tls": [
        {"hosts": ["a.com"], "secretName": "Bad_Name"}]}})
    assert validate_ingress(bad, old)  # was valid: no ratchet
    assert validate_ingress(bad, bad) == []  # already invalid: tolerated


def test_strategy_sets_generation_and_default_class() -> None:
    c = make_cluster()
    install(c)
    c.create(c.decode({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                       "metadata": {"name": "nginx", "annotations": {
                           "ingressclass.kubernetes.io/is-default-class": "true"}},
                       "spec": {"controller": "k8s.io/ingress-nginx"}}))
    stored = c.create(c.decode(ing(default=backend("s"))))
    assert stored.spec.ingress_class_name == "nginx"
    assert stored.metadata.generation == 1
    upd = c.update(c.decode(ing(default=backend("t"))))
    assert upd.metadata.generation == 2
    with pytest.raises(InvalidObject, match=r"spec\.controller: Required value"):
        c.create(c.decode({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                           "metadata": {"name": "bad"}, "spec": {}}))


def test_beta_versions_are_not_served_but_convert() -> None:
    legacy = {"apiVersion": "extensions/v1beta1", "kind": "Ingress",
              "metadata": {"name": "old", "namespace": "default"},
              "spec": {"backend": {"serviceName": "s", "servicePort": "http"},
                       "rules": [{"host": "a.com", "http": {"paths": [
                           {"path": "/x", "backend": {"serviceName": "t", "servicePort": 80}}]}}]}}
    c = make_cluster()
    install(c)
    with pytest.raises(InvalidInput, match=r'no matches for kind "Ingress" in version '
                                           r'"extensions/v1beta1".*removed in Kubernetes v1.22'):
        c.decode(legacy)
    v1 = ingress_from_legacy(legacy)
    spec = v1.to_manifest()["spec"]
    assert spec["defaultBackend"] == {"service": {"name": "s", "port": {"name": "http"}}}
    p = spec["rules"][0]["http"]["paths"][0]
    assert p["pathType"] == "ImplementationSpecific"
    assert p["backend"] == {"service": {"name": "t", "port": {"number": 80}}}
    back = v1.to_legacy_manifest()["spec"]
    assert back["backend"] == {"serviceName": "s", "servicePort": "http"}
    assert back["rules"][0]["http"]["paths"][0]["backend"] == {"serviceName": "t",
                                                                "servicePort": 80}
    # networking.k8s.io/v1beta1 reads the same way.
    assert ingress_from_legacy({**legacy, "apiVersion": "networking.k8s.io/v1beta1"}) == v1


# ------------------------------------------------------------------ vector 98: matching


@pytest.mark.parametrize("ptype,rule,req,ok", [
    ("Prefix", "/", "/anything/at/all", True),
    ("Exact", "/foo", "/foo", True), ("Exact", "/foo", "/bar", False),
    ("Exact", "/foo", "/foo/", False), ("Exact", "/foo/", "/foo", False),
    ("Prefix", "/foo", "/foo", True), ("Prefix", "/foo", "/foo/", True),
    ("Prefix", "/foo/", "/foo", True), ("Prefix", "/foo/", "/foo/", True),
    ("Prefix", "/aaa/bb", "/aaa/bbb", False),
    ("Prefix", "/aaa/bbb", "/aaa/bbb", True), ("Prefix", "/aaa/bbb", "/aaa/bbb/", True),
    ("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True), ("Prefix", "/aaa/bbb", "/aaa/bbbxyz", False),
    ("Prefix", "/aaa", "/ccc", False), ("Prefix", "/Foo", "/foo", False),
    ("ImplementationSpecific", "/bar/*", "/bar/x/y", True),
    ("ImplementationSpecific", "/bar/*", "/bar/", True),
    ("ImplementationSpecific", "/bar/*", "/bar", False),
    ("ImplementationSpecific", "/bar/*", "/barx", False),
    ("ImplementationSpecific", "/bar", "/bar/x", True),
    ("ImplementationSpecific", "", "/whatever", True),
])
def test_path_match_table(ptype: str, rule: str, req: str, ok: bool) -> None:
    assert (path_match(ptype, rule, req) is not None) == ok


@pytest.mark.parametrize("host,ok", [("bar.foo.com", True), ("baz.bar.foo.com", False),
                                     ("foo.com", False), (".foo.com", False)])
def test_wildcard_host(host: str, ok: bool) -> None:
    assert bool(host_matches("*.foo.com", host)) == ok


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    c = make_cluster()
    install(c)
    for name, ip in (("root", "10.244.0.1"), ("aaa", "10.244.0.2"), ("bbb", "10.244.0.3"),
                     ("exact", "10.244.0.4"), ("def", "10.244.0.5")):
        add(c, svc(name, cluster_ip=f"10.96.1.{ip.rsplit('.', 1)[1]}",
                   ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
        add(c, slice_(name, endpoints=[ep(ip), ep("10.244.9.9", ready=False)],
                      ports=[{"name": "http", "port": 8080, "protocol": "TCP"}]))
    add(c, ing("paths", rules=[paths(("/", "Prefix", "root"), ("/aaa", "Prefix", "aaa"),
                                     ("/aaa/bbb", "Prefix", "bbb"), ("/foo", "Prefix", "aaa"),
                                     ("/foo", "Exact", "exact"))],
               default=backend("def")))
    return c


@pytest.mark.parametrize("path,expect", [
    ("/aaa/ccc", ("/aaa", "aaa")), ("/aaa/bbb", ("/aaa/bbb", "bbb")), ("/ccc", ("/", "root")),
    ("/foo", ("/foo", "exact")), ("/foo/x", ("/foo", "aaa")),
])
def test_longest_path_and_exact_wins(cluster, path: str, expect: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    r = route(cluster, "any.example.com", path)
    assert (r.path, r.service_name) == expect
    assert not r.default_backend


def test_route_resolves_ready_endpoints(cluster) -> None:  # type: ignore[no-untyped-def]
    r = route(cluster, "x.com", "/aaa/bbb/c")
    assert r.to_json() == {
        "ingress": "default/paths", "host": None, "path": "/aaa/bbb", "pathType": "Prefix",
        "defaultBackend": False, "service": {"name": "bbb", "port": 80},
        "endpoints": ["10.244.0.3:8080"],
    }


def test_default_backend_when_nothing_matches() -> None:
    c = make_cluster(svc("def", cluster_ip="10.96.1.5", ports=[{"name": "http", "port": 80,
                                                                "protocol": "TCP"}]))
    install(c)
    add(c, ing("only", rules=[paths(("/aaa", "Prefix", "aaa"))], default=backend("def")))
    r = route(c, "h.com", "/ccc")
    assert r.default_backend and r.service_name == "def" and r.path is None
    assert r.endpoints == () and "no ready endpoints" in r.note
    add(c, ing("only", rules=[paths(("/aaa", "Prefix", "aaa"))]))
    with pytest.raises(NoRoute, match=r"no route for http://h\.com/ccc"):
        route(c, "h.com", "/ccc")


def test_gce_seed_example() -> None:
    """The classic example: foo.mydomain.com -> foo; mydomain.com/bar/* -> bar; rest -> default."""
    c = make_cluster(*(svc(n, cluster_ip=f"10.96.2.{i}",
                           ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])
                       for i, n in enumerate(("foo", "bar", "default-http-backend"), 1)))
    install(c)
    add(c, ing("test", rules=[
        {"host": "foo.mydomain.com", "http": {"paths": [
            {"pathType": "ImplementationSpecific", "backend": backend("foo", 8080)}]}},
        {"host": "mydomain.com", "http": {"paths": [
            {"path": "/bar/*", "pathType": "ImplementationSpecific",
             "backend": backend("bar", 8080)}]}},
    ], default=backend("default-http-backend", 8080)))
    assert route(c, "foo.mydomain.com", "/anything").service_name == "foo"
    assert route(c, "FOO.mydomain.com:80", "/").service_name == "foo"
    assert route(c, "mydomain.com", "/bar/baz").service_name == "bar"
    assert route(c, "mydomain.com", "/bar/").service_name == "bar"
    r = route(c, "mydomain.com", "/foo")
    assert r.default_backend and r.service_name == "default-http-backend"
    assert route(c, "other.com", "/bar/x").default_backend


def test_host_tiers() -> None:
    c = make_cluster()
    install(c)
    add(c, ing("a", rules=[paths(("/", "Prefix", "exact"), host="bar.foo.com"),
                           paths(("/", "Prefix", "wild"), host="*.foo.com"),
                           paths(("/", "Prefix", "all"))]))
    assert route(c, "bar.foo.com", "/").service_name == "exact"
    assert route(c, "baz.foo.com", "/").service_name == "wild"
    assert route(c, "baz.bar.foo.com", "/").service_name == "all"
    assert route(c, "foo.com", "/").service_name == "all"


def test_named_ingress_and_port_by_name(cluster) -> None:  # type: ignore[no-untyped-def]
    add(cluster, ing("other", rules=[{"http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend("aaa", "http")}]}}]))
    r = route(cluster, "h", "/zzz", "default/other")
    assert (r.ingress, r.service_port, r.endpoints) == ("default/other", "http",
                                                        ("10.244.0.2:8080",))
    missing_port = route(cluster, "h", "/foo", "paths")
    assert missing_port.service_name == "exact"
    add(cluster, ing("np", rules=[paths(("/", "Prefix", "nosuch"))]))
    r = route(cluster, "h", "/", "np")
    assert r.endpoints == () and 'service "default/nosuch" not found' in r.note


def test_cli_route(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import argparse
    import json

    import kservice.embedded
    from backends.ingresscli.cli import register
    from kservice.cli.state import open_session

    # What the coordinator wires in: the Ingress kinds installed in every embedded cluster.
    monkeypatch.setattr(kservice.embedded, "OPTIONAL_COMPONENTS",
                        (*kservice.embedded.OPTIONAL_COMPONENTS, "kservice.ingress"))
    state = str(tmp_path / "s.db")
    with open_session(state) as c:
        c.create(c.decode(ing("web", rules=[paths(("/api", "Prefix", "kubernetes"))])))
    parser = argparse.ArgumentParser()
    parser.add_argument("--state")
    register(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(["--state", state, *argv])
        return int(args.func(args))

    assert run("ingress", "route", "--host", "a.com", "--path", "/api/v1", "-o", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ingress"] == "default/web" and out["service"] == {"name": "kubernetes",
                                                                  "port": 80}
    assert out["path"] == "/api" and out["defaultBackend"] is False
    assert run("ingress", "route", "web", "--host", "a.com", "--path", "/other") == 1
    assert "no route for http://a.com/other" in capsys.readouterr().err


def test_ingress_class_validation() -> None:
    from kservice.ingress import IngressClass, validate_ingress_class

    def errs(spec: dict[str, Any]) -> list[str]:
        ic = IngressClass.from_manifest({"apiVersion": "networking.k8s.io/v1",
                                         "kind": "IngressClass", "metadata": {"name": "c"},
                                         "spec": spec})
        return [str(e) for e in validate_ingress_class(ic)]

    assert errs({"controller": "k8s.io/ingress-nginx"}) == []
    assert errs({}) == ["spec.controller: Required value"]
    assert errs({"controller": "nginx"}) == [
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path '
        '(such as "acme.io/foo")']
    assert errs({"controller": "k8s.io/x", "parameters": {"kind": "K", "name": "n",
                                                         "scope": "Namespace"}}) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    assert errs({"controller": "k8s.io/x", "parameters": {"kind": "K", "name": "n",
                                                         "scope": "Cluster",
                                                         "namespace": "a"}}) == [
        "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    c = make_cluster()
    install(c)
    stored = c.create(c.decode({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                                "metadata": {"name": "c"},
                                "spec": {"controller": "k8s.io/x",
                                         "parameters": {"kind": "K", "name": "n"}}}))
    assert stored.parameters.scope == "Cluster"  # defaulted
    changed = c.decode({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                        "metadata": {"name": "c"}, "spec": {"controller": "k8s.io/y"}})
    with pytest.raises(InvalidObject, match="field is immutable"):
        c.update(changed)


def test_route_by_class() -> None:
    c = make_cluster()
    install(c)
    a = ing("a", rules=[paths(("/", "Prefix", "nginx-svc"))])
    a["spec"]["ingressClassName"] = "nginx"
    b = ing("b", rules=[paths(("/", "Prefix", "traefik-svc"))],
            annotations={"kubernetes.io/ingress.class": "traefik"})
    add(c, a)
    add(c, b)
    assert route(c, "h", "/", ingress_class="nginx").service_name == "nginx-svc"
    assert route(c, "h", "/", ingress_class="traefik").service_name == "traefik-svc"
    with pytest.raises(NoRoute, match="of class haproxy"):
        route(c, "h", "/", ingress_class="haproxy")
