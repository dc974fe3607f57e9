"""The Service registry: kube-apiserver's create/update/delete pipeline for kind Service.

Theory of operation (pkg/registry/core/service/storage, generic registry store)
-------------------------------------------------------------------------------
Create::

    v1 defaulting -> normalizeClusterIPs -> allocateCreate
        (initIPFamilyFields [422 short-circuit] -> ClusterIP(s) -> nodePorts, HC nodePort)
    -> PrepareForCreate (wipe status) -> ValidateService -> store

Update::

    v1 defaulting -> patchAllocatedValues -> normalizeClusterIPs -> allocateUpdate
        (initIPFamilyFields -> ClusterIP up/downgrade -> nodePorts, HC; releases deferred)
    -> PrepareForUpdate (keep status, dropTypeDependentFields) -> ValidateServiceUpdate

Allocation errors therefore short-circuit validation: a NodePort Service with
``nodePort: 80`` *and* a bad port name reports only the nodePort error. Anything failing
after an allocation rolls the allocations back; releases of the old object's values are
deferred until the write is certain (a failed update never frees what the old object holds).

Every step is a pure function of Service models (``default_service``,
:func:`normalize_cluster_ips`, :func:`patch_allocated_values`,
:func:`drop_type_dependent_fields`, ``validate_service``...) so property tests and other
components can call them directly; :class:`ServiceStrategy` strings them together with the
allocators kept in ``cluster.extensions``.
"""

from __future__ import annotations

import random
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from kservice.api.clusterconfig import validate_service_cluster_ip_ranges
from kservice.api.defaults import default_service, externally_accessible, needs_health_check
from kservice.api.families import init_ip_family_fields, is_matching_prefer_dual_stack
from kservice.api.ipalloc import MismatchedNetwork
from kservice.api.portalloc import PortAllocator
from kservice.api.servicecidr import DEFAULT_SERVICE_CIDR, MetaAllocator, ServiceCIDR
from kservice.api.validation import (
    validate_service,
    validate_service_status_update,
    validate_service_update,
)
from kservice.config import ClusterConfig
from kservice.errors import (
    AllocationError,
    FieldError,
    InternalError,
    InvalidInput,
    InvalidObject,
)
from kservice.models import ObjectMeta, Service, ServicePort, ServiceStatus

if TYPE_CHECKING:
    from kservice.cluster import Cluster

__all__ = [
    "APISERVER_PANIC_MESSAGE",
    "STATE_KEY",
    "ApiserverPanic",
    "ServiceAPIState",
    "ServiceStrategy",
    "UnknownServerError",
    "allocator_state",
    "drop_type_dependent_fields",
    "kubernetes_service",
    "normalize_cluster_ips",
    "patch_allocated_values",
]

#: Key of :class:`ServiceAPIState` in ``cluster.extensions``.
STATE_KEY = "kservice.api"


