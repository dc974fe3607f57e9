"""benchmarks/report.py: pytest-benchmark JSON in, the performance table out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report() -> Any:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(fullname: str, *, min_: float = 1.0, median: float | None = None,
           mean: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"fullname": fullname, "name": fullname.split("::")[-1],
            "stats": {"min": min_, "median": median if median is not None else min_,
                      "mean": mean if mean is not None else min_, "rounds": 3},
            "extra_info": extra or {}}


def _write(tmp_path: Path, name: str, benches: list[dict[str, Any]]) -> Path:
    data = {"machine_info": {"cpu": {"brand_raw": "Test Chip(R) 9000", "count": 2},
                             "python_implementation": "CPython", "python_version": "3.11.7"},
            "datetime": "2026-01-01T00:00:00.000000", "benchmarks": benches}
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_met_and_missed_targets(report: Any, tmp_path: Path) -> None:
    p = _write(tmp_path, "a.json", [
        _bench("benchmarks/bench_iptables.py::test_full_render_10k", min_=1.5),
        _bench("benchmarks/bench_nftables.py::test_full_render_10k_services", min_=2.5),
        _bench("benchmarks/bench_dns.py::test_udp_qps[cached]", extra={"qps": 12000}),
    ])
    rows = _rows(report.render(*report.load([p])))
    ipt = rows["iptables: full render, 10k services x 10 endpoints"]
    assert ipt[1:4] == ["≤ 2.00 s", "1.50 s", "yes"]
    assert "2 x Test Chip 9000" in ipt[4] and "3.11.7" in ipt[4]
    nft = rows["nftables: full render, 10k services x 10 endpoints"]
    assert nft[2:4] == ["2.50 s", "**no**"]
    dns = rows["DNS server over UDP on loopback, reply cache on"]
    assert dns[1:4] == ["≥ 5,000 q/s", "12,000 q/s", "yes"]
    # A target whose benchmark did not run is reported, not dropped.
    assert rows["iptables: partial sync after one endpoint change"][2].startswith("not measured")


def test_real_restore_is_shown_beside_ours(report: Any, tmp_path: Path) -> None:
    p = _write(tmp_path, "a.json", [_bench(
        "benchmarks/bench_iptables.py::test_render_vs_real_restore", min_=1.2,
        extra={"restore_tool": "iptables-legacy-restore", "restore_s": 40.0, "ratio": 0.03})])
    rows = _rows(report.render(*report.load([p])))
    row = rows["iptables: our render / real iptables-restore of the same dump"]
    assert row[2] == "0.030x (ours 1.20 s vs iptables-legacy-restore 40.00 s)"
    assert row[3] == "yes"


def test_derived_ratio_and_other_benchmarks(report: Any, tmp_path: Path) -> None:
    p = _write(tmp_path, "a.json", [
        _bench("benchmarks/bench_mockkernel.py::test_trace[10]", median=50e-6),
        _bench("benchmarks/bench_mockkernel.py::test_trace[10000]", median=150e-6),
        _bench("benchmarks/bench_cli.py::test_three_way_merge", min_=0.002, median=0.003),
    ])
    text = report.render(*report.load([p]))
    rows = _rows(text)
    assert rows["mock kernel: trace time at 10k services / at 10 services"][2:4] == ["3.00x",
                                                                                    "**no**"]
    assert rows["mock kernel: one trace at 10k services (median)"][2] == "150.0 µs"
    assert rows["`bench_cli.py::test_three_way_merge`"][1:3] == ["2.00 ms", "3.00 ms"]


def test_later_file_wins_and_bad_input_is_refused(report: Any, tmp_path: Path) -> None:
    a = _write(tmp_path, "a.json", [_bench("benchmarks/bench_api.py::test_create_10k_services",
                                           min_=4.0)])
    b = _write(tmp_path, "b.json", [_bench("benchmarks/bench_api.py::test_create_10k_services",
                                           min_=2.0)])
    rows = _rows(report.render(*report.load([a, b])))
    assert rows[next(k for k in rows if k.startswith("10k Service creates"))][2:4] == ["2.00 s",
                                                                                      "yes"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="not pytest-benchmark JSON"):
        report.load([bad])


def test_main_writes_the_page(report: Any, tmp_path: Path) -> None:
    a = _write(tmp_path, "a.json", [])
    out = tmp_path / "performance.md"
    assert report.main([str(a), "-o", str(out)]) == 0
    assert out.read_text().startswith("# Performance\n")
