"""Store strategies for Node, Pod and the apps/v1 workloads, plus scheduling and IPAM state.

What the apiserver, scheduler, kubelet and CNI would together do to an object on its way into
the store is done here, synchronously and deterministically:

* Node create: default the kubelet labels (``kubernetes.io/hostname|os|arch``), a ``Ready``
  condition, and (node IPAM) the next free podCIDR of each pod subnet.
* Pod create: default container port protocols (TCP); drop any client-supplied ``status``
  (the apiserver does); schedule (:func:`pick_node`); allocate pod IPs (host-local on the
  node's podCIDRs) or use the node IPs for ``hostNetwork``; start Running and Ready -- readiness
  probes are not emulated, use :func:`kservice.workloads.set_pod_ready`.
* Pod update: ``spec.nodeName`` and ``status`` stay what the store holds (status subresource);
  labels and annotations change, which is what Service selection cares about.
* Workloads: ``replicas`` defaults to 1; the selector must match the template labels.

``generateName`` is resolved before the store sees the object (see :func:`resolve_name`),
because the store keys an object by name before the strategy runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import attrs

from kservice.api._names import is_valid_cidr, is_valid_ip, parse_cidr_sloppy, parse_ip_sloppy
from kservice.errors import FieldError, GoLiteral, InvalidObject
from kservice.models.workloads import (
    Container,
    DaemonSet,
    Deployment,
    Node,
    Pod,
    PodCondition,
    PodSpec,
    PodStatus,
    ReplicaSet,
    StatefulSet,
    deep_freeze,
)
from kservice.workloads._ipam import PodIPAM, next_node_cidrs
from kservice.workloads._naming import generate_name

__all__ = [
    "DaemonSetStrategy",
    "DeploymentStrategy",
    "NodeStrategy",
    "PodStrategy",
    "ReplicaSetStrategy",
    "StatefulSetStrategy",
    "WorkloadState",
    "pick_node",
    "resolve_name",
    "state",
    "tolerates",
]

EXT_KEY = "workloads"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PROTOCOLS = ("SCTP", "TCP", "UDP")


@attrs.define
class WorkloadState:
    """Per-cluster mutable state of this component (rebuilt from stored objects)."""

    ipam: PodIPAM = attrs.field(factory=PodIPAM)
    #: node name -> number of pods bound to it (spreading).
    pods_per_node: dict[str, int] = attrs.field(factory=dict)
    #: (Node kind revision, tolerations, nodeSelector) -> names of nodes a pod fits on.
    fit_cache: dict[Any, tuple[str, ...]] = attrs.field(factory=dict)
    #: (Node kind revision, name -> Node) the scheduler last read.
    nodes: tuple[int, dict[str, Node]] = (-1, {})


def state(cluster: Any) -> WorkloadState:
    st = cluster.extensions.get(EXT_KEY)
    if st is None:
        st = cluster.extensions[EXT_KEY] = WorkloadState()
    return st  # type: ignore[no-any-return]


def resolve_name(cluster: Any, obj: Any) -> Any:
    """Fill ``metadata.name`` from ``generateName`` (deterministically from the seed)."""
    meta = obj.metadata
    if meta.name or not meta.generate_name:
        return obj
    ns = meta.namespace or "default"
    kind = obj.kind

    def taken(name: str) -> bool:
        return cluster.find(kind, name, ns) is not None

    # Salted with the resourceVersion so a replacement never reuses a deleted pod's name.
    name = generate_name(cluster.config.seed, meta.generate_name, taken,
                         salt=cluster.resource_version)
    return attrs.evolve(obj, metadata=attrs.evolve(meta, name=name))


def _name_errors(meta: Any, *, subdomain: bool = True) -> list[FieldError]:
    if not meta.name:
        return [FieldError.required("metadata.name", "name or generateName is required")]
    pat = _DNS1123_SUBDOMAIN if subdomain else _DNS1123_LABEL
    if len(meta.name) > 253 or not pat.match(meta.name):
        return [FieldError.invalid(
            "metadata.name", meta.name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )]
    return []


# --------------------------------------------------------------------------- nodes


class NodeStrategy:
    kind = "Node"
    api_version = "v1"
    resource = "nodes"
    namespaced = False

    def decode(self, data: Any, path: str = "") -> Node:
        return Node.from_manifest(data, path)

    def create(self, cluster: Any, obj: Node) -> Node:
        obj = _node_converted(obj)
        errs = _name_errors(obj.metadata) + node_spec_errors(obj)
        if errs:
            raise InvalidObject("Node", obj.metadata.name, errs)
        labels = {
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": obj.metadata.name,
            "kubernetes.io/os": "linux",
            **obj.metadata.labels,
        }
        spec = obj.spec
        if not obj.pod_cidrs and cluster.config.pod_subnets:
            used = [c for n in cluster.list("Node") for c in n.pod_cidrs]
            cidrs = next_node_cidrs(
                cluster.config.pod_subnets, used,
                cluster.config.node_cidr_mask_size_v4, cluster.config.node_cidr_mask_size_v6,
            )
            spec = attrs.evolve(spec, pod_cidr=cidrs[0], pod_cidrs=cidrs)
        status = obj.status
        if "conditions" not in status.extra:
            extra = dict(status.extra)
            extra["conditions"] = deep_freeze([{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }])
            status = attrs.evolve(status, extra=extra)
        return attrs.evolve(obj, metadata=attrs.evolve(obj.metadata, labels=labels),
                            spec=spec, status=status)

    def update(self, cluster: Any, old: Node, new: Node) -> Node:
        new = _node_converted(new)
        errs = node_spec_errors(new)
        # ValidateNodeUpdate: podCIDRs are immutable once set (the node IPAM controller
        # may only fill them in when empty).
        if old.pod_cidrs and new.pod_cidrs != old.pod_cidrs:
            errs.append(FieldError.forbidden(
                "spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
        if errs:
            raise InvalidObject("Node", new.metadata.name, errs)
        return new

    def delete(self, cluster: Any, obj: Node) -> None:
        state(cluster).ipam.used.pop(obj.metadata.name, None)

    def rebuild(self, cluster: Any) -> None:
        pass  # node CIDRs are derived from stored Nodes on every allocation


def _node_converted(node: Node) -> Node:
    """The v1 -> internal -> v1 round trip of ``NodeSpec`` (``Convert_v1_NodeSpec_To_core``):
    the internal type has only ``podCIDRs``; a lone ``podCIDR`` becomes ``podCIDRs[0]``, and
    ``podCIDR`` is written back as ``podCIDRs[0]`` -- so with both set, ``podCIDRs`` wins."""
    cidrs = node.pod_cidrs
    first = cidrs[0] if cidrs else ""
    if node.spec.pod_cidrs == cidrs and node.spec.pod_cidr == first:
        return node
    return attrs.evolve(node, spec=attrs.evolve(node.spec, pod_cidr=first, pod_cidrs=cidrs))


def node_spec_errors(node: Node) -> list[FieldError]:
    """``ValidateNode``'s podCIDRs rules: each a valid CIDR; two at most, one per family,
    no duplicates."""
    errs: list[FieldError] = []
    cidrs = node.pod_cidrs
    nets = []
    for i, value in enumerate(cidrs):
        detail = is_valid_cidr(value)
        errs += [FieldError.invalid(f"spec.podCIDRs[{i}]", value, d) for d in detail]
        nets.append(None if detail else parse_cidr_sloppy(value))
    if len(cidrs) > 1:
        families = {n.version for n in nets if n is not None}
        if len(cidrs) > 2 or (None not in nets and len(families) != 2):
            errs.append(FieldError.invalid("spec.podCIDRs", list(cidrs),
                                           "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, value in enumerate(cidrs):
            if value in seen:
                errs.append(FieldError.duplicate(f"spec.podCIDRs[{i}]", value))
            seen.add(value)
    return errs


def _ip_list_errors(field: str, ips: tuple[str, ...], detail: str) -> list[FieldError]:
    """validatePodIPs / validateHostIPs: valid IPs, at most one per family, no duplicates."""
    errs: list[FieldError] = []
    parsed = []
    for i, ip in enumerate(ips):
        bad = is_valid_ip(ip)
        errs += [FieldError.invalid(f"{field}[{i}]", ip, d) for d in bad]
        parsed.append(None if bad else parse_ip_sloppy(ip))
    if len(ips) > 1:
        families = {p.version for p in parsed if p is not None}
        if len(ips) > 2 or (None not in parsed and len(families) != 2):
            errs.append(FieldError.invalid(
                field, GoLiteral("[]core.PodIP{" + ", ".join(
                    f'core.PodIP{{IP:"{ip}"}}' for ip in ips) + "}"), detail))
        seen: set[str] = set()
        for i, ip in enumerate(ips):
            if ip in seen:
                errs.append(FieldError.duplicate(f"{field}[{i}]", GoLiteral(f'core.PodIP{{IP:"{ip}"}}')))
            seen.add(ip)
    return errs


def pod_status_errors(status: PodStatus) -> list[FieldError]:
    """The IP rules of ``ValidatePodStatusUpdate``: ``status.podIPs`` and ``status.hostIPs``."""
    errs = _ip_list_errors("status.podIPs", status.ips,
                           "may specify no more than one IP for each IP family")
    errs += _ip_list_errors("status.hostIPs", _host_ips(status),
                            "may specify no more than one IP for each IP family")
    return errs


def _host_ips(status: PodStatus) -> tuple[str, ...]:
    host_ips = tuple(str(h.get("ip", "")) for h in (status.extra.get("hostIPs") or ())
                     if isinstance(h, Mapping))
    return host_ips or ((status.host_ip,) if status.host_ip else ())


# --------------------------------------------------------------------------- pods


def tolerates(pod: Pod, node: Node) -> bool:
    """Every NoSchedule/NoExecute taint of the node is tolerated by the pod."""
    taints = node.spec.extra.get("taints") or ()
    tolerations = pod.spec.extra.get("tolerations") or ()
    for t in taints:
        effect = t.get("effect", "")
        if effect not in ("NoSchedule", "NoExecute"):
            continue
        ok = False
        for tol in tolerations:
            op = tol.get("operator", "Equal")
            if tol.get("effect") and tol.get("effect") != effect:
                continue
            if op == "Exists" and (not tol.get("key") or tol.get("key") == t.get("key")):
                ok = True
            elif op == "Equal" and tol.get("key") == t.get("key") and \
                    tol.get("value", "") == t.get("value", ""):
                ok = True
            if ok:
                break
        if not ok:
            return False
    return True


def _node_ready(node: Node) -> bool:
    for c in node.status.extra.get("conditions") or ():
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return True


def pick_node(cluster: Any, pod: Pod) -> Node | None:
    """Deterministic spreading scheduler: the fitting node with fewest pods, then by name.

    Fitting = schedulable (not cordoned), Ready, nodeSelector matched, taints tolerated.
    """
    st = state(cluster)
    counts = st.pods_per_node
    # Which nodes fit depends only on the nodes and the pod's tolerations/nodeSelector:
    # cache that (keyed by the Node kind's revision), then pick by load.
    rev = cluster.kind_revision("Node")
    if st.nodes[0] != rev:
        st.nodes = (rev, {n.metadata.name: n for n in cluster.list("Node")})
        st.fit_cache.clear()
    by_name = st.nodes[1]
    key = (rev, pod.spec.extra.get("tolerations"), pod.spec.node_selector)
    fit = st.fit_cache.get(key)
    if fit is None:
        if len(st.fit_cache) > 256:
            st.fit_cache.clear()
        fit = st.fit_cache[key] = tuple(
            n.metadata.name for n in by_name.values()
            if not n.spec.unschedulable and _node_ready(n) and tolerates(pod, n)
            and all(n.metadata.labels.get(k) == v for k, v in pod.spec.node_selector.items())
        )
    if not fit:
        return None
    # ``fit`` is in name order (``list`` sorts) and min() keeps the first of equal keys, so
    # this is (count, name) order without building a tuple per node.
    get = counts.get
    return by_name[min(fit, key=lambda name: get(name, 0))]


def _default_container(c: Container) -> Container:
    if all(p.protocol for p in c.ports):
        return c
    ports = tuple(p if p.protocol else attrs.evolve(p, protocol="TCP") for p in c.ports)
    return attrs.evolve(c, ports=ports)


@functools.lru_cache(maxsize=64)
def _running_conditions(now: str) -> tuple[PodCondition, ...]:
    extra = deep_freeze({"lastProbeTime": None, "lastTransitionTime": now})
    return tuple(PodCondition(t, "True", extra) for t in (
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"))


@functools.lru_cache(maxsize=1024)
def _running_extra(names: tuple[str, ...], now: str, host_ips: tuple[str, ...],
                   init: tuple[tuple[str, bool], ...] = ()) -> Any:
    extra: dict[str, Any] = {
        "containerStatuses": [
            {"name": n, "ready": True, "restartCount": 0, "started": True,
             "state": {"running": {"startedAt": now}}} for n in names
        ],
        "startTime": now,
        "qosClass": "BestEffort",
    }
    if init:
        # kubelet's initContainerStatuses of a running pod: ordinary init containers have
        # completed (exit 0); sidecars (restartPolicy Always) keep running, started and
        # ready -- which is what `kubectl get pods` counts in READY.
        extra["initContainerStatuses"] = [
            {"name": n, "ready": True, "restartCount": 0, "started": True,
             "state": {"running": {"startedAt": now}}} if sidecar else
            {"name": n, "ready": False, "restartCount": 0, "started": False,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                      "startedAt": now, "finishedAt": now}}}
            for n, sidecar in init
        ]
    if host_ips:
        extra["hostIPs"] = [{"ip": ip} for ip in host_ips]
    return deep_freeze(extra)


def _port_name_errors(path: str, name: str) -> list[FieldError]:
    """IANA_SVC_NAME (validation.IsValidPortName)."""
    errs = []
    if len(name) > 15:
        errs.append(FieldError.invalid(path, name, "must be no more than 15 characters"))
    if not re.match(r"^[-a-z0-9]+$", name):
        errs.append(FieldError.invalid(
            path, name, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"))
    if not re.search(r"[a-z]", name):
        errs.append(FieldError.invalid(path, name, "must contain at least one letter (a-z)"))
    if "--" in name:
        errs.append(FieldError.invalid(path, name, "must not contain consecutive hyphens"))
    if name.startswith("-") or name.endswith("-"):
        errs.append(FieldError.invalid(path, name, "must not begin or end with a hyphen"))
    return errs


def pod_spec_errors(spec: Any, base: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not spec.containers:
        errs.append(FieldError.required(f"{base}.containers"))
    for field, group in (("initContainers", spec.init_containers),
                         ("containers", spec.containers)):
        for i, c in enumerate(group):
            cp = f"{base}.{field}[{i}]"
            if not c.name:
                errs.append(FieldError.required(f"{cp}.name"))
            for j, p in enumerate(c.ports):
                pp = f"{cp}.ports[{j}]"
                if p.name:
                    errs += _port_name_errors(f"{pp}.name", p.name)
                if not 1 <= p.container_port <= 65535:
                    errs.append(FieldError.invalid(f"{pp}.containerPort", p.container_port,
                                                   "must be between 1 and 65535, inclusive"))
                if p.protocol is not None and p.protocol not in _PROTOCOLS:
                    errs.append(FieldError.not_supported(f"{pp}.protocol", p.protocol,
                                                         _PROTOCOLS))
    return errs


#: Pod-spec defaulting and validation, memoised by the identity of the containers tuples.
#: Every pod a workload stamps out shares its template's tuples, so 100,000 pods from
#: 10,000 Deployments are defaulted and validated 10,000 times, not 100,000. The memo holds
#: the tuples themselves, so an ``id`` is never reused while its entry exists.
_SPEC_MEMO: dict[tuple[int, int], tuple[Any, Any, tuple[Container, ...],
                                        tuple[Container, ...], tuple[FieldError, ...]]] = {}


def _defaulted_and_checked(spec: PodSpec) -> tuple[tuple[Container, ...],
                                                   tuple[Container, ...],
                                                   tuple[FieldError, ...]]:
    """(defaulted containers, defaulted initContainers, spec errors) of a pod spec."""
    key = (id(spec.containers), id(spec.init_containers))
    hit = _SPEC_MEMO.get(key)
    if hit is not None and hit[0] is spec.containers and hit[1] is spec.init_containers:
        return hit[2], hit[3], hit[4]
    containers = tuple(_default_container(c) for c in spec.containers)
    inits = tuple(_default_container(c) for c in spec.init_containers)
    if containers == spec.containers:
        containers = spec.containers
    if inits == spec.init_containers:
        inits = spec.init_containers
    # Errors are checked on the defaulted spec, as before; only the containers matter.
    errs = tuple(pod_spec_errors(_ContainersOnly(containers, inits), "spec"))
    if len(_SPEC_MEMO) > 8192:
        _SPEC_MEMO.clear()
    _SPEC_MEMO[key] = (spec.containers, spec.init_containers, containers, inits, errs)
    return containers, inits, errs


#: Bound pod specs, memoised by (identity of the unbound spec, node): the pods a workload
#: stamps out share their template's spec object, so the pods it places on one node can
#: share one bound spec too (frozen values; fewer objects for 100k pods). The memo holds
#: the unbound spec, so its ``id`` is never reused while the entry exists.
_BOUND_MEMO: dict[tuple[int, str], tuple[PodSpec, PodSpec]] = {}


def _bound_spec(spec: PodSpec, node_name: str) -> PodSpec:
    """``spec`` with ``nodeName`` set (the scheduler's binding)."""
    key = (id(spec), node_name)
    hit = _BOUND_MEMO.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    # A direct constructor, not evolve: this is the hot path of every pod creation.
    bound = PodSpec(containers=spec.containers, init_containers=spec.init_containers,
                    node_name=node_name, hostname=spec.hostname, subdomain=spec.subdomain,
                    node_selector=spec.node_selector, host_network=spec.host_network,
                    extra=spec.extra)
    if len(_BOUND_MEMO) > 65536:
        _BOUND_MEMO.clear()
    _BOUND_MEMO[key] = (spec, bound)
    return bound


@attrs.frozen
class _ContainersOnly:
    """The part of a PodSpec :func:`pod_spec_errors` reads."""

    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]