class UnknownServerError(InternalError):
    """A plain Go error escaping the registry: HTTP 500 whose message is the error text.

    apiserver's ``ErrorToAPIStatus`` does not add ``Internal error occurred:`` to errors
    that are not API statuses (e.g. ``duplicate nodePort: {TCP 30080}`` on update).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.message


#: The plain-text body of ``WithPanicRecovery``'s HTTP 500 (k8s.io/apiserver
#: pkg/server/filters/wrap.go); a panic is not a Status. Whether a client receives this body
#: or only a reset stream (``HandleCrash`` re-panics after writing it) is not verified.
APISERVER_PANIC_MESSAGE = "This request caused apiserver to panic. Look in the logs for details."


class ApiserverPanic(UnknownServerError):
    """A Go runtime panic in the registry, recovered by the apiserver's handler chain.

    The request fails with HTTP 500 and :data:`APISERVER_PANIC_MESSAGE`; the store is not
    written and the deferred ``allocateUpdate`` revert gives back what the request
    allocated. ``cause`` is what kube-apiserver would log (not part of the response).
    """

    def __init__(self, cause: str) -> None:
        super().__init__(APISERVER_PANIC_MESSAGE)
        self.cause = cause


# --------------------------------------------------------------------------- state


@attrs.define
class ServiceAPIState:
    """Allocators of one cluster (re-derivable from stored objects at any time)."""

    config: ClusterConfig
    rng: random.Random
    #: Service families of the cluster, primary first (``--service-cluster-ip-range``).
    families: tuple[str, ...]
    ip: dict[str, MetaAllocator]
    node_ports: PortAllocator
    #: ServiceCIDRs held back by their finalizer (name -> terminating object).
    terminating: dict[str, ServiceCIDR] = attrs.field(factory=dict)

    #: Whether the flag range keeps the legacy bitmap semantics (pre-1.34 dual-write).
    legacy_bitmap: bool = False

    @classmethod
    def from_config(
        cls, config: ClusterConfig, rng: random.Random | None = None, *, legacy_bitmap: bool = False
    ) -> ServiceAPIState:
        rng = rng or random.Random(config.seed)
        # kube-apiserver refuses to start on bad ranges; so does the emulated one.
        validate_service_cluster_ip_ranges(config.service_subnets, legacy_bitmap=legacy_bitmap)
        first, last = config.node_port_range
        if not 0 < first <= last <= 65535:
            raise InvalidInput(
                f"invalid --service-node-port-range {first}-{last}: want 1 <= first <= last <= 65535")
        ip: dict[str, MetaAllocator] = {}
        families = config.families
        for cidr, fam in zip(config.service_subnets, families, strict=True):
            meta = MetaAllocator(fam, rng)
            meta.add_range(DEFAULT_SERVICE_CIDR, cidr,
                           kind="bitmap" if legacy_bitmap else "ipaddress")
            ip[fam] = meta
        ports = PortAllocator.from_range(first, last, rng=rng)
        return cls(config, rng, families, ip, ports, legacy_bitmap=legacy_bitmap)

    def reseed(self, salt: int) -> None:
        # Per-request seeding from (seed, resourceVersion): the same history yields the same
        # addresses even across processes (the CLI rebuilds the cluster on every call).
        self.rng.seed(self.config.seed * 1_000_003 + salt)


def allocator_state(cluster: Cluster) -> ServiceAPIState:
    """The cluster's :class:`ServiceAPIState` (``install_service_api`` creates it)."""
    return cluster.extensions[STATE_KEY]  # type: ignore[no-any-return]


class _Txn:
    """Allocations of one request: reverted on failure; deferred releases on commit."""

    def __init__(self, state: ServiceAPIState) -> None:
        self.state = state
        self.ips: list[tuple[str, str]] = []
        self.ports: list[int] = []
        self.release_ips: list[tuple[str, str]] = []
        self.release_ports: list[int] = []

    def alloc_port(self, port: int) -> None:
        self.state.node_ports.allocate(port)
        self.ports.append(port)

    def alloc_next_port(self) -> int:
        port = self.state.node_ports.allocate_next()
        self.ports.append(port)
        return port

    def revert(self) -> None:
        for fam, ip in self.ips:
            self.state.ip[fam].release(ip)
        for port in self.ports:
            self.state.node_ports.release(port)
        self.ips.clear()
        self.ports.clear()

    def commit(self) -> None:
        for fam, ip in self.release_ips:
            if fam in self.state.ip:
                self.state.ip[fam].release(ip)
        for port in self.release_ports:
            self.state.node_ports.release(port)

    def __enter__(self) -> _Txn:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Any failure (an invalid object, a full range, even KeyboardInterrupt) gives back
        # what this request allocated; only success applies the deferred releases.
        if exc_type is None:
            self.commit()
        else:
            self.revert()


# --------------------------------------------------------------------------- pure steps


def needs_cluster_ip(svc: Service) -> bool:
    return svc.spec.type != "ExternalName"


