"""categorize_endpoints: reference vectors 92-94 and a property against the reference rules.

The property's oracle is written from ``k8s-service-api.md`` §4.6 as set algebra, independently
of the implementation's control flow.
"""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from kservice.proxy.categorize import categorize_endpoints, topology_mode_from_hints
from kservice.proxy.types import Endpoint, ServicePortInfo, ServicePortName
from kservice.testing.workloads import proxy_endpoints

NODE = "node-a"
ZONE_LABELS = {"topology.kubernetes.io/zone": "z3"}


def _svc(**kw: object) -> ServicePortInfo:
    return ServicePortInfo(name=ServicePortName("ns", "svc", "p"), cluster_ip="10.96.0.1",
                           port=80, protocol="TCP", **kw)  # type: ignore[arg-type]


def _ep(ip: str, **kw: object) -> Endpoint:
    return Endpoint(ip=ip, port=80, **kw)  # type: ignore[arg-type]


def _strs(eps: tuple[Endpoint, ...]) -> list[str]:
    return [e.string for e in eps]


def test_vector_92_internal_local_without_local_ready_endpoints_drops() -> None:
    eps = [_ep("10.0.1.1", node_name="b"), _ep("10.0.1.2", node_name="c")]
    cat = categorize_endpoints(eps, _svc(internal_policy_local=True), NODE, {})
    assert cat.local == () and cat.all_reachable == ()
    assert cat.cluster == ()  # ClusterIP-only + iTP Local: cluster endpoints unused
    assert cat.has_any  # REJECT vs DROP: endpoints exist elsewhere, so DROP


def test_vector_93_terminating_fallback() -> None:
    eps = [_ep(f"10.0.0.{i}", ready=False, serving=True, terminating=True) for i in (1, 2)]
    eps.append(_ep("10.0.0.3", ready=False, serving=False, terminating=True))
    cat = categorize_endpoints(eps, _svc(), NODE, {})
    assert _strs(cat.cluster) == ["10.0.0.1:80", "10.0.0.2:80"]
    assert cat.has_any and cat.all_reachable == cat.cluster


def test_vector_94_zone_hints_not_for_this_zone_are_ignored() -> None:
    eps = [_ep("10.0.0.1", zone_hints={"z1"}), _ep("10.0.0.2", zone_hints={"z2"})]
    cat = categorize_endpoints(eps, _svc(), NODE, ZONE_LABELS)
    assert _strs(cat.cluster) == ["10.0.0.1:80", "10.0.0.2:80"]
    # one ready endpoint without a hint disables topology even in the right zone
    eps = [_ep("10.0.0.1", zone_hints={"z3"}), _ep("10.0.0.2")]
    cat = categorize_endpoints(eps, _svc(), NODE, ZONE_LABELS)
    assert len(cat.cluster) == 2


def test_zone_hints_select_same_zone() -> None:
    eps = [_ep("10.0.0.1", zone_hints={"z3"}), _ep("10.0.0.2", zone_hints={"z1"}),
           _ep("10.0.0.3", ready=False, serving=False)]  # not ready, no hint: irrelevant
    cat = categorize_endpoints(eps, _svc(), NODE, ZONE_LABELS)
    assert _strs(cat.cluster) == ["10.0.0.1:80"]


def test_node_hints_need_the_gate() -> None:
    eps = [_ep("10.0.0.1", node_hints={NODE}, zone_hints={"z1"}),
           _ep("10.0.0.2", node_hints={"b"}, zone_hints={"z3"})]
    assert topology_mode_from_hints(eps, NODE, "z3") == "PreferSameNode"
    cat = categorize_endpoints(eps, _svc(), NODE, ZONE_LABELS)
    assert _strs(cat.cluster) == ["10.0.0.1:80"]
    cat = categorize_endpoints(eps, _svc(), NODE, ZONE_LABELS, prefer_same_node_gate=False)
    assert _strs(cat.cluster) == ["10.0.0.2:80"]


