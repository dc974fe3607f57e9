"""``kservice demo``: the walkthrough runs, fast, deterministically, and shows the note's facts.

The expectations come from the manifests in docs/examples (the addresses and ports the note
asks for) and from Kubernetes' rules (a NodePort reaches a selected pod on its containerPort;
ClientIP affinity pins a client to one endpoint), read independently of the demo's code.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.demo import cli as demo_cli
from backends.demo.walkthrough import DemoFacts, run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
LIMIT_S = 10.0


def _manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return data


@pytest.fixture(scope="module")
def demo() -> tuple[DemoFacts, str, float]:
    buf = io.StringIO()
    t0 = time.perf_counter()
    facts = run(buf.write)
    return facts, buf.getvalue(), time.perf_counter() - t0


def _container_port(deployment: str) -> int:
    c = _manifest(deployment)["spec"]["template"]["spec"]["containers"][0]
    return int(c["ports"][0]["containerPort"])


def _pod_ips(facts: DemoFacts, app: str) -> set[str]:
    return {ip for ip, who in facts.pods.items() if who.startswith(f"pod {app}-")}


def test_demo_is_fast(demo: tuple[DemoFacts, str, float]) -> None:
    _, _, seconds = demo
    assert seconds < LIMIT_S


def test_cluster_ips_are_the_notes(demo: tuple[DemoFacts, str, float]) -> None:
    facts, out, _ = demo
    assert facts.cluster_ips["redis"] == _manifest("redis-service.yaml")["spec"]["clusterIP"]
    assert facts.cluster_ips["myapp"] == _manifest("myapp-service.yaml")["spec"]["clusterIP"]
    assert facts.cluster_ips["myapp-headless"] == "None"
    assert "10.97.97.97" in out and "8080:30080/TCP" in out


def test_dns_answers(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    redis = facts.dns["redis"]
    assert [r.data.address for r in redis.answer] == ["10.97.97.97"]  # type: ignore[union-attr]
    headless = facts.dns["myapp-headless"]
    ips = {r.data.address for r in headless.answer}  # type: ignore[union-attr]
    replicas = _manifest("myapp-deployment.yaml")["spec"]["replicas"]
    assert ips == _pod_ips(facts, "myapp") and len(ips) == replicas
    cname = facts.dns["my-db"].answer[0]
    assert str(cname.data.target).rstrip(".") == "db.example.com"  # type: ignore[union-attr]


def test_rules_shown_are_the_services(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    assert "-d 10.99.99.99 --dport 8080" in facts.iptables_rules
    assert "--dport 30080" in facts.iptables_rules
    assert facts.iptables_rules.count("-j DNAT --to-destination") == len(
        _pod_ips(facts, "myapp"))
    assert f"TCP  {facts.node_ip}:30080 rr" in facts.ipvs_rules
    assert "TCP  10.99.99.99:8080 rr" in facts.ipvs_rules


def test_nodeport_trace_reaches_a_myapp_pod(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    port = _container_port("myapp-deployment.yaml")
    result = facts.nodeport
    assert result.packet.dst == facts.node_ip and result.packet.dport == 30080
    assert result.total_probability == 1
    reached = {o.delivered_to for o in result.outcomes}
    assert reached == {f"{ip}:{port}" for ip in _pod_ips(facts, "myapp")}
    assert all(o.verdict == "ACCEPT" and o.masqueraded for o in result.outcomes)
    assert all(o.probability == Fraction(1, 3) for o in result.outcomes)
    # NodeIP:NodePort -> the ClusterIP's own service chain -> the pod: the KUBE-SVC chain
    # the NodePort path goes through is the one the cluster IP rule jumps to.
    svc_chain = next(line.split("-j ")[-1] for line in facts.iptables_rules.splitlines()
                     if line.startswith("-A KUBE-SERVICES") and "10.99.99.99" in line)
    for o in result.outcomes:
        chains = [r.split()[1] for r in o.rules]
        assert "KUBE-NODEPORTS" in chains and svc_chain in chains


def test_pod_to_clusterip(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    port = _container_port("redis-deployment.yaml")
    reached = {o.delivered_to for o in facts.pod_to_clusterip.outcomes}
    assert reached == {f"{ip}:{port}" for ip in _pod_ips(facts, "redis")}
    assert all(not o.masqueraded for o in facts.pod_to_clusterip.outcomes)
    assert all(o.source_seen == facts.pod_to_clusterip.packet.src
               for o in facts.pod_to_clusterip.outcomes)


def test_affinity_spreads_before_and_sticks_after(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    port = _container_port("myapp-deployment.yaml")
    pods = {f"{ip}:{port}" for ip in _pod_ips(facts, "myapp")}
    assert len(facts.affinity_before) == len(facts.affinity_after) == 5
    assert set(facts.affinity_before) <= pods and set(facts.affinity_after) <= pods
    assert len(set(facts.affinity_before)) > 1
    assert len(set(facts.affinity_after)) == 1


def test_loadbalancer_source_ranges(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    assert {o.verdict for o in facts.lb_allowed.outcomes} == {"ACCEPT"}
    assert [o.verdict for o in facts.lb_blocked.outcomes] == ["DROP"]


def test_ingress_routes(demo: tuple[DemoFacts, str, float]) -> None:
    facts, _, _ = demo
    port = _container_port("myapp-deployment.yaml")
    foo = facts.ingress[("foo.mydomain.com", "/")]
    assert "myapp:8080" in foo
    assert all(f"{ip}:{port}" in foo for ip in _pod_ips(facts, "myapp"))
    assert "bar:80" in facts.ingress[("mydomain.com", "/bar/baz")]
    assert facts.ingress[("mydomain.com", "/bar")].startswith("no route")
    assert facts.ingress[("example.org", "/")].startswith("no route")


def test_output_is_deterministic_and_explained(demo: tuple[DemoFacts, str, float]) -> None:
    _, out, _ = demo
    buf = io.StringIO()
    run(buf.write)
    assert buf.getvalue() == out
    steps = [ln for ln in out.splitlines() if ln.startswith("## ")]
    assert len(steps) >= 12
    # Each step: one explanation line, then the command it stands for.
    lines = out.splitlines()
    for ln in steps:
        assert lines[lines.index(ln) + 1].startswith("$ ")


def test_cli_leaves_the_state_file_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(prog="kservice")
    parser.add_argument("--state", default=str(tmp_path / "state.db"))
    demo_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "--seed", "1"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "service/myapp created" in out and "kservice demo:" in err
    assert not (tmp_path / "state.db").exists() and not (tmp_path / ".kservice").exists()


def test_kservice_demo_command(tmp_path: Path) -> None:
    """The installed ``kservice demo`` (or, before reinstalling, its clear fallback)."""
    from importlib.metadata import entry_points

    script = shutil.which("kservice", path=str(Path(sys.executable).parent)) or "kservice"
    env = {**os.environ, "KSERVICE_STATE": str(tmp_path / "state.db")}
    t0 = time.perf_counter()
    proc = subprocess.run([script, "demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    seconds = time.perf_counter() - t0
    assert "Traceback" not in proc.stderr
    if any(ep.name == "demo" for ep in entry_points(group="kservice.commands")):
        assert proc.returncode == 0, proc.stderr
        assert "## 1." in proc.stdout and seconds < LIMIT_S
    else:
        assert proc.returncode == 1 and "pip install -e ." in proc.stderr
    assert not (tmp_path / "state.db").exists()


def test_missing_examples_directory_is_a_clear_error(tmp_path: Path) -> None:
    from kservice.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"examples directory .* not found"):
        run(io.StringIO().write, examples=tmp_path / "nope")
