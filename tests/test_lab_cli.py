"""``kservice lab`` end to end in real namespaces: up, status, probe --check, exec, sync,
down (idempotent), and the clean-up guarantees when ``up`` fails or is interrupted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.lab import executor
from kservice.cli import main

pytestmark = pytest.mark.kernel

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
KSERVICE = "import sys; from kservice.cli import main; sys.exit(main(sys.argv[1:]))"
FILES = ["-f", str(EXAMPLES / "myapp-deployment.yaml"), "-f",
         str(EXAMPLES / "myapp-service.yaml")]


def lab_namespaces(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=30).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.startswith(f"ksl-{name}-")]


def agents() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                         timeout=30).stdout
    return [line for line in out.splitlines() if executor.AGENT in line and "responder" in line]


@pytest.fixture
def env(kernel_tools: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[tuple[list[str], str]]:
    monkeypatch.setenv("KSERVICE_LAB_DIR", str(tmp_path / "labs"))
    name = f"cli{os.getpid() % 100000}"
    state = ["--state", str(tmp_path / "state.db")]
    try:
        yield state, name
    finally:
        executor.teardown(name, executor.load_meta(name))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_lifecycle(env: tuple[list[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    state, name = env
    code, out, err = run(capsys, *state, "lab", "up", *FILES, "--name", name)
    assert code == 0, err
    assert f'lab "{name}" is up (iptables): 3 nodes, 5 pods' in out
    assert len(lab_namespaces(name)) == 2 + 3 + 5

    code, out, _ = run(capsys, *state, "lab", "status", "--name", name, "-o", "json")
    st = json.loads(out)[0]
    assert st["status"] == "up" and all(st["namespaces"].values())
    assert all(p["responder"] for p in st["pods"])
    myapp = [p for p in st["pods"] if p["pod"].startswith("default/myapp-")]
    assert len(myapp) == 3

    # A pod of the NodePort Service reaches it; the answer is held against the mock kernel.
    code, out, err = run(capsys, *state, "lab", "probe", "--name", name, "--from",
                         f"pod/{myapp[0]['pod']}", "--to", "10.99.99.99:8080", "--count",
                         "30", "--check", "-o", "json")
    r = json.loads(out)
    assert code == 0 and r["agree"], out
    assert sum(r["observed"]["answers"].values()) == 30
    assert set(r["observed"]["answers"]) <= {p["pod"] for p in myapp}

    code, out, err = run(capsys, *state, "lab", "probe", "--name", name, "--from", "external",
                         "--to", "172.18.0.3:30080", "--count", "12", "--check")
    assert code == 0, out + err
    assert "agree" in out

    # exec runs inside the pod's namespace: it sees the pod's address.
    proc = subprocess.run([sys.executable, "-c", KSERVICE, *state, "lab", "exec",
                           "--name", name, "--from", f"pod/{myapp[0]['pod']}", "--",
                           "ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert myapp[0]["ip"] + "/24" in proc.stdout, proc.stderr

    # The stored cluster changes: --check still predicts from the loaded rules, and says so.
    code, _out, err = run(capsys, *state, "apply", "-f", str(EXAMPLES / "redis-service.yaml"))
    assert code == 0, err
    probe_args = ("lab", "probe", "--name", name, "--from", "node/kind-worker", "--to",
                  "10.99.99.99:8080", "--count", "6", "--check", "-o", "json")
    r = json.loads(run(capsys, *state, *probe_args)[1])
    assert r["agree"] and "changed since" in r["warning"]

    code, out, err = run(capsys, *state, "lab", "sync", "--name", name)
    assert code == 0, err
    assert "rules re-rendered" in out
    r = json.loads(run(capsys, *state, *probe_args)[1])
    assert r["agree"] and "warning" not in r

    meta = executor.load_meta(name)
    assert meta is not None
    pids = [int(p) for p in meta["pids"].values()]
    assert len(pids) == 6 and all(executor._alive(p) for p in pids)  # 5 pods + apiserver
    code, out, _ = run(capsys, *state, "lab", "down", "--name", name)
    assert code == 0 and "removed (10 namespaces)" in out
    assert lab_namespaces(name) == []
    assert not any(executor._alive(p) for p in pids)
    code, out, _ = run(capsys, *state, "lab", "down", "--name", name)
    assert code == 0 and "nothing to remove" in out


def test_up_twice_is_refused(env: tuple[list[str], str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    state, name = env
    assert run(capsys, *state, "lab", "up", "--name", name)[0] == 0
    code, _out, err = run(capsys, *state, "lab", "up", "--name", name)
    assert code == 1 and "already exists" in err


def test_failed_up_leaves_nothing(env: tuple[list[str], str], capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state, name = env
    from backends.lab import rules

    monkeypatch.setattr(rules, "load_payload", lambda _r, _m: "*nat\n-A NOPE -j X\nCOMMIT\n")
    code, _out, err = run(capsys, *state, "lab", "up", "--name", name)
    assert code == 1 and "iptables-restore" in err
    assert lab_namespaces(name) == []
    assert executor.load_meta(name) is None


def test_interrupted_up_leaves_nothing(env: tuple[list[str], str],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    state, name = env

    def interrupted(*_a: object, **_k: object) -> dict[str, int]:
        raise KeyboardInterrupt("signal 15")

    monkeypatch.setattr(executor, "start_responders", interrupted)
    assert run(capsys, *state, "lab", "up", "--name", name)[0] == 130
    assert lab_namespaces(name) == []


def test_probe_errors_are_clear(env: tuple[list[str], str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    state, name = env
    code, _out, err = run(capsys, *state, "lab", "probe", "--name", name, "--from", "external",
                          "--to", "10.96.0.10:53/udp")
    assert code == 1 and f'no lab "{name}"' in err


#: Lifetimes that count down on their own (DHCP/SLAAC addresses, RA routes): ``valid_lft
#: 86321sec``, ``preferred_lft forever``, ``expires 1790sec``. Not state the lab could change.
_LIFETIMES = re.compile(r"[ \t]*\b(?:valid_lft|preferred_lft|expires) \S+")


def host_snapshot() -> dict[str, str]:
    """What the lab must never touch: the host namespace's links, addresses, routes, rules.

    Exact, but for what changes by itself: address/route lifetimes are cut out and the
    ruleset is listed stateless (``nft -s``: no counter or quota values)."""
    def out(*argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout

    def timeless(text: str) -> str:
        return _LIFETIMES.sub("", text)

    return {"links": out("ip", "-o", "link", "show"),
            "addrs": timeless(out("ip", "-o", "addr", "show")),
            "routes": timeless(out("ip", "route", "show", "table", "all")),
            "rules": out("ip", "rule", "show"), "nft": out("nft", "-s", "list", "ruleset"),
            "forward": out("sysctl", "-n", "net.ipv4.ip_forward")}


def test_host_snapshot_ignores_only_lifetimes() -> None:
    a = ("2: eth0    inet6 2001:db8::5/64 scope global dynamic mngtmpaddr \\       "
         "valid_lft 86321sec preferred_lft 14321sec\n"
         "default via fe80::1 dev eth0 proto ra metric 1024 expires 1790sec pref medium\n")
    b = a.replace("86321sec", "86290sec").replace("14321sec", "forever").replace(
        "1790sec", "1759sec")
    assert _LIFETIMES.sub("", a) == _LIFETIMES.sub("", b)
    assert "valid_lft" not in _LIFETIMES.sub("", a)
    assert "proto ra metric 1024 pref medium" in _LIFETIMES.sub("", a)
    # Anything else still counts.
    assert _LIFETIMES.sub("", a) != _LIFETIMES.sub("", a.replace("/64", "/56"))


def test_sync_follows_scaling_and_config_and_leaves_the_host_alone(kernel_tools: None) -> None:
    import attrs

    from backends.lab.session import running_lab
    from kservice.embedded import new_cluster
    from kservice.proxy.configkind import KubeProxyConfigObject, stored_config
    from kservice.workloads import scale

    before = host_snapshot()
    cluster = new_cluster()
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "default"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "ports": [
                                        {"name": "http", "containerPort": 9376}]}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"clusterIP": "10.96.100.10", "selector": {"app": "web"},
                    "ports": [{"port": 80, "targetPort": "http"}]}}
    with cluster.transaction():
        cluster.apply(cluster.decode(deploy))
        cluster.apply(cluster.decode(svc))
    name = f"sy{os.getpid() % 100000}"
    with running_lab(cluster, name) as lab:
        assert len(lab.probe("node/kind-worker", "10.96.100.10:80", count=20).answers) == 2

        scale(cluster, "Deployment", "web", "default", 3)
        cfg = stored_config(cluster)
        assert cfg is not None and not cfg.iptables.masquerade_all
        cluster.apply(KubeProxyConfigObject.from_config(attrs.evolve(
            cfg, iptables=attrs.evolve(cfg.iptables, masquerade_all=True))))
        lab.sync(cluster)
        assert len(lab_namespaces(name)) == 2 + 3 + 2 + 3
        web3 = [p for p in lab.plan.pods if p.name.startswith("web-")]
        check = lab.check(f"pod/{web3[0].ref}", "10.96.100.10:80", count=45)
        assert check.agree, check.report()
        assert len(check.observed.answers) == 3
        # masqueradeAll: even a pod's own ClusterIP traffic is SNATed (to the node side).
        assert web3[0].ip not in {s for seen in check.observed.sources.values() for s in seen}

        scale(cluster, "Deployment", "web", "default", 1)
        lab.sync(cluster)
        assert len(lab_namespaces(name)) == 2 + 3 + 2 + 1
        check = lab.check("node/kind-worker", "10.96.100.10:80", count=10)
        assert check.agree, check.report()
        assert len(check.observed.answers) == 1
    assert lab_namespaces(name) == []
    assert host_snapshot() == before


def test_userspace_mode_runs_the_real_proxy(env: tuple[list[str], str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("backends.userspace.proxier")
    state, name = env
    code, out, err = run(capsys, *state, "lab", "up", "--mode", "userspace", *FILES,
                         "--name", name)
    assert code == 0, err
    meta = executor.load_meta(name)
    assert meta is not None
    proxies = {k: v for k, v in meta["pids"].items() if k.startswith("proxy/")}
    assert len(proxies) == 3 and all(executor._alive(p) for p in proxies.values())
    st = json.loads(run(capsys, *state, "lab", "status", "--name", name, "-o", "json")[1])[0]
    myapp = sorted(p["pod"] for p in st["pods"] if p["pod"].startswith("default/myapp-"))
    dns = sorted(p["pod"] for p in st["pods"] if p["pod"].startswith("kube-system/"))
    for source, target in ((f"pod/{dns[0]}", "10.99.99.99:8080"),
                           ("node/kind-worker", "10.99.99.99:8080"),
                           ("external", "172.18.0.4:30080"),
                           (f"pod/{myapp[0]}", "10.96.0.10:53/udp"),
                           # No endpoints: the proxy accepts, then closes.
                           (f"pod/{myapp[0]}", "10.96.0.1:443")):
        code, out, err = run(capsys, *state, "lab", "probe", "--name", name, "--from", source,
                             "--to", target, "--count", "12", "--check", "-o", "json")
        r = json.loads(out)
        assert code == 0 and r["agree"], out
    # Round robin: exactly even over 12 attempts and 3 (or 2) endpoints.
    code, out, _ = run(capsys, *state, "lab", "probe", "--name", name, "--from",
                       "node/kind-worker", "--to", "10.99.99.99:8080", "--count", "12",
                       "-o", "json")
    assert sorted(json.loads(out)["observed"]["answers"].values()) == [4, 4, 4]
    # sync reloads the portal rules from the proxies' newest port report.
    code, out, err = run(capsys, *state, "lab", "sync", "--name", name)
    assert code == 0, err
    code, out, _ = run(capsys, *state, "lab", "probe", "--name", name, "--from", "external",
                       "--to", "172.18.0.3:30080", "--count", "6", "--check", "-o", "json")
    assert code == 0 and json.loads(out)["agree"], out
    assert run(capsys, *state, "lab", "down", "--name", name)[0] == 0
    assert all(not executor._alive(p) for p in proxies.values())
    assert lab_namespaces(name) == []


def test_sigterm_during_up_removes_the_partial_lab(env: tuple[list[str], str],
                                                   tmp_path: Path) -> None:
    state, name = env
    big = tmp_path / "big.yaml"
    big.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  replicas: 24\n"
        "  selector: {matchLabels: {app: big}}\n  template:\n    metadata: {labels: {app: big}}\n"
        "    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n")
    proc = subprocess.Popen([sys.executable, "-c", KSERVICE, *state, "lab", "up", "-f",
                             str(big), "--name", name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    # Wait (bounded) until the lab has started building, then interrupt it.
    for _ in range(400):
        if len(lab_namespaces(name)) >= 6 or proc.poll() is not None:
            break
        import time

        time.sleep(0.025)
    assert proc.poll() is None, "up finished before it could be interrupted"
    proc.terminate()
    _out, err = proc.communicate(timeout=120)
    # 128 + SIGTERM, as a shell reports it; one line says the partial lab is gone.
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [
        f'kservice lab up: interrupted by SIGTERM; lab "{name}" cleaned up (everything it '
        "had created was removed)"], err
    assert lab_namespaces(name) == []
    assert executor.load_meta(name) is None


def test_sync_of_a_lab_built_from_files_keeps_its_pods(env: tuple[list[str], str],
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    state, name = env
    code, _out, err = run(capsys, *state, "lab", "up", *FILES, "--name", name)
    assert code == 0, err

    def pods() -> list[str]:
        return [p["pod"] for p in json.loads(run(capsys, *state, "lab", "status", "--name",
                                                  name, "-o", "json")[1])[0]["pods"]]

    built = pods()
    # Nothing changed: a sync adds and removes nothing.
    code, out, err = run(capsys, *state, "lab", "sync", "--name", name)
    assert code == 0 and "pods:" not in out, out + err
    # The stored state changes (another Service): the files' pods would get other generated
    # names; the lab keeps the ones it built.
    assert run(capsys, *state, "apply", "-f", str(EXAMPLES / "redis-service.yaml"))[0] == 0
    for _ in range(2):
        code, out, err = run(capsys, *state, "lab", "sync", "--name", name)
        assert code == 0 and "pods:" not in out, out + err
    assert pods() == built
    myapp = next(p for p in built if p.startswith("default/myapp-"))
    code, out, _err = run(capsys, *state, "lab", "probe", "--name", name, "--from",
                          f"pod/{myapp}", "--to", "10.99.99.99:8080", "--count", "6",
                          "--check", "-o", "json")
    assert code == 0 and json.loads(out)["agree"], out


def test_probe_check_confirm_re_probes_a_disagreement(
        env: tuple[list[str], str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--check --confirm N``: a disagreement stands only if every round disagrees; the
    earlier rounds are reported. The disturbance is real: a REJECT rule in the client pod's
    own namespace (something neither model describes), present for some rounds only."""
    from backends.lab import cli
    from backends.lab import probe as lab_probe

    state, name = env
    assert run(capsys, *state, "lab", "up", *FILES, "--name", name)[0] == 0
    st = json.loads(run(capsys, *state, "lab", "status", "--name", name, "-o", "json")[1])[0]
    client = next(p for p in st["pods"] if p["pod"].startswith("default/myapp-"))
    myapp = {p["pod"] for p in st["pods"] if p["pod"].startswith("default/myapp-")}
    ex = executor.Executor(name)
    reject = ("OUTPUT", "-p", "tcp", "-d", "10.99.99.99", "--dport", "8080", "-j", "REJECT",
              "--reject-with", "tcp-reset")

    def disturb(on: bool) -> None:
        ex.in_netns(client["netns"], "iptables", "-I" if on else "-D", *reject,
                    why="a disturbance the models do not describe")

    real_probe = lab_probe.probe
    rounds: list[bool] = []  # disturbed or not, one entry per probe round
    disturbed_rounds = 0

    def probe(*a: object, **k: object) -> object:
        disturbed = len(rounds) < disturbed_rounds
        rounds.append(disturbed)
        if disturbed:
            disturb(True)
        try:
            return real_probe(*a, **k)  # type: ignore[arg-type]
        finally:
            if disturbed:
                disturb(False)

    monkeypatch.setattr(cli, "probe", probe)
    args = ("lab", "probe", "--name", name, "--from", f"pod/{client['pod']}", "--to",
            "10.99.99.99:8080", "--count", "6", "--check")

    def check(*extra: str, disturbed: int) -> tuple[int, str, str]:
        nonlocal disturbed_rounds
        rounds.clear()
        disturbed_rounds = disturbed
        return run(capsys, *state, *args, *extra)

    # A one-off (first round only): re-probed once by default, agrees, exit 0; the
    # disagreeing round is in the report.
    code, out, err = check("-o", "json", disturbed=1)
    r = json.loads(out)
    assert code == 0 and r["agree"] and r["disagreements"] == [], out + err
    assert rounds == [True, False]
    assert sum(r["observed"]["answers"].values()) == 6
    assert set(r["observed"]["answers"]) <= myapp
    (first,) = r["earlier_rounds"]
    assert first["observed"]["refused"] == 6 and first["observed"]["answers"] == {}
    assert first["disagreements"] and isinstance(first["counters"], list)
    # The same in text.
    code, out, err = check(disturbed=1)
    assert code == 0, out + err
    assert "\nagree\n1 earlier round disagreed (re-probed, --confirm):\n  round 1: " \
           "(refused) 6\n" in out, out
    # Repeated in every round: it stands (exit 1), with every earlier round.
    code, out, err = check("--confirm", "2", "-o", "json", disturbed=3)
    r = json.loads(out)
    assert code == 1 and not r["agree"] and r["disagreements"], out + err
    assert rounds == [True, True, True]
    assert r["observed"]["refused"] == 6
    assert [e["observed"]["refused"] for e in r["earlier_rounds"]] == [6, 6]
    assert all(e["disagreements"] for e in r["earlier_rounds"])
    # More rounds allowed than needed: it stops at the first agreeing one.
    code, out, err = check("--confirm", "3", "-o", "json", disturbed=2)
    assert code == 0 and json.loads(out)["agree"], out + err
    assert rounds == [True, True, False]
    assert len(json.loads(out)["earlier_rounds"]) == 2
    # --confirm 0: a single round, as before; the one-off then stands.
    code, out, err = check("--confirm", "0", disturbed=1)
    assert code == 1 and "DISAGREE" in out and "earlier round" not in out, out + err
    assert rounds == [True]
    # Undisturbed: one round, nothing earlier.
    code, out, err = check("-o", "json", disturbed=0)
    assert code == 0 and json.loads(out)["earlier_rounds"] == [], out + err
    assert rounds == [False]
    # Nothing left behind in the pod's namespace.
    rules = ex.in_netns(client["netns"], "iptables", "-S", "OUTPUT").stdout
    assert "REJECT" not in rules, rules
    # Bad uses are clear errors.
    code, _out, err = check("--confirm", "-1", disturbed=0)
    assert code == 1 and "--confirm -1" in err and rounds == [], err
    code, _out, err = run(capsys, *state, *args[:-1], "--confirm", "2")
    assert code == 1 and "--confirm applies to --check only" in err, err