def needs_node_port(svc: Service) -> bool:
    return svc.spec.type in ("NodePort", "LoadBalancer")


def _should_allocate_node_ports(svc: Service) -> bool:
    if svc.spec.type == "NodePort":
        return True
    if svc.spec.type == "LoadBalancer":
        return svc.spec.allocate_load_balancer_node_ports is not False
    return False


def normalize_cluster_ips(new: Service, old: Service | None = None) -> Service:
    """``normalizeClusterIPs``: reconcile the singular and plural clusterIP fields."""
    ip, ips = new.spec.cluster_ip or "", new.spec.cluster_ips
    if old is None:
        # An old client setting only the singular field gets the plural filled in.
        if ip and not ips:
            return new.evolve_spec(cluster_ips=(ip,))
        return new
    old_ip, old_ips = old.spec.cluster_ip or "", old.spec.cluster_ips
    # An old client patching some other field omits clusterIPs: keep the stored ones.
    if old_ips and not ips and old_ip == ip:
        ips = old_ips
    if old_ip != ip:
        # Clearing clusterIP with clusterIPs untouched clears both on the user's behalf.
        if old_ip and not ip and ips == old_ips:
            ips = ()
        # A changed (not cleared) clusterIP with clusterIPs untouched: the plural follows,
        # and validation then reports "may not change once set" against the new value.
        if ip and ips == old_ips:
            ips = (ip,)
    return new.evolve_spec(cluster_ips=ips) if ips != new.spec.cluster_ips else new


def patch_allocated_values(new: Service, old: Service) -> Service:
    """``patchAllocatedValues``: re-applying the creation YAML keeps allocated values."""
    spec = new.spec
    changes: dict[str, Any] = {}
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.cluster_ip:
            changes["cluster_ip"] = old.spec.cluster_ip
        if not spec.cluster_ips and old.spec.cluster_ips:
            changes["cluster_ips"] = old.spec.cluster_ips
    if needs_node_port(old) and needs_node_port(new):
        old_used = {p.node_port for p in old.spec.ports if p.node_port}
        new_used = {p.node_port for p in spec.ports if p.node_port}
        used = old_used & new_used
        by_name = {p.name: p.node_port for p in old.spec.ports}
        ports = []
        for p in spec.ports:
            if p.node_port == 0:
                val = by_name.get(p.name, 0)
                if val not in used:
                    p = attrs.evolve(p, node_port=val)
            ports.append(p)
        changes["ports"] = tuple(ports)
    if (needs_health_check(old) and needs_health_check(new)
            and spec.health_check_node_port == 0):
        changes["health_check_node_port"] = old.spec.health_check_node_port
    return new.evolve_spec(**changes) if changes else new


def drop_type_dependent_fields(new: Service, old: Service) -> Service:
    """``dropTypeDependentFields``: wipe fields the new type no longer uses.

    A field is wiped only if the user did not also change it -- a changed value is left
    for validation to refuse.
    """
    spec, ospec = new.spec, old.spec
    changes: dict[str, Any] = {}
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if spec.cluster_ips == ospec.cluster_ips:
            changes["cluster_ip"] = None
            changes["cluster_ips"] = ()
        if spec.ip_families == ospec.ip_families:
            changes["ip_families"] = ()
        if spec.ip_family_policy == ospec.ip_family_policy:
            changes["ip_family_policy"] = None
    if needs_node_port(old) and not needs_node_port(new):
        # Users may add, remove or edit ports as long as no net-new nodePort appears.
        old_np = {p.node_port for p in ospec.ports if p.node_port}
        new_np = {p.node_port for p in spec.ports if p.node_port}
        if new_np <= old_np:
            changes["ports"] = tuple(attrs.evolve(p, node_port=0) for p in spec.ports)
    if (needs_health_check(old) and not needs_health_check(new)
            and spec.health_check_node_port == ospec.health_check_node_port):
        changes["health_check_node_port"] = 0
    if ospec.type == "LoadBalancer" and spec.type != "LoadBalancer":
        if (spec.allocate_load_balancer_node_ports is not None
                and ospec.allocate_load_balancer_node_ports is not None
                and spec.allocate_load_balancer_node_ports == ospec.allocate_load_balancer_node_ports):
            changes["allocate_load_balancer_node_ports"] = None
        if spec.load_balancer_class == ospec.load_balancer_class:
            changes["load_balancer_class"] = None
    if externally_accessible(old) and not externally_accessible(new):
        if spec.external_traffic_policy == ospec.external_traffic_policy:
            changes["external_traffic_policy"] = None
    out = new.evolve_spec(**changes) if changes else new
    if ospec.type == "LoadBalancer" and spec.type != "LoadBalancer":
        # The apiserver refuses LB status on a non-LB Service, so it is cleared here.
        out = attrs.evolve(out, status=ServiceStatus())
    return out


