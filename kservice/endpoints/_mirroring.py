"""The EndpointSlice *mirroring* controller: user Endpoints -> EndpointSlices.

kube-proxy reads only EndpointSlices, so a selectorless Service whose user wrote a legacy
``Endpoints`` object would get no traffic without this controller
(``pkg/controller/endpointslicemirroring``). It mirrors an Endpoints object when its Service
exists, has no selector, and the Endpoints lacks ``endpointslice.kubernetes.io/skip-mirror:
"true"`` (the Endpoints controller sets that on its own objects).

Mirrored slices: ``generateName: <endpoints>-``, owned by the Endpoints object, labelled with
the Endpoints' labels plus ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/
managed-by: endpointslicemirroring-controller.k8s.io``; one group per subset and address
family; ``addresses`` -> ``ready: true``, ``notReadyAddresses`` -> ``ready: false`` (only Ready
is set, as upstream's ``addressToEndpoint``); at most 1000 addresses per Endpoints are mirrored.
kservice re-packs the desired slices on every change, reusing existing slice names in order,
instead of upstream's churn-minimising reconciler.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.cluster import Cluster, Event
from kservice.endpoints._legacy import LABEL_SKIP_MIRROR
from kservice.endpoints._reconciler import LABEL_MANAGED_BY, LABEL_SERVICE_NAME
from kservice.models.discovery import (
    EndpointConditions,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    SliceEndpoint,
)
from kservice.models.meta import ObjectMeta, OwnerReference
from kservice.workloads._naming import generate_name

__all__ = ["MIRRORING_MANAGED_BY", "MirroringController", "apiserver_endpoints",
           "desired_mirrored_slices"]

MIRRORING_MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
MAX_MIRRORED = 1000
_DROPPED_ANNOTATIONS = ("endpoints.kubernetes.io/last-change-trigger-time",
                        "kubectl.kubernetes.io/last-applied-configuration")


def _should_mirror(ep: Endpoints, svc: Any) -> bool:
    return (svc is not None and svc.spec.selector is None
            and ep.metadata.labels.get(LABEL_SKIP_MIRROR) != "true")


def desired_mirrored_slices(ep: Endpoints, max_eps: int) -> list[EndpointSlice]:
    """Slices (unnamed) mirroring ``ep``."""
    labels = {k: v for k, v in ep.metadata.labels.items() if k != LABEL_MANAGED_BY}
    labels[LABEL_SERVICE_NAME] = ep.metadata.name
    labels[LABEL_MANAGED_BY] = MIRRORING_MANAGED_BY
    annotations = {k: v for k, v in ep.metadata.annotations.items()
                   if k not in _DROPPED_ANNOTATIONS}
    owner = OwnerReference(api_version="v1", kind="Endpoints", name=ep.metadata.name,
                           uid=ep.metadata.uid, controller=True, block_owner_deletion=True)
    out: list[EndpointSlice] = []
    budget = MAX_MIRRORED
    for ss in ep.subsets:
        ports = tuple(EndpointPort(name=p.name, port=p.port, protocol=p.protocol,
                                   app_protocol=p.app_protocol) for p in ss.ports)
        by_family: dict[str, list[SliceEndpoint]] = {}
        for addrs, ready in ((ss.addresses, True), (ss.not_ready_addresses, False)):
            for a in addrs:
                if budget <= 0:
                    break
                budget -= 1
                fam = "IPv6" if ":" in a.ip else "IPv4"
                by_family.setdefault(fam, []).append(SliceEndpoint(
                    addresses=(a.ip,), conditions=EndpointConditions(ready=ready),
                    hostname=a.hostname or None, target_ref=a.target_ref,
                    node_name=a.node_name or None))
        for fam in sorted(by_family):
            eps = by_family[fam]
            for i in range(0, len(eps), max_eps):
                out.append(EndpointSlice(
                    metadata=ObjectMeta(generate_name=ep.metadata.name + "-",
                                        namespace=ep.metadata.namespace, labels=labels,
                                        annotations=annotations, owner_references=(owner,)),
                    address_type=fam, endpoints=tuple(eps[i:i + max_eps]), ports=ports))
    return out


class MirroringController:
    """Watch subscriber mirroring selectorless Services' Endpoints into EndpointSlices."""

    def __init__(self) -> None:
        #: (namespace, service) -> names of the mirrored slices (kept from slice events).
        self.mirrored: dict[tuple[str, str], set[str]] = {}

    def __call__(self, cluster: Cluster, ev: Event) -> None:
        if ev.kind == "EndpointSlice":
            for obj, present in ((ev.old, False), (ev.object, ev.type != "DELETED")):
                if obj is None or obj.metadata.labels.get(LABEL_MANAGED_BY) != \
                        MIRRORING_MANAGED_BY:
                    continue
                key = (obj.metadata.namespace,
                       obj.metadata.labels.get(LABEL_SERVICE_NAME, ""))
                names = self.mirrored.setdefault(key, set())
                (names.add if present else names.discard)(obj.metadata.name)
        elif ev.kind in ("Endpoints", "Service"):
            meta = ev.object.metadata
            if (meta.namespace, meta.name) == ("default", "kubernetes") and \
                    ev.type != "DELETED" and ev.kind == "Service":
                apiserver_endpoints(cluster)
            self.sync(cluster, meta.namespace, meta.name)
        elif ev.kind == "Node" and ev.type == "ADDED":
            apiserver_endpoints(cluster)

    def rebuild(self, cluster: Cluster) -> None:
        """Re-derive the mirrored-slice index from the store."""
        self.mirrored.clear()
        for sl in cluster.list("EndpointSlice"):
            if sl.metadata.labels.get(LABEL_MANAGED_BY) == MIRRORING_MANAGED_BY:
                key = (sl.metadata.namespace, sl.metadata.labels.get(LABEL_SERVICE_NAME, ""))
                self.mirrored.setdefault(key, set()).add(sl.metadata.name)

    def sync(self, cluster: Cluster, ns: str, name: str) -> int:
        known = self.mirrored.get((ns, name), set())
        ep = cluster.find("Endpoints", name, ns)
        if not known and (ep is None or ep.metadata.labels.get(LABEL_SKIP_MIRROR) == "true"):
            return 0  # the common case: the Endpoints controller's own objects
        svc = cluster.find("Service", name, ns)
        existing = sorted(
            (s for s in (cluster.find("EndpointSlice", n, ns) for n in known)
             if s is not None and s.metadata.labels.get(LABEL_MANAGED_BY) ==
             MIRRORING_MANAGED_BY),
            key=lambda s: s.metadata.name)
        want = desired_mirrored_slices(ep, cluster.config.max_endpoints_per_slice) \
            if ep is not None and _should_mirror(ep, svc) else []
        writes = 0
        for old, new in zip(existing, want, strict=False):
            merged = attrs.evolve(new, metadata=attrs.evolve(
                old.metadata, labels=new.metadata.labels,
                annotations=new.metadata.annotations,
                owner_references=new.metadata.owner_references))
            if merged != old and old.address_type == new.address_type:
                cluster.put_raw(merged)
                writes += 1
            elif old.address_type != new.address_type:
                cluster.delete_raw("EndpointSlice", old.metadata.name, ns)
                self._create(cluster, new)
                writes += 2
        for old in existing[len(want):]:
            cluster.delete_raw("EndpointSlice", old.metadata.name, ns)
            writes += 1
        for new in want[len(existing):]:
            self._create(cluster, new)
            writes += 1
        return writes

    def _create(self, cluster: Cluster, sl: EndpointSlice) -> None:
        ns = sl.metadata.namespace

        def taken(n: str) -> bool:
            return cluster.find("EndpointSlice", n, ns) is not None

        name = generate_name(cluster.config.seed, sl.metadata.generate_name, taken)
        cluster.put_raw(attrs.evolve(sl, metadata=attrs.evolve(sl.metadata, name=name)))