class PodStrategy:
    kind = "Pod"
    api_version = "v1"
    resource = "pods"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Pod:
        return Pod.from_manifest(data, path)

    def create(self, cluster: Any, obj: Pod) -> Pod:
        containers, inits, spec_errs = _defaulted_and_checked(obj.spec)
        pod = obj
        if containers is not obj.spec.containers or inits is not obj.spec.init_containers:
            pod = attrs.evolve(obj, spec=attrs.evolve(obj.spec, containers=containers,
                                                      init_containers=inits))
        errs = _name_errors(pod.metadata) + list(spec_errs)
        if pod.spec.hostname and not _DNS1123_LABEL.match(pod.spec.hostname):
            errs.append(FieldError.invalid("spec.hostname", pod.spec.hostname,
                                           "a lowercase RFC 1123 label must consist of lower "
                                           "case alphanumeric characters or '-', and must start "
                                           "and end with an alphanumeric character"))
        if errs:
            raise InvalidObject("Pod", pod.metadata.name, errs)
        # The apiserver ignores status on create; scheduler, kubelet and CNI fill it in.
        node = cluster.find("Node", pod.spec.node_name, "") if pod.spec.node_name else \
            pick_node(cluster, pod)
        if node is None:
            status = _pending_status(bool(pod.spec.node_name))
            return attrs.evolve(pod, status=status)
        spec = pod.spec
        if spec.node_name != node.metadata.name:
            spec = _bound_spec(spec, node.metadata.name)
            pod = Pod(metadata=pod.metadata, spec=spec, status=pod.status)
        st = state(cluster)
        if pod.spec.host_network:
            ips = node.node_ips
        else:
            ips = tuple(st.ipam.allocate(node.metadata.name, c) for c in node.pod_cidrs)
        st.pods_per_node[node.metadata.name] = st.pods_per_node.get(node.metadata.name, 0) + 1
        now = cluster.timestamp()
        host_ips = node.addresses_of("InternalIP")
        extra = _running_extra(tuple(c.name for c in pod.spec.containers), now, host_ips,
                               tuple((c.name, c.restart_policy == "Always")
                                     for c in pod.spec.init_containers))
        # Direct constructors, not evolve: this is the hot path of every pod creation.
        status = PodStatus(phase="Running", conditions=_running_conditions(now),
                           pod_ip=ips[0] if ips else "", pod_ips=ips,
                           host_ip=host_ips[0] if host_ips else "", extra=extra)
        return Pod(metadata=pod.metadata, spec=pod.spec, status=status)

    def update(self, cluster: Any, old: Pod, new: Pod) -> Pod:
        spec = attrs.evolve(
            new.spec,
            node_name=old.spec.node_name,
            containers=tuple(_default_container(c) for c in new.spec.containers),
            init_containers=tuple(_default_container(c) for c in new.spec.init_containers),
        )
        # deletionTimestamp is set by the apiserver (graceful delete), never by an update.
        meta = attrs.evolve(new.metadata, deletion_timestamp=old.metadata.deletion_timestamp,
                            deletion_grace_period_seconds=old.metadata.deletion_grace_period_seconds)
        return attrs.evolve(new, metadata=meta, spec=spec, status=old.status)

    def update_status(self, cluster: Any, old: Pod, new: Pod) -> Pod:
        """PUT .../status: the stored pod with ``new``'s status, after the v1 -> internal
        conversion (``podIPs`` wins; ``podIP`` is written back as ``podIPs[0]``) and
        ``ValidatePodStatusUpdate``'s IP rules."""
        status = new.status
        ips = status.ips
        if status.pod_ips != ips or status.pod_ip != (ips[0] if ips else ""):
            status = attrs.evolve(status, pod_ips=ips, pod_ip=ips[0] if ips else "")
        host_ips = _host_ips(status)
        if host_ips and status.host_ip != host_ips[0]:
            status = attrs.evolve(status, host_ip=host_ips[0])  # hostIPs wins, likewise
        errs = pod_status_errors(status)
        if errs:
            raise InvalidObject("Pod", old.metadata.name, errs)
        return attrs.evolve(old, status=status)

    def delete(self, cluster: Any, obj: Pod) -> None:
        st = state(cluster)
        node_name = obj.spec.node_name
        if not node_name:
            return
        if node_name in st.pods_per_node:
            st.pods_per_node[node_name] = max(0, st.pods_per_node[node_name] - 1)
        node = cluster.find("Node", node_name, "")
        if node is None or obj.spec.host_network:
            return
        for cidr in node.pod_cidrs:
            for ip in obj.status.ips:
                st.ipam.release(node_name, cidr, ip)

    def rebuild(self, cluster: Any) -> None:
        st = state(cluster)
        st.ipam.clear()
        st.pods_per_node.clear()
        nodes = {n.metadata.name: n for n in cluster.list("Node")}
        for pod in cluster.list("Pod"):
            name = pod.spec.node_name
            if not name:
                continue
            st.pods_per_node[name] = st.pods_per_node.get(name, 0) + 1
            node = nodes.get(name)
            if node is None or pod.spec.host_network:
                continue
            for cidr in node.pod_cidrs:
                for ip in pod.status.ips:
                    st.ipam.mark(name, cidr, ip)
        # The workload controller's ownership index is derived state too.
        ctrl = cluster.extensions.get("workloads.controller")
        if ctrl is not None:
            ctrl.rebuild_index(cluster)


