"""Renderer fuzzing against the real parsers: every generated dump loads in the kernel.

States drawn from :func:`kservice.testing.dataplane.node_proxy_states` (IPv4 and IPv6, every
Service shape) are rendered by the iptables and nftables backends and handed to the real
tools inside one throwaway network namespace per module:

* iptables: the complete ``save`` with ``iptables-restore --test`` (``ip6tables-restore`` for
  IPv6) and then loaded for real (``--test`` of iptables-nft never reaches the kernel: it
  accepts a jump to a missing chain), and kube-proxy's ``restore`` payload with
  ``--noflush --test``;
* nftables: the transaction with ``nft -c -f`` (parsed and checked by the kernel, not
  committed);
* iptables syncs: a second state's payload (partial when only services changed) restored
  with ``--noflush`` over the first state leaves exactly our ``save`` in the kernel.

nfacct objects are not created in the namespace (that needs the ``nfacct`` tool), so states
are rendered without nfacct counters, as kube-proxy does when they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kservice.backend import get_backend
from kservice.proxy.types import NodeProxyState
from kservice.testing.dataplane import kube_proxy_configs, node_proxy_states

pytestmark = pytest.mark.kernel

STATES = node_proxy_states(family=st.sampled_from(["IPv4", "IPv6"]))


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1":
        pytest.fail(f"KSERVICE_REQUIRE_KERNEL=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    missing = [b for b in ("ip", "iptables-restore", "ip6tables-restore", "nft")
               if shutil.which(b) is None]
    if os.geteuid() != 0:
        _fail_or_skip("kernel tests need root (network namespaces)")
    if missing:
        _fail_or_skip("missing binaries: " + ", ".join(missing))
    name = f"ksl-fuzz{uuid.uuid4().hex[:8]}-ns"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        _fail_or_skip(f"cannot create a network namespace: {r.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def run_in(ns: str, *argv: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, text=True,
                          capture_output=True, timeout=60)


def without_nfacct(state: NodeProxyState) -> NodeProxyState:
    return attrs.evolve(state, options=attrs.evolve(state.options, nfacct_counters=()))


def without_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))


@st.composite
def sync_pairs(draw: st.DrawFn) -> tuple[NodeProxyState, NodeProxyState]:
    """Two successive states of one node (same family and configuration)."""
    family = draw(st.sampled_from(["IPv4", "IPv6"]))
    config = draw(kube_proxy_configs(family=family))
    same = node_proxy_states(family=st.just(family), configs=st.just(config))
    return without_nfacct(draw(same)), without_nfacct(draw(same))


def _numbered(text: str) -> str:
    return "\n".join(f"{i:4} {line}" for i, line in enumerate(text.splitlines(), 1))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(state=STATES)
def test_iptables_dumps_load_in_the_kernel(netns: str, state: NodeProxyState) -> None:
    state = without_nfacct(state)
    rendering = get_backend("iptables").render(state)
    tool = "ip6tables-restore" if state.family == "IPv6" else "iptables-restore"
    save = rendering.section("save")
    r = run_in(netns, tool, "--test", stdin=save)
    assert r.returncode == 0, f"{tool} --test refused the save:\n{r.stderr}\n{_numbered(save)}"
    # --test (iptables-nft) parses but never sends the batch to the kernel -- a jump to a
    # chain that does not exist passes it. A real load in the throwaway namespace does not.
    r = run_in(netns, tool, stdin=save)
    assert r.returncode == 0, f"the kernel refused the save:\n{r.stderr}\n{_numbered(save)}"
    # ... and prints it back exactly: our iptables-save form is the kernel's.
    printed = run_in(netns, tool.replace("-restore", "-save"), stdin="").stdout
    assert without_comments(printed) == without_comments(save)
    restore = rendering.section("restore")
    r = run_in(netns, tool, "--noflush", "--test", stdin=restore)
    assert r.returncode == 0, (f"{tool} --noflush --test refused the restore payload:\n"
                               f"{r.stderr}\n{_numbered(restore)}")


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(state=STATES)
def test_nft_transactions_load_in_the_kernel(netns: str, state: NodeProxyState) -> None:
    if shutil.which("nft") is None:
        _fail_or_skip("missing binaries: nft")
    rendering = get_backend("nftables").render(state)
    text = rendering.section("transaction")
    r = run_in(netns, "nft", "-c", "-f", "-", stdin=text)
    assert r.returncode == 0, f"nft -c refused the transaction:\n{r.stderr}\n{_numbered(text)}"


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(pair=sync_pairs())
def test_iptables_syncs_leave_the_kernel_in_our_save(
        netns: str, pair: tuple[NodeProxyState, NodeProxyState]) -> None:
    """kube-proxy's sync on top of the previous one (a KEP-3453 partial sync when only
    services changed): ``iptables-restore --noflush`` of our payload over the previous full
    state leaves exactly our ``save`` of the new state in the kernel."""
    from backends.iptables import IPTablesBackend

    before, after = pair
    tool = "ip6tables-restore" if before.family == "IPv6" else "iptables-restore"
    backend = IPTablesBackend()
    first = backend.render(before).section("save")
    r = run_in(netns, tool, stdin=first)
    assert r.returncode == 0, r.stderr
    rendering = backend.render(after, before)
    payload = rendering.section("restore")
    r = run_in(netns, tool, "--noflush", "--counters", stdin=payload)
    assert r.returncode == 0, (f"the kernel refused the {'partial ' if rendering.partial else ''}"
                               f"sync:\n{r.stderr}\n{_numbered(payload)}")
    printed = run_in(netns, tool.replace("-restore", "-save"), stdin="").stdout
    assert without_comments(printed) == without_comments(rendering.section("save")), (
        f"partial={rendering.partial}\npayload:\n{_numbered(payload)}")
