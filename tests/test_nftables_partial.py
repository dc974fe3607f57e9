"""Partial syncs: applied on top of the previous sync they give exactly a full sync's table."""

from __future__ import annotations

import attrs
from hypothesis import example, given, note

from backends.mockkernel.nft import NftRuleset
from backends.nftables import backend
from backends.nftables.partial import changed_services, full_transaction, partial_transaction
from backends.nftables.render import render_desired
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    CategorizedEndpoints,
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.testing.contract import describe_state
from kservice.testing.dataplane import node_proxy_states
from kservice.testing.nftables import sync_pairs


def affinity_state(timeout: int, family: str = "IPv4") -> NodeProxyState:
    """One ClientIP service with two endpoints next to an unchanged plain service."""
    v4 = family == "IPv4"
    eps = ((Endpoint("10.244.0.5", 8080), Endpoint("10.244.1.6", 8080)) if v4 else
           (Endpoint("fd00:10:244::5", 8080), Endpoint("fd00:10:244:1::6", 8080)))
    sticky = ServicePortInfo(
        name=ServicePortName("ns", "sticky", "http"),
        cluster_ip="10.96.0.10" if v4 else "fd00:10:96::10", port=80, protocol="TCP",
        session_affinity_timeout=timeout, endpoints=eps,
        categorized=CategorizedEndpoints(cluster=eps, all_reachable=eps, has_any=True))
    other_ep = (Endpoint("10.244.0.7", 53) if v4 else Endpoint("fd00:10:244::7", 53),)
    other = ServicePortInfo(
        name=ServicePortName("ns", "other", "dns", "UDP"),
        cluster_ip="10.96.0.11" if v4 else "fd00:10:96::11", port=53, protocol="UDP",
        endpoints=other_ep,
        categorized=CategorizedEndpoints(cluster=other_ep, all_reachable=other_ep,
                                         has_any=True))
    return NodeProxyState(
        node=NodeInfo(name="n", ips=("192.168.0.10",) if v4 else ("fd00::a",)),
        family=family, config=KubeProxyConfiguration(mode="nftables"),
        service_ports=(other, sticky))


# Found by random runs: only a ClientIP affinity timeout changes (the affinity sets are
# re-added with the new timeout; see test_nftables_affinity_timeout.py).
AFFINITY_TIMEOUT_DOWN = (affinity_state(10800), affinity_state(60))
AFFINITY_TIMEOUT_UP = (affinity_state(60, "IPv6"), affinity_state(10800, "IPv6"))


def programmed(*texts: str, comments: bool = False) -> dict:
    """The programmed table; element comments dropped unless asked for.

    Upstream's element storage compares keys and values only (``ensureElem``), so a
    partial sync keeps an element's old comment when only the comment changed (a port
    renamed) -- see :func:`test_partial_sync_keeps_a_stale_element_comment_like_upstream`.
    """
    rs = NftRuleset()
    for t in texts:
        if t:
            rs.run(t)
    snap = rs.canonical()
    if not comments:
        for table in snap.values():
            for name, s in list(table["sets"].items()):
                table["sets"][name] = (*s[:5], frozenset((k, v) for k, v, _c in s[5]))
    return snap


@given(sync_pairs())
@example(AFFINITY_TIMEOUT_DOWN)
@example(AFFINITY_TIMEOUT_UP)
def test_partial_after_previous_equals_full_sync(pair) -> None:
    a, b = pair
    note(describe_state(a))
    note(describe_state(b))
    r = backend.render(b, previous=a)
    cleanup = r.section("cleanup") if "cleanup" in r.names else ""
    got = programmed(backend.render(a).section("transaction"), r.section("transaction"), cleanup)
    want = programmed(backend.render(b).section("transaction"))
    assert got == want


@given(sync_pairs())
@example(AFFINITY_TIMEOUT_DOWN)
@example(AFFINITY_TIMEOUT_UP)
def test_before_cleanup_only_empty_stale_chains_remain(pair) -> None:
    a, b = pair
    r = backend.render(b, previous=a)
    got = programmed(backend.render(a).section("transaction"), r.section("transaction"))
    want = programmed(backend.render(b).section("transaction"))
    fam = next(iter(want))
    extra = set(got[fam]["chains"]) - set(want[fam]["chains"])
    assert all(got[fam]["chains"][c][5] == () for c in extra)  # flushed, awaiting delete
    for c in extra:
        del got[fam]["chains"][c]
    assert got == want


@given(node_proxy_states(max_services=4))
def test_no_change_is_an_empty_transaction(state) -> None:
    assert backend.render(state, previous=state).section("transaction") == ""


@given(sync_pairs())
def test_partial_touches_only_changed_services(pair) -> None:
    a, b = pair
    da, db = render_desired(a), render_desired(b)
    changed = changed_services(da, db)
    tx = partial_transaction(da, db)
    unchanged_chains = {op[1] for f in db.fragments if f.service not in changed
                        for op in f.ops if op[0] == "chain"}
    for line in tx.splitlines():
        words = line.split()
        if words[1] in ("chain", "rule") and words[0] != "flush":
            assert words[4] not in unchanged_chains, line


def test_fixed_part_change_falls_back_to_a_full_sync() -> None:
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.types import NodeInfo, NodeProxyState

    node = NodeInfo(name="n", ips=("192.168.0.10",))
    a = NodeProxyState(node=node, family="IPv4", config=KubeProxyConfiguration(mode="nftables"))
    b = attrs.evolve(a, node=attrs.evolve(node, ips=("192.168.0.11",)))
    tx = partial_transaction(render_desired(a), render_desired(b))
    assert "add element ip kube-proxy nodeport-ips { 192.168.0.11 }" in tx
    assert "flush set ip kube-proxy nodeport-ips" in tx
    assert full_transaction(render_desired(b), first_sync=False).splitlines()[1].startswith(
        "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter")


def test_partial_sync_keeps_a_stale_element_comment_like_upstream() -> None:
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.types import NodeInfo, NodeProxyState, ServicePortInfo, ServicePortName

    def st(port_name: str) -> NodeProxyState:
        sp = ServicePortInfo(name=ServicePortName("ns", "s", port_name), cluster_ip="10.96.0.1",
                             port=80, protocol="TCP")
        return NodeProxyState(node=NodeInfo(name="n", ips=("192.168.0.10",)), family="IPv4",
                              config=KubeProxyConfiguration(mode="nftables"),
                              service_ports=(sp,))

    a, b = st("old"), st("new")
    # Same key, same verdict: nftElementStorage sees no change, so nothing is sent ...
    assert backend.render(b, previous=a).section("transaction") == ""
    # ... and the kernel keeps comment "ns/s:old" where a full sync would write "ns/s:new".
    got = programmed(backend.render(a).section("transaction"), comments=True)
    want = programmed(backend.render(b).section("transaction"), comments=True)
    assert got != want
