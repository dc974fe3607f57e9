"""Regressions from the CLI audit: bad input never gives a traceback, and the commands
behave like kubectl (flags anywhere, read-only commands create nothing, printers' columns).

Each test names the audit item it pins. Expected strings come from upstream (kubeadm's and
kube-apiserver's validation messages, kubectl's printers, the apiserver's deprecation
warnings), not from this implementation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kservice.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    state = str(tmp_path / "state.db")

    def _run(*argv: str, state_path: str | None = None) -> tuple[int, str, str]:
        rc = main(["--state", state_path or state, *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "internal error" not in err, err
        return rc, out, err

    return _run


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --------------------------------------------------------------------------- 1. init


def test_init_refuses_a_bad_pod_cidr_like_kubeadm(run, tmp_path: Path) -> None:
    rc, _, err = run("init", "--pod-cidr", "x")
    assert rc == 1
    assert err.strip() == 'error: podSubnet: Invalid value: "x": couldn\'t parse subnet'
    assert not (tmp_path / "state.db").exists()
    rc, _, err = run("init", "--pod-cidr", "10.0.0.0/8,10.1.0.0/16")
    assert rc == 1 and "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family" in err


def test_init_refuses_a_bad_dns_domain(run, tmp_path: Path) -> None:
    rc, _, err = run("init", "--dns-domain", "bad domain")
    assert rc == 1
    assert err.startswith('error: dns-domain: Invalid value: "bad domain": a lowercase RFC '
                          "1123 subdomain must consist of")
    rc, out, _ = run("init", "--dns-domain", "example.test", "--pod-cidr", "10.8.0.0/16")
    assert rc == 0 and "pod CIDR 10.8.0.0/16" in out


def test_init_force_keeps_the_old_file_when_a_flag_is_bad(run, tmp_path: Path) -> None:
    assert run("init")[0] == 0
    before = (tmp_path / "state.db").read_bytes()
    rc, _, _ = run("init", "--force", "--pod-cidr", "nope")
    assert rc == 1 and (tmp_path / "state.db").read_bytes() == before


# --------------------------------------------------------------------------- 2. Node validation

BAD_NODE = """\
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: notacidr}
"""
CIDR_MSG = 'must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'


@pytest.mark.parametrize("verb", ["apply", "create", "render", "trace"])
def test_a_node_with_a_bad_pod_cidr_is_invalid(run, tmp_path: Path, verb: str) -> None:
    f = write(tmp_path, "node.yaml", BAD_NODE)
    extra = {"render": ["--mode", "iptables"],
             "trace": ["--node", "n1", "--src", "10.244.0.5", "--dst", "10.96.0.1:443"]}
    rc, _, err = run(verb, "-f", f, *extra.get(verb, []))
    assert rc == 1
    assert err.strip() == f'The Node "n1" is invalid: spec.podCIDRs[0]: Invalid value: ' \
                          f'"notacidr": {CIDR_MSG}'


def test_node_pod_cidrs_are_immutable_and_validated_on_patch(run) -> None:
    rc, _, err = run("patch", "node", "kind-worker", "-p", '{"spec":{"podCIDRs":["zzz"]}}')
    assert rc == 1
    assert f'spec.podCIDRs[0]: Invalid value: "zzz": {CIDR_MSG}' in err
    assert 'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" ' \
           "to valid" in err
    # podCIDR alone: the internal type only has podCIDRs, so (as upstream's conversion
    # does) podCIDRs wins and podCIDR is written back as podCIDRs[0] -- nothing changes.
    rc, out, _ = run("patch", "node", "kind-worker", "-p", '{"spec":{"podCIDR":"zzz"}}')
    assert rc == 0 and "(no change)" in out
    rc, out, _ = run("get", "node", "kind-worker", "-o", "json")
    spec = json.loads(out)["spec"]
    assert spec["podCIDR"] == spec["podCIDRs"][0] != "zzz"


def test_node_pod_cidrs_one_per_family() -> None:
    from kservice.models.workloads import Node
    from kservice.workloads._strategies import node_spec_errors

    def errs(cidrs: list[str]) -> list[str]:
        node = Node.from_manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                                   "spec": {"podCIDRs": cidrs}})
        return [str(e) for e in node_spec_errors(node)]

    assert errs(["10.0.0.0/24", "fd00::/64"]) == []
    assert errs(["10.0.0.0/24", "10.0.1.0/24"]) == [
        'spec.podCIDRs: Invalid value: []string{"10.0.0.0/24", "10.0.1.0/24"}: may specify no '
        "more than one CIDR for each IP family"]
    assert 'spec.podCIDRs[1]: Duplicate value: "10.0.0.0/24"' in errs(["10.0.0.0/24"] * 2)


# --------------------------------------------------------------------------- 3. YAML aliases

BILLION_LAUGHS = "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=False))
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + \
    BILLION_LAUGHS


@pytest.mark.parametrize("verb", ["apply", "create", "replace", "delete", "render", "trace"])
def test_recursive_alias_is_a_located_error(run, tmp_path: Path, verb: str) -> None:
    f = write(tmp_path, "rec.yaml", "a: &a [*a]\n")
    extra = {"render": ["--mode", "iptables"],
             "trace": ["--node", "kind-worker", "--src", "10.244.0.5", "--dst", "10.96.0.1:443"]}
    rc, _, err = run(verb, "-f", f, *extra.get(verb, []))
    assert rc == 1
    assert f"{f}:1:4: recursive YAML alias" in err


def test_alias_bomb_is_refused_quickly(run, tmp_path: Path) -> None:
    f = write(tmp_path, "lol.yaml", BILLION_LAUGHS)
    rc, _, err = run("apply", "-f", f)
    assert rc == 1 and "document contains excessive aliasing" in err


def test_ordinary_aliases_still_work(run, tmp_path: Path) -> None:
    f = write(tmp_path, "ok.yaml", """\
