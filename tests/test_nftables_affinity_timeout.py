"""A ClientIP affinity timeout change (``timeoutSeconds`` 10800 <-> 60), partial vs full sync.

Upstream (``pkg/proxy/nftables/proxier.go``, ``syncProxyRules``, v1.31+): a Service
update puts the service in ``serviceUpdateResult.UpdatedServices``, so its chains are
rewritten and each per-endpoint affinity set is ``tx.Add``ed again with the new
``Timeout``. Nothing deletes or recreates the set: the set's name does not depend on the
timeout, and ``add set`` on an existing set replaces its default timeout (Linux 6.2+,
also in stable: 123b99619cca "netfilter: nf_tables: honor set timeout and garbage
collection updates"); entries already in the set keep their own expiry. A full sync sends
the same ``add set``. So after the partial sync the table is the full sync's.
"""

from __future__ import annotations

import pytest

from backends.mockkernel.nft import NftRuleset
from backends.nftables import backend
from backends.nftables.partial import changed_services, partial_transaction
from backends.nftables.render import render_desired
from tests.test_nftables_kernel import mock, netns, nft  # noqa: F401  (netns: fixture)
from tests.test_nftables_partial import affinity_state, programmed

TIMEOUT_PAIRS = [(10800, 60), (60, 10800)]
FAMILIES = ["IPv4", "IPv6"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("before", "after"), TIMEOUT_PAIRS)
def test_timeout_change_re_adds_the_sets_like_upstream(before: int, after: int,
                                                       family: str) -> None:
    a, b = affinity_state(before, family), affinity_state(after, family)
    da, db = render_desired(a), render_desired(b)
    assert changed_services(da, db) == {"ns/sticky"}
    tx = partial_transaction(da, db)
    lines = tx.splitlines()
    sets = [ln for ln in lines if ln.startswith("add set ")]
    assert len(sets) == 2
    assert all(ln.endswith(f"flags dynamic,timeout ; timeout {after}s ; }}") for ln in sets)
    # Same names (the timeout is not part of them): re-added, never deleted.
    assert not any(ln.startswith(("delete set", "flush set")) for ln in lines)
    # The service's chains are rewritten; the other service is not touched.
    assert sum(ln.startswith("flush chain") and "/sticky/" in ln for ln in lines) == 3
    assert not any("/other/" in ln for ln in lines)
    # No map element changes: keys and verdicts are the same.
    assert not any("element" in ln for ln in lines)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("before", "after"), TIMEOUT_PAIRS)
def test_timeout_change_partial_sync_equals_full_sync(before: int, after: int,
                                                      family: str) -> None:
    a, b = affinity_state(before, family), affinity_state(after, family)
    r = backend.render(b, previous=a)
    assert "cleanup" not in r.names or r.section("cleanup") == ""
    got = programmed(backend.render(a).section("transaction"), r.section("transaction"),
                     comments=True)
    want = programmed(backend.render(b).section("transaction"), comments=True)
    assert got == want
    fam = next(iter(want))
    timeouts = {s[3] for name, s in got[fam]["sets"].items() if name.startswith("affinity-")}
    assert timeouts == {after}


def test_mock_kernel_re_added_set_takes_the_new_timeout() -> None:
    rs = NftRuleset()
    rs.run("add table ip t\n"
           "add set ip t a { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n")
    rs.run("add set ip t a { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }\n")
    assert rs.canonical()["ip t"]["sets"]["a"][3] == 60
    # Re-added without a timeout: the set has none any more (as the kernel does).
    rs.run("add set ip t a { type ipv4_addr ; flags dynamic,timeout ; }\n")
    assert rs.canonical()["ip t"]["sets"]["a"][3] is None


@pytest.mark.kernel
@pytest.mark.parametrize(("before", "after"), TIMEOUT_PAIRS)
def test_timeout_change_on_the_real_kernel(netns: str, before: int,  # noqa: F811
                                           after: int) -> None:
    a, b = affinity_state(before), affinity_state(after)
    nft(netns, "-f", "-", stdin=backend.render(a).section("transaction"))
    r = backend.render(b, previous=a)
    nft(netns, "-f", "-", stdin=r.section("transaction"))
    listed = nft(netns, "list", "ruleset")
    assert f"timeout {'1m' if after == 60 else '3h'}" in listed
    assert mock(listed) == mock(backend.render(b).section("transaction"))


@pytest.mark.kernel
def test_mock_and_real_kernel_agree_on_re_adding_a_set(netns: str) -> None:  # noqa: F811
    steps = ["add table ip t\n"
             "add set ip t a { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n",
             "add set ip t a { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }\n",
             "add set ip t a { type ipv4_addr ; flags dynamic,timeout ; }\n"]
    rs = NftRuleset()
    for step in steps:
        nft(netns, "-f", "-", stdin=step)
        rs.run(step)
        assert mock(nft(netns, "list", "ruleset")) == rs.canonical()

