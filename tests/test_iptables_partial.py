"""KEP-3453 partial syncs: a chain of partial restores ends where one full sync would.

The property: start from a clean host, apply the full sync of S0, then the partial payload of
every step S(i-1) -> S(i) (``iptables-restore --noflush`` semantics, via
:class:`backends.iptables.apply.IPTablesState`); the tables must equal a clean host after a
single full sync of the last state. Each step mixes unchanged, modified, added and deleted
services, drawn from the shared :func:`kservice.testing.dataplane.node_proxy_states`.
"""

from __future__ import annotations

import itertools
import re

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.iptables import render_restore
from backends.iptables.apply import IPTablesState
from backends.iptables.partial import changed_services, group_by_service
from backends.iptables.render import PortCache
from kservice.errors import RuleParseError
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.testing.dataplane import kube_proxy_configs, node_proxy_states


@st.composite
def state_sequences(draw: st.DrawFn) -> list[NodeProxyState]:
    family = draw(st.sampled_from(["IPv4", "IPv6"]))
    config = draw(kube_proxy_configs(family=family))
    pool = draw(st.lists(
        node_proxy_states(family=st.just(family), configs=st.just(config), max_services=4,
                          max_endpoints=3),
        min_size=2, max_size=3,
    ))
    versions: dict[tuple[str, str], list[tuple]] = {}
    for s in pool:
        for key, ports in group_by_service(s.service_ports).items():
            versions.setdefault(key, []).append(ports)
    keys = sorted(versions)
    steps = draw(st.integers(2, 4))
    out = []
    for _ in range(steps):
        ports = []
        for key in keys:
            choice = draw(st.integers(-1, len(versions[key]) - 1))  # -1: service absent
            if choice >= 0:
                ports.extend(versions[key][choice])
        ports.sort(key=lambda p: p.name)
        out.append(attrs.evolve(pool[0], service_ports=tuple(ports)))
    return out


def _full(state: NodeProxyState) -> IPTablesState:
    kernel = IPTablesState.empty(state.family)
    kernel.apply_restore(render_restore(state).text)
    return kernel


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=state_sequences(), shared_cache=st.booleans())
def test_partial_restores_converge_to_full_sync(seq: list[NodeProxyState], shared_cache: bool) -> None:
    cache = PortCache() if shared_cache else None
    kernel = IPTablesState.empty(seq[0].family)
    kernel.apply_restore(render_restore(seq[0], cache=cache).text)
    for before, after in itertools.pairwise(seq):
        result = render_restore(after, before, cache=cache)
        assert result.partial
        kernel.apply_restore(result.text)
        # Only changed services' chains are declared.
        changed = changed_services(before, after)
        for sp in after.service_ports:
            if (sp.name.namespace, sp.name.name) not in changed:
                assert f"{sp.name} -> " not in result.text
    assert kernel.snapshot() == _full(seq[-1]).snapshot()


def two_service_state() -> NodeProxyState:
    """ns1/svc1 (ClusterIP, 1 endpoint) and ns2/svc2 (NodePort + LB with source ranges)."""
    node = NodeInfo(name="test-node", ips=("192.168.0.2",))
    ports = []
    for i, extra in ((1, {}), (2, {"node_port": 3002, "load_balancer_vips": ("5.6.7.8",),
                                   "load_balancer_source_ranges": ("203.0.113.0/25",),
                                   "session_affinity_timeout": 10800})):
        sp = ServicePortInfo(
            name=ServicePortName(f"ns{i}", f"svc{i}", "p80", "TCP"), cluster_ip=f"172.30.0.4{i}",
            port=80, protocol="TCP",
            endpoints=(Endpoint(f"10.180.0.{i}", 80), Endpoint(f"10.180.1.{i}", 80)), **extra,
        )
        ports.append(attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, node.name, {})))
    return NodeProxyState(node=node, family="IPv4",
                          config=KubeProxyConfiguration(cluster_cidr="10.0.0.0/8"),
                          service_ports=tuple(ports))


@settings(max_examples=20, deadline=None)
@given(state=node_proxy_states(max_services=3, max_endpoints=3))
def test_unchanged_state_writes_no_service_chains(state: NodeProxyState) -> None:
    result = render_restore(state, state)
    assert result.partial and result.changed == frozenset() and result.stale == ()
    nat = result.text.split("*nat\n", 1)[1]
    assert [line for line in nat.splitlines() if line.startswith(":")] == [
        ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]"]
    # The filter table is always written in full.
    assert result.text.split("*nat\n")[0] == render_restore(state).text.split("*nat\n")[0]


def test_deleted_service_chains_are_flushed_and_deleted() -> None:
    both = two_service_state()
    one = attrs.evolve(both, service_ports=both.service_ports[:1])
    gone = render_restore(both).text
    result = render_restore(one, both)
    assert result.partial and result.changed == frozenset({("ns2", "svc2")})
    declared = re.findall(r"^:(KUBE-(?:SVC|SVL|EXT|FW|SEP)-[A-Z2-7]{16}) ", gone, re.M)
    svc2_chains = sorted(c for c in declared if c not in render_restore(one).text)
    assert list(result.stale) == svc2_chains and svc2_chains
    for chain in svc2_chains:
        assert f":{chain} - [0:0]\n" in result.text
        assert f"-X {chain}\n" in result.text
    # -X comes after the service rules and before the NodePort tail rule.
    nat = result.text.split("*nat\n", 1)[1].splitlines()
    xs = [i for i, line in enumerate(nat) if line.startswith("-X ")]
    tail = next(i for i, line in enumerate(nat) if "must be the last rule" in line)
    assert max(xs) < tail
    kernel = _full(both)
    kernel.apply_restore(result.text)
    assert kernel.snapshot() == _full(one).snapshot()


def test_context_change_forces_full_sync_with_cleanup() -> None:
    both = two_service_state()
    masq_all = attrs.evolve(both, config=attrs.evolve(
        both.config, iptables=attrs.evolve(both.config.iptables, masquerade_all=True)))
    result = render_restore(masq_all, both)
    assert not result.partial and result.changed is None and result.stale == ()
    kernel = _full(both)
    kernel.apply_restore(result.text)
    assert kernel.snapshot() == _full(masq_all).snapshot()


def test_applier_refuses_deleting_referenced_chain_atomically() -> None:
    kernel = IPTablesState.empty()
    kernel.apply_restore("*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\n-A KUBE-B -j RETURN\nCOMMIT\n")
    before = kernel.snapshot()
    with pytest.raises(RuleParseError, match="still referenced"):
        kernel.apply_restore("*nat\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n")
    assert kernel.snapshot() == before