apiVersion: v1
kind: Service
metadata: {name: a, labels: &l {app: a}}
spec: {selector: *l, ports: [{port: 80}]}
""")
    rc, out, err = run("apply", "-f", f)
    assert rc == 0, err
    assert "service/a created" in out


def test_deep_nesting_is_an_error(run, tmp_path: Path) -> None:
    f = write(tmp_path, "deep.json", "[" * 50_000 + "]" * 50_000)
    rc, _, err = run("apply", "-f", f)
    assert rc == 1 and "nesting is too deep" in err


# --------------------------------------------------------------------------- 4. flags anywhere


@pytest.mark.parametrize("argv", [
    ["get", "svc", "-n", "kube-system", "kube-dns"],
    ["get", "-n", "kube-system", "svc", "kube-dns"],
    ["get", "svc", "kube-dns", "-n", "kube-system"],
    ["get", "svc", "-o", "name", "-n", "kube-system", "kube-dns"],
    ["describe", "svc", "-n", "kube-system", "kube-dns"],
    ["describe", "-n", "kube-system", "svc", "kube-dns"],
])
def test_names_after_flags(run, argv: list[str]) -> None:
    rc, out, err = run(*argv)
    assert rc == 0, err
    assert "kube-dns" in out


def test_delete_with_flags_first(run, tmp_path: Path) -> None:
    f = write(tmp_path, "s.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: redis}\n"
                                  "spec: {ports: [{port: 6379}]}\n")
    assert run("apply", "-f", f)[0] == 0
    rc, out, _ = run("get", "svc", "-o", "yaml", "redis")
    assert rc == 0 and "name: redis" in out
    rc, out, _ = run("delete", "svc", "-n", "default", "redis")
    assert rc == 0 and out == 'service "redis" deleted from default namespace\n'


def test_get_no_headers(run) -> None:
    rc, out, _ = run("get", "svc", "--no-headers", "-A")
    lines = out.splitlines()
    assert rc == 0 and not any(line.startswith("NAMESPACE") for line in lines)
    assert [line.split()[1] for line in lines] == ["kubernetes", "kube-dns"]


# --------------------------------------------------------------------------- 5. read-only


def test_read_only_commands_create_nothing(run, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    rc, out, _ = run("get", "svc", state_path=str(missing))
    assert rc == 0 and "kubernetes" in out
    rc, _, _ = run("describe", "svc", "kubernetes", state_path=str(missing))
    assert rc == 0
    rc, _, _ = run("render", "--mode", "iptables", state_path=str(missing))
    assert rc == 0
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- 6. families


def test_render_a_family_the_cluster_lacks_is_an_error(run) -> None:
    rc, out, err = run("render", "--mode", "iptables", "--family", "IPv6")
    assert rc == 1 and out == ""
    assert "single-stack IPv4" in err and "no IPv6 service range" in err
    rc, _, err = run("trace", "--node", "kind-worker", "--src", "fd00::1",
                     "--dst", "[fd00::10]:80")
    assert rc == 1 and "no IPv6 service range" in err


# --------------------------------------------------------------------------- 7. raw mode


def test_raw_defaults_the_namespace_and_checks_the_node(run) -> None:
    rc, _, err = run("render", "--raw", "-f", str(EXAMPLES), "--node", "x", "--mode",
                     "iptables")
    assert rc == 1 and "contain no Node" in err and "--node-ip" in err
    rc, out, err = run("render", "--raw", "-f", str(EXAMPLES), "--node", "x", "--node-ip",
                       "192.168.1.2", "--mode", "iptables")
    assert rc == 0, err
    assert '"default/myapp:http' in out and '"/myapp' not in out


def test_raw_unknown_node_lists_the_files_nodes(run, tmp_path: Path) -> None:
    f = write(tmp_path, "n.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")
    rc, _, err = run("render", "--raw", "-f", f, "--node", "x", "--mode", "iptables")
    assert rc == 1 and 'node "x" not found in the files; their nodes: n1' in err


def test_raw_errors_name_the_document_path(run, tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                                    "spec:\n  clusterIP: 10.96.0.9\n"
                                    "  ports: [{port: 80, targetPort: {a: 1}}]\n")
    rc, _, err = run("render", "--raw", "-f", f, "--node-ip", "1.2.3.4", "--mode", "iptables")
    assert rc == 1
    assert f"{f}:6:34:" in err and "field spec.ports[0].targetPort" in err
    assert "field [0]." not in err


# --------------------------------------------------------------------------- 8. printers


def test_get_ingress_columns(run, tmp_path: Path) -> None:
    f = write(tmp_path, "ing.yaml", """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  tls: [{hosts: [a.example]}]
  rules:
  - host: a.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}
  - http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: any}
