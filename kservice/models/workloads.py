"""Nodes, Pods and the apps/v1 workloads that expand into Pods, as frozen values.

Only the fields Service networking depends on are typed (labels, node placement, pod IPs,
container ports, readiness, deletion). Everything else a real manifest carries -- ``image``,
``resources``, ``env``, ``volumes``, probes, ``nodeInfo`` ... -- is accepted and kept
*opaquely* (deep-frozen) in an ``extra`` map and written back unchanged, so ``kubectl get -o
yaml`` output of a real cluster reads and round-trips. A wrong JSON type in a typed field is
still an :class:`~kservice.errors.InvalidInput` naming the field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import attrs

from kservice._frozen import FrozenDict, freeze, to_tuple
from kservice.errors import InvalidInput
from kservice.models._reader import Reader
from kservice.models._toplevel import SpecStatusObject, TopLevelObject, read_metadata
from kservice.models.meta import ObjectMeta

__all__ = [
    "Container",
    "ContainerPort",
    "DaemonSet",
    "Deployment",
    "LabelSelector",
    "Node",
    "NodeAddress",
    "NodeSpec",
    "NodeStatus",
    "Pod",
    "PodCondition",
    "PodSpec",
    "PodStatus",
    "PodTemplate",
    "ReplicaSet",
    "StatefulSet",
    "WorkloadSpec",
    "deep_freeze",
    "thaw",
]


def deep_freeze(value: Any) -> Any:
    """JSON-like data to hashable immutable data (dict -> FrozenDict, list -> tuple).

    A FrozenDict is taken as already deep-frozen (every FrozenDict holding JSON data in
    these models is built here), which keeps ``attrs.evolve`` cheap.
    """
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: deep_freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(deep_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of :func:`deep_freeze`, for ``to_manifest``."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


#: One shared empty map: most objects carry several empty maps, and sharing them keeps
#: the object count (and the garbage collector's work) down at 100k-pod scale.
EMPTY: FrozenDict[str, Any] = FrozenDict()


def _extra(value: Mapping[str, Any] | None) -> FrozenDict[str, Any]:
    if not value:
        return EMPTY
    return deep_freeze(value)  # type: ignore[no-any-return]


def _freeze_str_map(value: Mapping[str, str] | None) -> FrozenDict[str, str]:
    if not value:
        return EMPTY
    return freeze(value)


def _merge(typed: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {**thaw(extra), **typed}
    return {k: out[k] for k in sorted(out)}


# --------------------------------------------------------------------------- Node


@attrs.frozen
class NodeAddress:
    type: str
    address: str


@attrs.frozen
class NodeSpec:
    pod_cidr: str = ""
    pod_cidrs: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    unschedulable: bool = False
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> NodeSpec:
        return cls(
            pod_cidr=r.str("podCIDR") or "",
            pod_cidrs=r.str_list("podCIDRs") or (),
            unschedulable=bool(r.bool("unschedulable")),
            extra=r.rest(),
        )

    def to_manifest(self) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        if self.pod_cidr:
            typed["podCIDR"] = self.pod_cidr
        if self.pod_cidrs:
            typed["podCIDRs"] = list(self.pod_cidrs)
        if self.unschedulable:
            typed["unschedulable"] = True
        return _merge(typed, self.extra)


@attrs.frozen
class NodeStatus:
    addresses: tuple[NodeAddress, ...] = attrs.field(default=(), converter=to_tuple)
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> NodeStatus:
        addrs = r.objs(
            "addresses", lambda a: NodeAddress(a.str("type") or "", a.str("address") or "")
        )
        return cls(addresses=addrs or (), extra=r.rest())

    def to_manifest(self) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        if self.addresses:
            typed["addresses"] = [{"address": a.address, "type": a.type} for a in self.addresses]
        return _merge(typed, self.extra)


@attrs.frozen
class Node(SpecStatusObject):
    """A v1 Node (cluster-scoped)."""

    api_version = "v1"
    kind = "Node"
    spec_type = NodeSpec
    status_type = NodeStatus

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: NodeSpec = attrs.field(factory=NodeSpec)
    status: NodeStatus = attrs.field(factory=NodeStatus)

    @property
    def pod_cidrs(self) -> tuple[str, ...]:
        """``spec.podCIDRs``, or ``[spec.podCIDR]`` for objects written by old clients."""
        if self.spec.pod_cidrs:
            return self.spec.pod_cidrs
        return (self.spec.pod_cidr,) if self.spec.pod_cidr else ()

    def addresses_of(self, type_: str) -> tuple[str, ...]:
        return tuple(a.address for a in self.status.addresses if a.type == type_)

    @property
    def node_ips(self) -> tuple[str, ...]:
        """InternalIPs then ExternalIPs -- the order kubelet/kube-proxy pick the node IP."""
        return self.addresses_of("InternalIP") + self.addresses_of("ExternalIP")

    @property
    def zone(self) -> str | None:
        return self.metadata.labels.get("topology.kubernetes.io/zone") or None


# --------------------------------------------------------------------------- Pod


@attrs.frozen
class ContainerPort:
    container_port: int
    name: str = ""
    #: ``None`` until defaulted to TCP by the Pod strategy.
    protocol: str | None = None
    host_port: int | None = None
    host_ip: str | None = None

    @classmethod
    def from_reader(cls, r: Reader) -> ContainerPort:
        return cls(
            container_port=r.int("containerPort") or 0,
            name=r.str("name") or "",
            protocol=r.str("protocol"),
            host_port=r.int("hostPort"),
            host_ip=r.str("hostIP"),
        )

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"containerPort": self.container_port}
        if self.host_ip is not None:
            out["hostIP"] = self.host_ip
        if self.host_port is not None:
            out["hostPort"] = self.host_port
        if self.name:
            out["name"] = self.name
        if self.protocol is not None:
            out["protocol"] = self.protocol
        return out


@attrs.frozen
class Container:
    name: str = ""
    ports: tuple[ContainerPort, ...] = attrs.field(default=(), converter=to_tuple)
    #: ``Always`` on an init container makes it a sidecar (its ports count for Services).
    restart_policy: str | None = None
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> Container:
        return cls(
            name=r.str("name") or "",
            ports=r.objs("ports", ContainerPort.from_reader) or (),
            restart_policy=r.str("restartPolicy"),
            extra=r.rest(),
        )

    def to_manifest(self) -> dict[str, Any]:
        typed: dict[str, Any] = {"name": self.name}
        if self.ports:
            typed["ports"] = [p.to_manifest() for p in self.ports]
        if self.restart_policy is not None:
            typed["restartPolicy"] = self.restart_policy
        return _merge(typed, self.extra)


@attrs.frozen
class PodSpec:
    containers: tuple[Container, ...] = attrs.field(default=(), converter=to_tuple)
    init_containers: tuple[Container, ...] = attrs.field(default=(), converter=to_tuple)
    node_name: str = ""
    hostname: str = ""
    subdomain: str = ""
    node_selector: FrozenDict[str, str] = attrs.field(default=EMPTY, converter=_freeze_str_map)
    host_network: bool = False
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> PodSpec:
        return cls(
            containers=r.objs("containers", Container.from_reader) or (),
            init_containers=r.objs("initContainers", Container.from_reader) or (),
            node_name=r.str("nodeName") or "",
            hostname=r.str("hostname") or "",
            subdomain=r.str("subdomain") or "",
            node_selector=r.str_map("nodeSelector"),
            host_network=bool(r.bool("hostNetwork")),
            extra=r.rest(),
        )

    def to_manifest(self) -> dict[str, Any]:
        typed: dict[str, Any] = {"containers": [c.to_manifest() for c in self.containers]}
        if self.init_containers:
            typed["initContainers"] = [c.to_manifest() for c in self.init_containers]
        if self.node_name:
            typed["nodeName"] = self.node_name
        if self.hostname:
            typed["hostname"] = self.hostname
        if self.subdomain:
            typed["subdomain"] = self.subdomain
        if self.node_selector:
            typed["nodeSelector"] = dict(self.node_selector)
        if self.host_network:
            typed["hostNetwork"] = True
        return _merge(typed, self.extra)

    @property
    def sidecars(self) -> tuple[Container, ...]:
        """Init containers with ``restartPolicy: Always`` (KEP-753 sidecars)."""
        return tuple(c for c in self.init_containers if c.restart_policy == "Always")


@attrs.frozen
class PodCondition:
    type: str
    status: str
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> PodCondition:
        return cls(type=r.str("type") or "", status=r.str("status") or "", extra=r.rest())

    def to_manifest(self) -> dict[str, Any]:
        return _merge({"status": self.status, "type": self.type}, self.extra)


@attrs.frozen
class PodStatus:
    phase: str = ""
    conditions: tuple[PodCondition, ...] = attrs.field(default=(), converter=to_tuple)
    pod_ip: str = ""
    pod_ips: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    host_ip: str = ""
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader) -> PodStatus:
        ips = r.objs("podIPs", lambda x: x.str("ip") or "")
        host_ips = r.raw("hostIPs")  # kept opaquely below
        out = cls(
            phase=r.str("phase") or "",
            conditions=r.objs("conditions", PodCondition.from_reader) or (),
            pod_ip=r.str("podIP") or "",
            pod_ips=ips or (),
            host_ip=r.str("hostIP") or "",
            extra={**r.rest(), **({"hostIPs": host_ips} if host_ips is not None else {})},
        )
        return out

    def to_manifest(self) -> dict[str, Any]:
        typed: dict[str, Any] = {}
        if self.phase:
            typed["phase"] = self.phase
        if self.conditions:
            typed["conditions"] = [c.to_manifest() for c in self.conditions]
        if self.pod_ip:
            typed["podIP"] = self.pod_ip
        if self.pod_ips:
            typed["podIPs"] = [{"ip": ip} for ip in self.pod_ips]
        if self.host_ip:
            typed["hostIP"] = self.host_ip
        return _merge(typed, self.extra)

    @property
    def ips(self) -> tuple[str, ...]:
        """``podIPs``, or ``[podIP]`` when only the singular field is set."""
        if self.pod_ips:
            return self.pod_ips
        return (self.pod_ip,) if self.pod_ip else ()


@attrs.frozen
class Pod(SpecStatusObject):
    """A v1 Pod."""

    api_version = "v1"
    kind = "Pod"
    spec_type = PodSpec
    status_type = PodStatus

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: PodSpec = attrs.field(factory=PodSpec)
    status: PodStatus = attrs.field(factory=PodStatus)

    @property
    def is_ready(self) -> bool:
        """The ``Ready`` condition is ``True`` (podutil.IsPodReady)."""
        for c in self.status.conditions:
            if c.type == "Ready":
                return c.status == "True"
        return False

    @property
    def is_terminating(self) -> bool:
        return self.metadata.deletion_timestamp is not None

    def with_ready(self, ready: bool) -> Pod:
        """Set the Ready and ContainersReady conditions (what kubelet's status manager does)."""
        want = "True" if ready else "False"
        conds = [c for c in self.status.conditions if c.type not in ("Ready", "ContainersReady")]
        extra_by_type = {c.type: c.extra for c in self.status.conditions}
        conds.append(PodCondition("ContainersReady", want, extra_by_type.get("ContainersReady")))
        conds.append(PodCondition("Ready", want, extra_by_type.get("Ready")))
        order = {"PodReadyToStartContainers": 0, "Initialized": 1, "Ready": 2,
                 "ContainersReady": 3, "PodScheduled": 4}
        conds.sort(key=lambda c: (order.get(c.type, 9), c.type))
        return attrs.evolve(self, status=attrs.evolve(self.status, conditions=tuple(conds)))


# --------------------------------------------------------------------------- workloads


@attrs.frozen
class LabelSelector:
    match_labels: FrozenDict[str, str] = attrs.field(default=EMPTY, converter=_freeze_str_map)
    #: ``(key, operator, values)``: In, NotIn, Exists, DoesNotExist.
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=to_tuple
    )

    @classmethod
    def from_reader(cls, r: Reader) -> LabelSelector:
        def expr(x: Reader) -> tuple[str, str, tuple[str, ...]]:
            op = x.str("operator") or ""
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise InvalidInput(
                    f'"{op}" is not a valid label selector operator', path=f"{x.path}.operator"
                )
            return (x.str("key") or "", op, tuple(x.str_list("values") or ()))

        return cls(match_labels=r.str_map("matchLabels"),
                   match_expressions=r.objs("matchExpressions", expr) or ())

    def matches(self, labels: Mapping[str, str]) -> bool:
        for k, v in self.match_labels.items():
            if labels.get(k) != v:
                return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and (not present or labels[key] not in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": k, "operator": op, **({"values": list(v)} if v else {})}
                for k, op, v in self.match_expressions
            ]
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        return out