def test_external_local_uses_local_and_cluster_sets() -> None:
    eps = [_ep("10.0.0.1", is_local=True), _ep("10.0.0.2")]
    cat = categorize_endpoints(eps, _svc(external_policy_local=True, node_port=30001),
                               NODE, {})
    assert _strs(cat.cluster) == ["10.0.0.1:80", "10.0.0.2:80"]
    assert _strs(cat.local) == ["10.0.0.1:80"]
    assert cat.all_reachable == cat.cluster


def test_local_terminating_fallback_unions_with_cluster() -> None:
    eps = [_ep("10.0.0.9", is_local=True, ready=False, serving=True, terminating=True),
           _ep("10.0.0.2")]
    cat = categorize_endpoints(eps, _svc(external_policy_local=True, node_port=30001),
                               NODE, {})
    assert _strs(cat.local) == ["10.0.0.9:80"]
    assert _strs(cat.all_reachable) == ["10.0.0.2:80", "10.0.0.9:80"]


# --------------------------------------------------------------------------- property


def _oracle(eps: list[Endpoint], svc: ServicePortInfo, node: str, zone: str,
            gate: bool) -> tuple[set[str], set[str], set[str], bool]:
    ready = [e for e in eps if e.ready]
    st_ = [e for e in eps if e.serving and e.terminating]
    uses_cluster = not svc.internal_policy_local or svc.externally_accessible
    uses_local = svc.internal_policy_local or (svc.external_policy_local
                                               and svc.externally_accessible)
    mode = ""
    if gate and ready and all(e.node_hints for e in ready) and \
            any(node in e.node_hints for e in ready):
        mode = "node"
    elif ready and all(e.zone_hints for e in ready) and any(zone in e.zone_hints for e in ready):
        mode = "zone"
    cluster: set[str] = set()
    if uses_cluster:
        cluster = {e.string for e in ready if mode == "" or
                   (mode == "node" and node in e.node_hints) or
                   (mode == "zone" and zone in e.zone_hints)}
        if not cluster:
            cluster = {e.string for e in st_}
    has_any = bool(cluster) or (uses_local and bool(ready or st_))
    local: set[str] = set()
    fallback = False
    if uses_local:
        local = {e.string for e in ready if e.is_local}
        if not local:
            local = {e.string for e in st_ if e.is_local}
            fallback = bool(local)
    if not uses_local:
        reach = cluster
    elif not uses_cluster:
        reach = local
    elif mode == "" and not fallback:
        reach = cluster
    else:
        reach = cluster | local
    return cluster, local, reach, has_any


policies = st.builds(
    lambda itp, etp, np: _svc(internal_policy_local=itp, external_policy_local=etp,
                              node_port=np),
    st.booleans(), st.booleans(), st.sampled_from([0, 30080]),
)


@given(eps=proxy_endpoints(node_names=("node-a", "node-b"), zones=("z1", "z3")),
       svc=policies, gate=st.booleans(), zone=st.sampled_from(["z1", "z3", ""]))
def test_categorisation_matches_reference_rules(
    eps: list[Endpoint], svc: ServicePortInfo, gate: bool, zone: str
) -> None:
    eps = [attrs.evolve(e, is_local=e.node_name == NODE) for e in eps]
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    cat = categorize_endpoints(eps, svc, NODE, labels, prefer_same_node_gate=gate)
    cluster, local, reach, has_any = _oracle(eps, svc, NODE, zone, gate)
    assert set(_strs(cat.cluster)) == cluster
    assert set(_strs(cat.local)) == local
    assert set(_strs(cat.all_reachable)) == reach
    assert cat.has_any == has_any
    # deterministic order: sorted by endpoint string
    assert _strs(cat.all_reachable) == sorted(_strs(cat.all_reachable))
    # no Local-policy fallback to remote endpoints, ever
    assert all(e.is_local for e in cat.local)
