"""The kservice commands, run in-process with a temporary state file (and a few via the
installed ``kservice`` script)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import kservice.embedded
from kservice.cli import main
from kservice.testing.cli import install_service_api, real_api_available

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "kservice"
EXAMPLES = ROOT / "docs" / "examples"

COMMANDS = ["apply", "create", "replace", "get", "describe", "patch", "delete", "explain",
            "scale", "set-ready", "render", "init", "demo"]


@pytest.fixture(autouse=True)
def service_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kservice.embedded, "_install_service_api", install_service_api)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    state = str(tmp_path / "state.db")

    def _run(*argv: str) -> tuple[int, str, str]:
        rc = main(["--state", state, *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return rc, out, err

    return _run


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


WEB = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.100.100
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run, command: str) -> None:
    rc, out, _ = run(command, "--help")
    assert rc == 0
    assert out.startswith("usage: kservice")
    assert len(out.splitlines()) > 4


def test_apply_created_unchanged_configured(run, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB)
    assert run("apply", "-f", f)[1] == "service/web created\n"
    assert run("apply", "-f", f)[1] == "service/web unchanged\n"
    write(tmp_path, "web.yaml", WEB.replace("app: web", "app: web2"))
    assert run("apply", "-f", f)[1] == "service/web configured\n"
    _, out, _ = run("get", "svc", "web", "-o", "json")
    obj = json.loads(out)
    assert obj["spec"]["selector"] == {"app": "web2"}
    last = json.loads(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["selector"] == {"app": "web2"}


def test_apply_keeps_labels_added_by_patch(run, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB)
    run("apply", "-f", f)
    assert run("patch", "svc", "web", "-p", '{"metadata":{"labels":{"team":"net"}}}')[1] == \
        "service/web patched\n"
    run("apply", "-f", f)
    _, out, _ = run("get", "svc/web", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["labels"] == {"team": "net"}


def test_apply_from_stdin(run, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(WEB))
    assert run("apply", "-f", "-")[1] == "service/web created\n"


def test_get_table_and_namespaces(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    rc, out, _ = run("get", "svc")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["kubernetes", "web"]
    assert re.fullmatch(r"web\s+ClusterIP\s+10\.96\.100\.100\s+<none>\s+80/TCP\s+\d+s", lines[2])
    rc, out, _ = run("get", "services", "-A")
    assert out.splitlines()[0].startswith("NAMESPACE")
    assert "kube-dns" in out
    rc, out, err = run("get", "svc", "-n", "empty")
    assert (rc, out, err) == (0, "", "No resources found in empty namespace.\n")


def test_get_name_forms_and_errors(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    assert run("get", "svc", "-o", "name")[1] == "service/kubernetes\nservice/web\n"
    assert run("get", "svc/web", "-o", "name")[1] == "service/web\n"
    rc, _, err = run("get", "svc", "nope")
    assert rc == 1 and err == 'Error from server (NotFound): services "nope" not found\n'
    rc, _, err = run("get", "widgets")
    assert rc == 1 and err == 'error: the server doesn\'t have a resource type "widgets"\n'


def test_describe(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    rc, out, _ = run("describe", "svc", "web")
    assert rc == 0
    lines = out.splitlines()
    # one tabwriter column: every value starts at the same offset, two past the widest key
    width = max(len(ln.split(":")[0]) for ln in lines) + 3
    assert all(len(ln) >= width and ln[width - 1] == " " and not ln[width:].startswith(" ")
               for ln in lines)
    assert lines[0] == "Name:".ljust(width) + "web"
    assert "Port:".ljust(width) + "http  80/TCP" in lines
    assert "TargetPort:".ljust(width) + "8080/TCP" in lines
    assert lines[-1] == "Events:".ljust(width) + "<none>"


@pytest.mark.parametrize(("ptype", "patch", "expect_ports"), [
    ("strategic", '{"spec":{"ports":[{"port":443,"name":"https"}]}}', [80, 443]),
    ("merge", '{"spec":{"ports":[{"port":443,"name":"https"}]}}', [443]),
    ("json", '[{"op":"add","path":"/spec/ports/-","value":{"port":8443,"name":"alt"}}]', [80, 8443]),
])
def test_patch_types(run, tmp_path: Path, ptype: str, patch: str, expect_ports: list[int]) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    rc, out, err = run("patch", "svc", "web", "--type", ptype, "-p", patch)
    assert (rc, out) == (0, "service/web patched\n"), err
    _, out, _ = run("get", "svc", "web", "-o", "json")
    assert [p["port"] for p in json.loads(out)["spec"]["ports"]] == expect_ports


def test_patch_no_change_and_bad_patch(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    assert run("patch", "svc", "web", "-p", '{"spec":{"selector":{"app":"web"}}}')[1] == \
        "service/web patched (no change)\n"
    rc, _, err = run("patch", "svc", "web", "--type", "json", "-p", '[{"op":"remove","path":"/nope"}]')
    assert rc == 1 and err.startswith("error: JSON patch remove")


def test_replace_and_delete(run, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB)
    rc, _, err = run("replace", "-f", f)
    assert rc == 1 and err == (f'Error from server (NotFound): error when replacing "{f}": '
                               'services "web" not found\n')
    run("create", "-f", f)
    rc, _, err = run("create", "-f", f)
    assert rc == 1 and err == ('Error from server (AlreadyExists): error when creating '
                               f'"{f}": services "web" already exists\n')
    assert run("replace", "-f", f)[1] == "service/web replaced\n"
    assert run("delete", "-f", f)[1] == 'service "web" deleted from default namespace\n'
    run("create", "-f", f)
    assert run("delete", "svc", "web")[1] == 'service "web" deleted from default namespace\n'
    rc, _, err = run("delete", "svc", "web")
    assert rc == 1 and "NotFound" in err


def test_namespace_mismatch(run, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB.replace("  name: web\n", "  name: web\n  namespace: a\n"))
    rc, _, err = run("apply", "-f", f, "-n", "b")
    assert rc == 1
    assert 'the namespace from the provided object "a" does not match the namespace "b"' in err
    assert "web.yaml:5:14" in err


def test_bad_yaml_error_is_one_line_without_traceback(run, tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n")
    rc, out, err = run("apply", "-f", f)
    assert (rc, out) == (1, "")
    assert err == (f"error: {f}:4:1: YAML syntax error: found a tab character; tabs are not "
                   "allowed for indentation in YAML; replace them with spaces\n")


def test_unknown_kind_names_the_file(run, tmp_path: Path) -> None:
    f = write(tmp_path, "x.yaml", "apiVersion: example.com/v1\nkind: Frobber\nmetadata: {name: x}\n")
    rc, _, err = run("apply", "-f", f)
    assert rc == 1 and f'{f}:2:7: no matches for kind "Frobber" in version "example.com/v1"' in err


def test_explain(run) -> None:
    rc, out, _ = run("explain", "svc.spec.ports")
    assert rc == 0
    assert out.startswith("KIND:       Service\nVERSION:    v1\n\nFIELD: ports <[]ServicePort>\n")
    assert "  port\t<integer> -required-\n" in out
    rc, out, _ = run("explain", "svc")
    assert "  spec\t<ServiceSpec>" in out
    rc, _, err = run("explain", "svc.spec.bogus")
    assert rc == 1 and 'field "bogus" does not exist' in err


def test_workload_commands(run) -> None:
    pytest.importorskip("kservice.workloads")
    rc, out, err = run("scale", "deployment/coredns", "-n", "kube-system", "--replicas", "3")
    assert (rc, out) == (0, "deployment.apps/coredns scaled\n"), err
    _, out, _ = run("get", "pods", "-n", "kube-system", "-o", "name")
    pods = out.split()
    assert len(pods) == 3 and all(p.startswith("pod/coredns-") for p in pods)
    pod = pods[0]
    rc, out, err = run("set-ready", pod, "false", "-n", "kube-system")
    assert rc == 0, err
    rc, out, err = run("delete", "pod", pod.split("/")[1], "-n", "kube-system")
    assert rc == 0 and out == f'pod "{pod.split("/")[1]}" deleted from kube-system namespace\n', err


def test_demo_prints_services(run) -> None:
    rc, out, err = run("demo")
    assert rc == 0, err
    assert "service/redis created" in out
    table = out.split("$ kservice get svc -A -o wide\n")[1]
    assert table.splitlines()[0].split()[-1] == "SELECTOR"
    assert re.search(r"redis\s+ClusterIP\s+10\.97\.97\.97\s+<none>\s+6379/TCP", table)
    assert re.search(r"myapp\s+NodePort\s+10\.99\.99\.99\s+<none>\s+8080:30080/TCP", table)
    assert re.search(r"my-db\s+ExternalName\s+<none>\s+db\.example\.com", table)


def test_examples_are_valid_manifests() -> None:
    from kservice.manifest import load_files

    docs = load_files([str(EXAMPLES)])
    kinds = {(d.name, d.kind) for d in docs}
    assert {("redis", "Service"), ("redis", "Deployment"), ("myapp", "Service"),
            ("myapp-headless", "Service"), ("my-db", "Service"), ("myapp-lb", "Service"),
            ("myapp", "Ingress")} <= kinds


# --------------------------------------------------------------------------- vectors

needs_api = pytest.mark.skipif(not real_api_available(), reason="kservice.api not installed yet")

VECTORS = [
    # (reference vector, extra init args, manifest spec, expected kubectl message)
    (8, [], {"selector": {"app": "a"}},
     'The Service "foo" is invalid: spec.ports: Required value'),
    (24, [], {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]},
     "The Service \"foo\" is invalid: spec.clusterIPs[0]: Invalid value: \"None\": may not be "
     "set to 'None' for NodePort services"),
    (60, ["--service-cidr", "10.96.0.0/24"], {"clusterIP": "10.96.0.0", "ports": [{"port": 80}]},
     'The Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.0"}: '
     "failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. "
     "The range of valid IPs is 10.96.0.0/24"),
    # 63: the seeded default/kubernetes Service holds the range's first address.
    (63, [], {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]},
     'The Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.1"}: '
     "failed to allocate IP 10.96.0.1: provided IP is already allocated"),
    (70, [], {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]},
     'The Service "foo" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port '
     "is not in the valid range. The range of valid ports is 30000-32767"),
]


@needs_api
@pytest.mark.parametrize(("vector", "init", "spec", "message"), VECTORS,
                         ids=[f"vector-{v[0]}" for v in VECTORS])
def test_reference_vectors_through_the_cli(run, tmp_path: Path, vector, init, spec, message) -> None:
    if init:
        assert run("init", *init)[0] == 0
    manifest = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "foo", "namespace": "default"}, "spec": spec}
    rc, out, err = run("create", "-f", write(tmp_path, "foo.json", json.dumps(manifest)))
    assert (rc, out) == (1, "")
    assert err == message + "\n"
    assert run("get", "svc", "foo")[0] == 1  # nothing stored


@needs_api
def test_vector_24_rolls_back_the_node_port(run, tmp_path: Path) -> None:
    spec = {"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80, "nodePort": 30080}]}
    m = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "foo"}, "spec": spec}
    assert run("create", "-f", write(tmp_path, "a.json", json.dumps(m)))[0] == 1
    m2 = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bar"},
          "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}
    rc, out, err = run("create", "-f", write(tmp_path, "b.json", json.dumps(m2)))
    assert (rc, out) == (0, "service/bar created\n"), err


# --------------------------------------------------------------------------- subprocess


def script(*argv: str, env_state: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if env_state:
        env["KSERVICE_STATE"] = env_state
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.skipif(not SCRIPT.exists(), reason="the kservice script is not installed")
def test_script_help_and_explain() -> None:
    p = script("--help")
    assert p.returncode == 0 and "apply" in p.stdout and "explain" in p.stdout
    p = script("explain", "svc.spec.type")
    assert p.returncode == 0 and p.stdout.startswith("KIND:       Service")


@pytest.mark.skipif(not SCRIPT.exists(), reason="the kservice script is not installed")
def test_script_bad_usage_exits_2() -> None:
    p = script("get")
    assert p.returncode == 2 and "usage:" in p.stderr


@needs_api
@pytest.mark.skipif(not SCRIPT.exists(), reason="the kservice script is not installed")
def test_script_uses_state_env(tmp_path: Path) -> None:
    state = str(tmp_path / "env.db")
    f = write(tmp_path, "web.yaml", WEB)
    assert script("apply", "-f", f, env_state=state).returncode == 0
    p = script("get", "svc", "-o", "name", env_state=state)
    assert p.stdout == "service/kubernetes\nservice/web\n"
    assert Path(state).exists()


# --------------------------------------------------------------------------- render

RAW = """\
apiVersion: v1
kind: Node
metadata: {name: n1}
status:
  addresses: [{type: InternalIP, address: 172.18.0.2}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 10.96.100.100
  clusterIPs: [10.96.100.100]
  ipFamilies: [IPv4]
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: n1
"""


def _backend_or_skip(name: str) -> None:
    from kservice.backend import get_backend
    from kservice.errors import BackendError

    try:
        get_backend(name)
    except BackendError as exc:
        pytest.skip(str(exc))


def test_render_raw_iptables(run, tmp_path: Path) -> None:
    _backend_or_skip("iptables")
    f = write(tmp_path, "raw.yaml", RAW)
    rc, out, err = run("render", "--raw", "-f", f, "--mode", "iptables")
    assert rc == 0, err
    assert '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp ' \
           "-d 10.96.100.100 --dport 80 -j KUBE-SVC-" in out
    assert "--to-destination 10.244.1.5:8080" in out
    assert not out.startswith("# IPv4")  # one family: no header


def test_render_raw_errors_are_located(run, tmp_path: Path) -> None:
    _backend_or_skip("iptables")
    f = write(tmp_path, "raw.yaml", RAW.replace("protocol: TCP, targetPort", "protcol: TCP, targetPort"))
    rc, _, err = run("render", "--raw", "-f", f, "--mode", "iptables")
    assert rc == 1 and f"{f}:17:" in err and "protcol" in err
    rc, _, err = run("render", "--raw", "-f", f, "--mode", "nosuchmode")
    assert rc == 1 and "unknown backend 'nosuchmode'" in err


def test_render_raw_unknown_format_and_service_filter(run, tmp_path: Path) -> None:
    _backend_or_skip("iptables")
    f = write(tmp_path, "raw.yaml", RAW)
    rc, _, err = run("render", "--raw", "-f", f, "--mode", "iptables", "--format", "bogus")
    assert rc == 1 and 'has no format "bogus"' in err
    rc, _, err = run("render", "--raw", "-f", f, "--mode", "iptables", "--service", "default/nope")
    assert rc == 1 and 'service "default/nope" has no ports' in err


def test_get_by_name_across_namespaces_is_refused(run) -> None:
    rc, _, err = run("get", "svc", "kubernetes", "-A")
    assert rc == 1 and "cannot be retrieved by name across all namespaces" in err


def test_apply_needs_a_name(run, tmp_path: Path) -> None:
    f = write(tmp_path, "gen.yaml", WEB.replace("  name: web\n", "  generateName: web-\n"))
    rc, _, err = run("apply", "-f", f)
    assert rc == 1 and f"{f}:3:1: resource name may not be empty" in err


def test_state_flag_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "late.db")
    f = write(tmp_path, "web.yaml", WEB)
    assert main(["apply", "-f", f, "--state", state]) == 0
    capsys.readouterr()
    assert main(["get", "svc", "web", "-o", "name", "--state", state]) == 0
    assert capsys.readouterr().out == "service/web\n"


def test_init_with_a_small_range_moves_kube_dns(run) -> None:
    rc, out, err = run("init", "--service-cidr", "10.100.0.0/24",
                       "--service-node-port-range", "31000-31999")
    assert rc == 0, err
    _, out, _ = run("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json")
    assert json.loads(out)["spec"]["clusterIP"] == "10.100.0.10"
    rc, _, err = run("init", "--service-cidr", "10.100.0.0/24")
    assert rc == 1 and "--force" in err


def test_patch_status_subresource(run, tmp_path: Path) -> None:
    lb = WEB.replace("spec:\n", "spec:\n  type: LoadBalancer\n").replace(
        "  clusterIP: 10.96.100.100\n", "")
    run("apply", "-f", write(tmp_path, "lb.yaml", lb))
    assert "<pending>" in run("get", "svc", "web")[1]
    rc, out, err = run("patch", "svc", "web", "--subresource", "status", "--type", "merge",
                       "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.50"}]}}}')
    assert (rc, out) == (0, "service/web patched\n"), err
    assert re.search(r"LoadBalancer\s+\S+\s+192\.0\.2\.50\s", run("get", "svc", "web")[1])


def test_apply_over_create_warns_and_save_config_does_not(run, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB)
    run("create", "-f", f)
    rc, out, err = run("apply", "-f", f)
    assert (rc, out) == (0, "service/web configured\n")  # the annotation is added
    assert err.startswith("Warning: resource services/web is missing the "
                          "kubectl.kubernetes.io/last-applied-configuration annotation")
    run("delete", "svc", "web")
    run("create", "--save-config", "-f", f)
    rc, out, err = run("apply", "-f", f)
    assert (rc, out, err) == (0, "service/web unchanged\n", "")


@needs_api
def test_vector_48_replace_with_the_creation_yaml_keeps_allocations(run, tmp_path: Path) -> None:
    m = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
         "spec": {"type": "NodePort", "selector": {"app": "a"},
                  "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                           "protocol": "UDP"}]}}
    f = write(tmp_path, "np.json", json.dumps(m))
    run("create", "-f", f)
    before = json.loads(run("get", "svc", "np", "-o", "json")[1])["spec"]
    assert run("replace", "-f", f)[1] == "service/np replaced\n"
    after = json.loads(run("get", "svc", "np", "-o", "json")[1])["spec"]
    assert after["clusterIP"] == before["clusterIP"]
    assert [p["nodePort"] for p in after["ports"]] == [p["nodePort"] for p in before["ports"]]


@needs_api
def test_vector_72_dns_ports_share_a_node_port(run, tmp_path: Path) -> None:
    m = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
         "spec": {"type": "NodePort", "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}
    run("apply", "-f", write(tmp_path, "dns.json", json.dumps(m)))
    _, out, _ = run("get", "svc", "dns")
    port = re.search(r"53:(\d+)/UDP,53:(\d+)/TCP", out)
    assert port and port.group(1) == port.group(2)
    assert 30086 <= int(port.group(1)) <= 32767  # vector 69: the dynamic band


def test_last_applied_annotation_text_matches_kubectl(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB))
    meta = json.loads(run("get", "svc", "web", "-o", "json")[1])["metadata"]
    assert meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == (
        '{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web",'
        '"namespace":"default"},"spec":{"clusterIP":"10.96.100.100","ports":[{"name":"http",'
        '"port":80,"targetPort":8080}],"selector":{"app":"web"}}}\n')


def test_get_selector_and_jsonpath(run, tmp_path: Path) -> None:
    run("apply", "-f", write(tmp_path, "web.yaml", WEB.replace("  name: web\n",
                                                             "  name: web\n  labels: {tier: fe}\n")))
    assert run("get", "svc", "-l", "tier=fe", "-o", "name")[1] == "service/web\n"
    rc, out, err = run("get", "svc", "-l", "tier=db")
    assert (rc, out, err) == (0, "", "No resources found in default namespace.\n")
    assert run("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")[1] == "10.96.100.100"
    rc, _, err = run("get", "svc", "-o", "table")
    assert rc == 2 and 'unable to match a printer suitable for the output format "table"' in err


def test_render_the_stored_cluster(run, tmp_path: Path) -> None:
    pytest.importorskip("kservice.proxy.snapshot")
    _backend_or_skip("iptables")
    rc, out, err = run("render", "--mode", "iptables", "--service", "kube-system/kube-dns")
    assert rc == 0, err
    assert '-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp ' \
           "-p udp -d 10.96.0.10 --dport 53 -j KUBE-SVC-" in out
    assert "default/kubernetes" not in out  # --service filters
    # -f applies to a throwaway copy: rendered, but not stored
    f = write(tmp_path, "web.yaml", WEB)
    rc, out, err = run("render", "--mode", "iptables", "-f", f)
    assert rc == 0, err
    # no pod matches app=web: kube-proxy rejects instead of DNATing
    assert '"default/web:http has no endpoints" -m tcp -p tcp -d 10.96.100.100 --dport 80 ' \
           "-j REJECT" in out
    assert run("get", "svc", "web")[0] == 1


def test_render_dual_stack_prints_both_families(run) -> None:
    pytest.importorskip("kservice.proxy.snapshot")
    _backend_or_skip("iptables")
    assert run("init", "--service-cidr", "10.96.0.0/16,fd00:10:96::/108",
               "--pod-cidr", "10.244.0.0/16,fd00:10:244::/56")[0] == 0
    rc, out, err = run("render", "--mode", "iptables")
    assert rc == 0, err
    assert out.startswith("# IPv4\n") and "\n# IPv6\n" in out
    rc, out, _ = run("render", "--mode", "iptables", "--family", "IPv6")
    assert not out.startswith("#") and "-d 10.96.0.1 " not in out