spec:
  defaultBackend: {service: {name: s, port: {number: 80}}}
""")
    assert run("apply", "-f", f)[0] == 0
    _rc, out, _ = run("get", "ingress")
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[0][:3] == ["any", "<none>", "*"] and rows[0][3] == "80"
    assert rows[1][:3] == ["web", "nginx", "a.example"] and "80, 443" in out


def test_ingress_hosts_formatting() -> None:
    from types import SimpleNamespace

    from kservice.cli.printers import ingress_hosts

    rules = [SimpleNamespace(host=h) for h in ["a", "", "b", "c", "d", "e"]]
    assert ingress_hosts(rules) == "a,b,c + 3 more..."
    assert ingress_hosts([SimpleNamespace(host="")]) == "*"


def test_get_servicecidrs_and_ingressclasses_headers(run, tmp_path: Path) -> None:
    f = write(tmp_path, "sc.yaml", """\
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.100.0.0/24]}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
""")
    assert run("apply", "-f", f)[0] == 0
    _rc, out, _ = run("get", "servicecidrs")
    assert out.splitlines()[0].split() == ["NAME", "CIDRS", "AGE"]
    # The apiserver's default ServiceCIDR (from --service-cluster-ip-range) is listed too.
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["extra", "10.100.0.0/24"], ["kubernetes", "10.96.0.0/12"]]
    rc, out, _ = run("get", "servicecidr", "kubernetes", "-o", "json")
    assert rc == 0 and json.loads(out)["spec"] == {"cidrs": ["10.96.0.0/12"]}
    _rc, out, _ = run("get", "ingressclasses")
    assert out.splitlines()[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert out.splitlines()[1].split()[:3] == ["nginx", "k8s.io/ingress-nginx", "<none>"]


# --------------------------------------------------------------------------- 9. sidecars


def test_pod_ready_counts_sidecars(run, tmp_path: Path) -> None:
    f = write(tmp_path, "pod.yaml", """\