def _ext_lo(name: str) -> str:
    return subprocess.run(["ip", "-n", f"ksl-{name}-ext", "-4", "-o", "addr", "show", "dev",
                           "lo"], capture_output=True, text=True, timeout=30).stdout


def test_probe_source_is_checked_and_cleaned_up(env: tuple[list[str], str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    state, name = env
    assert run(capsys, *state, "lab", "up", *FILES, "--name", name)[0] == 0
    before = _ext_lo(name)
    probe = ("lab", "probe", "--name", name, "--from", "external", "--to",
             "172.18.0.3:30080", "--count", "3")
    # A node's address (or a pod's, a cluster IP...) is refused and nothing is added.
    for taken, what in (("172.18.0.2", "node kind-control-plane's address"),
                        ("10.96.0.10", "cluster IP")):
        code, _out, err = run(capsys, *state, *probe, "--source", taken)
        assert code == 1 and what in err, err
        assert _ext_lo(name) == before
    # A free address is used, then removed again: the next probes are unaffected.
    code, out, err = run(capsys, *state, *probe, "--source", "203.0.113.7", "--check")
    assert code == 0, out + err
    assert _ext_lo(name) == before
    code, out, err = run(capsys, *state, *probe, "--check")
    assert code == 0 and "agree" in out, out + err
    for bad in ("0", "-1", "1e9", "nan"):
        code, _out, err = run(capsys, *state, *probe, "--timeout", bad)
        assert code == 1 and "--timeout" in err and "seconds" in err, err
    code, _out, err = run(capsys, *state, *probe[:-2], "--count", "0")
    assert code == 1 and "--count" in err


def test_status_of_a_missing_lab_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KSERVICE_LAB_DIR", str(tmp_path / "labs"))
    code, out, err = run(capsys, "lab", "status", "--name", "nosuchlab")
    assert code == 1 and out == "" and 'no lab "nosuchlab"' in err
    code, out, err = run(capsys, "lab", "status", "--name", "nosuchlab", "-o", "json")
    assert code == 1 and json.loads(out) == [{"name": "nosuchlab", "status": "absent"}]
    # Listing every lab (none) is not an error.
    code, out, _err = run(capsys, "lab", "status")
    assert code == 0 and out.strip() == "No labs."