def _pending_status(bound: bool) -> Any:
    reason = "node not found" if bound else "0/0 nodes are available"
    return PodStatus(
        phase="Pending",
        conditions=(PodCondition("PodScheduled", "False",
                                 deep_freeze({"reason": "Unschedulable", "message": reason})),),
    )


# --------------------------------------------------------------------------- workloads


class _WorkloadStrategy:
    kind = ""
    api_version = "apps/v1"
    resource = ""
    namespaced = True
    model: Any = None

    def decode(self, data: Any, path: str = "") -> Any:
        return self.model.from_manifest(data, path)

    def _validate(self, obj: Any) -> None:
        errs = _name_errors(obj.metadata)
        sel = obj.spec.selector
        tmpl_labels: Mapping[str, str] = obj.spec.template.metadata.labels
        if sel.empty:
            errs.append(FieldError.required("spec.selector"))
        elif not sel.matches(tmpl_labels):
            errs.append(FieldError.invalid(
                "spec.template.metadata.labels", _go_map(tmpl_labels),
                "`selector` does not match template `labels`"))
        if obj.spec.replicas is not None and obj.spec.replicas < 0:
            errs.append(FieldError.invalid("spec.replicas", obj.spec.replicas,
                                           "must be greater than or equal to 0"))
        errs += pod_spec_errors(obj.spec.template.spec, "spec.template.spec")
        if errs:
            raise InvalidObject(self.kind, obj.metadata.name, errs)

    def _defaulted(self, spec: Any) -> Any:
        # Defaulting reaches into the pod template (SetDefaults_ContainerPort applies to
        # PodTemplateSpec too), so pods stamped from it arrive already defaulted.
        if self.kind != "DaemonSet" and spec.replicas is None:
            spec = attrs.evolve(spec, replicas=1)
        pspec = spec.template.spec
        containers = tuple(_default_container(c) for c in pspec.containers)
        inits = tuple(_default_container(c) for c in pspec.init_containers)
        if containers != pspec.containers or inits != pspec.init_containers:
            pspec = attrs.evolve(pspec, containers=containers, init_containers=inits)
            spec = attrs.evolve(spec, template=attrs.evolve(spec.template, spec=pspec))
        return spec

    def create(self, cluster: Any, obj: Any) -> Any:
        self._validate(obj)
        return attrs.evolve(obj, spec=self._defaulted(obj.spec),
                            metadata=attrs.evolve(obj.metadata, generation=1))

    def update(self, cluster: Any, old: Any, new: Any) -> Any:
        self._validate(new)
        spec = self._defaulted(new.spec)
        if old.spec.selector != spec.selector:
            raise InvalidObject(self.kind, new.metadata.name, [FieldError.invalid(
                "spec.selector", _go_selector(spec.selector), "field is immutable")])
        gen = old.metadata.generation + (1 if spec != old.spec else 0)
        return attrs.evolve(new, spec=spec, status=old.status,
                            metadata=attrs.evolve(new.metadata, generation=gen))

    def delete(self, cluster: Any, obj: Any) -> None:
        pass

    def rebuild(self, cluster: Any) -> None:
        pass


