"""Benchmarks of the CLI's hot paths: reading manifests, the state store, patches."""

from __future__ import annotations

from pathlib import Path

from kservice.cli.state import open_session
from kservice.manifest import decode_documents, load_text
from kservice.patch import three_way_merge
from kservice.testing.cli import install_service_api

N = 300


def _manifests(n: int) -> str:
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: default\n"
        f"spec:\n  selector: {{app: s{i}}}\n  ports:\n  - name: http\n    port: 80\n"
        f"    targetPort: 8080\n  - name: https\n    port: 443\n"
        for i in range(n)
    )


def test_load_and_decode_300_services(benchmark) -> None:
    from kservice.cluster import Cluster

    c = Cluster()
    install_service_api(c)
    text = _manifests(N)
    out = benchmark(lambda: decode_documents(c, load_text(text, "bench.yaml")))
    assert len(out) == N


def test_state_load_300_services(benchmark, tmp_path: Path) -> None:
    state = str(tmp_path / "bench.db")
    docs = load_text(_manifests(N), "bench.yaml")
    with open_session(state) as c:
        for _, obj in decode_documents(c, docs):
            c.create(obj)

    def load() -> int:
        with open_session(state, write=False) as c:
            return len(c.list("Service"))

    assert benchmark(load) >= N


def test_three_way_merge(benchmark) -> None:
    live = {"kind": "Service", "metadata": {"name": "x", "labels": {str(i): "v" for i in range(50)}},
            "spec": {"ports": [{"port": p, "protocol": "TCP", "nodePort": 30000 + p}
                               for p in range(1, 101)]}}
    new = {"kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": p, "name": f"p{p}"} for p in range(1, 101)]}}
    out = benchmark(lambda: three_way_merge(live, new, live))
    assert len(out["spec"]["ports"]) == 100