# --------------------------------------------------------------------------- allocation


def _owner(svc: Service) -> tuple[str, str]:
    return (svc.metadata.namespace, svc.metadata.name)


def _alloc_ips(
    svc: Service, to_alloc: list[tuple[str, str]], txn: _Txn
) -> dict[str, str]:
    """``allocIPs``: explicit IPs (422 on failure) or dynamic ones (500 when full).

    Upstream looks the family up in ``serviceIPAllocatorsByFamily`` ("should always be
    there, as we pre validate"). That map holds the ``--service-cluster-ip-range`` families
    only -- ``state.families``; a ServiceCIDR of another family adds a pool to ``state.ip``
    but no entry there. Pre-validation does not cover every path: a headful Service updated
    to headless + selectorless with a dual policy gets both families from
    ``initIPFamilyFields`` even on a single-stack cluster, and ``updateClusterIPs`` (which
    bails out early only when the *old* Service is headless) treats that as an upgrade.
    The lookup then yields a nil allocator and the call on it panics.
    """
    allocated: dict[str, str] = {}
    for fam, ip in to_alloc:
        if fam not in txn.state.families:
            raise ApiserverPanic(
                "runtime error: invalid memory address or nil pointer dereference "
                f"(allocIPs: no {fam} allocator on this cluster)")
        meta = txn.state.ip[fam]
        if not ip:
            try:
                got = meta.allocate_next(_owner(svc))
            except AllocationError as e:
                raise InternalError(f"failed to allocate a serviceIP: {e.message}") from None
            txn.ips.append((fam, got))
            allocated[fam] = got
        else:
            try:
                meta.allocate(ip, _owner(svc))
            except (AllocationError, MismatchedNetwork) as e:
                raise InvalidObject("Service", svc.metadata.name, [FieldError.invalid(
                    "spec.clusterIPs", list(svc.spec.cluster_ips),
                    f"failed to allocate IP {ip}: {e.message}")]) from None
            txn.ips.append((fam, ip))
            allocated[fam] = ip
    return allocated


def _alloc_cluster_ips(svc: Service, txn: _Txn) -> Service:
    """``allocClusterIPs``: fill every family's IP (none for ExternalName or headless)."""
    spec = svc.spec
    if spec.type == "ExternalName":
        return svc
    if spec.cluster_ips[:1] == ("None",):
        return svc
    to_alloc = [
        (fam, spec.cluster_ips[i] if i < len(spec.cluster_ips) else "")
        for i, fam in enumerate(spec.ip_families)
    ]
    allocated = _alloc_ips(svc, to_alloc, txn)
    ips = list(spec.cluster_ips)
    for i, fam in enumerate(spec.ip_families):
        if fam in allocated:
            while len(ips) <= i:
                ips.append("")
            ips[i] = allocated[fam]
    return svc.evolve_spec(cluster_ips=tuple(ips), cluster_ip=ips[0] if ips else spec.cluster_ip)


def _invalid_node_port(svc: Service, i: int, port: int, err: AllocationError) -> InvalidObject:
    return InvalidObject("Service", svc.metadata.name, [
        FieldError.invalid(f"spec.ports[{i}].nodePort", port, err.message)])


