"""Real ``nft`` in a throwaway network namespace: the rendering loads, lists back as rendered.

Needs root, ``ip`` and ``nft`` (``apt-get install nftables``); skips with the reason
otherwise, unless ``KSERVICE_REQUIRE_KERNEL=1`` (then it fails). Every test creates its
own ``ip netns`` and deletes it in ``finally``.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator

import attrs
import pytest

from backends.mockkernel.nft import NftRuleset
from backends.nftables import backend
from tests.test_nftables_golden import golden_state

pytestmark = pytest.mark.kernel


@pytest.fixture
def netns(kernel_tools: None) -> Iterator[str]:
    if subprocess.run(["which", "nft"], capture_output=True).returncode != 0:
        if os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1":
            pytest.fail("KSERVICE_REQUIRE_KERNEL=1 but nft is missing")
        pytest.skip("missing binaries: nft")
    name = f"kservice-nft-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        reason = f"cannot create a network namespace: {r.stderr.strip()}"
        if os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"nft {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


def normalise_listing(text: str) -> str:
    """Sort the items of every ``elements = { ... }`` (the kernel prints hash order)."""
    def fix(m: re.Match[str]) -> str:
        items = re.split(r",\s*\n\s*|, (?![^{]*\})", m.group(1))
        return "elements = { " + ", ".join(sorted(i.strip() for i in items)) + " }"
    return re.sub(r"elements = \{ (.*?) \}$", fix, text, flags=re.S | re.M)


def mock(text: str) -> dict:
    rs = NftRuleset()
    rs.run(text)
    return rs.canonical()


def test_golden_transaction_loads_and_lists_as_rendered(netns: str) -> None:
    r = backend.render(golden_state())
    tx = r.section("transaction")
    nft(netns, "-c", "-f", "-", stdin=tx)
    nft(netns, "-f", "-", stdin=tx)
    listed = nft(netns, "list", "ruleset")
    assert normalise_listing(listed) == normalise_listing(r.section("ruleset"))
    # The mock kernel reads the real listing and agrees with itself on the transaction.
    assert mock(listed) == mock(tx)
    # The same first-sync transaction again (kube-proxy restarted on a programmed node)
    # applies cleanly; the base chains are re-created, so only the listing order changes.
    nft(netns, "-f", "-", stdin=tx)
    assert mock(nft(netns, "list", "ruleset")) == mock(tx)


def test_dump_form_is_valid_nft_input(netns: str) -> None:
    # The golden-test dump form is itself loadable on an empty ruleset.
    dump = backend.render(golden_state()).section("dump")
    nft(netns, "-c", "-f", "-", stdin=dump)


def test_partial_sync_then_cleanup_matches_a_full_sync(netns: str) -> None:
    a = golden_state()
    # svc1 loses its endpoint, svc4 loses one endpoint, svc5 goes away.
    ports = []
    for sp in a.service_ports:
        if sp.name.name == "svc5":
            continue
        if sp.name.name in ("svc1", "svc4"):
            from kservice.proxy.categorize import categorize_endpoints
            eps = sp.endpoints[1:]
            sp = attrs.evolve(sp, endpoints=eps)
            sp = attrs.evolve(sp, categorized=categorize_endpoints(eps, sp, "test-node", {}))
        ports.append(sp)
    b = attrs.evolve(a, service_ports=tuple(ports))
    nft(netns, "-f", "-", stdin=backend.render(a).section("transaction"))
    r = backend.render(b, previous=a)
    nft(netns, "-c", "-f", "-", stdin=r.section("transaction"))
    nft(netns, "-f", "-", stdin=r.section("transaction"))
    nft(netns, "-f", "-", stdin=r.section("cleanup"))
    after_partial = nft(netns, "list", "ruleset")
    full = backend.render(b)
    assert mock(after_partial) == mock(full.section("transaction"))


def test_ipv6_and_match_all_nodeports_load(netns: str) -> None:
    from kservice.proxy.config import KubeProxyConfiguration
    from kservice.proxy.types import (
        CategorizedEndpoints,
        Endpoint,
        NodeInfo,
        NodeProxyState,
        ServicePortInfo,
        ServicePortName,
    )

    ep = Endpoint("fd00:10:244:1::5", 8080, is_local=True)
    sp = ServicePortInfo(
        name=ServicePortName("ns", "web", "http"), cluster_ip="fd00:10:96::10", port=80,
        protocol="TCP", node_port=30080, load_balancer_vips=("2001:db8::7",),
        load_balancer_source_ranges=("2001:db8:1::/64", "fd00::/8"),
        session_affinity_timeout=90, endpoints=(ep,),
        categorized=CategorizedEndpoints(cluster=(ep,), local=(ep,), all_reachable=(ep,),
                                         has_any=True))
    st = NodeProxyState(
        node=NodeInfo(name="n", ips=("fd00::a",), interfaces=(("eth0", "fd00::a/64"),)),
        family="IPv6", service_ports=(sp,), service_cidrs=("fd00:10:96::/112",),
        config=KubeProxyConfiguration(mode="nftables", cluster_cidr="fd00:10:244::/56",
                                      node_port_addresses=("::/0",)))
    r = backend.render(st)
    nft(netns, "-f", "-", stdin=r.section("transaction"))
    listed = nft(netns, "list", "ruleset")
    assert normalise_listing(listed) == normalise_listing(r.section("ruleset"))
    assert mock(listed) == mock(r.section("transaction"))


def _without_comments(snap: dict) -> dict:  # type: ignore[type-arg]
    for table in snap.values():
        for name, s in list(table["sets"].items()):
            table["sets"][name] = (*s[:5], frozenset((k, v) for k, v, _c in s[5]))
    return snap


def test_generated_partial_syncs_apply_on_the_real_kernel(netns: str) -> None:
    """For generated state pairs the real kernel accepts full + partial + cleanup and ends
    up with the table a fresh full sync makes (element comments aside: upstream keeps a
    stale comment when only the comment changed)."""
    from hypothesis import HealthCheck, given, settings

    from backends.nftables.proxier import NFTablesBackend
    from kservice.testing.nftables import sync_pairs

    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(sync_pairs())
    def check(pair) -> None:  # type: ignore[no-untyped-def]
        a, b = pair
        be = NFTablesBackend()
        nft(netns, "flush", "ruleset")
        nft(netns, "-f", "-", stdin=be.render(a).section("transaction"))
        r = be.render(b, previous=a)
        if r.section("transaction"):
            nft(netns, "-f", "-", stdin=r.section("transaction"))
        if "cleanup" in r.names:
            nft(netns, "-f", "-", stdin=r.section("cleanup"))
        got = _without_comments(mock(nft(netns, "list", "ruleset")))
        want = _without_comments(mock(NFTablesBackend().render(b).section("transaction")))
        assert got == want

    check()
