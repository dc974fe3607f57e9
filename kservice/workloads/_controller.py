"""Workload controllers: Deployment -> ReplicaSet -> Pods, StatefulSet and DaemonSet pods.

A single watch subscriber (:class:`WorkloadController`) reacts to store events the way
kube-controller-manager's controllers do, but synchronously and without time:

* **Deployment**: the ReplicaSet ``<deploy>-<pod-template-hash>`` for the current template gets
  ``spec.replicas``; every older ReplicaSet of the Deployment is scaled to 0 (a rollout that
  finishes at once; old ReplicaSets are kept as history, as ``revisionHistoryLimit`` does).
* **ReplicaSet**: creates ``<rs>-<5 chars>`` pods up to ``replicas``; scales down deleting the
  least useful pods first (unscheduled, then not ready, then newest) -- upstream's ranking,
  simplified.
* **StatefulSet**: pods ``<sts>-0 .. <sts>-(n-1)`` with ``hostname`` = pod name and
  ``subdomain`` = ``serviceName`` (so the headless Service gives them DNS names); scale-down
  removes the highest ordinals first.
* **DaemonSet**: one pod per node that fits (nodeSelector, taints -- the DaemonSet controller
  adds tolerations for the ``node.kubernetes.io/{not-ready,unreachable,unschedulable,...}``
  taints, so cordoned nodes keep their daemon pods).
* A deleted Pod is replaced by its controller; a deleted workload takes its dependents with
  it (the garbage collector's cascading delete); a deleted Node takes its pods with it (pod GC).

Scale-down and owner deletion remove pods at once. A real cluster deletes gracefully (the pods
are terminating, ``serving`` endpoints, for up to 30 s); use
:func:`kservice.workloads.terminate_pod` to see that state.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.cluster import Cluster, Event
from kservice.errors import AlreadyExists
from kservice.models.meta import ObjectMeta, OwnerReference
from kservice.models.workloads import LabelSelector, Pod, PodSpec, ReplicaSet, deep_freeze
from kservice.workloads._naming import generate_name, template_hash
from kservice.workloads._strategies import tolerates

__all__ = ["WorkloadController"]

OwnerKey = tuple[str, str, str]  # (kind, namespace, name)

#: Tolerations the DaemonSet controller adds to every daemon pod (util.AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)


def controller_of(obj: Any) -> OwnerReference | None:
    ref: OwnerReference
    for ref in obj.metadata.owner_references:
        if ref.controller:
            return ref
    return None


def _owner_ref(obj: Any) -> OwnerReference:
    return OwnerReference(api_version=obj.api_version, kind=obj.kind, name=obj.metadata.name,
                          uid=obj.metadata.uid, controller=True, block_owner_deletion=True)


class WorkloadController:
    """The watch subscriber that keeps pods in line with their workloads."""

    def __init__(self) -> None:
        #: (owner kind, namespace, owner name) -> names of dependents (pods or ReplicaSets).
        self.owned: dict[OwnerKey, set[str]] = {}
        #: (namespace, name) of every stored Pod, for cheap generateName collision checks.
        self.pod_names: set[tuple[str, str]] = set()
        self._refs: dict[tuple[str, str, str], tuple[OwnerReference, ...]] = {}

    # ---------------------------------------------------------------- index
    def _index(self, ev: Event) -> None:
        obj = ev.object
        if ev.kind not in ("Pod", "ReplicaSet"):
            return
        ns, name = obj.metadata.namespace, obj.metadata.name
        if ev.kind == "Pod":
            if ev.type == "DELETED":
                self.pod_names.discard((ns, name))
            else:
                self.pod_names.add((ns, name))
        if ev.old is not None:
            ref = controller_of(ev.old)
            if ref is not None:
                self.owned.get((ref.kind, ns, ref.name), set()).discard(name)
        if ev.type != "DELETED":
            ref = controller_of(obj)
            if ref is not None:
                self.owned.setdefault((ref.kind, ns, ref.name), set()).add(name)

    def rebuild_index(self, cluster: Cluster) -> None:
        """Re-derive the ownership index from the store (restore, rolled-back transaction)."""
        self.owned.clear()
        self.pod_names = {(p.metadata.namespace, p.metadata.name)
                          for p in (cluster.list("Pod") if "Pod" in cluster.kinds else [])}
        for kind in ("ReplicaSet", "Pod"):
            if kind not in cluster.kinds:
                continue
            for obj in cluster.list(kind):
                ref = controller_of(obj)
                if ref is not None:
                    self.owned.setdefault((ref.kind, obj.metadata.namespace, ref.name),
                                          set()).add(obj.metadata.name)

    def dependents(self, cluster: Cluster, kind: str, owner: Any) -> list[Any]:
        """Stored objects of ``kind`` controlled by ``owner`` (uid checked)."""
        ns = owner.metadata.namespace
        out = []
        for name in sorted(self.owned.get((owner.kind, ns, owner.metadata.name), ())):
            obj = cluster.find(kind, name, ns)
            if obj is None:
                continue
            ref = controller_of(obj)
            if ref is not None and (not ref.uid or ref.uid == owner.metadata.uid):
                out.append(obj)
        return out

    # ---------------------------------------------------------------- events
    def __call__(self, cluster: Cluster, ev: Event) -> None:
        self._index(ev)
        kind = ev.kind
        if kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
            if ev.type == "DELETED":
                self._cascade(cluster, ev.object)
            else:
                self.reconcile(cluster, ev.object)
        elif kind == "Pod" and (ev.type == "DELETED" or (
                ev.type == "MODIFIED" and ev.object.is_terminating
                and ev.old is not None and not ev.old.is_terminating)):
            # A deleted or newly terminating pod no longer counts: its controller replaces it.
            ref = controller_of(ev.object)
            if ref is not None and ref.kind in ("ReplicaSet", "StatefulSet", "DaemonSet"):
                owner = cluster.find(ref.kind, ref.name, ev.object.metadata.namespace)
                if owner is not None and owner.metadata.uid == (ref.uid or owner.metadata.uid):
                    self.reconcile(cluster, owner)
        elif kind == "Node":
            if ev.type == "DELETED":
                for pod in cluster.list("Pod"):
                    if pod.spec.node_name == ev.object.metadata.name:
                        cluster.delete("Pod", pod.metadata.name, pod.metadata.namespace)
            for ds in cluster.list("DaemonSet"):
                self.reconcile(cluster, ds)

    def _cascade(self, cluster: Cluster, owner: Any) -> None:
        dep_kind = "ReplicaSet" if owner.kind == "Deployment" else "Pod"
        for dep in self.dependents(cluster, dep_kind, owner):
            cluster.delete(dep_kind, dep.metadata.name, dep.metadata.namespace)

    # ---------------------------------------------------------------- reconcilers
    def reconcile(self, cluster: Cluster, obj: Any) -> None:
        getattr(self, "_reconcile_" + obj.kind.lower())(cluster, obj)

    def _reconcile_deployment(self, cluster: Cluster, dep: Any) -> None:
        tmpl = dep.spec.template
        h = template_hash(tmpl.to_manifest())
        rs_name = f"{dep.metadata.name}-{h}"
        labels = {**tmpl.metadata.labels, "pod-template-hash": h}
        sel = LabelSelector(
            match_labels={**dep.spec.selector.match_labels, "pod-template-hash": h},
            match_expressions=dep.spec.selector.match_expressions,
        )
        existing = self.dependents(cluster, "ReplicaSet", dep)
        for rs in existing:
            if rs.metadata.name != rs_name and rs.spec.replicas:
                cluster.update(attrs.evolve(rs, spec=attrs.evolve(rs.spec, replicas=0)))
        revision = str(len(existing) + (0 if any(r.metadata.name == rs_name for r in existing)
                                        else 1))
        current = cluster.find("ReplicaSet", rs_name, dep.metadata.namespace)
        spec = attrs.evolve(
            dep.spec, selector=sel, replicas=dep.replicas,
            template=attrs.evolve(tmpl, metadata=attrs.evolve(tmpl.metadata, labels=labels)),
            extra={},
        )
        if current is None:
            rs = ReplicaSet(
                metadata=ObjectMeta(
                    name=rs_name, namespace=dep.metadata.namespace, labels=labels,
                    annotations={"deployment.kubernetes.io/desired-replicas": str(dep.replicas),
                                 "deployment.kubernetes.io/max-replicas": str(dep.replicas),
                                 "deployment.kubernetes.io/revision": revision},
                    owner_references=(_owner_ref(dep),),
                ),
                spec=spec,
            )
            cluster.create(rs)
        elif current.spec.replicas != dep.replicas:
            cluster.update(attrs.evolve(current, spec=attrs.evolve(current.spec,
                                                                   replicas=dep.replicas)))

    def _new_pod(self, owner: Any, *, name: str = "", generate: str = "",
                 node_name: str = "", extra_labels: dict[str, str] | None = None,
                 hostname: str = "", subdomain: str = "",
                 tolerations: tuple[dict[str, str], ...] = ()) -> Pod:
        tmpl = owner.spec.template
        spec: PodSpec = tmpl.spec
        changes: dict[str, Any] = {}
        if node_name:
            changes["node_name"] = node_name
        if hostname:
            changes["hostname"] = hostname
        if subdomain:
            changes["subdomain"] = subdomain
        if tolerations:
            extra = dict(spec.extra)
            have = list(extra.get("tolerations") or ())
            extra["tolerations"] = deep_freeze(
                [*have, *[t for t in tolerations if deep_freeze(t) not in have]])
            changes["extra"] = extra
        if changes:
            spec = attrs.evolve(spec, **changes)
        meta = ObjectMeta(
            name=name, generate_name=generate, namespace=owner.metadata.namespace,
            labels=({**tmpl.metadata.labels, **extra_labels} if extra_labels
                    else tmpl.metadata.labels),
            annotations=tmpl.metadata.annotations,
            owner_references=self._owner_refs(owner),
        )
        return Pod(metadata=meta, spec=spec)

    def _owner_refs(self, owner: Any) -> tuple[OwnerReference, ...]:
        """The (shared) ownerReferences tuple for pods of ``owner``."""
        key = (owner.kind, owner.metadata.uid, owner.metadata.name)
        refs = self._refs.get(key)
        if refs is None:
            if len(self._refs) > 65536:
                self._refs.clear()
            refs = self._refs[key] = (_owner_ref(owner),)
        return refs

    def _create_pod(self, cluster: Cluster, pod: Pod) -> None:
        if pod.metadata.name:
            cluster.create(pod)
            return
        ns = pod.metadata.namespace
        m = pod.metadata
        known = self.pod_names
        # Names known to be taken are skipped cheaply; a name created earlier in this same
        # dispatch (its event not yet seen) surfaces as AlreadyExists and the next candidate
        # is tried -- the store checks the key before running the Pod strategy.
        for attempt in range(64):
            name = generate_name(cluster.config.seed, m.generate_name,
                                 lambda n: (ns, n) in known, salt=cluster.resource_version
                                 + attempt * 1_000_003)
            named = Pod(metadata=ObjectMeta(name=name, generate_name=m.generate_name,
                                            namespace=ns, labels=m.labels,
                                            annotations=m.annotations,
                                            owner_references=m.owner_references),
                        spec=pod.spec)
            try:
                cluster.create(named)
                return
            except AlreadyExists:
                continue
        raise AlreadyExists("pods", m.generate_name)

    def _reconcile_replicaset(self, cluster: Cluster, rs: Any) -> None:
        pods = [p for p in self.dependents(cluster, "Pod", rs) if not p.is_terminating]
        want = rs.replicas
        if len(pods) < want:
            template = self._new_pod(rs, generate=f"{rs.metadata.name}-")
            for _ in range(want - len(pods)):
                self._create_pod(cluster, template)
        elif len(pods) > want:
            def rank(p: Pod) -> tuple[int, int, int, str]:
                return (1 if p.spec.node_name else 0, 1 if p.is_ready else 0,
                        -int(p.metadata.resource_version or 0), p.metadata.name)
            for p in sorted(pods, key=rank)[: len(pods) - want]:
                cluster.delete("Pod", p.metadata.name, p.metadata.namespace)

    def _reconcile_statefulset(self, cluster: Cluster, sts: Any) -> None:
        ns, name = sts.metadata.namespace, sts.metadata.name
        want = sts.replicas
        rev = f"{name}-{template_hash(sts.spec.template.to_manifest())}"
        for i in range(want):
            pod_name = f"{name}-{i}"
            if cluster.find("Pod", pod_name, ns) is None:
                pod = self._new_pod(
                    sts, name=pod_name, hostname=pod_name, subdomain=sts.spec.service_name,
                    extra_labels={"apps.kubernetes.io/pod-index": str(i),
                                  "controller-revision-hash": rev,
                                  "statefulset.kubernetes.io/pod-name": pod_name},
                )
                cluster.create(pod)
        extra = []
        for p in self.dependents(cluster, "Pod", sts):
            idx = p.metadata.name.rsplit("-", 1)[-1]
            if idx.isdigit() and int(idx) >= want:
                extra.append((int(idx), p))
        for _, p in sorted(extra, key=lambda t: t[0], reverse=True):
            cluster.delete("Pod", p.metadata.name, ns)

    def _reconcile_daemonset(self, cluster: Cluster, ds: Any) -> None:
        probe = self._new_pod(ds, tolerations=DAEMON_TOLERATIONS)
        eligible = {
            n.metadata.name for n in cluster.list("Node")
            if tolerates(probe, n) and all(
                n.metadata.labels.get(k) == v for k, v in probe.spec.node_selector.items())
        }
        have: dict[str, Pod] = {}
        for p in self.dependents(cluster, "Pod", ds):
            if p.spec.node_name in eligible and p.spec.node_name not in have:
                have[p.spec.node_name] = p
            else:
                cluster.delete("Pod", p.metadata.name, p.metadata.namespace)
        for node in sorted(eligible - set(have)):
            pod = self._new_pod(ds, generate=f"{ds.metadata.name}-", node_name=node,
                                tolerations=DAEMON_TOLERATIONS)
            self._create_pod(cluster, pod)