def _init_node_ports(svc: Service, txn: _Txn) -> Service:
    """``initNodePorts`` (create): ports with equal ``port`` numbers share one nodePort."""
    by_port: dict[int, int] = {}
    ports = list(svc.spec.ports)
    for i, sp in enumerate(ports):
        if sp.node_port == 0 and not _should_allocate_node_ports(svc):
            continue  # no new ports, but explicit requests are honoured
        shared = by_port.get(sp.port, 0)
        if shared == 0:
            requested = next(
                (p.node_port for p in ports if p.port == sp.port and p.node_port), 0)
            if requested:
                try:
                    txn.alloc_port(requested)
                except AllocationError as e:
                    raise _invalid_node_port(svc, i, requested, e) from None
                ports[i] = attrs.evolve(sp, node_port=requested)
                by_port[sp.port] = requested
            else:
                try:
                    np = txn.alloc_next_port()
                except AllocationError as e:
                    raise InternalError(f"failed to allocate a nodePort: {e.message}") from None
                ports[i] = attrs.evolve(sp, node_port=np)
                by_port[sp.port] = np
        elif sp.node_port != shared:
            if sp.node_port == 0:
                ports[i] = attrs.evolve(sp, node_port=shared)
            else:
                try:
                    txn.alloc_port(sp.node_port)
                except AllocationError as e:
                    raise _invalid_node_port(svc, i, sp.node_port, e) from None
    return svc.evolve_spec(ports=tuple(ports))


def _alloc_health_check_node_port(svc: Service, txn: _Txn) -> Service:
    hc = svc.spec.health_check_node_port
    if hc:
        try:
            txn.alloc_port(hc)
        except AllocationError as e:
            raise InternalError(
                f"failed to allocate requested HealthCheck NodePort {hc}: {e.message}") from None
        return svc
    try:
        hc = txn.alloc_next_port()
    except AllocationError as e:
        # Upstream prints the failed result, 0.
        raise InternalError(f"failed to allocate a HealthCheck NodePort 0: {e.message}") from None
    return svc.evolve_spec(health_check_node_port=hc)


def _update_cluster_ips(new: Service, old: Service, txn: _Txn) -> Service:
    """``updateClusterIPs``: type changes and single/dual-stack up/downgrades."""
    if is_matching_prefer_dual_stack(new, old):
        return new
    if old.spec.type == "ExternalName" and new.spec.type != "ExternalName":
        return _alloc_cluster_ips(new, txn)
    if old.spec.cluster_ips[:1] == ("None",):
        return new
    if old.spec.type != "ExternalName" and new.spec.type == "ExternalName":
        for i, fam in enumerate(old.spec.ip_families):
            if i < len(old.spec.cluster_ips):
                txn.release_ips.append((fam, old.spec.cluster_ips[i]))
        return new
    ofams, nfams = old.spec.ip_families, new.spec.ip_families
    if len(ofams) == 1 and len(nfams) == 2:
        ips = list(new.spec.cluster_ips)
        if len(ips) < 2:
            ips.append("")
        svc = new.evolve_spec(cluster_ips=tuple(ips))
        allocated = _alloc_ips(svc, [(nfams[1], ips[1])], txn)
        ips[1] = allocated[nfams[1]]
        return svc.evolve_spec(cluster_ips=tuple(ips))
    if len(ofams) == 2 and len(nfams) == 1:
        if len(old.spec.cluster_ips) > 1:
            txn.release_ips.append((ofams[1], old.spec.cluster_ips[1]))
    return new