apiVersion: v1
kind: Pod
metadata: {name: sc}
spec:
  initContainers:
  - {name: init, image: busybox}
  - {name: proxy, image: envoy, restartPolicy: Always}
  containers:
  - {name: app, image: nginx}
""")
    assert run("apply", "-f", f)[0] == 0
    _rc, out, _ = run("get", "pod", "sc")
    assert out.splitlines()[1].split()[1] == "2/2"


# --------------------------------------------------------------------------- 10. ipvs round trip


def test_ipvs_render_all_traces_like_the_stored_cluster(run, tmp_path: Path) -> None:
    from kservice.backend import get_backend
    from kservice.errors import BackendError

    try:
        get_backend("ipvs")
    except BackendError as exc:
        pytest.skip(str(exc))
    rc, dump, err = run("render", "--mode", "ipvs", "--node", "kind-worker", "--format", "all")
    assert rc == 0, err
    f = write(tmp_path, "a.txt", dump)
    for dst, proto in (("10.96.0.10:53", "udp"), ("10.96.0.1:443", "tcp")):
        packet = ["--src", "10.244.1.9", "--dst", dst, "--proto", proto, "-o", "json"]
        rc, from_dump, err = run("trace", "--ipvs", f, "--node", "kind-worker", *packet)
        assert rc == 0, err
        rc, from_cluster, err = run("trace", "--mode", "ipvs", "--node", "kind-worker", *packet)
        assert rc == 0, err
        assert json.loads(from_dump) == json.loads(from_cluster)
    rc, text, _ = run("trace", "--ipvs", f, "--node-ip", "172.18.0.3", "--pod-cidr",
                      "10.244.1.0/24", "--src", "10.244.1.9", "--dst", "10.96.0.1:443")
    assert rc == 0 and text.startswith("node kind-worker (ipvs):")
    # IPVS mode's own jumps, not iptables mode's KUBE-SERVICES -> KUBE-SVC chains.
    assert "KUBE-IPVS-FILTER" in text and "KUBE-SVC-" not in text


# --------------------------------------------------------------------------- 11. legacy Ingress


@pytest.mark.parametrize("version,since", [("extensions/v1beta1", "1.14"),
                                           ("networking.k8s.io/v1beta1", "1.19")])
def test_legacy_ingress_is_converted_with_the_deprecation_warning(
        run, tmp_path: Path, version: str, since: str) -> None:
    f = write(tmp_path, "ing.yaml", f"""\
apiVersion: {version}
kind: Ingress
metadata: {{name: legacy}}
spec:
  backend: {{serviceName: dflt, servicePort: 80}}
  rules:
  - host: a.example
    http:
      paths:
      - path: /x
        backend: {{serviceName: web, servicePort: http}}
