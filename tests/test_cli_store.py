"""kservice.cli.state: one SQLite transaction per command; concurrent runs lose nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import kservice.embedded
from kservice.cli import main
from kservice.cli.state import open_session
from kservice.errors import AlreadyExists
from kservice.testing.cli import install_service_api

# Child processes use the real Service API when installed, else the test stand-in.
CHILD = """
import sys
import kservice.embedded as e
import kservice.testing.cli as t
e._install_service_api = t.install_service_api
from kservice.cli import main
state, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import tempfile, os
d = tempfile.mkdtemp()
for i in range(n):
    p = os.path.join(d, f"{prefix}{i}.yaml")
    with open(p, "w") as f:
        f.write(f"apiVersion: v1\\nkind: Service\\nmetadata:\\n  name: {prefix}{i}\\n"
                f"spec:\\n  selector: {{app: x}}\\n  ports:\\n  - port: 80\\n")
    rc = main(["--state", state, "apply", "-f", p])
    if rc:
        sys.exit(rc)
"""


@pytest.fixture(autouse=True)
def service_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kservice.embedded, "_install_service_api", install_service_api)


SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  selector: {{app: x}}\n  ports:\n  - port: 80\n"


def names(state: str) -> list[str]:
    with open_session(state, write=False) as c:
        return [s.metadata.name for s in c.list("Service", "default")]


def test_fresh_state_is_seeded_and_persisted(tmp_path: Path) -> None:
    state = str(tmp_path / "s" / "state.db")
    with open_session(state, write=False) as c:
        uid = c.get("Service", "kubernetes").metadata.uid
        assert c.get("Service", "kube-dns", "kube-system").spec.cluster_ip == "10.96.0.10"
    with open_session(state, write=False) as c:
        # a read on a new file stores the seed, so the objects keep their identity
        assert c.get("Service", "kubernetes").metadata.uid == uid


def test_round_trip_keeps_objects_and_resource_version(tmp_path: Path) -> None:
    state = str(tmp_path / "state.db")
    f = tmp_path / "a.yaml"
    f.write_text(SVC.format("a"))
    assert main(["--state", state, "apply", "-f", str(f)]) == 0
    with open_session(state, write=False) as c:
        rv = c.resource_version
        stored = c.get("Service", "a")
    with open_session(state) as c:
        assert c.get("Service", "a") == stored
        assert c.resource_version == rv
        c.delete("Service", "a")
    assert "a" not in names(state)


def test_failed_apply_stores_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state.db")
    d = tmp_path / "m"
    d.mkdir()
    (d / "1-good.yaml").write_text(SVC.format("good"))
    (d / "2-bad.yaml").write_text(SVC.format("bad") + "  bogus: 1\n")
    assert main(["--state", state, "apply", "-f", str(d)]) == 1
    err = capsys.readouterr().err
    assert "2-bad.yaml:9:3" in err and "Traceback" not in err
    assert names(state) == ["kubernetes"]


def test_failure_after_writes_rolls_back(tmp_path: Path) -> None:
    state = str(tmp_path / "state.db")
    f = tmp_path / "a.yaml"
    f.write_text(SVC.format("a"))
    assert main(["--state", state, "create", "-f", str(f)]) == 0
    g = tmp_path / "b.yaml"
    g.write_text(SVC.format("b") + "---\n" + SVC.format("a"))
    # b is created in memory, then a exists: the command fails and b is not stored
    assert main(["--state", state, "create", "-f", str(g)]) == 1
    assert names(state) == ["a", "kubernetes"]
    with pytest.raises(AlreadyExists), open_session(state) as c:
        c.create(c.decode({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "c", "namespace": "default"}, "spec": {"ports": [{"port": 1}]}}))
        c.create(c.get("Service", "a"))
    assert "c" not in names(state)


def test_not_a_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    assert main(["--state", str(bad), "get", "svc"]) == 1
    assert "not a kservice state file" in capsys.readouterr().err


def test_two_processes_applying_at_once_lose_nothing(tmp_path: Path) -> None:
    state = str(tmp_path / "state.db")
    n = 6
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, state, prefix, str(n)],
                              stderr=subprocess.PIPE, text=True)
             for prefix in ("p", "q")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    got = names(state)
    assert sorted(got) == sorted([f"p{i}" for i in range(n)] + [f"q{i}" for i in range(n)]
                                 + ["kubernetes"])
    # one row per object, no torn writes
    rows = sqlite3.connect(state).execute(
        "SELECT count(*) FROM objects WHERE kind = 'Service'").fetchone()[0]
    assert rows == 2 * n + 2
