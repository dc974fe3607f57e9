"""The iptables backend against a real kernel, inside throwaway network namespaces.

Checks that (1) our ``save`` output is accepted by ``iptables-restore`` and that the kernel
prints it back byte for byte (the best evidence that our ``iptables-save`` form is right);
(2) replaying what kube-proxy does on a clean host -- ``EnsureChain``/``EnsureRule`` for the
jump rules, the canary chains, then ``iptables-restore --noflush --counters`` of our
``restore`` payload -- leaves exactly our ``save``; (3) a partial sync applied on top of the
previous full sync does too. IPv4 and IPv6.

Needs root, ``ip`` and the iptables tools; otherwise skipped, unless
``KSERVICE_REQUIRE_KERNEL=1`` (then missing prerequisites fail the test).
Like kube-proxy at start-up, the fixture creates the two nfacct counters its rules name
(``nfacct add``), so states render with kube-proxy's real default: nfacct matches included.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import attrs
import pytest

from backends.iptables import IPTablesBackend, render_restore
from backends.iptables.tables import CANARY_CHAIN, CANARY_TABLES, JUMP_RULES
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
)

pytestmark = pytest.mark.kernel

REQUIRE = os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1"
_counter = itertools.count()


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "iptables-restore", "iptables-save", "iptables", "ip6tables-restore",
                 "ip6tables-save", "ip6tables", "nfacct"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


@pytest.fixture
def netns() -> Iterator[str]:
    reason = _missing()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"KSERVICE_REQUIRE_KERNEL=1 but {reason}")
        pytest.skip(reason)
    name = f"kservice-ipt-{os.getpid()}-{next(_counter)}"
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if created.returncode != 0:
        msg = f"cannot create a network namespace: {created.stderr.strip()}"
        if REQUIRE:
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        # kube-proxy ensures these nfacct objects before its first sync; restores that
        # name them fail without them.
        for counter in ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"):
            run(name, "nfacct", "add", counter)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def run(ns: str, *argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} failed: {proc.stderr}"
    return proc.stdout


def _tool(family: str, name: str) -> str:
    return name if family == "IPv4" else name.replace("iptables", "ip6tables")


def without_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))


def sample_state(family: str) -> NodeProxyState:
    """Every rule shape: ClusterIP, NodePort, externalIP, LB with source ranges and affinity,
    eTP=Local with and without local endpoints, iTP=Local, no endpoints, UDP and SCTP."""
    v6 = family == "IPv6"
    node = NodeInfo(name="test-node", ips=("2001:db8::1",) if v6 else ("192.168.0.2",))

    def a(v4: str, v6_: str) -> str:
        return v6_ if v6 else v4

    def ep(i: int, local: bool = False, **kw: object) -> Endpoint:
        return Endpoint(a(f"10.180.0.{i}", f"fd00:10:180::{i}"), 8080, is_local=local,
                        node_name="test-node" if local else None, **kw)  # type: ignore[arg-type]

    specs = [
        ("svc1", "TCP", {}, (ep(1), ep(2), ep(3))),
        ("svc2", "UDP", {"node_port": 30053}, (ep(4),)),
        ("svc3", "TCP", {"external_ips": (a("192.168.99.22", "2001:db8:99::22"),),
                         "load_balancer_vips": (a("1.2.3.4", "2001:db8:5::4"),),
                         "load_balancer_source_ranges": (a("192.168.0.0/16", "2001:db8::/32"),),
                         "session_affinity_timeout": 10800, "node_port": 30080}, (ep(5), ep(6))),
        ("svc4", "TCP", {"external_policy_local": True, "node_port": 30081,
                         "load_balancer_vips": (a("1.2.3.5", "2001:db8:5::5"),),
                         "health_check_node_port": 32000}, (ep(7), ep(8, local=True))),
        ("svc5", "TCP", {"external_policy_local": True, "node_port": 30082}, (ep(9),)),
        ("svc6", "SCTP", {"internal_policy_local": True}, (ep(10, local=True), ep(11))),
        ("svc7", "TCP", {"node_port": 30083, "external_ips": (a("192.168.99.23", "2001:db8:99::23"),)}, ()),
        ("svc8", "TCP", {"internal_policy_local": True}, (ep(12),)),
    ]
    ports = []
    for i, (name, proto, extra, eps) in enumerate(specs):
        sp = ServicePortInfo(
            name=ServicePortName("ns", name, "p", proto),
            cluster_ip=a(f"172.30.0.{40 + i}", f"fd00:172:30::{40 + i}"),
            port=80, protocol=proto, endpoints=eps, **extra,  # type: ignore[arg-type]
        )
        ports.append(attrs.evolve(sp, categorized=categorize_endpoints(eps, sp, node.name, {})))
    return NodeProxyState(
        node=node, family=family,
        config=KubeProxyConfiguration(cluster_cidr=a("10.0.0.0/8", "fd00:10::/48")),
        options=ProxierOptions(),
        service_ports=tuple(ports),
    )


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_save_round_trips_through_the_kernel(netns: str, family: str) -> None:
    save = IPTablesBackend().render(sample_state(family)).section("save")
    run(netns, _tool(family, "iptables-restore"), "--test", stdin=save)
    run(netns, _tool(family, "iptables-restore"), stdin=save)
    printed = run(netns, _tool(family, "iptables-save"))
    assert without_comments(printed) == without_comments(save)


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_kube_proxy_procedure_leaves_our_save(netns: str, family: str) -> None:
    state = sample_state(family)
    iptables = _tool(family, "iptables")
    for jump in JUMP_RULES:  # EnsureChain + EnsureRule(Prepend), in list order
        subprocess.run(["ip", "netns", "exec", netns, iptables, "-t", jump.table, "-N", jump.dst],
                       capture_output=True)
        run(netns, iptables, "-t", jump.table, "-I", jump.src, *jump.args())
    for table in CANARY_TABLES:
        run(netns, iptables, "-t", table, "-N", CANARY_CHAIN)
    rendering = IPTablesBackend().render(state)
    run(netns, _tool(family, "iptables-restore"), "--noflush", "--counters",
        stdin=rendering.section("restore"))
    printed = run(netns, _tool(family, "iptables-save"))
    assert without_comments(printed) == without_comments(rendering.section("save"))


def test_partial_sync_in_the_kernel(netns: str) -> None:
    before = sample_state("IPv4")
    ports = list(before.service_ports)
    # Drop svc3 (stale chains must go), change svc1's endpoints, keep the rest.
    sp1 = attrs.evolve(ports[0], endpoints=ports[0].endpoints[:2])
    ports[0] = attrs.evolve(sp1, categorized=categorize_endpoints(sp1.endpoints, sp1, "test-node", {}))
    del ports[2]
    after = attrs.evolve(before, service_ports=tuple(ports))
    backend = IPTablesBackend()
    save_before = backend.render(before).section("save")
    run(netns, "iptables-restore", stdin=save_before)
    rendering = backend.render(after, before)
    assert rendering.partial
    run(netns, "iptables-restore", "--noflush", "--counters", stdin=rendering.section("restore"))
    printed = run(netns, "iptables-save")
    assert without_comments(printed) == without_comments(rendering.section("save"))
    assert "KUBE-SVC" in render_restore(after, before).text  # svc1 rewritten


def _tables(save: str) -> dict[str, str]:
    """Table name -> its block (legacy iptables-save lists tables in module-load order)."""
    blocks = without_comments(save).split("*")[1:]
    return {b.split("\n", 1)[0]: b for b in blocks}


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_save_round_trips_through_legacy_iptables(netns: str, family: str) -> None:
    restore = _tool(family, "iptables-legacy-restore")
    save_tool = _tool(family, "iptables-legacy-save")
    if shutil.which(restore) is None or shutil.which(save_tool) is None:
        if REQUIRE:
            pytest.fail(f"KSERVICE_REQUIRE_KERNEL=1 but {restore} is not installed")
        pytest.skip(f"{restore} not installed")
    save = IPTablesBackend().render(sample_state(family)).section("save")
    run(netns, restore, stdin=save)
    assert _tables(run(netns, save_tool)) == _tables(save)


# ----------------------------------------------------------------------- xt_recent lifetime

#: Restores applied in turn, each (payload, --noflush). A list survives a restore whose new
#: rules name it again (kube-proxy rewriting an affinity Service's chains) and is freed with
#: the last rule naming it (an endpoint leaving): a comeback starts with no memory.
RECENT_STEPS: tuple[tuple[str, bool], ...] = (
    ("*filter\n:OUTPUT ACCEPT [0:0]\n:KUBE-AFF - [0:0]\n-A OUTPUT -j KUBE-AFF\n"
     "-A KUBE-AFF -d 127.0.0.1/32 -p udp -m recent --set --name KUBE-SEP-A --mask "
     "255.255.255.255 --rsource\n"
     "-A KUBE-AFF -d 127.0.0.1/32 -p udp -m recent --set --name KUBE-SEP-B --mask "
     "255.255.255.255 --rsource\nCOMMIT\n", False),
    # A partial sync rewrites the chain, still naming A (as an --rcheck): A keeps its entry.
    ("*filter\n:KUBE-AFF - [0:0]\n-A KUBE-AFF -d 127.0.0.2/32 -p udp -m recent --rcheck "
     "--seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource\nCOMMIT\n",
     True),
    # A full restore of the table, A still named: kept.
    ("*filter\n:OUTPUT ACCEPT [0:0]\n:KUBE-AFF - [0:0]\n-A OUTPUT -j KUBE-AFF\n"
     "-A KUBE-AFF -d 127.0.0.2/32 -p udp -m recent --rcheck --seconds 10800 --reap "
     "--name KUBE-SEP-A --mask 255.255.255.255 --rsource\nCOMMIT\n", False),
    # No rule names A any more: freed.
    ("*filter\n:KUBE-AFF - [0:0]\nCOMMIT\n", True),
    # Named again: a new, empty list.
    ("*filter\n:KUBE-AFF - [0:0]\n-A KUBE-AFF -d 127.0.0.2/32 -p udp -m recent --rcheck "
     "--name KUBE-SEP-A --rsource\nCOMMIT\n", True),
)


def _kernel_recent_lists(ns: str) -> dict[str, list[str]]:
    names = run(ns, "ls", "/proc/net/xt_recent").split()
    return {n: sorted(line.split()[0].removeprefix("src=")
                      for line in run(ns, "cat", f"/proc/net/xt_recent/{n}").splitlines()
                      if line.startswith("src="))
            for n in names}


def test_recent_lists_live_exactly_as_long_as_a_rule_names_them(netns: str) -> None:
    """The mock kernel's ``xt_recent`` lists are born, kept and freed as Linux's are."""
    import random

    from backends.mockkernel import MockKernel
    from kservice.trace import Packet

    mock = MockKernel(NodeInfo(name="n", ips=("192.168.0.2",),
                               interfaces=(("lo", "127.0.0.1/8"), ("eth0", "192.168.0.2/24"))))
    run(netns, "ip", "link", "set", "lo", "up")
    seen: list[dict[str, list[str]]] = []
    for i, (payload, noflush) in enumerate(RECENT_STEPS):
        run(netns, "iptables-restore", *(["--noflush"] if noflush else []), stdin=payload)
        mock.load_iptables_save(payload, noflush=noflush)
        if i == 0:  # one local UDP datagram through OUTPUT fills both lists
            run(netns, sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, "
                "socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
            mock.send(Packet("127.0.0.1", "127.0.0.1", 9, sport=40000, proto="udp"),
                      random.Random(0))
        real = _kernel_recent_lists(netns)
        modelled = {n: sorted(mock.recent.addresses(n)) for n in mock.recent.lists}
        assert modelled == real, f"after step {i}: kernel {real}, mock {modelled}"
        seen.append(real)
    # The sequence exercised every transition (not a vacuous agreement).
    assert seen[0] == {"KUBE-SEP-A": ["127.0.0.1"], "KUBE-SEP-B": ["127.0.0.1"]}
    assert seen[1] == seen[2] == {"KUBE-SEP-A": ["127.0.0.1"]}
    assert seen[3] == {} and seen[4] == {"KUBE-SEP-A": []}
