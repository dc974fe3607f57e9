"""The EndpointSlice and Endpoints controllers, driven incrementally by store events.

Theory of operation
-------------------
One watch subscriber keeps three indexes: Services by (namespace, label key, label value) of
their selector, Pods by (namespace, label key, label value), and EndpointSlices by owning
Service. A Pod event re-syncs only the Services whose selector matched the pod before or
matches it now (an unchanged pod -- same labels, IPs, readiness, node, ports -- syncs nothing);
a Service event re-syncs that Service; a Node event re-syncs every Service (zones and node
existence feed every endpoint; node events are rare).

Like upstream's work queue, syncs are *batched*: an event only marks Services dirty, and
the dirty set is synced once, at the end of the store's dispatch round
(:meth:`Cluster.on_idle <kservice.cluster.Cluster.on_idle>`) -- so a ReplicaSet creating
ten pods costs one sync, not ten. By the time the write that started a round returns, every
slice is up to date.

A sync computes the desired endpoints (:mod:`._desired`), plans slice writes against the
stored slices (:mod:`._reconciler`) and writes them with ``put_raw``/``delete_raw``, updating
its own slice index at once so that queued events never see a stale index. The legacy
Endpoints object is written alongside (:mod:`._legacy`). :func:`recompute_all` re-syncs every
Service from scratch; after any sequence of incremental events it must write nothing.

Services without a selector and ``ExternalName`` Services are left alone (their slices and
Endpoints are the user's; slices written while a Service still had a selector stay, as
upstream leaves them). When a Service is deleted its Endpoints object is deleted, and the
slices it owns go with it (garbage collection by ownerReference).
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.cluster import Cluster, Event
from kservice.endpoints._desired import (
    PodEndpoints,
    address_types_for_service,
    assemble_desired,
    pod_endpoints,
)
from kservice.endpoints._legacy import legacy_endpoints_from_entries, pod_legacy_entries
from kservice.endpoints._reconciler import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    plan_slices,
)
from kservice.models.discovery import Endpoints, EndpointSlice
from kservice.models.meta import ObjectMeta
from kservice.models.service import Service
from kservice.models.workloads import Node, Pod
from kservice.workloads._naming import generate_name

__all__ = ["ANNOTATION_TRIGGER_TIME", "EndpointsController"]

ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"

SvcKey = tuple[str, str]


def _pod_fingerprint(pod: Pod | None) -> Any:
    """What of a pod can change its endpoints (labels are handled by the index)."""
    if pod is None:
        return None
    return (pod.status.ips, pod.status.phase, pod.is_ready, pod.is_terminating,
            pod.spec.node_name, pod.spec.hostname, pod.spec.subdomain,
            pod.spec.containers, pod.spec.init_containers, pod.metadata.uid)


class EndpointsController:
    """Watch subscriber running both endpoint controllers."""

    def __init__(self) -> None:
        self.svc_index: dict[tuple[str, str, str], set[str]] = {}
        self.selectors: dict[SvcKey, dict[str, str]] = {}
        self.pod_index: dict[tuple[str, str, str], set[str]] = {}
        self.slices: dict[SvcKey, set[str]] = {}
        self._nodes: dict[str, Node] | None = None
        #: Per-Service cache of per-pod results, valid while the Service object and the
        #: node map are the same objects: svc key -> (svc, nodes, {pod name: (pod, ...)}).
        self._cache: dict[SvcKey, tuple[Any, Any, dict[str, tuple[Pod, PodEndpoints,
                                                                   tuple[Any, ...]]]]] = {}
        #: Services waiting for a batched sync.
        self._pending: set[SvcKey] = set()
        #: Number of object writes performed (for tests and benchmarks).
        self.writes = 0

    # ------------------------------------------------------------------ indexes
    def _index_service(self, svc: Service | None, key: SvcKey) -> None:
        old = self.selectors.pop(key, None)
        if old is not None:
            for k, v in old.items():
                s = self.svc_index.get((key[0], k, v))
                if s is not None:
                    s.discard(key[1])
        if svc is not None and svc.spec.selector:
            sel = dict(svc.spec.selector)
            self.selectors[key] = sel
            for k, v in sel.items():
                self.svc_index.setdefault((key[0], k, v), set()).add(key[1])

    def _index_pod(self, pod: Pod, add: bool) -> None:
        ns, name = pod.metadata.namespace, pod.metadata.name
        for k, v in pod.metadata.labels.items():
            if add:
                self.pod_index.setdefault((ns, k, v), set()).add(name)
            else:
                s = self.pod_index.get((ns, k, v))
                if s is not None:
                    s.discard(name)

    def _services_for(self, pod: Pod) -> set[str]:
        ns = pod.metadata.namespace
        labels = pod.metadata.labels
        out: set[str] = set()
        for k, v in labels.items():
            for svc in self.svc_index.get((ns, k, v), ()):
                if svc in out:
                    continue
                sel = self.selectors.get((ns, svc))
                if sel and all(labels.get(sk) == sv for sk, sv in sel.items()):
                    out.add(svc)
        return out

    def selected_pods(self, cluster: Cluster, ns: str, selector: dict[str, str]) -> list[Pod]:
        sets = [self.pod_index.get((ns, k, v), set()) for k, v in selector.items()]
        if not sets:
            return []
        sets.sort(key=len)
        names = set(sets[0])
        for s in sets[1:]:
            names &= s
        out = []
        for n in names:
            p = cluster.find("Pod", n, ns)
            if p is not None and all(p.metadata.labels.get(k) == v for k, v in selector.items()):
                out.append(p)
        return out

    def nodes(self, cluster: Cluster) -> dict[str, Node]:
        if self._nodes is None:
            self._nodes = {n.metadata.name: n for n in cluster.list("Node")}
        return self._nodes

    def rebuild_indexes(self, cluster: Cluster) -> None:
        """Re-derive every index from the store (after a restore or a rolled-back transaction)."""
        self.svc_index.clear()
        self.selectors.clear()
        self.pod_index.clear()
        self.slices.clear()
        self._nodes = None
        self._cache.clear()
        self._pending.clear()
        for svc in cluster.list("Service"):
            self._index_service(svc, (svc.metadata.namespace, svc.metadata.name))
        for pod in cluster.list("Pod"):
            self._index_pod(pod, True)
        for sl in cluster.list("EndpointSlice"):
            name = sl.metadata.labels.get(LABEL_SERVICE_NAME)
            if name:
                self.slices.setdefault((sl.metadata.namespace, name), set()).add(sl.metadata.name)

    # ------------------------------------------------------------------ events
    def __call__(self, cluster: Cluster, ev: Event) -> None:
        kind = ev.kind
        if kind == "Pod":
            old: Pod | None = ev.old if ev.type != "ADDED" else None
            new: Pod | None = ev.object if ev.type != "DELETED" else None
            labels_same = old is not None and new is not None and \
                old.metadata.labels == new.metadata.labels
            if labels_same and _pod_fingerprint(old) == _pod_fingerprint(new):
                return
            targets: set[str] = set()
            if old is not None:
                targets |= self._services_for(old)
                if not labels_same:
                    self._index_pod(old, False)
            if new is not None:
                if not labels_same:
                    self._index_pod(new, True)
                targets |= self._services_for(new)
            ns = ev.object.metadata.namespace
            self._pending.update((ns, svc) for svc in targets)
        elif kind == "Service":
            key = (ev.object.metadata.namespace, ev.object.metadata.name)
            self._index_service(ev.object if ev.type != "DELETED" else None, key)
            if ev.type == "DELETED":
                self._cache.pop(key, None)
                self._pending.discard(key)
                self._service_deleted(cluster, ev.object)
            else:
                self._pending.add(key)
        elif kind == "Node":
            old_n = ev.old
            if ev.type == "MODIFIED" and old_n is not None and \
                    old_n.metadata.labels == ev.object.metadata.labels:
                return
            self._nodes = None
            self._pending.update(self.selectors)
        elif kind == "EndpointSlice":
            sl = ev.object
            name = sl.metadata.labels.get(LABEL_SERVICE_NAME)
            if ev.old is not None:
                oname = ev.old.metadata.labels.get(LABEL_SERVICE_NAME)
                if oname and (ev.type == "DELETED" or oname != name):
                    self.slices.get((sl.metadata.namespace, oname), set()).discard(
                        sl.metadata.name)
            if name and ev.type != "DELETED":
                self.slices.setdefault((sl.metadata.namespace, name), set()).add(
                    sl.metadata.name)

    def on_idle(self, cluster: Cluster) -> None:
        """End of a dispatch round: sync the Services marked dirty during it."""
        if self._pending:
            self.flush(cluster)

    def flush(self, cluster: Cluster) -> int:
        """Sync every pending Service now; returns the writes made."""
        writes = 0
        while self._pending:
            batch = sorted(self._pending)
            self._pending.clear()
            for ns, name in batch:
                writes += self.sync_service(cluster, ns, name)
        return writes

    def _service_deleted(self, cluster: Cluster, svc: Service) -> None:
        ns, name = svc.metadata.namespace, svc.metadata.name
        if cluster.find("Endpoints", name, ns) is not None:
            cluster.delete_raw("Endpoints", name, ns)
            self.writes += 1
        for sl_name in sorted(self.slices.get((ns, name), set())):
            sl = cluster.find("EndpointSlice", sl_name, ns)
            if sl is not None and any(r.kind == "Service" and r.uid == svc.metadata.uid
                                      for r in sl.metadata.owner_references):
                cluster.delete_raw("EndpointSlice", sl_name, ns)
                self.slices[(ns, name)].discard(sl_name)
                self.writes += 1

    # ------------------------------------------------------------------ sync
    def sync_service(self, cluster: Cluster, ns: str, name: str) -> int:
        """Bring one Service's slices and Endpoints up to date; returns the writes made."""
        svc: Service | None = cluster.find("Service", name, ns)
        if svc is None or svc.spec.selector is None or svc.spec.type == "ExternalName":
            return 0
        pods = self.selected_pods(cluster, ns, dict(svc.spec.selector))
        pods.sort(key=lambda p: p.metadata.name)
        nodes = self.nodes(cluster)
        families = address_types_for_service(svc)
        cached = self._cache.get((ns, name))
        per_pod = cached[2] if cached and cached[0] is svc and cached[1] is nodes else {}
        fresh: dict[str, tuple[Pod, PodEndpoints, tuple[Any, ...]]] = {}
        for pod in pods:
            hit = per_pod.get(pod.metadata.name)
            if hit is None or hit[0] is not pod:
                pe = pod_endpoints(svc, pod, nodes, families)
                ref = next(iter(pe.endpoints.values())).target_ref if pe.endpoints else None
                hit = (pod, pe, pod_legacy_entries(svc, pod, ref))
            fresh[pod.metadata.name] = hit
        self._cache[(ns, name)] = (svc, nodes, fresh)
        contributions = [v[1] for v in fresh.values()]
        desired = {at: assemble_desired(svc, contributions, nodes, at)[0] for at in families}
        existing = []
        for sl_name in sorted(self.slices.get((ns, name), set())):
            sl = cluster.find("EndpointSlice", sl_name, ns)
            if sl is not None and sl.metadata.labels.get(LABEL_MANAGED_BY) == MANAGED_BY:
                existing.append(sl)
        plan = plan_slices(svc, existing, desired, cluster.config.max_endpoints_per_slice)
        writes = 0
        if not plan.empty:
            now = cluster.timestamp()
            index = self.slices.setdefault((ns, name), set())
            for sl in plan.delete:
                cluster.delete_raw("EndpointSlice", sl.metadata.name, ns)
                index.discard(sl.metadata.name)
                writes += 1
            for sl in plan.update:
                cluster.put_raw(_stamp(sl, now))
                writes += 1
            for sl in plan.create:
                base = sl.metadata.generate_name

                def taken(n: str) -> bool:
                    return cluster.find("EndpointSlice", n, ns) is not None

                sl_name = generate_name(cluster.config.seed, base, taken)
                ann = dict(sl.metadata.annotations)
                ann[ANNOTATION_TRIGGER_TIME] = now
                cluster.put_raw(attrs.evolve(
                    sl, metadata=_with_annotations(sl.metadata, ann, name=sl_name)))
                index.add(sl_name)
                writes += 1
        writes += self._sync_legacy(cluster, svc, [e for v in fresh.values() for e in v[2]])
        self.writes += writes
        return writes

    def _sync_legacy(self, cluster: Cluster, svc: Service, entries: list[Any]) -> int:
        want = legacy_endpoints_from_entries(svc, entries)
        ns, name = svc.metadata.namespace, svc.metadata.name
        have: Endpoints | None = cluster.find("Endpoints", name, ns)
        if have is not None and have.subsets == want.subsets and \
                dict(have.metadata.labels) == dict(want.metadata.labels) and \
                have.metadata.annotations.get("endpoints.kubernetes.io/over-capacity") == \
                want.metadata.annotations.get("endpoints.kubernetes.io/over-capacity"):
            return 0
        now = cluster.timestamp()
        annotations = dict(want.metadata.annotations)
        annotations[ANNOTATION_TRIGGER_TIME] = now
        meta = want.metadata if have is None else have.metadata
        meta = attrs.evolve(meta, labels=want.metadata.labels, annotations=annotations)
        cluster.put_raw(attrs.evolve(want, metadata=meta))
        return 1


def _stamp(sl: EndpointSlice, now: str) -> EndpointSlice:
    ann = dict(sl.metadata.annotations)
    ann[ANNOTATION_TRIGGER_TIME] = now
    return attrs.evolve(sl, metadata=_with_annotations(sl.metadata, ann))


def _with_annotations(meta: ObjectMeta, annotations: dict[str, str],
                      name: str | None = None) -> ObjectMeta:
    """``meta`` with new annotations (and name): one constructor call, as this runs for
    every slice write (``attrs.evolve`` costs twice as much)."""
    return ObjectMeta(
        name=meta.name if name is None else name, namespace=meta.namespace,
        generate_name=meta.generate_name, labels=meta.labels, annotations=annotations,
        uid=meta.uid, resource_version=meta.resource_version, generation=meta.generation,
        creation_timestamp=meta.creation_timestamp, deletion_timestamp=meta.deletion_timestamp,
        deletion_grace_period_seconds=meta.deletion_grace_period_seconds,
        owner_references=meta.owner_references, finalizers=meta.finalizers,
    )