def apiserver_endpoints(cluster: Cluster) -> int:
    """The ``default/kubernetes`` Endpoints and EndpointSlice the apiserver itself keeps.

    kube-apiserver's endpoint reconciler (``pkg/controlplane/reconcilers``) publishes its
    advertise addresses for the selectorless ``kubernetes`` Service: an EndpointSlice named
    ``kubernetes`` (no generated suffix, only the service-name label, ``ready: true``) and an
    Endpoints object labelled skip-mirror. kservice takes the InternalIPs of the nodes labelled
    ``node-role.kubernetes.io/control-plane`` (kind: 172.18.0.2) and the Service's https
    targetPort (6443). Returns the number of writes.
    """
    svc = cluster.find("Service", "kubernetes", "default")
    if svc is None or "Node" not in cluster.kinds:
        return 0
    ips = [ip for n in cluster.list("Node")
           if "node-role.kubernetes.io/control-plane" in n.metadata.labels
           for ip in n.addresses_of("InternalIP")]
    if not ips:
        return 0
    port = next((p for p in svc.spec.ports if p.name == "https"), None)
    if port is None:
        return 0
    target = port.target_port if isinstance(port.target_port, int) and port.target_port \
        else port.port
    from kservice.models.discovery import EndpointAddress, EndpointSubset, LegacyEndpointPort

    writes = 0
    want_ep = Endpoints(
        metadata=ObjectMeta(name="kubernetes", namespace="default",
                            labels={LABEL_SKIP_MIRROR: "true"}),
        subsets=(EndpointSubset(addresses=tuple(EndpointAddress(ip=ip) for ip in ips),
                                ports=(LegacyEndpointPort("https", target, "TCP"),)),),
    )
    have = cluster.find("Endpoints", "kubernetes", "default")
    if have is None or have.subsets != want_ep.subsets:
        meta = want_ep.metadata if have is None else attrs.evolve(
            have.metadata, labels=want_ep.metadata.labels)
        cluster.put_raw(attrs.evolve(want_ep, metadata=meta))
        writes += 1
    for fam in ("IPv4", "IPv6"):
        fam_ips = [ip for ip in ips if (":" in ip) == (fam == "IPv6")]
        if not fam_ips:
            continue
        name = "kubernetes" if fam == "IPv4" else "kubernetes-ipv6"
        want = EndpointSlice(
            metadata=ObjectMeta(name=name, namespace="default",
                                labels={LABEL_SERVICE_NAME: "kubernetes"}),
            address_type=fam,
            endpoints=tuple(SliceEndpoint(addresses=(ip,),
                                          conditions=EndpointConditions(ready=True))
                            for ip in fam_ips),
            ports=(EndpointPort(name="https", port=target, protocol="TCP"),),
        )
        old = cluster.find("EndpointSlice", name, "default")
        if old is None or (old.endpoints, old.ports) != (want.endpoints, want.ports):
            meta = want.metadata if old is None else old.metadata
            cluster.put_raw(attrs.evolve(want, metadata=meta))
            writes += 1
    return writes
