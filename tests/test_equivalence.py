"""Every backend against every other: pairwise agreement, deterministic rendering, parse/render
round trips, partial syncs equal to full syncs, and the reproducer's manifest round trip.

Pairwise agreement: for a generated node state and probe, each backend's traced outcome
distribution is compared with each other backend's. Two backends may differ only where at
least one of them is doing a *named, documented* upstream divergence from the reference
semantics (``docs/divergences.md``) and the other agrees with the reference or is itself
explained; anything else fails naming the disagreeing pair, with a reproducer.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations, pairwise
from typing import Any

import attrs
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st

from backends.iptables import IPTablesBackend, IPTablesState, render_save
from backends.iptables import node_state as iptables_node_state
from backends.mockkernel import MockKernel
from backends.mockkernel.ipset import IPSetStore
from backends.mockkernel.ipvs import IPVS
from backends.mockkernel.nft import NftRuleset
from backends.nftables import NFTablesBackend
from kservice.backend import Backend, get_backend
from kservice.proxy.raw import state_from_objects
from kservice.proxy.types import NodeProxyState
from kservice.semantics import expected_trace
from kservice.testing.dataplane import node_proxy_states
from kservice.testing.repro import repro_yaml, reproducer
from kservice.testing.strategies import node_states, probe_packets
from kservice.trace import Packet, TraceResult
from tests.test_contract_iptables import close, iptables_divergence
from tests.test_contract_nftables import nftables_divergence, no_localhost_nodeports
from tests.test_ipvs_agreement import ipvs_divergence


def ipvs_mode_divergence(state: NodeProxyState, packet: Packet, expected: TraceResult,
                         actual: TraceResult) -> str | None:
    """tests/test_ipvs_agreement.py's classifier, plus: IPVS mode has no localhost
    NodePorts either (its virtual servers are bound to the node's addresses, never to
    127.0.0.1; `localhostNodePorts` is an iptables-mode setting)."""
    if no_localhost_nodeports(state, packet, actual):
        return "no-localhost-nodeports"
    if _node_bypasses_source_ranges(state, packet, expected, actual):
        return "node-traffic-bypasses-lb-source-ranges"
    return ipvs_divergence(state, packet, expected, actual)


def _node_bypasses_source_ranges(state: NodeProxyState, packet: Packet, expected: TraceResult,
                                 actual: TraceResult) -> bool:
    """IPVS mode filters loadBalancerSourceRanges in KUBE-PROXY-FIREWALL, jumped from filter
    INPUT and FORWARD only (ipvs proxier.go iptablesJumpChain): a connection the node itself
    opens to the LB IP is scheduled by IPVS at LOCAL_OUT and never meets the filter (only
    KUBE-IPVS-OUT-FILTER, for sources equal to the VIP). iptables/nftables drop it in nat
    OUTPUT (KUBE-FW-*) / filter-output-pre-dnat."""
    if packet.src not in state.node.ips or set(expected.distribution()) != {
            ("DROP", None, None)}:
        return False
    for sp in state.service_ports:
        if (sp.protocol == packet.proto.upper() and packet.dport == sp.port
                and packet.dst in sp.load_balancer_vips and sp.load_balancer_source_ranges):
            eps = sp.categorized.local if sp.external_policy_local and sp.categorized.local \
                else sp.categorized.cluster
            got = {o.delivered_to for o in actual.outcomes}
            return bool(eps) and got == {e.string for e in eps} and all(
                o.verdict == "ACCEPT" for o in actual.outcomes)
    return False


#: backend -> its classifier of documented divergences from the reference semantics.
CLASSIFIERS: dict[str, Callable[[NodeProxyState, Packet, TraceResult, TraceResult], str | None]] = {
    "iptables": iptables_divergence,
    "ipvs": ipvs_mode_divergence,
    "nftables": nftables_divergence,
}
MODES = tuple(CLASSIFIERS)


def _trace(mode: str, state: NodeProxyState, packet: Packet) -> TraceResult:
    backend = get_backend(mode)
    kernel = MockKernel(state.node)
    backend.load(kernel, backend.render(state))
    return kernel.trace(packet, mode=mode)


# --------------------------------------------------------------------------- pairwise


@given(data=st.data())
def test_backends_agree_pairwise(data: st.DataObject) -> None:
    state = data.draw(node_states())
    packet = data.draw(probe_packets(state))
    reference = expected_trace(state, packet)
    results = {m: _trace(m, state, packet) for m in MODES}
    verdicts: dict[str, str] = {}
    for m, r in results.items():
        if close(reference, r):
            verdicts[m] = "agrees with the reference"
        else:
            why = CLASSIFIERS[m](state, packet, reference, r)
            verdicts[m] = f"documented divergence {why!r}" if why else "UNEXPLAINED"
    for a, b in combinations(MODES, 2):
        if close(results[a], results[b]):
            continue
        if "UNEXPLAINED" not in (verdicts[a], verdicts[b]):
            continue  # both sides are where upstream puts them
        note(repro_yaml(state, packet, a))
        raise AssertionError(
            f"{a} and {b} disagree for {packet}:\n"
            f"  {a}: {results[a].distribution()} ({verdicts[a]})\n"
            f"  {b}: {results[b].distribution()} ({verdicts[b]})\n"
            f"  reference: {reference.distribution()}\n" + repro_yaml(state, packet, a))


# --------------------------------------------------------------------------- determinism

FRESH: dict[str, Callable[[], Backend]] = {
    "iptables": IPTablesBackend,
    "nftables": NFTablesBackend,
    "ipvs": lambda: type(get_backend("ipvs"))(),
}


@given(data=st.data())
def test_rendering_is_deterministic_whatever_was_rendered_before(data: st.DataObject) -> None:
    """A backend that caches per-port fragments between syncs (iptables' PortCache, the
    nftables proxier's last desired state) renders exactly what a fresh one renders."""
    fam = data.draw(st.sampled_from(["IPv4", "IPv6"]))
    states = data.draw(st.lists(node_states(families=st.just(fam)), min_size=2, max_size=3))
    for mode, fresh in FRESH.items():
        warm = fresh()
        for s in states:
            warm.render(s)
        target = states[0]
        assert warm.render(target) == fresh().render(target), mode
        assert fresh().render(target) == fresh().render(target), mode


# --------------------------------------------------------------------------- round trips


@given(node_states())
def test_iptables_save_parses_back_to_itself(state: NodeProxyState) -> None:
    """``iptables-restore`` (flushing) of an ``iptables-save`` dump, saved again, is the dump."""
    save = get_backend("iptables").render(state).section("save")
    tables = IPTablesState.empty(state.family)
    tables.apply_restore(save, noflush=False, source="save")
    assert render_save(tables) == save


@given(node_states())
def test_nftables_ruleset_round_trips_through_the_mock_kernel(state: NodeProxyState) -> None:
    rendering = get_backend("nftables").render(state)
    rs = NftRuleset()
    rs.run(rendering.section("transaction"))
    # The backend's `ruleset` section (`nft list ruleset` as nft 1.0.6 prints it) parses
    # into the very state the transaction built...
    listed = NftRuleset()
    listed.run(rendering.section("ruleset"))
    assert listed.canonical() == rs.canonical()
    # ...and so does the mock kernel's own listing (knftables' fake dump/parse). The two
    # listings differ in spelling only (numeric priorities, `mark or` vs `meta mark |`).
    again = NftRuleset()
    again.run(rs.list_ruleset())
    assert again.canonical() == rs.canonical()


@given(node_states())
def test_ipvs_save_and_ipset_round_trip(state: NodeProxyState) -> None:
    rendering = get_backend("ipvs").render(state)
    ipvs = IPVS(None)
    ipvs.restore(rendering.section("save"))
    assert ipvs.save() == rendering.section("save")
    sets = IPSetStore()
    sets.restore(rendering.section("ipset"))
    assert sets.save() == rendering.section("ipset")


@given(node_states())
def test_reproducer_manifests_read_back_into_an_equal_state(state: NodeProxyState) -> None:
    text = reproducer(state, Packet("192.0.2.9", "172.18.0.2", 80)).yaml()
    docs = list(yaml.safe_load_all(text))
    assert state_from_objects(docs, state.node.name, state.family) == state


@given(node_proxy_states(family=st.sampled_from(["IPv4", "IPv6"])))
def test_reproducer_names_what_no_object_carries(state: NodeProxyState) -> None:
    """The basic dataplane strategy lists interfaces, which no Node object holds: the
    reproducer says so and passes them as --iface flags; everything else round-trips."""
    r = reproducer(state, Packet("192.0.2.9", "172.18.0.2", 80))
    assert any("interfaces" in n for n in r.notes)
    assert all(f"--iface {n}={c}" in r.dump_commands[1] for n, c in state.node.interfaces)
    back = state_from_objects(list(yaml.safe_load_all(r.yaml())), state.node.name, state.family)
    assert back == attrs.evolve(state, node=attrs.evolve(state.node, interfaces=()))


# --------------------------------------------------------------------------- partial syncs


@st.composite
def sync_sequences(draw: st.DrawFn, *, max_steps: int = 3) -> list[NodeProxyState]:
    """States a kube-proxy syncs one after the other: each step keeps some Services, drops
    or changes others, and may add new ones (same node, family and configuration)."""
    first = draw(node_states())
    same_node = dict(families=st.just(first.family),
                     dual_stack=st.just(len(first.node.ips) > 1),
                     configs=st.just(first.config), zones=st.just(first.node.zone))
    out = [first]
    for _ in range(draw(st.integers(1, max_steps))):
        prev, other = out[-1], draw(node_states(**same_node))  # type: ignore[arg-type]
        by_svc: dict[str, list[Any]] = {}
        for sp in prev.service_ports:
            by_svc.setdefault(sp.name.name, [[], []])[0].append(sp)
        for sp in other.service_ports:
            by_svc.setdefault(sp.name.name, [[], []])[1].append(sp)
        ports = []
        for name in sorted(by_svc):
            old, new = by_svc[name]
            ports += draw(st.sampled_from([old, new, []])) if old else new
        out.append(attrs.evolve(prev, service_ports=tuple(sorted(ports, key=lambda p: p.name))))
    return out


@given(sync_sequences())
def test_iptables_partial_syncs_equal_a_full_sync(states: list[NodeProxyState]) -> None:
    backend = IPTablesBackend()
    tables = iptables_node_state(backend.sync(states[0]).text, states[0].family)
    for prev, cur in pairwise(states):
        result = backend.sync(cur, prev)
        tables.apply_restore(result.text, noflush=True)
    full = iptables_node_state(IPTablesBackend().sync(states[-1]).text, states[-1].family)
    assert tables.snapshot() == full.snapshot()


@given(sync_sequences())
def test_nftables_partial_syncs_equal_a_full_sync(states: list[NodeProxyState]) -> None:
    backend = NFTablesBackend()
    kept = MockKernel(states[0].node)
    backend.load(kept, backend.render(states[0]))
    for prev, cur in pairwise(states):
        backend.load(kept, backend.render(cur, previous=prev))
    fresh = MockKernel(states[-1].node)
    NFTablesBackend().load(fresh, NFTablesBackend().render(states[-1]))
    # Element comments excepted: upstream's partial sync compares element key and value
    # only, so an element whose comment alone changed (a port renamed) keeps the old comment
    # until the next full sync (docs/divergences-nftables.md "Partial sync"; pinned by
    # tests/test_nftables_partial.py).
    diff = _diff(_without_element_comments(kept.nft.canonical()),
                 _without_element_comments(fresh.nft.canonical()))
    assert not diff, "partial syncs left the kernel different from one full sync:\n" + "\n".join(diff)


def _without_element_comments(canonical: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for table, t in canonical.items():
        sets = {name: (*spec[:-1], frozenset((k, v) for k, v, _comment in spec[-1]))
                for name, spec in t["sets"].items()}
        out[table] = {**t, "sets": sets}
    return out


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two nested dicts differ (for failure messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                out += _diff(a.get(k), b.get(k), f"{path}/{k}")
        return out
    return [f"{path}:\n  after partial syncs: {a}\n  after one full sync: {b}"] if a != b else []


def test_divergence_ipvs_node_traffic_bypasses_lb_source_ranges() -> None:
    from kservice.testing.ipvs import endpoint, node_state, service_port

    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      load_balancer_vips=("198.51.100.10",),
                      load_balancer_source_ranges=("192.0.2.0/24",),
                      endpoints=[endpoint("10.244.2.7", 8080)])
    state = node_state([sp], ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
    pkt = Packet("172.18.0.2", "198.51.100.10", 80)
    ref = expected_trace(state, pkt)
    assert set(ref.distribution()) == {("DROP", None, None)}
    for mode in ("iptables", "nftables"):
        assert close(ref, _trace(mode, state, pkt)), mode
    ipvs = _trace("ipvs", state, pkt)
    assert {o.delivered_to for o in ipvs.outcomes} == {"10.244.2.7:8080"}
    assert ipvs_mode_divergence(state, pkt, ref, ipvs) == "node-traffic-bypasses-lb-source-ranges"
    # From outside the ranges IPVS drops too (KUBE-PROXY-FIREWALL from INPUT).
    outside = Packet("100.64.0.7", "198.51.100.10", 80)
    assert close(expected_trace(state, outside), _trace("ipvs", state, outside))


def test_divergence_ipvs_no_localhost_nodeports() -> None:
    """IPVS mode binds NodePort virtual servers to the node's addresses only: 127.0.0.1 is
    never one (localhostNodePorts is an iptables-mode setting)."""
    from fractions import Fraction

    from kservice.testing.ipvs import endpoint, node_state, service_port

    sp = service_port("ns", "web", "10.96.0.10", 80, node_port=30080,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    state = node_state([sp], ips=("172.18.0.2",), pod_cidrs=("10.244.1.0/24",))
    pkt = Packet("127.0.0.1", "127.0.0.1", 30080)
    ref, ipt, ipvs = expected_trace(state, pkt), _trace("iptables", state, pkt), _trace(
        "ipvs", state, pkt)
    assert close(ref, ipt) and ref.distribution() == {
        ("ACCEPT", "10.244.2.7:8080", "172.18.0.2"): Fraction(1)}
    assert ipvs.distribution() == {("ACCEPT", "127.0.0.1:30080", "127.0.0.1"): Fraction(1)}
    assert ipvs_mode_divergence(state, pkt, ref, ipvs) == "no-localhost-nodeports"


@settings(max_examples=max(3, settings().max_examples // 5))
@given(node_states(families=st.just("IPv4"), max_services=2).flatmap(
    lambda s: st.tuples(st.just(s), probe_packets(s))), st.sampled_from(MODES))
def test_reproducer_command_line_replays_the_trace(example: tuple[NodeProxyState, Packet],
                                                   mode: str) -> None:
    """The ``kservice trace --raw -f repro.yaml ...`` line of a reproducer, run against a
    fresh default cluster, traces what the backend traced. (IPv4 states: the default
    cluster is single-stack IPv4, so IPv6 manifests need the reproducer's dump commands.)"""
    import contextlib
    import io
    import json
    import shlex
    import tempfile
    from fractions import Fraction
    from pathlib import Path

    from kservice.cli import main

    state, packet = example
    repro = reproducer(state, packet, mode)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "repro.yaml"
        path.write_text(repro.yaml())
        argv = shlex.split(repro.command)[1:]
        argv = [str(path) if a == "repro.yaml" else a for a in argv]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--state", str(Path(tmp) / "state.json"), *argv, "-o", "json"])
    assert code == 0, out.getvalue()
    got = {(o["verdict"], o["delivered_to"], o["source_seen"]): Fraction(o["probability"])
           for o in json.loads(out.getvalue())["outcomes"]}
    want = _trace(mode, state, packet).distribution()
    assert set(got) == set(want) and all(abs(got[k] - want[k]) < Fraction(1, 10**9)
                                         for k in got), (got, want, repro.yaml())
