"""The EndpointSlice reconciler: existing slices + desired endpoints -> create/update/delete.

A port of ``pkg/controller/endpointslice`` ``reconciler.go`` (``reconcile``,
``reconcileByAddressType``, ``reconcileByPortMapping``, ``getSliceToFill``, ``finalize``).
It minimises churn the way upstream does:

1. Existing slices keep the endpoints that are still desired (updated in place when their
   conditions/hints changed); slices left empty are deleted; slices whose port mapping is no
   longer desired are deleted.
2. New endpoints fill the slices already being updated, fullest first, up to the maximum.
3. What is left goes, if fewer than the maximum, into the unchanged slice that it fills
   closest to full; otherwise into new slices of up to the maximum each.
4. An address type with no slices left gets one placeholder slice (no endpoints, no ports).
5. Creates and deletes in the same pass become updates of the slices being deleted.

Where upstream takes a Go-map order (``PopAny``, ``UnsortedList``), kservice takes insertion
order (pods by name) and slice-name order, so results are repeatable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kservice.endpoints._desired import PortsKey, endpoint_identity
from kservice.models.discovery import EndpointSlice, SliceEndpoint
from kservice.models.meta import ObjectMeta, OwnerReference
from kservice.models.service import Service

__all__ = [
    "LABEL_HEADLESS",
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "MANAGED_BY",
    "SlicePlan",
    "plan_slices",
    "slice_labels",
]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
MANAGED_BY = "endpointslice-controller.k8s.io"
_RESERVED = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)


@attrs.frozen
class SlicePlan:
    #: New slices, ``metadata.name`` empty (the caller names them from ``generateName``).
    create: tuple[EndpointSlice, ...] = ()
    update: tuple[EndpointSlice, ...] = ()
    delete: tuple[EndpointSlice, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def slice_labels(svc: Service) -> dict[str, str]:
    """``setEndpointSliceLabels``: the Service's labels (reserved keys dropped) + ours."""
    labels = {k: v for k, v in svc.metadata.labels.items() if k not in _RESERVED}
    labels[LABEL_SERVICE_NAME] = svc.metadata.name
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    if svc.spec.cluster_ip in ("None", "", None):
        labels[LABEL_HEADLESS] = ""
    return labels


def owner_reference(svc: Service) -> OwnerReference:
    return OwnerReference(api_version="v1", kind="Service", name=svc.metadata.name,
                          uid=svc.metadata.uid, controller=True, block_owner_deletion=True)


def owned_by(sl: EndpointSlice, svc: Service) -> bool:
    return any(r.kind == "Service" and r.uid == svc.metadata.uid
               for r in sl.metadata.owner_references)


def _new_slice(svc: Service, address_type: str, ports: PortsKey) -> EndpointSlice:
    base = svc.metadata.name + "-"
    return EndpointSlice(
        metadata=ObjectMeta(
            generate_name=base, namespace=svc.metadata.namespace, labels=slice_labels(svc),
            owner_references=(owner_reference(svc),),
        ),
        address_type=address_type,
        ports=ports,
    )


def _ports_key(sl: EndpointSlice) -> PortsKey:
    return tuple(sl.ports)


