"""Node snapshots from a live :class:`~kservice.cluster.Cluster`, and what changed between two.

* :func:`build_node_state` -- one node's :class:`NodeProxyState` from the store's Services,
  EndpointSlices and Node, through the same conversion as raw manifests
  (:func:`kservice.proxy.raw.assemble_state`): one code path, objects -> ServicePortInfo.
* :class:`NodeStateTracker` -- the incremental form (kube-proxy's change trackers): it watches
  the store, marks the Services whose Service object or EndpointSlices changed, and rebuilds
  only their ports when :meth:`NodeStateTracker.state` is asked for. A change to this node's
  Node object (labels feed topology) rebuilds everything.
* :class:`ChangeTracker` -- given a previous and a new state, the ServicePortNames and
  Services that differ: the basis of partial syncs (iptables ``MinimizeIPTablesRestore``).
"""

from __future__ import annotations

import bisect
from typing import Any

import attrs

from kservice.cluster import Cluster, Event
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.raw import (
    FAMILIES,
    LABEL_SERVICE_NAME,
    assemble_state,
    endpoints_by_port,
    finish_port,
    node_info_from_node,
    service_port_infos,
)
from kservice.proxy.types import NodeInfo, NodeProxyState, ProxierOptions, ServicePortInfo

__all__ = ["ChangeSet", "ChangeTracker", "NodeStateTracker", "build_node_state",
           "node_info_for"]

SvcKey = tuple[str, str]


def _kinds(cluster: Cluster) -> tuple[str, ...]:
    return cluster.kinds


def node_info_for(cluster: Cluster, node_name: str) -> NodeInfo:
    node = cluster.find("Node", node_name, "") if "Node" in _kinds(cluster) else None
    return node_info_from_node(node) if node is not None else NodeInfo(name=node_name)


def _config(cluster: Cluster, given: KubeProxyConfiguration | None) -> KubeProxyConfiguration:
    if given is not None:
        return given
    from kservice.proxy.configkind import stored_config

    return stored_config(cluster) or KubeProxyConfiguration()


def build_node_state(
    cluster: Cluster,
    node_name: str,
    family: str,
    kube_proxy_config: KubeProxyConfiguration | None = None,
    options: ProxierOptions | None = None,
) -> NodeProxyState:
    """The snapshot kube-proxy on ``node_name`` would sync for ``family`` right now.

    The configuration defaults to the stored KubeProxyConfiguration object.
    """
    kinds = _kinds(cluster)
    services = cluster.list("Service") if "Service" in kinds else []
    slices = cluster.list("EndpointSlice") if "EndpointSlice" in kinds else []
    state = assemble_state(services, slices, node_info_for(cluster, node_name), family,
                           _config(cluster, kube_proxy_config), options)
    return attrs.evolve(state, service_cidrs=service_cidrs_of(cluster))


def service_cidrs_of(cluster: Cluster) -> tuple[str, ...]:
    """The cluster's service IP ranges as kube-proxy learns them from ServiceCIDR objects.

    The default ``kubernetes`` ServiceCIDR mirrors --service-cluster-ip-range (the
    apiserver keeps it); further ServiceCIDR objects extend the pool.
    """
    cidrs = list(cluster.config.service_subnets)
    if "ServiceCIDR" in cluster.kinds:
        for obj in cluster.list("ServiceCIDR"):
            cidrs += list(obj.cidrs)
    return tuple(dict.fromkeys(cidrs))