@attrs.frozen
class PodTemplate:
    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: PodSpec = attrs.field(factory=PodSpec)

    @classmethod
    def from_reader(cls, r: Reader) -> PodTemplate:
        return cls(metadata=read_metadata(r),
                   spec=r.obj("spec", PodSpec.from_reader) or PodSpec())

    def to_manifest(self) -> dict[str, Any]:
        return {"metadata": self.metadata.to_manifest(), "spec": self.spec.to_manifest()}


@attrs.frozen
class WorkloadSpec:
    """The spec fields shared by Deployment/ReplicaSet/StatefulSet/DaemonSet we act on.

    ``replicas`` is ``None`` when unset (defaulted to 1; meaningless for DaemonSets);
    ``service_name`` is the StatefulSet's governing Service.
    """

    selector: LabelSelector = attrs.field(factory=LabelSelector)
    template: PodTemplate = attrs.field(factory=PodTemplate)
    replicas: int | None = None
    service_name: str = ""
    extra: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_reader(cls, r: Reader, *, kind: str) -> WorkloadSpec:
        return cls(
            selector=r.obj("selector", LabelSelector.from_reader) or LabelSelector(),
            template=r.obj("template", PodTemplate.from_reader) or PodTemplate(),
            replicas=None if kind == "DaemonSet" else r.int("replicas"),
            service_name=(r.str("serviceName") or "") if kind == "StatefulSet" else "",
            extra=r.rest(),
        )

    def to_manifest(self, kind: str) -> dict[str, Any]:
        typed: dict[str, Any] = {"selector": self.selector.to_manifest(),
                                 "template": self.template.to_manifest()}
        if self.replicas is not None and kind != "DaemonSet":
            typed["replicas"] = self.replicas
        if kind == "StatefulSet" and self.service_name:
            typed["serviceName"] = self.service_name
        return _merge(typed, self.extra)