def _by_port_mapping(
    svc: Service, existing: list[EndpointSlice], desired: list[SliceEndpoint],
    ports: PortsKey, address_type: str, max_eps: int,
) -> tuple[list[EndpointSlice], list[EndpointSlice], list[EndpointSlice]]:
    want: dict[Any, SliceEndpoint] = {}
    for ep in desired:
        want.setdefault(endpoint_identity(ep), ep)
    labels = slice_labels(svc)
    by_name: dict[str, EndpointSlice] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []
    for sl in sorted(existing, key=lambda s: s.metadata.name):
        name = sl.metadata.name
        by_name[name] = sl
        new_eps: list[SliceEndpoint] = []
        updated = False
        for ep in sl.endpoints:
            got = want.pop(endpoint_identity(ep), None)
            if got is not None:
                new_eps.append(got)
                if got is not ep and got != ep:
                    updated = True
        labels_changed = dict(sl.metadata.labels) != labels
        if updated or len(new_eps) != len(sl.endpoints):
            if not new_eps:
                to_delete.append(name)
            else:
                by_name[name] = attrs.evolve(
                    sl, endpoints=tuple(new_eps),
                    metadata=attrs.evolve(sl.metadata, labels=labels))
                to_update.append(name)
        elif labels_changed:
            by_name[name] = attrs.evolve(sl, metadata=attrs.evolve(sl.metadata, labels=labels))
            to_update.append(name)
        else:
            unchanged.append(name)

    remaining = list(want.values())
    # 2. fill slices being updated, fullest first.
    if remaining and to_update:
        for name in sorted(to_update, key=lambda n: (-len(by_name[n].endpoints), n)):
            sl = by_name[name]
            room = max_eps - len(sl.endpoints)
            if room > 0 and remaining:
                take, remaining = remaining[:room], remaining[room:]
                by_name[name] = attrs.evolve(sl, endpoints=sl.endpoints + tuple(take))
    # 3. leftovers: closest-to-full unchanged slice, else new slices.
    creates: list[EndpointSlice] = []
    while remaining:
        target: EndpointSlice | None = None
        if len(remaining) < max_eps and unchanged:
            closest = max_eps
            for name in unchanged:
                diff = max_eps - (len(remaining) + len(by_name[name].endpoints))
                if 0 <= diff < closest:
                    closest, target = diff, by_name[name]
                    if diff == 0:
                        break
        if target is None:
            target = _new_slice(svc, address_type, ports)
        room = max_eps - len(target.endpoints)
        take, remaining = remaining[:room], remaining[room:]
        target = attrs.evolve(target, endpoints=target.endpoints + tuple(take))
        if target.metadata.name:
            by_name[target.metadata.name] = target
            unchanged.remove(target.metadata.name)
            to_update.append(target.metadata.name)
        else:
            creates.append(target)
    return (creates, [by_name[n] for n in sorted(set(to_update))],
            [by_name[n] for n in sorted(set(to_delete))])


def plan_slices(
    svc: Service,
    existing: list[EndpointSlice],
    desired: Mapping[str, Mapping[PortsKey, list[SliceEndpoint]]],
    max_eps: int,
) -> SlicePlan:
    """Plan the writes for one Service. ``desired`` maps address type -> port mapping ->
    endpoints; its keys are the address types the Service supports."""
    creates: list[EndpointSlice] = []
    updates: list[EndpointSlice] = []
    deletes: list[EndpointSlice] = []
    by_type: dict[str, list[EndpointSlice]] = {}
    for sl in existing:
        if sl.address_type not in desired:
            deletes.append(sl)  # the Service no longer has this family
        else:
            by_type.setdefault(sl.address_type, []).append(sl)
    for at in desired:
        at_existing = by_type.get(at, [])
        groups = desired[at]
        by_key: dict[PortsKey, list[EndpointSlice]] = {}
        for sl in at_existing:
            by_key.setdefault(_ports_key(sl), []).append(sl)
        at_create: list[EndpointSlice] = []
        at_update: list[EndpointSlice] = []
        at_delete: list[EndpointSlice] = []
        for key, eps in groups.items():
            c, u, d = _by_port_mapping(svc, by_key.pop(key, []), eps, key, at, max_eps)
            at_create += c
            at_update += u
            at_delete += d
        for slices in by_key.values():
            at_delete += slices  # port mapping no longer desired
        if len(at_existing) == len(at_delete) and not at_create:
            placeholder = _new_slice(svc, at, ())
            if len(at_delete) == 1 and _is_placeholder_equivalent(at_delete[0], placeholder):
                at_delete = []
            else:
                at_create.append(placeholder)
        # finalize: turn create+delete pairs into updates of the slices being deleted.
        at_delete.sort(key=lambda s: s.metadata.name)
        i = 0
        while i < len(at_delete) and at_create:
            old = at_delete[i]
            if old.address_type == at and owned_by(old, svc):
                new = at_create.pop()
                at_update.append(attrs.evolve(
                    new, metadata=attrs.evolve(old.metadata, labels=new.metadata.labels,
                                               owner_references=new.metadata.owner_references)))
                at_delete.pop(i)
            else:
                i += 1
        creates += at_create
        updates += at_update
        deletes += at_delete
    return SlicePlan(tuple(creates), tuple(updates), tuple(deletes))


def _is_placeholder_equivalent(sl: EndpointSlice, placeholder: EndpointSlice) -> bool:
    return (not sl.endpoints and not sl.ports and sl.address_type == placeholder.address_type
            and dict(sl.metadata.labels) == dict(placeholder.metadata.labels))