def _update_node_ports(new: Service, old: Service, txn: _Txn) -> Service:
    """``txnUpdateNodePorts``: per-port allocation on update (no sharing by port number)."""
    old_numbers = [p.node_port for p in old.spec.ports if p.node_port]
    if needs_node_port(old) and new.spec.type in ("ExternalName", "ClusterIP"):
        txn.release_ports.extend(old_numbers)
    if needs_node_port(new):
        ports = list(new.spec.ports)
        seen: list[tuple[str | None, int]] = []
        allocated_here: set[int] = set()
        for i, sp in enumerate(ports):
            if sp.node_port == 0 and not _should_allocate_node_ports(new):
                continue
            np = sp.node_port
            if np:
                if np not in old_numbers and np not in allocated_here:
                    try:
                        txn.alloc_port(np)
                    except AllocationError as e:
                        raise _invalid_node_port(new, i, np, e) from None
                    allocated_here.add(np)
            else:
                try:
                    np = txn.alloc_next_port()
                except AllocationError as e:
                    raise InternalError(f"failed to allocate a nodePort: {e.message}") from None
                ports[i] = attrs.evolve(sp, node_port=np)
            if (sp.protocol, np) in seen:
                # A raw Go error: HTTP 500 with just this text.
                raise UnknownServerError(f"duplicate nodePort: {{{sp.protocol} {np}}}")
            seen.append((sp.protocol, np))
        new = new.evolve_spec(ports=tuple(ports))
        new_numbers = {p.node_port for p in new.spec.ports if p.node_port}
        txn.release_ports.extend(n for n in old_numbers if n not in new_numbers)
    # Health check node port transitions.
    needed, needs = needs_health_check(old), needs_health_check(new)
    if not needed and needs:
        new = _alloc_health_check_node_port(new, txn)
    elif needed and not needs:
        txn.release_ports.append(old.spec.health_check_node_port)
    return new


def _release_all(state: ServiceAPIState, svc: Service) -> None:
    spec = svc.spec
    if spec.type != "ExternalName" and spec.cluster_ips[:1] != ("None",):
        for i, fam in enumerate(spec.ip_families):
            if i < len(spec.cluster_ips) and fam in state.ip:
                state.ip[fam].release(spec.cluster_ips[i])
    for p in spec.ports:
        if p.node_port:
            state.node_ports.release(p.node_port)
    if needs_health_check(svc) and spec.health_check_node_port > 0:
        state.node_ports.release(spec.health_check_node_port)


# --------------------------------------------------------------------------- strategy


