"""The indexed fast path of the mock kernel gives exactly the linear walk's answer."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backends.mockkernel.netfilter as netfilter
from backends.mockkernel import MockKernel
from kservice.proxy.types import NodeInfo
from kservice.testing.mockkernel import nat_service_tables, synthetic_kube_proxy_dump
from kservice.trace import Packet

NODE = NodeInfo(name="n1", ips=("192.168.0.2",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "192.168.0.2/24"),))


@contextlib.contextmanager
def index_threshold(n: int) -> Iterator[None]:
    old = netfilter.INDEX_THRESHOLD
    netfilter.INDEX_THRESHOLD = n
    try:
        yield
    finally:
        netfilter.INDEX_THRESHOLD = old


@settings(max_examples=60, deadline=None)
@given(nat_service_tables())
def test_index_agrees_with_linear_walk(case: tuple[str, list[Packet]]) -> None:
    text, packets = case
    with index_threshold(0):  # index every chain, however short
        fast = MockKernel(NODE, use_index=True)
        fast.load_iptables_save(text)
        slow = MockKernel(NODE, use_index=False)
        slow.load_iptables_save(text)
        for pkt in packets:
            # Whole results, rule paths included, must be identical.
            assert fast.trace(pkt) == slow.trace(pkt), pkt
            assert fast.trace(pkt).total_probability == 1


def test_index_is_used_on_large_chains() -> None:
    k = MockKernel(NODE)
    k.load_iptables_save(synthetic_kube_proxy_dump(200, 2))
    nat = k.iptables[4]["nat"]
    chain = nat.chains["KUBE-SERVICES"]
    idx = nat.index_for(chain)
    assert idx is not None
    pkt_dst = int.from_bytes(bytes([172, 16, 0, 7]), "big")
    # Candidate rules: the one service rule plus the unkeyed nodeports tail rule.
    assert [chain.rules[i].text.split('"')[1] for i in idx.candidates(pkt_dst, "tcp", 80)] == [
        "ns7/svc7:p80 cluster IP", "kubernetes service nodeports; NOTE: this must be the last rule in this chain"]


def test_synthetic_dump_traces_evenly() -> None:
    k = MockKernel(NODE)
    k.load_iptables_save(synthetic_kube_proxy_dump(20, 10))
    k.install_kube_proxy_jump_rules()
    r = k.trace(Packet("10.244.1.5", "172.16.0.3", 80))
    assert len(r.outcomes) == 10
    assert {o.probability for o in r.outcomes} == {r.outcomes[0].probability}
    assert r.total_probability == 1


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_rendered_rules_index_agrees_and_sampling_is_in_support(data: st.DataObject) -> None:
    """On kube-proxy rules rendered by our iptables backend: indexed == linear walk, the
    outcomes sum to 1, and a sampled send lands on one of the traced outcomes."""
    pytest.importorskip("backends.iptables")
    from backends.iptables import IPTablesBackend
    from kservice.testing.dataplane import node_proxy_states, probes

    state = data.draw(node_proxy_states())
    backend = IPTablesBackend()
    rendering = backend.render(state)
    with index_threshold(0):
        fast = MockKernel(state.node, use_index=True)
        slow = MockKernel(state.node, use_index=False)
        backend.load(fast, rendering)
        backend.load(slow, rendering)
        for _ in range(3):
            pkt = data.draw(probes(state))
            r = fast.trace(pkt)
            assert r == slow.trace(pkt)
            assert r.total_probability == 1
            assert all(o.verdict != "UNKNOWN" for o in r.outcomes)
            seed = data.draw(st.integers(0, 2**32))
            sent = fast.send(pkt, random.Random(seed))
            assert sent.key() in r.distribution()
            # Same seed, same state: the linear walk samples the same outcome.
            assert slow.send(pkt, random.Random(seed)) == sent
