"""Turn pytest-benchmark's ``--benchmark-json`` output into docs/performance.md.

Usage::

    python benchmarks/report.py RESULTS.json [MORE.json ...] [-o docs/performance.md]

Each row of the table is one figure the issues name: what is measured, the target, the
measured value (and the statistic it is) and the machine it was measured on. The targets
live in :data:`TARGETS` below, each with the benchmark that measures it; benchmarks without
a target are listed after them, and targets whose benchmark did not run (skipped: no root,
no ``iptables-restore`` ...) say so rather than disappear. Several JSON files (say, a CI run
and a local run) can be merged; a later file's result for the same benchmark wins.

Measured times are the *best* round (``min``) unless a row says otherwise: the machine is
shared, and the best round is the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["TARGETS", "Target", "load", "main", "render"]

Bench = dict[str, Any]


@attrs.frozen
class Target:
    """One figure: which benchmark measures it, how to read it, what it must reach."""

    #: The benchmark's ``fullname`` without the directory (``bench_api.py::test_x``).
    bench: str
    figure: str
    #: ``stats.<name>`` (seconds) or ``extra.<key>`` (the benchmark's ``extra_info``).
    value: str
    #: ``<=`` or ``>=``; ``None`` for a figure shown without a target.
    op: str | None
    limit: float | None
    unit: str
    #: Where the target comes from.
    source: str


def _t(bench: str, figure: str, value: str, op: str | None, limit: float | None, unit: str,
       source: str) -> Target:
    return Target(bench, figure, value, op, limit, unit, source)


#: The figures the issues name, in the order the report lists them.
TARGETS: tuple[Target, ...] = (
    _t("bench_api.py::test_create_10k_services",
       "10k Service creates (defaulting, validation, ClusterIP/NodePort allocation)",
       "stats.min", "<=", 3.0, "s", "H1"),
    _t("bench_api.py::test_100k_dynamic_cluster_ips",
       "100k dynamic ClusterIP allocations in a /12", "stats.min", "<=", 1.0, "s", "H1"),
    _t("bench_endpoints.py::test_apply_10k_services_100k_pods",
       "10k Services + 10k Deployments x 10 pods through every controller (wall)",
       "extra.seconds", "<=", 10.0, "s", "H3"),
    _t("bench_endpoints.py::test_apply_10k_services_100k_pods",
       "... peak RSS of that build", "extra.peak_rss_mib", "<=", 1536.0, "MiB", "H3"),
    _t("bench_endpoints.py::test_readiness_change_to_slices_and_snapshot",
       "one pod's readiness -> EndpointSlice + Endpoints + node snapshot (mean)",
       "stats.mean", "<=", 0.005, "s", "H3"),
    _t("bench_iptables.py::test_full_render_10k",
       "iptables: full render, 10k services x 10 endpoints", "stats.min", "<=", 2.0, "s",
       "H4"),
    _t("bench_iptables.py::test_partial_sync_one_endpoint_change",
       "iptables: partial sync after one endpoint change", "stats.min", "<=", 0.020, "s",
       "H4"),
    _t("bench_iptables.py::test_render_vs_real_restore",
       "iptables: our render / real iptables-restore of the same dump", "extra.ratio", "<=",
       0.15, "x", "H4"),
    _t("bench_mockkernel.py::test_load_10k_services_x_10_endpoints",
       "mock kernel: load a 10k x 10 iptables-save dump", "stats.min", "<=", 3.0, "s", "H5"),
    _t("bench_mockkernel.py::test_trace[10000]",
       "mock kernel: one trace at 10k services (median)", "stats.median", "<=", 200e-6, "s",
       "H5"),
    _t("bench_mockkernel.py::test_trace[10]",
       "mock kernel: one trace at 10 services (median)", "stats.median", None, None, "s",
       "H5"),
    _t("bench_ipvs.py::test_full_render_all_sections_10k_services",
       "IPVS: full render (all sections), 10k services x 10 endpoints", "stats.min", "<=",
       2.0, "s", "H6"),
    _t("bench_ipvs.py::test_render_node_10k_services",
       "IPVS: node model render, 10k services", "stats.min", "<=", 2.0, "s", "H6"),
    _t("bench_nftables.py::test_full_render_10k_services",
       "nftables: full render, 10k services x 10 endpoints", "stats.min", "<=", 2.0, "s",
       "H7"),
    _t("bench_nftables.py::test_one_service_partial_sync",
       "nftables: one-service change (partial sync)", "stats.min", "<=", 0.020, "s", "H7"),
    _t("bench_dns.py::test_udp_qps[cached]",
       "DNS server over UDP on loopback, reply cache on", "extra.qps", ">=", 5000.0, "q/s",
       "H8"),
    _t("bench_dns.py::test_udp_qps[uncached]",
       "DNS server over UDP on loopback, every query answered afresh", "extra.qps", ">=",
       5000.0, "q/s", "H8"),
)

#: Derived figures: (figure, target text, function of all results -> (measured, ok) or None).
Derived = Callable[[dict[str, Bench]], tuple[str, bool | None] | None]


def _trace_ratio(results: dict[str, Bench]) -> tuple[str, bool | None] | None:
    big = results.get("bench_mockkernel.py::test_trace[10000]")
    small = results.get("bench_mockkernel.py::test_trace[10]")
    if big is None or small is None:
        return None
    ratio = big["stats"]["median"] / small["stats"]["median"]
    return f"{ratio:.2f}x", ratio <= 2.0


def _proxy_overhead(results: dict[str, Bench]) -> tuple[str, bool | None] | None:
    proxy = results.get("bench_userspace.py::test_rtt[proxy]")
    direct = results.get("bench_userspace.py::test_rtt[direct]")
    if proxy is None or direct is None:
        return None
    p, d = proxy["stats"]["median"], direct["stats"]["median"]
    return f"{_fmt(p, 's')} vs {_fmt(d, 's')} direct ({p / d:.1f}x)", None


DERIVED: tuple[tuple[str, str, Derived], ...] = (
    ("mock kernel: trace time at 10k services / at 10 services", "≤ 2x", _trace_ratio),
    ("userspace proxy: TCP round trip through the proxy vs direct (median)", "—",
     _proxy_overhead),
)


# --------------------------------------------------------------------------- reading


def _short(fullname: str) -> str:
    """``benchmarks/bench_api.py::test_x`` -> ``bench_api.py::test_x``."""
    path, sep, rest = fullname.partition("::")
    return Path(path).name + sep + rest


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine_info") or {}
    cpu = m.get("cpu") or {}
    brand = str(cpu.get("brand_raw") or cpu.get("brand") or m.get("processor") or "cpu")
    brand = " ".join(brand.replace("(R)", "").replace("(TM)", "").replace("CPU", "").split())
    count = cpu.get("count")
    py = m.get("python_version") or ""
    parts = [f"{count} x {brand}" if count else brand]
    if py:
        parts.append(f"{m.get('python_implementation', 'Python')} {py}")
    return ", ".join(parts)


def load(paths: Sequence[Path]) -> tuple[dict[str, Bench], dict[str, str], list[str]]:
    """(benchmark -> result, benchmark -> machine, run dates) from pytest-benchmark files."""
    results: dict[str, Bench] = {}
    machines: dict[str, str] = {}
    dates: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"report.py: cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or "benchmarks" not in data:
            raise SystemExit(f"report.py: {path} is not pytest-benchmark JSON "
                             "(no 'benchmarks' key); run pytest with --benchmark-json")
        machine = _machine(data)
        if data.get("datetime"):
            dates.append(str(data["datetime"])[:19].replace("T", " ") + " UTC")
        for b in data["benchmarks"]:
            name = _short(str(b.get("fullname") or b.get("name")))
            results[name] = b
            machines[name] = machine
    return results, machines, dates


# --------------------------------------------------------------------------- formatting


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 1e-3:
            return f"{value * 1e3:.2f} ms"
        return f"{value * 1e6:.1f} µs"
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "q/s":
        return f"{value:,.0f} q/s"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


_OPS = {"<=": "≤", ">=": "≥"}


def _read(b: Bench, how: str) -> float | None:
    kind, _, key = how.partition(".")
    source = b.get("stats") if kind == "stats" else b.get("extra_info")
    value = (source or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render(results: dict[str, Bench], machines: dict[str, str], dates: Sequence[str]) -> str:
    """The Markdown page."""
    out = [
        "# Performance",
        "",
        "Written by `make bench` (`benchmarks/report.py` reading pytest-benchmark's JSON); "
        "do not edit by hand. Sizes are the ones the issues name: 10k Services x 10 endpoints "
        "for the dataplanes, 100k pods for the controllers.",
        "",
    ]
    if dates:
        out += [f"Measured: {', '.join(sorted(set(dates)))}.", ""]
    out += [
        "Times are the best round (`min`) unless the figure says *mean* or *median*; the "
        "machines are shared, so the best round is the least disturbed one.",
        "",
        _row(["figure", "target", "measured", "met", "machine"]),
        _row(["---", "---", "---", ":-:", "---"]),
    ]
    used: set[str] = set()
    for t in TARGETS:
        target = (f"{_OPS[t.op]} {_fmt(t.limit, t.unit)}" if t.op and t.limit is not None
                  else "—")
        b = results.get(t.bench)
        if b is None:
            out.append(_row([t.figure, target, "not measured (skipped or not run)", "–", "–"]))
            continue
        used.add(t.bench)
        value = _read(b, t.value)
        if value is None:
            out.append(_row([t.figure, target, f"no {t.value} in the results", "–",
                             machines[t.bench]]))
            continue
        measured = _fmt(value, t.unit)
        extra = b.get("extra_info") or {}
        if t.value == "extra.ratio" and "restore_s" in extra:
            render_s = (b.get("stats") or {}).get("min")
            measured += (f" (ours {_fmt(float(render_s), 's')} vs "
                         f"{extra.get('restore_tool', 'iptables-restore')} "
                         f"{_fmt(float(extra['restore_s']), 's')})" if render_s else "")
        if t.op is None or t.limit is None:
            met = "–"
        else:
            ok = value <= t.limit if t.op == "<=" else value >= t.limit
            met = "yes" if ok else "**no**"
        out.append(_row([t.figure, target, measured, met, machines[t.bench]]))
    for figure, target, func in DERIVED:
        got = func(results)
        if got is None:
            out.append(_row([figure, target, "not measured", "–", "–"]))
        else:
            measured, verdict = got
            met = "–" if verdict is None else ("yes" if verdict else "**no**")
            machine = next(iter(sorted(set(machines.values()))), "–")
            out.append(_row([figure, target, measured, met, machine]))

    others = sorted(set(results) - used)
    if others:
        out += ["", "## Other measurements", "",
                _row(["benchmark", "best", "median", "rounds", "extra", "machine"]),
                _row(["---", "---", "---", "---", "---", "---"])]
        for name in others:
            b = results[name]
            s = b.get("stats") or {}
            extra = ", ".join(f"{k}={v}" for k, v in sorted((b.get("extra_info") or {}).items()))
            out.append(_row([f"`{name}`", _fmt(float(s.get("min", 0.0)), "s"),
                             _fmt(float(s.get("median", 0.0)), "s"), str(s.get("rounds", "")),
                             extra or "–", machines[name]]))
    out += ["", "Reproduce: `make bench` (all), or one file: `.venv/bin/python -m pytest "
            "benchmarks/bench_iptables.py -s`. The real-`iptables-restore` "
            "comparison needs root, `ip` and `iptables-legacy-restore` or `iptables-restore` "
            "(it restores into a throwaway network namespace); without them it is reported as "
            "not measured.", ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write here (default: stdout)")
    args = parser.parse_args(argv)
    results, machines, dates = load(args.json)
    text = render(results, machines, dates)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(results)} benchmarks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
