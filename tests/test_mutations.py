"""Mutation tests: the equivalence suite catches a deliberately broken rule, with a small
reproducer.

Each mutation breaks one rule the way a plausible bug would (a missing KUBE-MARK-MASQ jump,
two probabilities swapped, a REJECT rule gone, an nftables verdict flipped, ...). It is
applied to a backend's rendering under ``monkeypatch``; then

* :func:`hypothesis.find` must find a (state, packet) where the mutated backend disagrees
  with the reference semantics and no documented divergence explains it, and shrink it to
  a small cluster (few Services and endpoints) -- the reproducer a person would get;
* the backend's contract test itself (``TestIPTablesContract`` ...) must fail, and its
  message must carry the manifest reproducer and the ``kservice trace`` command line.

The un-mutated backends pass the same property (``tests/test_contract_*.py``), so each
mutation test can only pass because the mutation is detected.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import attrs
import pytest
import yaml
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from backends.mockkernel import MockKernel
from kservice.backend import Rendering, get_backend
from kservice.proxy.raw import state_from_objects
from kservice.proxy.types import NodeProxyState
from kservice.semantics import expected_trace
from kservice.testing.repro import reproducer
from kservice.testing.strategies import node_states, states_and_probes
from kservice.trace import Packet
from tests import test_contract_iptables, test_contract_nftables
from tests.test_contract_iptables import close, iptables_divergence
from tests.test_contract_nftables import nftables_divergence
from tests.test_ipvs_agreement import ipvs_divergence

Mutation = Callable[[str], str]


def _drop_lines(pattern: str) -> Mutation:
    rx = re.compile(pattern)
    return lambda text: "\n".join(ln for ln in text.split("\n") if not rx.search(ln))


def _swap_first_two_probabilities(text: str) -> str:
    """In every KUBE-SVC-* chain, swap the probabilities of its first two random rules."""
    lines = text.split("\n")
    by_chain: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        m = re.match(r"-A (KUBE-SVC-\w+) .*--probability (\S+)", line)
        if m:
            by_chain.setdefault(m.group(1), []).append(i)
    for idx in by_chain.values():
        if len(idx) >= 2:
            a, b = idx[0], idx[1]
            pa = re.search(r"--probability (\S+)", lines[a]).group(1)  # type: ignore[union-attr]
            pb = re.search(r"--probability (\S+)", lines[b]).group(1)  # type: ignore[union-attr]
            lines[a] = lines[a].replace(f"--probability {pa}", f"--probability {pb}")
            lines[b] = lines[b].replace(f"--probability {pb}", f"--probability {pa}")
    return "\n".join(lines)


def _drop_first_real_server(text: str) -> str:
    """In ``ipvsadm -Sn`` text, drop the first real server of every virtual server."""
    seen: set[str] = set()
    out = []
    for line in text.split("\n"):
        m = re.match(r"-a (-[tuf] \S+) ", line)
        if m and m.group(1) not in seen:
            seen.add(m.group(1))
            continue
        out.append(line)
    return "\n".join(out)


#: (backend, section loaded into the kernel, mutation name, mutation).
MUTATIONS: tuple[tuple[str, str, str, Mutation], ...] = (
    ("iptables", "save", "no KUBE-MARK-MASQ for off-cluster ClusterIP traffic",
     _drop_lines(r"-A KUBE-SVC-\w+ .*! -s \S+ .*-j KUBE-MARK-MASQ")),
    ("iptables", "save", "first two endpoint probabilities swapped",
     _swap_first_two_probabilities),
    ("iptables", "save", "no REJECT for Services without endpoints",
     _drop_lines(r"-A KUBE-(SERVICES|EXTERNAL-SERVICES) .*-j REJECT")),
    ("iptables", "save", "no hairpin masquerade in KUBE-SEP",
     _drop_lines(r"-A KUBE-SEP-\w+ .*-s \S+ .*-j KUBE-MARK-MASQ")),
    ("nftables", "transaction", "reject verdict flipped to drop",
     lambda t: t.replace("goto reject-chain", "drop")),
    ("nftables", "transaction", "no masquerade mark for external traffic",
     _drop_lines(r"add rule .* external-\S+ .*jump mark-for-masquerade")),
    ("ipvs", "save", "first real server of each virtual server missing",
     _drop_first_real_server),
)

CLASSIFIERS = {"iptables": iptables_divergence, "nftables": nftables_divergence,
               "ipvs": ipvs_divergence}
# Referenced through their modules so that pytest does not collect them here a second time.
CONTRACTS = {"iptables": test_contract_iptables.TestIPTablesContract,
             "nftables": test_contract_nftables.TestNFTablesStrategiesContract}


def _mutated(monkeypatch: pytest.MonkeyPatch, mode: str, section: str,
             mutate: Mutation) -> None:
    backend = get_backend(mode)
    original = backend.render

    def render(state: NodeProxyState, previous: NodeProxyState | None = None) -> Rendering:
        r = original(state, previous)
        # Sections may be lazy (a text factory): mutate on first use.
        return attrs.evolve(r, sections=tuple(
            (n, (lambda n=n: mutate(r.section(n))) if n == section else t)
            for n, t in r.sections))

    monkeypatch.setattr(backend, "render", render)


def _disagrees(mode: str) -> Callable[[tuple[NodeProxyState, Packet]], bool]:
    def check(example: tuple[NodeProxyState, Packet]) -> bool:
        state, packet = example
        backend = get_backend(mode)
        kernel = MockKernel(state.node)
        backend.load(kernel, backend.render(state))
        actual = kernel.trace(packet, mode=mode)
        expected = expected_trace(state, packet)
        return not close(expected, actual) and CLASSIFIERS[mode](
            state, packet, expected, actual) is None
    return check


@pytest.mark.parametrize(("mode", "section", "name", "mutate"), MUTATIONS,
                         ids=[f"{m[0]}: {m[2]}" for m in MUTATIONS])
def test_mutation_is_caught_with_a_small_reproducer(
        monkeypatch: pytest.MonkeyPatch, mode: str, section: str, name: str,
        mutate: Mutation) -> None:
    original = get_backend(mode).render(_probe_state())
    _mutated(monkeypatch, mode, section, mutate)
    # The mutation must change something, or the test would prove nothing.
    assert get_backend(mode).render(_probe_state()).section(section) != original.section(
        section), f"mutation {name!r} changed nothing"
    state, packet = find(
        states_and_probes(max_services=2, max_endpoints=3), _disagrees(mode),
        settings=settings(max_examples=2000, database=None, deadline=None,
                          phases=[Phase.generate, Phase.shrink],
                          suppress_health_check=list(HealthCheck)),
        # Seeded: shrinking stops at a local minimum that depends on the path taken (an
        # unseeded run once stopped at 8 objects); the search and its bound stay the same.
        random=random.Random(0))
    repro = reproducer(state, packet, mode)
    # What was caught is the mutation: the intact backend agrees on the same example.
    monkeypatch.undo()
    assert not _disagrees(mode)((state, packet)), (
        f"{mode} disagrees with the reference even without the mutation:\n" + repro.yaml())
    # Shrunk to a small cluster: one Service (plus at most one more), a few endpoints.
    svcs = [m for m in repro.manifests if m["kind"] == "Service"]
    assert len(svcs) <= 2 and repro.size <= 5, repro.yaml()
    # The reproducer replays: its manifests read back into the very state.
    back = state_from_objects(list(yaml.safe_load_all(repro.yaml())), state.node.name,
                              state.family)
    assert back == state
    assert f"--mode {mode}" in repro.command


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_the_contract_itself_fails_with_the_reproducer(monkeypatch: pytest.MonkeyPatch,
                                                      mode: str) -> None:
    # The REJECT mutation of each backend, on Services without endpoints: nearly every probe
    # of a frontend shows it, so the contract's own example budget suffices.
    _, section, _, mutate = next(m for m in MUTATIONS if m[0] == mode and "REJECT" in m[2].upper())
    _mutated(monkeypatch, mode, section, mutate)

    base = CONTRACTS[mode]

    class NoEndpoints(base):  # type: ignore[valid-type,misc]
        def states(self) -> st.SearchStrategy[NodeProxyState]:
            return node_states(families=st.sampled_from(self.families), max_services=1,
                               max_ports=1, max_endpoints=0)

        # The contract's own check (its inner test function), with a budget fit for a
        # test that is meant to fail: stop at the first bug, no example database, no
        # shrinking (the states are one Service without endpoints already).
        @settings(max_examples=50, database=None, report_multiple_bugs=False, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def test_agrees_with_the_reference_semantics(self, data: st.DataObject) -> None:
            base.test_agrees_with_the_reference_semantics.hypothesis.inner_test(self, data)

    contract = NoEndpoints()
    with pytest.raises(AssertionError) as info:
        contract.test_agrees_with_the_reference_semantics()
    text = str(info.value)
    assert "disagrees with the reference" in text
    assert "kind: EndpointSlice" in text or "kind: Service" in text
    assert f"kservice trace --raw -f repro.yaml --mode {mode}" in text


def _probe_state() -> NodeProxyState:
    """A state every mutation above changes the rendering of."""
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.types import NodeInfo
    from kservice.testing.ipvs import endpoint, service_port

    eps = [endpoint("10.244.2.7", 8080), endpoint("10.244.2.8", 8080),
           endpoint("10.244.1.5", 8080, local=True)]
    ports = (
        service_port("ns", "web", "10.96.0.10", 80, node_port=30080, endpoints=eps),
        service_port("ns", "empty", "10.96.0.11", 80, node_port=30081),
    )
    return NodeProxyState(node=NodeInfo("node-a", ips=("172.18.0.2",),
                                        pod_cidrs=("10.244.1.0/24",)),
                          family="IPv4", config=KubeProxyConfiguration(
                              cluster_cidr="10.244.0.0/16"), service_ports=ports)