""")
    rc, out, err = run("apply", "-f", f)
    assert rc == 0, err
    assert out == "ingress.networking.k8s.io/legacy created\n"
    assert err.strip() == (f"Warning: {version} Ingress is deprecated in v{since}+, unavailable "
                           "in v1.22+; use networking.k8s.io/v1 Ingress")
    rc, out, _ = run("get", "ingress", "legacy", "-o", "json")
    stored = json.loads(out)
    assert stored["apiVersion"] == "networking.k8s.io/v1"
    assert stored["spec"]["defaultBackend"] == {"service": {"name": "dflt",
                                                            "port": {"number": 80}}}
    path = stored["spec"]["rules"][0]["http"]["paths"][0]
    assert path["backend"] == {"service": {"name": "web", "port": {"name": "http"}}}
    assert path["pathType"] == "ImplementationSpecific"


def test_examples_carry_the_seed_notes_v1beta1_ingress(run) -> None:
    text = (EXAMPLES / "ingress.yaml").read_text()
    assert "apiVersion: networking.k8s.io/v1beta1" in text and "serviceName: myapp" in text
    rc, out, err = run("apply", "-f", str(EXAMPLES))
    assert rc == 0, err
    assert "ingress.networking.k8s.io/myapp created" in out
    assert "networking.k8s.io/v1beta1 Ingress is deprecated" in err


# --------------------------------------------------------------------------- 12. status


def _lb(run, tmp_path: Path) -> None:
    f = write(tmp_path, "lb.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\n"
                                   "spec: {type: LoadBalancer, ports: [{port: 80}]}\n")
    assert run("apply", "-f", f)[0] == 0


def test_status_patch_is_validated(run, tmp_path: Path) -> None:
    _lb(run, tmp_path)
    rc, _, err = run("patch", "svc", "lb", "--subresource", "status", "-p",
                     '{"status":{"loadBalancer":{"ingress":[{"ip":"zzz"}]}}}')
    assert rc == 1
    assert err.strip() == ('The Service "lb" is invalid: status.loadBalancer.ingress[0].ip: '
                           'Invalid value: "zzz": must be a valid IP address, (e.g. 10.9.8.7 '
                           "or 2001:db8::ffff)")
    rc, _, err = run("patch", "svc", "lb", "--subresource", "status", "-p",
                     '{"status":{"loadBalancer":{"ingress":[{"hostname":"lb.example",'
                     '"ipMode":"VIP"},{"ip":"1.2.3.4","ipMode":"Bogus"}]}}}')
    assert rc == 1
    assert "status.loadBalancer.ingress[0].ipMode: Forbidden: may not be specified when " \
           "`ip` is not set" in err
    assert 'status.loadBalancer.ingress[1].ipMode: Unsupported value: "Bogus": supported ' \
           'values: "Proxy", "VIP"' in err
    rc, _, err = run("patch", "svc", "kubernetes", "--subresource", "status", "-p",
                     '{"status":{"loadBalancer":{"ingress":[{"ip":"1.2.3.4"}]}}}')
    assert rc == 1 and "may only be used when `spec.type` is 'LoadBalancer'" in err


def test_status_patch_defaults_ip_mode(run, tmp_path: Path) -> None:
    _lb(run, tmp_path)
    rc, _, err = run("patch", "svc", "lb", "--subresource", "status", "-p",
                     '{"status":{"loadBalancer":{"ingress":[{"ip":"1.2.3.4"}]}}}')
    assert rc == 0, err
    rc, out, _ = run("get", "svc", "lb", "-o", "json")
    assert json.loads(out)["status"]["loadBalancer"]["ingress"] == [
        {"ip": "1.2.3.4", "ipMode": "VIP"}]


# --------------------------------------------------------------------------- 13. DNS names


@pytest.mark.parametrize("name,why", [("..", "empty label"), (".kubernetes", "empty label"),
                                      ("a" * 64 + ".default", "label too long"),
                                      (".".join(["a" * 63] * 4) + ".x", "name too long")])
def test_dns_resolve_refuses_illegal_names(run, name: str, why: str) -> None:
    rc, _, err = run("dns", "resolve", name)
    assert rc == 1 and f"is not a legal name ({why}" in err


def test_dns_resolve_still_resolves(run) -> None:
    rc, out, _ = run("dns", "resolve", "kubernetes")
    assert rc == 0 and "10.96.0.1" in out


# --------------------------------------------------------------------------- the sweep's finds


def test_pod_status_ips_are_validated(run, tmp_path: Path) -> None:
    f = write(tmp_path, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                                    "spec: {containers: [{name: c}]}\n")
    assert run("apply", "-f", f)[0] == 0
    rc, _, err = run("patch", "pod", "p", "--subresource", "status", "--type", "merge", "-p",
                     '{"status":{"podIPs":[{"ip":"zzz"}]}}')
    assert rc == 1
    assert err.strip() == ('The Pod "p" is invalid: status.podIPs[0]: Invalid value: "zzz": '
                           "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    rc, _, err = run("patch", "pod", "p", "--subresource", "status", "--type", "merge", "-p",
                     '{"status":{"podIPs":[{"ip":"10.1.1.1"},{"ip":"10.1.1.2"}]}}')
    assert rc == 1 and "may specify no more than one IP for each IP family" in err
    # The store is still readable (an invalid podIP used to be stored and break every
    # later command).
    rc, _, err = run("get", "endpointslices")
    assert rc == 0, err
    rc, _, _ = run("patch", "pod", "p", "--subresource", "status", "--type", "merge", "-p",
                   '{"status":{"podIPs":[{"ip":"10.244.1.77"}]}}')
    rc, out, _ = run("get", "pod", "p", "-o", "jsonpath={.status.podIP}")
    assert rc == 0 and out == "10.244.1.77"


def test_jsonpath_syntax_errors_and_literals(run) -> None:
    rc, _, err = run("get", "svc", "-o", "jsonpath={.items[")
    assert rc == 1 and "unclosed action" in err
    rc, out, _ = run("get", "svc", "kubernetes", "-o",
                     'jsonpath={.metadata.name}{"\\t"}{.spec.clusterIP}{"\\n"}')
    assert rc == 0 and out == "kubernetes\t10.96.0.1\n"


def test_dns_namespace_must_be_a_label(run) -> None:
    rc, _, err = run("dns", "resolve", "kubernetes", "-n", "bad ns")
    assert rc == 1 and 'invalid namespace "bad ns"' in err
    rc, _, err = run("dns", "resolv-conf", "-n", "")
    assert rc == 1 and 'invalid namespace ""' in err


def test_binary_input_is_an_error(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    f = tmp_path / "bin.dump"
    f.write_bytes(b"\x00\xff\xfe")
    rc, _, err = run("trace", "--rules", str(f), "--node-ip", "1.2.3.4", "--src", "1.2.3.4",
                     "--dst", "10.96.0.1:443")
    assert rc == 1 and "is not UTF-8 text" in err
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff"), encoding="utf-8", errors="surrogateescape")
    monkeypatch.setattr("sys.stdin", stdin)
    rc, _, err = run("apply", "-f", "-")
    assert rc == 1 and "<stdin>: not UTF-8 text" in err


def test_an_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    from kservice.cli import commands

    def boom(args: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.delenv("KSERVICE_DEBUG", raising=False)
    monkeypatch.setattr(commands, "cmd_explain", boom)
    rc = main(["--state", str(tmp_path / "s.db"), "explain", "svc"])
    err = capsys.readouterr().err
    assert rc == 70 and "Traceback" not in err
    assert err.startswith("error: internal error (a kservice bug") and "ZeroDivisionError" in err
    monkeypatch.setenv("KSERVICE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["--state", str(tmp_path / "s.db"), "explain", "svc"])


def test_trace_raw_without_a_node_uses_node_ip(run, tmp_path: Path) -> None:
    f = write(tmp_path, "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                                    "spec: {clusterIP: 10.96.0.9, ports: [{port: 80}]}\n")
    rc, out, err = run("trace", "--raw", "-f", f, "--node-ip", "192.168.0.2", "--src",
                       "10.244.0.5", "--dst", "10.96.0.9:80")
    assert rc == 0, err
    assert out.startswith("node 192.168.0.2 (iptables)") and "REJECT" in out


def test_state_flag_after_plugin_commands(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "s.db")
    assert main(["--state", state, "init", "--service-cidr", "10.100.0.0/16"]) == 0
    capsys.readouterr()
    # --state after the command word, for plugin commands too: the custom range is used.
    assert main(["dns", "resolve", "kubernetes", "--state", state]) == 0
    assert "10.100.0.1" in capsys.readouterr().out
    assert main(["trace", "--node", "kind-worker", "--src", "10.244.1.9", "--dst",
                 "10.100.0.1:443", "--state", state, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"]
