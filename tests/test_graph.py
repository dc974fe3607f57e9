"""kservice.graph: DOT pictures of real traces and real renderings (and the Graphviz adapter).

The traces come from the mock kernel loaded with what the backends render for the seed
note's cluster (docs/examples), so the expectations are read off the trace itself (its
rule path, its outcomes), never written down from the picture code. Where Graphviz is
installed the DOT text is parsed by Graphviz itself (``dot -Tjson``), an independent reader.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from backends.demo.walkthrough import demo_cluster, load_examples
from backends.mockkernel import MockKernel
from kservice.backend import get_backend
from kservice.errors import BackendError, InvalidInput
from kservice.graph import (
    convert,
    iptables_to_dot,
    nft_base_chains,
    nft_to_dot,
    parse_step,
    trace_to_dot,
)
from kservice.proxy.snapshot import build_node_state
from kservice.trace import Packet, TraceResult

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
NODE = "kind-worker"
CLIENT = "203.0.113.9"


@pytest.fixture(scope="module")
def cluster() -> Any:
    c = demo_cluster()
    load_examples(c, EXAMPLES)
    return c


def _trace(cluster: Any, mode: str, packet: Packet, service: str | None = None
           ) -> tuple[TraceResult, Any]:
    state = build_node_state(cluster, NODE, "IPv4")
    if service is not None:
        state = attrs.evolve(state, service_ports=tuple(
            sp for sp in state.service_ports if str(sp.name).startswith(service + ":")))
    backend = get_backend(mode)
    rendering = backend.render(state)
    kernel = MockKernel(state.node)
    backend.load(kernel, rendering)
    return kernel.trace(packet, mode=mode), rendering


def _node_ip(cluster: Any) -> str:
    node = cluster.get("Node", NODE, "")
    return str(next(a.address for a in node.status.addresses if a.type == "InternalIP"))


_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)"(?: \[(.*)\])?;$')
_NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[(.*)\];$')


def _edges(dot: str) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3) or "")
            for m in map(_EDGE.match, dot.splitlines()) if m]


def _nodes(dot: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(_NODE.match, dot.splitlines()) if m}


def _graphviz_json(dot: str) -> dict[str, Any]:
    proc = subprocess.run(["dot", "-Tjson"], input=dot.encode(), capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# --------------------------------------------------------------------------- parse_step


def test_parse_step_reads_the_three_location_shapes() -> None:
    s = parse_step('nat KUBE-SERVICES -m comment --comment "x y" -j KUBE-SVC-ABC')
    assert (s.kind, s.table, s.chain) == ("iptables", "nat", "KUBE-SERVICES")
    assert s.rule.endswith("-j KUBE-SVC-ABC")
    s = parse_step("ip kube-proxy nat-prerouting jump services")
    assert (s.kind, s.table, s.chain, s.rule) == ("nftables", "ip kube-proxy",
                                                   "nat-prerouting", "jump services")
    s = parse_step("ipvs LOCAL_IN TCP  10.0.0.1:80 rr -> 10.244.1.2:80 Masq w1")
    assert (s.kind, s.chain) == ("ipvs", "LOCAL_IN")


# --------------------------------------------------------------------------- traces


def test_nodeport_trace_graph_has_hooks_chains_dnat_and_endpoints(cluster: Any) -> None:
    node_ip = _node_ip(cluster)
    result, _ = _trace(cluster, "iptables", Packet(src=CLIENT, dst=node_ip, dport=30080))
    dot = trace_to_dot(result)
    nodes, edges = _nodes(dot), _edges(dot)

    # Hooks: every built-in chain the walk matched a rule in, as a backbone from the source
    # in the order the first outcome met them.
    steps = [parse_step(r) for r in result.outcomes[0].rules]
    hooks = list(dict.fromkeys(s.chain for s in steps
                               if s.chain in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT",
                                              "POSTROUTING")))
    assert hooks[0] == "PREROUTING" and "POSTROUTING" in hooks
    backbone = ["src", *(f"hook {h}" for h in hooks)]
    edge_pairs = {(a, b) for a, b, _ in edges}
    for a, b in itertools.pairwise(backbone):
        assert (a, b) in edge_pairs, (a, b)
    # Chains: a node for every chain a matched rule lives in.
    for s in steps:
        assert f"{s.table} {s.chain}" in nodes
    # Every outcome: its DNAT edge out of the chain holding its DNAT rule, to a rewrite
    # node naming the original and the new destination, and its end node.
    assert len(result.outcomes) == 3
    for o in result.outcomes:
        assert o.delivered_to is not None
        dnat_rules = [parse_step(r) for r in o.rules if "-j DNAT" in r]
        assert len(dnat_rules) == 1
        sep = dnat_rules[0]
        dnat_edges = [(a, b) for a, b, at in edges
                      if a == f"{sep.table} {sep.chain}" and 'label="DNAT"' in at]
        assert len(dnat_edges) == 1
        rewrite = dnat_edges[0][1]
        assert f"{node_ip}:30080" in rewrite and o.delivered_to in rewrite
        ends = [n for n, at in nodes.items() if n.startswith("end ")
                and f"delivered to {o.delivered_to}" in at]
        assert len(ends) == 1
        into_end = [at for a, b, at in edges if b == ends[0]]
        assert into_end and f'label="{o.probability}"' in into_end[0]
        assert f"source seen: {o.source_seen}" in nodes[ends[0]]


def test_trace_graph_is_valid_dot_for_graphviz(cluster: Any) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    result, _ = _trace(cluster, "iptables",
                       Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080))
    g = _graphviz_json(trace_to_dot(result))
    names = [o["name"] for o in g.get("objects", []) if "nodes" not in o]
    assert "hook PREROUTING" in names and "src" in names
    ends = [n for n in names if n.startswith("end ")]
    assert sorted(e.split()[1] for e in ends) == sorted(
        o.delivered_to for o in result.outcomes if o.delivered_to)
    by_id = {o["_gvid"]: o["name"] for o in g["objects"]}
    dnat = [(by_id[e["tail"]], by_id[e["head"]]) for e in g["edges"]
            if e.get("label") == "DNAT"]
    assert len(dnat) == len(result.outcomes)
    assert all(t.startswith("nat KUBE-SEP-") for t, _ in dnat)


def test_pod_to_clusterip_graph_is_not_masqueraded(cluster: Any) -> None:
    pod = next(p for p in cluster.list("Pod", "default")
               if p.spec.node_name == NODE and p.metadata.labels.get("app") == "myapp")
    result, _ = _trace(cluster, "iptables",
                       Packet(src=pod.status.pod_ip, dst="10.97.97.97", dport=6379))
    dot = trace_to_dot(result, names={pod.status.pod_ip: f"pod {pod.metadata.name}"})
    assert not any('label="SNAT"' in at for _, _, at in _edges(dot))
    assert f"pod {pod.metadata.name}" in _nodes(dot)["src"]
    assert all(not o.masqueraded for o in result.outcomes)


def test_dropped_packet_ends_in_a_drop_node(cluster: Any) -> None:
    lb = cluster.get("Service", "myapp-lb", "default")
    ip = lb.status.load_balancer_ingress[0].ip
    result, _ = _trace(cluster, "iptables", Packet(src="192.0.2.50", dst=ip, dport=80))
    assert [o.verdict for o in result.outcomes] == ["DROP"]
    nodes = _nodes(trace_to_dot(result))
    drops = [n for n, at in nodes.items() if 'label="DROP"' in at]
    assert len(drops) == 1 and "octagon" in nodes[drops[0]]


def test_nftables_trace_hooks_come_from_the_base_chains(cluster: Any) -> None:
    result, rendering = _trace(cluster, "nftables",
                               Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080))
    bases = nft_base_chains(rendering.section("ruleset"))
    # kube-proxy's nftables base chains and their hooks (reference: nftables proxier).
    assert bases["nat-prerouting"] == "PREROUTING"
    assert bases["filter-output-pre-dnat"] == "OUTPUT"
    assert bases["nat-postrouting"] == "POSTROUTING"
    dot = trace_to_dot(result, base_chains=bases)
    assert "hook PREROUTING" in _nodes(dot)
    dnat = [(a, b) for a, b, at in _edges(dot) if 'label="DNAT"' in at]
    assert len(dnat) == len(result.outcomes)
    assert all(a.startswith("ip kube-proxy endpoint-") for a, _ in dnat)


def test_ipvs_trace_rewrites_in_the_ipvs_step(cluster: Any) -> None:
    # Only myapp: the mock kernel does not load the `-m ipvs` match that the LoadBalancer's
    # source-range rules use in IPVS mode.
    result, _ = _trace(cluster, "ipvs", Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080),
                       service="default/myapp")
    dot = trace_to_dot(result)
    dnat = [(a, b) for a, b, at in _edges(dot) if 'label="DNAT"' in at]
    assert dnat and all(a == "ipvs LOCAL_IN" for a, _ in dnat)
    # IPVS schedules at LOCAL_IN: the hook is INPUT, entered from PREROUTING.
    assert ("hook PREROUTING", "hook INPUT") in {(a, b) for a, b, _ in _edges(dot)}


def test_trace_graph_is_deterministic(cluster: Any) -> None:
    p = Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080)
    a, _ = _trace(cluster, "iptables", p)
    b, _ = _trace(cluster, "iptables", p)
    assert trace_to_dot(a) == trace_to_dot(b)


# --------------------------------------------------------------------------- chain graphs


def test_chain_graph_of_one_service_has_an_edge_per_jump(cluster: Any) -> None:
    state = build_node_state(cluster, NODE, "IPv4")
    state = attrs.evolve(state, service_ports=tuple(
        sp for sp in state.service_ports if str(sp.name) == "default/myapp:http"))
    text = get_backend("iptables").render(state).section("save")
    dot = iptables_to_dot(text, title="default/myapp")
    edges = {(a, b) for a, b, _ in _edges(dot)}
    # Read the jumps off the dump itself.
    table, jumps, dnats = "", set(), set()
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        m = re.match(r"-A (\S+) .*-j (KUBE-\S+)", line)
        if m and table in ("nat", "filter"):
            jumps.add((f"{table} {m.group(1)}", f"{table} {m.group(2)}"))
        m = re.match(r"-A (\S+) .*-j DNAT --to-destination (\S+)", line)
        if m:
            dnats.add((f"nat {m.group(1)}", f"endpoint {m.group(2)}"))
    assert jumps and jumps <= edges
    assert len(dnats) == 3 and dnats <= edges
    assert edges - jumps - dnats == set()


def test_chain_graph_refuses_text_that_is_not_iptables() -> None:
    with pytest.raises(InvalidInput, match="line 2"):
        iptables_to_dot("*nat\nadd rule ip t c accept\n")
    with pytest.raises(InvalidInput, match="no chains"):
        iptables_to_dot("*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")


# --------------------------------------------------------------------------- conversion


def test_graphviz_adapter_draws_svg_and_png() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    from backends.graphviz import convert as gv

    svg = gv('digraph g { a -> b [label="DNAT"]; }', "svg")
    assert b"<svg" in svg and b"DNAT" in svg
    png = gv("digraph g { a -> b; }", "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_graphviz_adapter_says_how_to_install_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.graphviz import convert as gv

    monkeypatch.setenv("KSERVICE_DOT", "no-such-dot-binary")
    with pytest.raises(BackendError, match="apt-get install graphviz"):
        gv("digraph g {}", "svg")


def test_graphviz_adapter_reports_dot_errors() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    from backends.graphviz import convert as gv

    with pytest.raises(BackendError, match="failed"):
        gv("digraph g { a -> ; }", "svg")


def test_convert_dot_is_identity_and_unknown_formats_are_refused() -> None:
    assert convert("digraph g {}\n", "dot") == b"digraph g {}\n"
    with pytest.raises(InvalidInput, match="unknown picture format"):
        convert("digraph g {}", "gif")


def test_userspace_trace_ends_at_the_proxy_and_starts_again(cluster: Any) -> None:
    result, _ = _trace(cluster, "userspace",
                       Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080),
                       service="default/myapp")
    steps = [parse_step(r) for r in result.outcomes[0].rules]
    assert any(s.kind == "proxy" for s in steps), "the userspace trace names the proxy socket"
    dot = trace_to_dot(result)
    edges = _edges(dot)
    proxy = "kube-proxy userspace proxy"
    assert proxy in _nodes(dot)
    # In: the packet was REDIRECTed to the proxy's port and delivered locally (INPUT) ...
    assert any(b == proxy for _a, b, _ in edges)
    assert any('label="REDIRECT"' in at for _, _, at in edges)
    # ... out: the proxy's own connection leaves through OUTPUT.
    assert any(a == proxy and b == "hook OUTPUT" and "new connection" in at
               for a, b, at in edges)


def test_nft_masquerade_is_the_statement_not_the_chain_name(cluster: Any) -> None:
    result, rendering = _trace(cluster, "nftables",
                               Packet(src=CLIENT, dst=_node_ip(cluster), dport=30080))
    dot = trace_to_dot(result, base_chains=nft_base_chains(rendering.section("ruleset")))
    snat_from = {a for a, _b, at in _edges(dot) if 'label="SNAT"' in at}
    # Only the chain holding the `masquerade` statement rewrites the source; the chains
    # that jump to mark-for-masquerade merely mark the packet.
    masq_chains = {f"{s.table} {s.chain}" for o in result.outcomes for s in map(parse_step, o.rules)
                   if re.search(r"(^|\s)masquerade(\s|$)", s.rule)}
    assert masq_chains and snat_from == masq_chains


# --------------------------------------------------------------------------- the CLI


def test_render_draws_the_chain_graph(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
                                      ) -> None:
    from importlib.metadata import entry_points

    from kservice.cli import main

    state = str(tmp_path / "state.db")
    assert main(["--state", state, "apply", "-f", str(EXAMPLES)]) == 0
    capsysbinary.readouterr()
    argv = ["--state", state, "render", "--mode", "iptables", "--node", NODE,
            "--service", "default/myapp"]
    assert main([*argv, "-o", "dot"]) == 0
    dot = capsysbinary.readouterr().out.decode()
    assert dot.startswith('digraph "default/myapp: iptables rules on kind-worker (IPv4)"')
    dnat = [b for _a, b, at in _edges(dot) if 'label="DNAT"' in at]
    assert len(dnat) == 3 and all(b.startswith("endpoint 10.244.") for b in dnat)

    rc = main([*argv, "-o", "svg"])
    out, err = capsysbinary.readouterr()
    if any(True for _ in entry_points(group="kservice.graph_converters")) and shutil.which("dot"):
        assert rc == 0 and b"<svg" in out
    else:
        assert rc == 1 and (b"pip install -e ." in err or b"install Graphviz" in err)

    assert main([*argv[:4], "nftables", *argv[5:], "-o", "dot"]) == 0
    nft = capsysbinary.readouterr().out.decode()
    assert len([1 for _a, _b, at in _edges(nft) if 'label="DNAT"' in at]) == 3


def test_nft_chain_graph_follows_verdict_maps(cluster: Any) -> None:
    state = build_node_state(cluster, NODE, "IPv4")
    state = attrs.evolve(state, service_ports=tuple(
        sp for sp in state.service_ports if str(sp.name) == "default/myapp:http"))
    ruleset = get_backend("nftables").render(state).section("ruleset")
    edges = {(a, b): at for a, b, at in _edges(nft_to_dot(ruleset))}
    # Read the expected jumps off the ruleset: the NodePort map's element and the numgen
    # map's endpoint chains.
    nodeport_target = re.search(r"tcp \. 30080 : goto (\S+) ", ruleset)
    assert nodeport_target is not None
    assert ("chain services", f"chain {nodeport_target.group(1)}") in edges
    numgen = re.search(r"chain (service-\S+) \{\n[^}]*?numgen random mod 3 vmap \{([^}]*)\}",
                       ruleset)
    assert numgen is not None
    endpoint_chains = re.findall(r"goto (\S+?)(?:,|\s|$)", numgen.group(2))
    assert len(endpoint_chains) == 3
    for ep in endpoint_chains:
        assert (f"chain {numgen.group(1)}", f"chain {ep}") in edges
        addr = ep.rsplit("__", 1)[1].replace("/", ":")
        assert 'label="DNAT"' in edges[(f"chain {ep}", f"endpoint {addr}")]
    with pytest.raises(InvalidInput, match="no chains"):
        nft_to_dot("table ip t {\n}\n")


def test_graphviz_emit_writes_dot_and_images() -> None:
    import io

    from backends.graphviz import emit

    buf = io.BytesIO()
    emit("digraph g { a -> b; }\n", "dot", buf)
    assert buf.getvalue() == b"digraph g { a -> b; }\n"
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    buf = io.BytesIO()
    emit("digraph g { a -> b; }\n", "svg", buf)
    assert b"<svg" in buf.getvalue()


def test_trace_cli_draws_the_packet_path(tmp_path: Path,
                                         capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from kservice.cli import main
    from kservice.cli.state import open_session

    state = str(tmp_path / "state.db")
    assert main(["--state", state, "apply", "-f", str(EXAMPLES)]) == 0
    with open_session(state, write=False) as c:
        node_ip = _node_ip(c)
    capsysbinary.readouterr()
    for mode in ("iptables", "nftables"):
        argv = ["--state", state, "trace", "--mode", mode, "--node", NODE, "--src", CLIENT,
                "--dst", f"{node_ip}:30080"]
        assert main([*argv, "-o", "json"]) == 0
        result = json.loads(capsysbinary.readouterr().out)
        assert main([*argv, "-o", "dot"]) == 0
        dot = capsysbinary.readouterr().out.decode()
        nodes, edges = _nodes(dot), _edges(dot)
        assert "hook PREROUTING" in nodes and "hook POSTROUTING" in nodes
        delivered = sorted(o["delivered_to"] for o in result["outcomes"])
        ends = sorted(n.split()[1] for n in nodes if n.startswith("end "))
        assert ends == delivered
        assert len([1 for _a, _b, at in edges if 'label="DNAT"' in at]) == len(delivered)
    if shutil.which("dot"):
        assert main([*argv, "-o", "svg"]) == 0
        assert b"<svg" in capsysbinary.readouterr().out