class NodeStateTracker:
    """An always-current :class:`NodeProxyState` for one node and family, kept incrementally."""

    def __init__(
        self,
        cluster: Cluster,
        node_name: str,
        family: str,
        kube_proxy_config: KubeProxyConfiguration | None = None,
        options: ProxierOptions | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown IP family {family!r}")
        self.cluster = cluster
        self.node_name = node_name
        self.family = family
        self._given_config = kube_proxy_config
        self.options = options or ProxierOptions()
        self._ports: dict[SvcKey, list[ServicePortInfo]] = {}
        #: Keys of ``_ports`` in (namespace, name) order; with each Service's ports sorted,
        #: walking it yields the ServicePortName order without sorting 10k ports per call.
        self._order: list[SvcKey] = []
        #: The flattened, ordered ports and each Service's offset in it.
        self._flat: list[ServicePortInfo] | None = None
        self._offsets: dict[SvcKey, int] = {}
        self._slices: dict[SvcKey, set[str]] = {}
        self._dirty: set[SvcKey] = set()
        self._state: NodeProxyState | None = None
        self._full = True
        cluster.subscribe(self._on_event)

    def _on_event(self, cluster: Cluster, ev: Event) -> None:
        if ev.kind == "Service":
            self._dirty.add((ev.object.metadata.namespace, ev.object.metadata.name))
        elif ev.kind == "EndpointSlice":
            # Keep the slice-name index current; mark the owning Service(s) dirty.
            for obj, present in ((ev.old, False), (ev.object, ev.type != "DELETED")):
                if obj is None:
                    continue
                svc = obj.metadata.labels.get(LABEL_SERVICE_NAME)
                if not svc or not obj.metadata.name:
                    continue
                key = (obj.metadata.namespace, svc)
                self._dirty.add(key)
                names = self._slices.setdefault(key, set())
                if present:
                    names.add(obj.metadata.name)
                else:
                    names.discard(obj.metadata.name)
        elif ev.kind == "Node" and ev.object.metadata.name == self.node_name:
            self._full = True
        else:
            return
        self._state = None

    def _rebuild_all(self) -> None:
        c = self.cluster
        self._ports.clear()
        self._order.clear()
        self._slices.clear()
        kinds = _kinds(c)
        for sl in c.list("EndpointSlice") if "EndpointSlice" in kinds else []:
            svc = sl.metadata.labels.get(LABEL_SERVICE_NAME)
            if svc and sl.metadata.name:
                self._slices.setdefault((sl.metadata.namespace, svc), set()).add(sl.metadata.name)
        self._node = node_info_for(c, self.node_name)
        for svc in c.list("Service") if "Service" in kinds else []:
            self._rebuild_service((svc.metadata.namespace, svc.metadata.name), svc)
        self._full = False
        self._dirty.clear()

    def _rebuild_service(self, key: SvcKey, svc: Any = None) -> None:
        c = self.cluster
        if svc is None:
            svc = c.find("Service", key[1], key[0])
        if svc is None:
            self._drop(key)
            return
        infos = service_port_infos(svc, self.family)
        if not infos:
            self._drop(key)
            return
        slices = []
        for name in sorted(self._slices.get(key, ())):
            sl = c.find("EndpointSlice", name, key[0])
            if sl is not None and sl.metadata.labels.get(LABEL_SERVICE_NAME) == key[1]:
                slices.append(sl)
        eps = endpoints_by_port(key[0], key[1], slices, self.family, self._node.name)
        ports = [finish_port(i, eps.get(i.name, ()), self._node) for i in infos]
        ports.sort(key=lambda p: (p.name.port, p.name.protocol))
        if key not in self._ports:
            bisect.insort(self._order, key)
        self._ports[key] = ports

    def _drop(self, key: SvcKey) -> None:
        if self._ports.pop(key, None) is not None:
            i = bisect.bisect_left(self._order, key)
            if i < len(self._order) and self._order[i] == key:
                del self._order[i]

    def state(self) -> NodeProxyState:
        """The current snapshot (rebuilding only what changed since the last call)."""
        if self._state is not None:
            return self._state
        if self._full:
            self._rebuild_all()
            self._flat = None
        elif self._dirty:
            for key in sorted(self._dirty):
                before = self._ports.get(key)
                self._rebuild_service(key)
                after = self._ports.get(key)
                # Same number of ports in the same place: patch the flat list in place
                # (a readiness flip must not cost a walk over every Service).
                if self._flat is not None and before is not None and after is not None \
                        and len(before) == len(after) and key in self._offsets:
                    start = self._offsets[key]
                    self._flat[start:start + len(after)] = after
                else:
                    self._flat = None
            self._dirty.clear()
        if self._flat is None:
            self._flat = []
            self._offsets = {}
            for k in self._order:
                self._offsets[k] = len(self._flat)
                self._flat.extend(self._ports[k])
        ports = self._flat
        self._state = NodeProxyState(
            node=self._node, family=self.family,
            config=_config(self.cluster, self._given_config), options=self.options,
            service_ports=tuple(ports), service_cidrs=service_cidrs_of(self.cluster),
        )
        return self._state


@attrs.frozen
class ChangeSet:
    """What differs between two snapshots of the same node and family."""

    #: Ports added, removed or changed (endpoints, categorisation or any service field).
    service_ports: frozenset[Any] = frozenset()
    #: ``(namespace, name)`` of every Service with a changed port.
    services: frozenset[tuple[str, str]] = frozenset()
    #: The node, family, configuration or options differ: everything must be resynced.
    full: bool = False

    @property
    def empty(self) -> bool:
        return not self.full and not self.service_ports


class ChangeTracker:
    """Diff two :class:`NodeProxyState` values, like kube-proxy's service/endpoints trackers."""

    @staticmethod
    def changes(previous: NodeProxyState | None, new: NodeProxyState) -> ChangeSet:
        if previous is None:
            names = frozenset(p.name for p in new.service_ports)
            return ChangeSet(names, frozenset((n.namespace, n.name) for n in names), full=True)
        full = (previous.node != new.node or previous.family != new.family
                or previous.config != new.config or previous.options != new.options)
        old = {p.name: p for p in previous.service_ports}
        cur = {p.name: p for p in new.service_ports}
        changed = set(old.keys() ^ cur.keys())
        for name, port in cur.items():
            before = old.get(name)
            if before is not None and before is not port and before != port:
                changed.add(name)
        return ChangeSet(frozenset(changed),
                         frozenset((n.namespace, n.name) for n in changed), full=full)
