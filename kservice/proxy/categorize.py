"""``CategorizeEndpoints``: THE one endpoint-selection function every backend shares.

A port of kube-proxy v1.34 ``pkg/proxy/topology.go`` (``CategorizeEndpoints``,
``topologyModeFromHints``, ``availableForTopology``). No backend filters endpoints itself;
the snapshot builders (:mod:`kservice.proxy.raw`, :mod:`kservice.proxy.snapshot`) call this
once per service port and store the result in :attr:`ServicePortInfo.categorized`.

Theory of operation (reference ``k8s-service-api.md`` §4.6, ``kube-proxy-iptables.md`` §3.2):

* **Cluster set** (only when the port *uses cluster endpoints*): pick a topology mode from the
  hints of the *ready* endpoints -- PreferSameNode when every ready endpoint has a node hint
  and one names this node (feature gate PreferSameTrafficDistribution, beta and on by default
  in 1.34), else PreferSameZone when every ready endpoint has a zone hint and one names this
  node's zone, else none. Keep the ready endpoints the mode allows; if none, fall back to every
  serving-and-terminating endpoint, ignoring topology.
* **Local set** (only when the port *uses local endpoints*): the local ready endpoints, else
  the local serving-terminating ones, else nothing -- there is never a fallback to remote
  endpoints for a Local policy.
* **allReachable**: the cluster set when no topology and no terminating fallback apply
  (it is then a superset of the local set); otherwise the union of both. Upstream builds the
  union from a Go map, so its order is random; we sort it by the endpoint's ``ip:port``
  string so output is deterministic (it only decides the order SEP chains are written).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from kservice.proxy.types import CategorizedEndpoints, Endpoint, ServicePortInfo

__all__ = [
    "LABEL_TOPOLOGY_ZONE",
    "TOPOLOGY_PREFER_SAME_NODE",
    "TOPOLOGY_PREFER_SAME_ZONE",
    "categorize_endpoints",
    "topology_mode_from_hints",
]

LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
#: Topology mode names: upstream reuses the trafficDistribution constants.
TOPOLOGY_PREFER_SAME_NODE = "PreferSameNode"
TOPOLOGY_PREFER_SAME_ZONE = "PreferSameZone"


def topology_mode_from_hints(
    endpoints: Iterable[Endpoint],
    node_name: str,
    zone: str,
    *,
    prefer_same_node_gate: bool = True,
) -> str:
    """``""``, ``PreferSameZone`` or ``PreferSameNode``, from the ready endpoints' hints.

    Only *ready* endpoints are looked at: a not-ready endpoint without hints does not
    disable topology (the EndpointSlice controller never hints not-ready endpoints).
    """
    has_for_node = False
    all_have_node_hints = True
    has_for_zone = False
    all_have_zone_hints = True
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.zone_hints:
            all_have_zone_hints = False
        elif zone in ep.zone_hints:
            has_for_zone = True
        if not ep.node_hints:
            all_have_node_hints = False
        elif node_name in ep.node_hints:
            has_for_node = True
    if prefer_same_node_gate and all_have_node_hints and has_for_node:
        return TOPOLOGY_PREFER_SAME_NODE
    # With no ready endpoints at all both "all have hints" flags stay true but nothing is
    # hinted for us, so the mode is "" -- as upstream.
    if all_have_zone_hints and has_for_zone:
        return TOPOLOGY_PREFER_SAME_ZONE
    return ""


def _available_for_topology(ep: Endpoint, mode: str, node_name: str, zone: str) -> bool:
    if mode == "":
        return True
    if mode == TOPOLOGY_PREFER_SAME_NODE:
        return node_name in ep.node_hints
    if mode == TOPOLOGY_PREFER_SAME_ZONE:
        return zone in ep.zone_hints
    return False


def _filter(endpoints: Iterable[Endpoint], keep: Callable[[Endpoint], bool]) -> tuple[Endpoint, ...]:
    return tuple(ep for ep in endpoints if keep(ep))


def categorize_endpoints(
    endpoints: Iterable[Endpoint],
    svc_info: ServicePortInfo,
    node_name: str,
    node_labels: Mapping[str, str] | None,
    *,
    prefer_same_node_gate: bool = True,
) -> CategorizedEndpoints:
    """Split one service port's endpoints into cluster / local / all-reachable sets.

    ``endpoints`` should be the port's full endpoint list (deduplicated, sorted by
    ``ip:port`` as :attr:`ServicePortInfo.endpoints`); the output keeps that order.
    ``svc_info`` supplies the traffic-policy flags; its own ``endpoints`` are not read.
    """
    eps = tuple(endpoints)
    labels = node_labels or {}
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    has_any = False
    mode = ""
    use_serving_terminating = False

    uses_cluster = svc_info.uses_cluster_endpoints
    if uses_cluster:
        zone = labels.get(LABEL_TOPOLOGY_ZONE, "")
        mode = topology_mode_from_hints(
            eps, node_name, zone, prefer_same_node_gate=prefer_same_node_gate
        )
        cluster = _filter(
            eps, lambda ep: ep.ready and _available_for_topology(ep, mode, node_name, zone)
        )
        if not cluster:
            # No ready endpoint anywhere (topology would already have been dropped had
            # there been ready endpoints only elsewhere): use serving-terminating ones.
            cluster = _filter(eps, lambda ep: ep.serving and ep.terminating)
        has_any = bool(cluster)

    if not svc_info.uses_local_endpoints:
        return CategorizedEndpoints(
            cluster=cluster, local=(), all_reachable=cluster, has_any=has_any
        )

    has_local_ready = False
    has_local_serving_terminating = False
    for ep in eps:
        if ep.ready:
            has_any = True
            if ep.is_local:
                has_local_ready = True
        elif ep.serving and ep.terminating:
            has_any = True
            if ep.is_local:
                has_local_serving_terminating = True

    if has_local_ready:
        local = _filter(eps, lambda ep: ep.is_local and ep.ready)
    elif has_local_serving_terminating:
        use_serving_terminating = True
        local = _filter(eps, lambda ep: ep.is_local and ep.serving and ep.terminating)

    if not uses_cluster:
        return CategorizedEndpoints(cluster=(), local=local, all_reachable=local, has_any=has_any)

    if mode == "" and not use_serving_terminating:
        # cluster holds every ready endpoint and local only ready ones: a superset.
        return CategorizedEndpoints(
            cluster=cluster, local=local, all_reachable=cluster, has_any=has_any
        )

    # Union keyed by ip:port; a local entry overwrites a cluster one with the same key, as
    # upstream's map assignment order does. Sorted for determinism (upstream: map order).
    merged: dict[str, Endpoint] = {}
    for ep in cluster:
        merged[ep.string] = ep
    for ep in local:
        merged[ep.string] = ep
    union = tuple(merged[k] for k in sorted(merged))
    return CategorizedEndpoints(cluster=cluster, local=local, all_reachable=union, has_any=has_any)