class ServiceStrategy:
    """``kservice.cluster.Strategy`` for kind Service."""

    kind = "Service"
    api_version = "v1"
    resource = "services"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Service:
        return Service.from_manifest(data, path)

    def _state(self, cluster: Cluster) -> ServiceAPIState:
        return allocator_state(cluster)

    def create(self, cluster: Cluster, obj: Service) -> Service:
        state = self._state(cluster)
        state.reseed(cluster.resource_version)
        svc = default_service(obj)
        svc = normalize_cluster_ips(svc, None)
        with _Txn(state) as txn:
            svc = init_ip_family_fields(svc, None, state.families)
            svc = _alloc_cluster_ips(svc, txn)
            if needs_node_port(svc):
                svc = _init_node_ports(svc, txn)
            if needs_health_check(svc):
                svc = _alloc_health_check_node_port(svc, txn)
            if svc.status != ServiceStatus():
                svc = attrs.evolve(svc, status=ServiceStatus())  # PrepareForCreate wipes it
            errs = validate_service(svc)
            if errs:
                raise InvalidObject("Service", svc.metadata.name, errs)
        return svc

    def update(self, cluster: Cluster, old: Service, new: Service) -> Service:
        state = self._state(cluster)
        state.reseed(cluster.resource_version)
        # Server-owned metadata comes from the stored object (rest.BeforeUpdate), so
        # re-applying the same YAML is a no-op write.
        new = attrs.evolve(new, metadata=attrs.evolve(
            new.metadata, uid=old.metadata.uid, creation_timestamp=old.metadata.creation_timestamp,
            resource_version=old.metadata.resource_version, generation=old.metadata.generation))
        svc = default_service(new)
        svc = patch_allocated_values(svc, old)
        svc = normalize_cluster_ips(svc, old)
        with _Txn(state) as txn:
            svc = init_ip_family_fields(svc, old, state.families)
            svc = _update_cluster_ips(svc, old, txn)
            svc = _update_node_ports(svc, old, txn)
            svc = attrs.evolve(svc, status=old.status)  # PrepareForUpdate keeps status
            svc = drop_type_dependent_fields(svc, old)
            errs = validate_service_update(svc, old)
            if errs:
                raise InvalidObject("Service", svc.metadata.name, errs)
        return svc

    def update_status(self, cluster: Cluster, old: Service, new: Service) -> Service:
        """PUT .../status (``serviceStatusStrategy``): the stored spec with ``new``'s status,
        defaulted (ipMode VIP where an ip is set) and validated."""
        svc = attrs.evolve(old, status=new.status)
        svc = default_service(svc)
        svc = attrs.evolve(old, status=svc.status)
        errs = validate_service_status_update(svc, old)
        if errs:
            raise InvalidObject("Service", svc.metadata.name, errs)
        return svc

    def delete(self, cluster: Cluster, obj: Service) -> None:
        _release_all(self._state(cluster), obj)

    def rebuild(self, cluster: Cluster) -> None:
        """Repair-controller style: fresh allocators, then every stored object's holdings."""
        old = cluster.extensions.get(STATE_KEY)
        state = ServiceAPIState.from_config(
            cluster.config, old.rng if old else None,
            legacy_bitmap=old.legacy_bitmap if old else False)
        if old is not None:
            state.terminating = {
                n: o for n, o in old.terminating.items()
                if cluster.find("ServiceCIDR", n, "") is not None}
        cluster.extensions[STATE_KEY] = state
        if "ServiceCIDR" in cluster.kinds:
            cidr_strategy = cluster.strategy("ServiceCIDR")
            for cidr in cluster.list("ServiceCIDR"):
                cidr_strategy._install(cluster, cidr)  # type: ignore[attr-defined]
        for svc in cluster.list("Service"):
            _reserve(state, svc)


def _reserve(state: ServiceAPIState, svc: Service) -> None:
    """Mark a stored Service's addresses and ports used; conflicts are skipped."""
    spec = svc.spec
    if spec.type != "ExternalName" and spec.cluster_ips[:1] != ("None",):
        for i, fam in enumerate(spec.ip_families):
            if i < len(spec.cluster_ips) and fam in state.ip:
                try:
                    state.ip[fam].allocate(spec.cluster_ips[i], _owner(svc))
                except AllocationError:
                    pass
    ports = {p.node_port for p in spec.ports if p.node_port}
    if needs_health_check(svc) and spec.health_check_node_port:
        ports.add(spec.health_check_node_port)
    for port in sorted(ports):
        try:
            state.node_ports.allocate(port)
        except AllocationError:
            pass


def kubernetes_service(config: ClusterConfig) -> Service:
    """The ``default/kubernetes`` Service the apiserver maintains.

    Its clusterIP is the first usable address of the primary service range; port
    ``https`` 443/TCP -> 6443, no selector (the apiserver reconciles its endpoints).
    """
    from kservice.api._names import parse_cidr_sloppy

    net = parse_cidr_sloppy(config.service_subnets[0])
    if net is None:
        raise ValueError(f"invalid service subnet {config.service_subnets[0]!r}")
    first = str(net.network_address + 1)
    return Service(
        metadata=ObjectMeta(
            name="kubernetes", namespace="default",
            labels={"component": "apiserver", "provider": "kubernetes"}),
        spec=attrs.evolve(
            Service().spec, type="ClusterIP", cluster_ip=first, cluster_ips=(first,),
            ports=(ServicePort(name="https", protocol="TCP", port=443, target_port=6443),),
            session_affinity="None", ip_family_policy="SingleStack",
            ip_families=(config.families[0],), internal_traffic_policy="Cluster"),
    )
