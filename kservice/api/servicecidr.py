"""ServiceCIDR objects and the MetaAllocator that hands out ClusterIPs across them (KEP-1880).

What this module owns:

* :class:`ServiceCIDR` -- the ``networking.k8s.io/v1`` model (cluster-scoped) and its
  validation (``ValidateServiceCIDR``; ``spec.cidrs`` immutable);
* :class:`MetaAllocator` -- one allocator per range and family, as ``cidrallocator.go``:
  a static request goes to the *largest* range containing the IP (shortest prefix match),
  or fails with ``the provided network does not match the current range``; a dynamic
  request tries each ready range in turn (upstream iterates a Go map; we use a fixed
  order -- the flag range first, then ServiceCIDRs by name -- so runs are reproducible);
* :class:`ServiceCIDRStrategy` -- create/update/delete, including the
  ``networking.k8s.io/service-cidr-finalizer`` behaviour: deleting a ServiceCIDR whose
  addresses are still used by Services and not covered by another range leaves it
  terminating with ``Ready=False, reason OrphanIPAddress`` until they are gone.

v1.34 defaults: ``MultiCIDRServiceAllocator`` is GA (locked on) and
``DisableAllocatorDualWrite`` is GA (on), so every range -- the ``--service-cluster-ip-range``
one too -- uses the IPAddress allocator's semantics (no IPv6 65536 cap, no 20-bit flag cap).
``legacy_bitmap=True`` (see :func:`kservice.api.install_service_api`) models the older
dual-write clusters whose flag range keeps the bitmap semantics.

Approximations (honest list): IPAddress objects are not stored (``MetaAllocator.owner``
records each ``parentRef`` and :func:`ip_address_manifests` renders them); the default
``kubernetes`` ServiceCIDR object is implicit rather than stored (:func:`default_service_cidr`
builds the view ``kservice get servicecidrs`` prints).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import attrs

from kservice._frozen import to_tuple
from kservice.api._names import (
    is_dns1123_subdomain,
    is_valid_cidr,
    parse_cidr_sloppy,
    parse_ip_sloppy,
)
from kservice.api.ipalloc import IPRangeAllocator, MismatchedNetwork
from kservice.api.validation import validate_object_meta
from kservice.errors import (
    AlreadyAllocated,
    AlreadyExists,
    FieldError,
    GoLiteral,
    InvalidObject,
    RangeFull,
)
from kservice.models import ObjectMeta
from kservice.models._reader import Reader
from kservice.models._toplevel import TopLevelObject, read_metadata

if TYPE_CHECKING:
    from kservice.cluster import Cluster, Event

__all__ = [
    "DEFAULT_SERVICE_CIDR",
    "FINALIZER",
    "IP_FAMILY_LABEL",
    "MANAGED_BY_LABEL",
    "MetaAllocator",
    "ServiceCIDR",
    "ServiceCIDRCondition",
    "ServiceCIDRStrategy",
    "default_service_cidr",
    "ip_address_manifests",
    "validate_service_cidr",
    "validate_service_cidr_update",
]

#: Name of the ServiceCIDR the apiserver keeps for ``--service-cluster-ip-range``.
DEFAULT_SERVICE_CIDR = "kubernetes"
FINALIZER = "networking.k8s.io/service-cidr-finalizer"
IP_FAMILY_LABEL = "ipaddress.kubernetes.io/ip-family"
MANAGED_BY_LABEL = "ipaddress.kubernetes.io/managed-by"
_API_VERSIONS = ("networking.k8s.io/v1", "networking.k8s.io/v1beta1", "networking.k8s.io/v1alpha1")


@attrs.frozen
class ServiceCIDRCondition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> ServiceCIDRCondition:
        r.ignore("observedGeneration")
        return cls(
            type=r.str("type") or "", status=r.str("status") or "",
            reason=r.str("reason") or "", message=r.str("message") or "",
            last_transition_time=r.str("lastTransitionTime"),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.last_transition_time is not None:
            out["lastTransitionTime"] = self.last_transition_time
        out["message"] = self.message
        out["reason"] = self.reason
        out["status"] = self.status
        out["type"] = self.type
        return out


@attrs.frozen
class ServiceCIDR(TopLevelObject):
    """``networking.k8s.io/v1`` ServiceCIDR (cluster-scoped)."""

    api_version = "networking.k8s.io/v1"
    kind = "ServiceCIDR"
    read_versions = _API_VERSIONS
    version_hint = 'ServiceCIDRs are apiVersion "networking.k8s.io/v1"'

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    cidrs: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    conditions: tuple[ServiceCIDRCondition, ...] = attrs.field(default=(), converter=to_tuple)

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> ServiceCIDR:
        def spec(rr: Reader) -> tuple[str, ...]:
            return tuple(rr.str_list("cidrs") or ())

        def status(rr: Reader) -> tuple[ServiceCIDRCondition, ...]:
            return tuple(rr.objs("conditions", ServiceCIDRCondition.from_reader) or ())

        return cls._read(data, path, lambda r: cls(
            metadata=read_metadata(r),
            cidrs=r.obj("spec", spec) or (),
            conditions=r.obj("status", status) or (),
        ))

    def to_manifest(self) -> dict[str, Any]:
        return {
            **self._head(),
            "spec": {"cidrs": list(self.cidrs)} if self.cidrs else {},
            "status": ({"conditions": [c.to_manifest() for c in self.conditions]}
                       if self.conditions else {}),
        }


def default_service_cidr(cluster: Cluster) -> ServiceCIDR:
    """The ``kubernetes`` ServiceCIDR the apiserver's default-servicecidr controller keeps
    from ``--service-cluster-ip-range``, as ``kubectl get servicecidrs`` shows it.

    It is implicit in the allocators rather than stored; this view is built for reading.
    Its creation time is the ``kubernetes`` Service's (the apiserver makes both at start).
    """
    svc = cluster.find("Service", "kubernetes", "default") if "Service" in cluster.kinds \
        else None
    created = svc.metadata.creation_timestamp if svc is not None else None
    return ServiceCIDR(
        metadata=ObjectMeta(name=DEFAULT_SERVICE_CIDR, creation_timestamp=created,
                            finalizers=(FINALIZER,)),
        cidrs=tuple(cluster.config.service_subnets),
        # The default-servicecidr controller's own message (not the servicecidrs one's).
        conditions=(ServiceCIDRCondition("Ready", "True", "",
                                         "Kubernetes default Service CIDR is ready",
                                         last_transition_time=created),),
    )


def _go_spec(cidrs: tuple[str, ...]) -> GoLiteral:
    inner = "nil" if not cidrs else "{" + ", ".join(f'"{c}"' for c in cidrs) + "}"
    body = "[]string(nil)" if not cidrs else "[]string" + inner
    return GoLiteral(f"networking.ServiceCIDRSpec{{CIDRs:{body}}}")


def validate_service_cidr(obj: ServiceCIDR) -> list[FieldError]:
    """``ValidateServiceCIDR`` (pkg/apis/networking/validation)."""
    errs = validate_object_meta(obj.metadata, is_dns1123_subdomain, namespaced=False)
    path = "spec.cidrs"
    if not obj.cidrs:
        return [*errs, FieldError.required(path, "at least one CIDR required")]
    if len(obj.cidrs) > 2:
        return [*errs, FieldError.invalid(path, _go_spec(obj.cidrs), "may only hold up to 2 values")]
    for i, c in enumerate(obj.cidrs):
        errs += [FieldError.invalid(f"{path}[{i}]", c, m) for m in is_valid_cidr(c)]
    if len(obj.cidrs) == 2:
        nets = [parse_cidr_sloppy(c) for c in obj.cidrs]
        if None in nets or nets[0].version == nets[1].version:  # type: ignore[union-attr]
            errs.append(FieldError.invalid(
                path, _go_spec(obj.cidrs),
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64"))
    return errs


def validate_service_cidr_update(new: ServiceCIDR, old: ServiceCIDR) -> list[FieldError]:
    """``ValidateServiceCIDRUpdate``: cidrs are immutable except single -> dual stack.

    Adding a second CIDR (issues.k8s.io/131261) is the one transition allowed, so the
    default ServiceCIDR can follow a cluster converted to dual-stack.
    """
    errs: list[FieldError] = []
    path = "spec.cidrs"
    if len(old.cidrs) == len(new.cidrs):
        for i, c in enumerate(old.cidrs):
            if c != new.cidrs[i]:
                errs.append(FieldError.invalid(f"{path}[{i}]", new.cidrs[i], "field is immutable"))
    elif len(old.cidrs) == 1 and len(new.cidrs) == 2:
        if new.cidrs[0] != old.cidrs[0]:
            errs.append(FieldError.invalid(f"{path}[0]", new.cidrs[0], "field is immutable"))
    else:
        errs.append(FieldError.invalid(path, list(new.cidrs), "field is immutable"))
    return errs + validate_service_cidr(new)


# --------------------------------------------------------------------------- MetaAllocator


@attrs.define
class _Range:
    name: str
    allocator: IPRangeAllocator
    ready: bool = True


class MetaAllocator:
    """ClusterIPs of one family across every range (flag range + ServiceCIDR objects).

    An address handed out through one range is marked in every other range containing
    it: that is what the shared IPAddress objects give upstream, so overlapping
    ServiceCIDRs never hand out an address twice.
    """

    def __init__(self, family: str, rng: random.Random) -> None:
        self.family = family
        self.rng = rng
        self._ranges: dict[str, _Range] = {}
        #: ip -> (namespace, name) of the Service holding it (the IPAddress parentRef).
        self.owner: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ ranges
    def add_range(self, name: str, cidr: str, *, kind: str = "ipaddress") -> IPRangeAllocator:
        alloc = IPRangeAllocator(cidr, rng=self.rng, kind=kind)
        for ip in self.owner:
            if alloc.contains(ip):
                try:
                    alloc.allocate(ip)
                except (AlreadyAllocated, ValueError):
                    pass
        self._ranges[name] = _Range(name, alloc)
        return alloc

    def remove_range(self, name: str) -> None:
        self._ranges.pop(name, None)

    def set_ready(self, name: str, ready: bool) -> None:
        if name in self._ranges:
            self._ranges[name].ready = ready

    def ranges(self) -> list[tuple[str, IPRangeAllocator, bool]]:
        return [(r.name, r.allocator, r.ready) for r in self._ordered()]

    def _ordered(self) -> list[_Range]:
        first = [r for n, r in self._ranges.items() if n == DEFAULT_SERVICE_CIDR]
        rest = [self._ranges[n] for n in sorted(self._ranges) if n != DEFAULT_SERVICE_CIDR]
        return [*first, *rest]

    def primary(self) -> IPRangeAllocator | None:
        r = self._ranges.get(DEFAULT_SERVICE_CIDR)
        return r.allocator if r else None

    def covered_elsewhere(self, ip: str, excluding: str) -> bool:
        return any(r.allocator.contains(ip) and r.ready
                   for n, r in self._ranges.items() if n != excluding)

    def used_in(self, name: str) -> list[str]:
        r = self._ranges.get(name)
        if r is None:
            return []
        return [ip for ip in sorted(self.owner) if r.allocator.contains(ip)]

    # ------------------------------------------------------------------ allocation
    def _mark_others(self, ip: str, chosen: _Range) -> None:
        for r in self._ranges.values():
            if r is not chosen and r.allocator.contains(ip):
                try:
                    r.allocator.allocate(ip)
                except (AlreadyAllocated, ValueError):
                    pass

    def allocate(self, ip: str, owner: tuple[str, str] = ("", "")) -> None:
        containing = [r for r in self._ordered() if r.allocator.contains(ip) and r.ready]
        if not containing:
            raise MismatchedNetwork()
        # Shortest prefix match: the largest range contains all the others.
        chosen = min(containing, key=lambda r: r.allocator.network.prefixlen)
        if ip in self.owner:
            raise AlreadyAllocated("IP", range=chosen.allocator.cidr)
        chosen.allocator.allocate(ip)
        self._mark_others(ip, chosen)
        self.owner[str(_canonical(ip))] = owner

    def allocate_next(self, owner: tuple[str, str] = ("", "")) -> str:
        for r in self._ordered():
            if not r.ready:
                continue
            try:
                ip = r.allocator.allocate_next()
            except RangeFull:
                continue
            self._mark_others(ip, r)
            self.owner[ip] = owner
            return ip
        raise RangeFull()

    def release(self, ip: str) -> None:
        for r in self._ranges.values():
            r.allocator.release(ip)
        self.owner.pop(str(_canonical(ip)), None)

    def has(self, ip: str) -> bool:
        return str(_canonical(ip)) in self.owner

    @property
    def free_count(self) -> int:
        """Free addresses across ranges (overlaps counted once per range: an upper bound)."""
        return sum(r.allocator.free_count for r in self._ranges.values() if r.ready)


def _canonical(ip: str) -> object:
    parsed = parse_ip_sloppy(ip)
    return parsed if parsed is not None else ip


def ip_address_manifests(allocators: dict[str, MetaAllocator]) -> list[dict[str, Any]]:
    """The ``networking.k8s.io/v1`` IPAddress objects the allocators stand for.

    One per allocated ClusterIP, named by the IP in canonical form, with the parentRef and
    labels the IPAddress allocator writes (reference vector 68). Sorted by address.
    """
    out: list[tuple[Any, dict[str, Any]]] = []
    for fam, meta in allocators.items():
        for ip, (ns, name) in meta.owner.items():
            parsed = parse_ip_sloppy(ip)
            out.append(((parsed.version if parsed else 0, parsed), {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IPAddress",
                "metadata": {"name": ip, "labels": {
                    IP_FAMILY_LABEL: fam, MANAGED_BY_LABEL: "ipallocator.k8s.io"}},
                "spec": {"parentRef": {"group": "", "resource": "services",
                                       "namespace": ns, "name": name}},
            }))
    out.sort(key=lambda t: t[0])  # type: ignore[arg-type,return-value]
    return [m for _, m in out]


# --------------------------------------------------------------------------- strategy


class ServiceCIDRStrategy:
    """Store strategy for ``ServiceCIDR``: validation, pool extension, finalizer."""

    kind = "ServiceCIDR"
    api_version = "networking.k8s.io/v1"
    resource = "servicecidrs"
    namespaced = False

    def __init__(self, state_key: str) -> None:
        self._state_key = state_key

    def _state(self, cluster: Cluster) -> Any:
        return cluster.extensions[self._state_key]

    def decode(self, data: Any, path: str = "") -> ServiceCIDR:
        return ServiceCIDR.from_manifest(data, path)

    def _ready(self) -> tuple[ServiceCIDRCondition, ...]:
        return (ServiceCIDRCondition("Ready", "True", "", "Kubernetes Service CIDR is ready"),)

    def create(self, cluster: Cluster, obj: ServiceCIDR) -> ServiceCIDR:
        if obj.metadata.name == DEFAULT_SERVICE_CIDR:
            # The apiserver owns it (built from --service-cluster-ip-range); here it is
            # implicit in the allocators rather than a stored object.
            raise AlreadyExists("servicecidrs", obj.metadata.name)
        errs = validate_service_cidr(obj)
        if errs:
            raise InvalidObject("ServiceCIDR", obj.metadata.name, errs)
        obj = attrs.evolve(
            obj,
            metadata=attrs.evolve(obj.metadata, finalizers=tuple(
                dict.fromkeys((*obj.metadata.finalizers, FINALIZER)))),
            conditions=self._ready(),
        )
        self._install(cluster, obj)
        return obj

    def _install(self, cluster: Cluster, obj: ServiceCIDR) -> None:
        state = self._state(cluster)
        for c in obj.cidrs:
            net = parse_cidr_sloppy(c)
            if net is None:
                continue
            fam = "IPv6" if net.version == 6 else "IPv4"
            meta = state.ip.get(fam)
            if meta is None:
                # A family the flags did not configure: the pool exists, but Services
                # still cannot request it (initIPFamilyFields checks the flag families).
                meta = state.ip[fam] = MetaAllocator(fam, state.rng)
            meta.add_range(obj.metadata.name, str(net))
            if obj.metadata.deletion_timestamp is not None:
                meta.set_ready(obj.metadata.name, False)

    def update(self, cluster: Cluster, old: ServiceCIDR, new: ServiceCIDR) -> ServiceCIDR:
        new = attrs.evolve(new, metadata=attrs.evolve(
            new.metadata, uid=old.metadata.uid, creation_timestamp=old.metadata.creation_timestamp,
            resource_version=old.metadata.resource_version,
            finalizers=new.metadata.finalizers or old.metadata.finalizers,
            deletion_timestamp=old.metadata.deletion_timestamp), conditions=old.conditions)
        errs = validate_service_cidr_update(new, old)
        if errs:
            raise InvalidObject("ServiceCIDR", new.metadata.name, errs)
        if new.cidrs != old.cidrs:
            self._install(cluster, new)  # single -> dual stack: the new family's pool
        return new

    def orphans(self, cluster: Cluster, obj: ServiceCIDR) -> list[str]:
        """Addresses in use inside ``obj`` that no other ready range covers."""
        state = self._state(cluster)
        out: list[str] = []
        for meta in state.ip.values():
            for ip in meta.used_in(obj.metadata.name):
                if not meta.covered_elsewhere(ip, obj.metadata.name):
                    out.append(ip)
        return out

    def delete(self, cluster: Cluster, obj: ServiceCIDR) -> None:
        state = self._state(cluster)
        for meta in state.ip.values():
            meta.set_ready(obj.metadata.name, False)  # no new allocations from it
        if self.orphans(cluster, obj):
            # The finalizer keeps it: re-stored terminating once the DELETE event passes.
            state.terminating[obj.metadata.name] = attrs.evolve(
                obj,
                metadata=attrs.evolve(obj.metadata, deletion_timestamp=cluster.clock().strftime(
                    "%Y-%m-%dT%H:%M:%SZ"), finalizers=tuple(
                    dict.fromkeys((*obj.metadata.finalizers, FINALIZER)))),
                conditions=(ServiceCIDRCondition(
                    "Ready", "False", "OrphanIPAddress",
                    "There are still IPAddresses referencing the ServiceCIDR, please remove "
                    "them or create a new ServiceCIDR"),),
            )
            return
        for meta in state.ip.values():
            meta.remove_range(obj.metadata.name)

    def on_event(self, cluster: Cluster, event: Event) -> None:
        """Finalizer controller: re-store terminating CIDRs; drop them once orphan-free."""
        state = self._state(cluster)
        if event.kind == self.kind and event.type == "DELETED":
            pending = state.terminating.get(event.object.metadata.name)
            if pending is not None and cluster.find(self.kind, pending.metadata.name, "") is None:
                cluster.put_raw(pending)
            return
        if event.kind == "Service" and state.terminating:
            for name, obj in list(state.terminating.items()):
                if not self.orphans(cluster, obj):
                    del state.terminating[name]
                    for meta in state.ip.values():
                        meta.remove_range(name)
                    cluster.delete_raw(self.kind, name, "")

    def rebuild(self, cluster: Cluster) -> None:
        # Ranges are re-added by the Service strategy's rebuild (it owns the allocators).
        pass