def _go_map(m: Mapping[str, str]) -> Any:
    from kservice.errors import GoLiteral

    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(m.items()))
    return GoLiteral("map[string]string{" + inner + "}")


def _go_selector(sel: Any) -> Any:
    from kservice.errors import GoLiteral

    labels = ", ".join(f'"{k}":"{v}"' for k, v in sorted(sel.match_labels.items()))
    return GoLiteral("v1.LabelSelector{MatchLabels:map[string]string{" + labels +
                     "}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}")


class DeploymentStrategy(_WorkloadStrategy):
    kind = "Deployment"
    resource = "deployments"
    model = Deployment


class ReplicaSetStrategy(_WorkloadStrategy):
    kind = "ReplicaSet"
    resource = "replicasets"
    model = ReplicaSet


class StatefulSetStrategy(_WorkloadStrategy):
    kind = "StatefulSet"
    resource = "statefulsets"
    model = StatefulSet

    def update(self, cluster: Any, old: Any, new: Any) -> Any:
        if old.spec.service_name != new.spec.service_name:
            raise InvalidObject("StatefulSet", new.metadata.name, [FieldError.forbidden(
                "spec", "updates to statefulset spec for fields other than 'replicas', "
                "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")])
        return super().update(cluster, old, new)


class DaemonSetStrategy(_WorkloadStrategy):
    kind = "DaemonSet"
    resource = "daemonsets"
    model = DaemonSet