@attrs.frozen
class _Workload(TopLevelObject):
    """apps/v1 workload fields and plumbing shared by the four kinds (subclasses below)."""

    api_version = "apps/v1"
    kind = ""

    metadata: ObjectMeta = attrs.field(factory=ObjectMeta)
    spec: WorkloadSpec = attrs.field(factory=WorkloadSpec)
    #: Kept opaquely (deep-frozen) and written back unchanged.
    status: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=_extra)

    @classmethod
    def from_manifest(cls, data: object, path: str = "") -> Self:
        """Read a decoded manifest strictly; ``status`` is kept opaquely."""
        def spec(r: Reader) -> WorkloadSpec:
            return WorkloadSpec.from_reader(r, kind=cls.kind)

        def status(value: object) -> FrozenDict[str, Any]:
            return _extra(value if isinstance(value, Mapping) else None)

        return cls._read(data, path, lambda r: cls(
            metadata=read_metadata(r),
            spec=r.obj("spec", spec) or WorkloadSpec(),
            status=status(r.raw("status"))))

    def to_manifest(self) -> dict[str, Any]:
        return {**self._head(), "spec": self.spec.to_manifest(self.kind),
                "status": thaw(self.status)}

    @property
    def replicas(self) -> int:
        return 1 if self.spec.replicas is None else self.spec.replicas


@attrs.frozen
class Deployment(_Workload):
    """apps/v1 Deployment: owns ReplicaSets (one per pod-template hash)."""

    kind = "Deployment"


@attrs.frozen
class ReplicaSet(_Workload):
    """apps/v1 ReplicaSet: owns ``replicas`` interchangeable pods."""

    kind = "ReplicaSet"


@attrs.frozen
class StatefulSet(_Workload):
    """apps/v1 StatefulSet: pods ``<name>-0..N-1`` with hostname and subdomain."""

    kind = "StatefulSet"


@attrs.frozen
class DaemonSet(_Workload):
    """apps/v1 DaemonSet: one pod per eligible node."""

    kind = "DaemonSet"
