"""kubectl's table columns for Nodes, Pods, workloads, EndpointSlices and Endpoints.

Ported from kubectl's ``pkg/printers/internalversion/printers.go`` (``printNode``,
``printPod``, ``printDeployment``, ``printReplicaSet``, ``printStatefulSet``,
``printDaemonSet``, ``printEndpointSlice``, ``printEndpoints``). Registered with
:func:`kservice.cli.printers.register_columns` when the CLI package is present.
Workload replica counts are computed from the pods in the store (kservice does not maintain
workload ``status``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["format_endpoints", "format_slice_endpoints", "format_slice_ports",
           "register_printers"]

NONE = "<none>"


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_endpoints(ep: Any) -> str:
    """kubectl ``formatEndpoints``: first 3 ``ip:port``, then ``+ N more...``."""
    if not ep.subsets:
        return NONE
    out: list[str] = []
    max_ = 3
    more = False
    count = 0
    for ss in ep.subsets:
        if not ss.ports:
            count += len(ss.addresses)
            for a in ss.addresses:
                if len(out) == max_:
                    more = True
                    break
                out.append(a.ip)
            continue
        for port in ss.ports:
            count += len(ss.addresses)
            for a in ss.addresses:
                if len(out) == max_:
                    more = True
                    break
                out.append(_join_host_port(a.ip, port.port))
    text = ",".join(out)
    return f"{text} + {count - max_} more..." if more else text


def _list_with_more(items: list[str], more: bool, count: int, max_: int) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - max_} more..."
    return text or "<unset>"


def format_slice_ports(ports: Iterable[Any]) -> str:
    items: list[str] = []
    more = False
    count = 0
    for p in ports:
        if len(items) < 3:
            items.append(str(p.port) if p.port is not None else (p.name if p.name is not None
                                                                  else "*"))
        elif len(items) == 3:
            more = True
        count += 1
    return _list_with_more(items, more, count, 3)


def format_slice_endpoints(endpoints: Iterable[Any]) -> str:
    items: list[str] = []
    more = False
    count = 0
    for ep in endpoints:
        for addr in ep.addresses:
            if len(items) < 3:
                items.append(addr)
            elif len(items) == 3:
                more = True
            count += 1
    return _list_with_more(items, more, count, 3)


def _selector_text(sel: Any) -> str:
    parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    for key, op, values in sel.match_expressions:
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        else:
            parts.append(f"!{key}")
    return ",".join(parts) or NONE


def _containers(spec: Any) -> tuple[str, str]:
    names = ",".join(c.name for c in spec.containers)
    images = ",".join(str(c.extra.get("image", "")) for c in spec.containers)
    return names, images


def _pods_of(ctx: Any, obj: Any) -> list[Any]:
    cluster = ctx.cluster
    if cluster is None:
        return []
    ctrl = cluster.extensions.get("workloads.controller")
    if ctrl is None:
        return []
    if obj.kind == "Deployment":
        return [p for rs in ctrl.dependents(cluster, "ReplicaSet", obj)
                for p in ctrl.dependents(cluster, "Pod", rs)]
    return list(ctrl.dependents(cluster, "Pod", obj))


def _node_row(n: Any, ctx: Any) -> Sequence[str]:
    ready = "Unknown"
    for c in n.status.extra.get("conditions") or ():
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else "NotReady"
    status = ready + (",SchedulingDisabled" if n.spec.unschedulable else "")
    roles = sorted(k.split("/", 1)[1] for k in n.metadata.labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    roles = [r for r in roles if r]
    info = n.status.extra.get("nodeInfo") or {}
    row = [n.metadata.name, status, ",".join(roles) or NONE, ctx.age(n),
           info.get("kubeletVersion", "")]
    if ctx.wide:
        internal = n.addresses_of("InternalIP")
        external = n.addresses_of("ExternalIP")
        row += [internal[0] if internal else NONE, external[0] if external else NONE,
                info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"),
                info.get("containerRuntimeVersion", "<unknown>")]
    return row


def pod_ready_and_restarts(p: Any) -> tuple[int, int, int]:
    """kubectl's ``printPod`` READY and RESTARTS: (ready, total, restarts).

    Sidecars (init containers with ``restartPolicy: Always``) count in the total, and as
    ready once started and ready; ordinary init containers never count. Once the pod has
    initialized, RESTARTS is the sidecars' restarts plus the containers'.
    """
    sidecars = {c.name for c in p.spec.init_containers if c.restart_policy == "Always"}
    total = len(p.spec.containers) + len(sidecars)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    initializing = False
    for cs in p.status.extra.get("initContainerStatuses") or ():
        state = cs.get("state") or {}
        restarts += int(cs.get("restartCount", 0))
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += int(cs.get("restartCount", 0))
        terminated = state.get("terminated")
        if terminated is not None and int(terminated.get("exitCode", 0)) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        initializing = True
        break
    if not initializing:
        restarts = sidecar_restarts
        for cs in p.status.extra.get("containerStatuses") or ():
            restarts += int(cs.get("restartCount", 0))
            if cs.get("ready") and (cs.get("state") or {}).get("running") is not None:
                ready += 1
    return ready, total, restarts


def _pod_row(p: Any, ctx: Any) -> Sequence[str]:
    ready, total, restarts = pod_ready_and_restarts(p)
    status = p.status.phase or "Pending"
    if p.metadata.deletion_timestamp is not None:
        status = "Terminating"
    row = [p.metadata.name, f"{ready}/{total}", status, str(restarts), ctx.age(p)]
    if ctx.wide:
        row += [p.status.pod_ip or NONE, p.spec.node_name or NONE, NONE, NONE]
    return row


def _ready_count(pods: list[Any]) -> int:
    return sum(1 for p in pods if p.is_ready and not p.is_terminating)


def _deployment_row(d: Any, ctx: Any) -> Sequence[str]:
    pods = [p for p in _pods_of(ctx, d) if not p.is_terminating]
    ready = _ready_count(pods)
    row = [d.metadata.name, f"{ready}/{d.replicas}", str(len(pods)), str(ready), ctx.age(d)]
    if ctx.wide:
        row += [*_containers(d.spec.template.spec), _selector_text(d.spec.selector)]
    return row


def _rs_row(rs: Any, ctx: Any) -> Sequence[str]:
    pods = [p for p in _pods_of(ctx, rs) if not p.is_terminating]
    row = [rs.metadata.name, str(rs.replicas), str(len(pods)), str(_ready_count(pods)),
           ctx.age(rs)]
    if ctx.wide:
        row += [*_containers(rs.spec.template.spec), _selector_text(rs.spec.selector)]
    return row


def _sts_row(s: Any, ctx: Any) -> Sequence[str]:
    pods = _pods_of(ctx, s)
    row = [s.metadata.name, f"{_ready_count(pods)}/{s.replicas}", ctx.age(s)]
    if ctx.wide:
        row += [*_containers(s.spec.template.spec)]
    return row


def _ds_row(ds: Any, ctx: Any) -> Sequence[str]:
    pods = [p for p in _pods_of(ctx, ds) if not p.is_terminating]
    n = str(len(pods))
    ready = str(_ready_count(pods))
    sel = ",".join(f"{k}={v}" for k, v in sorted(ds.spec.template.spec.node_selector.items()))
    row = [ds.metadata.name, n, n, ready, n, ready, sel or NONE, ctx.age(ds)]
    if ctx.wide:
        row += [*_containers(ds.spec.template.spec), _selector_text(ds.spec.selector)]
    return row


def _slice_row(s: Any, ctx: Any) -> Sequence[str]:
    return [s.metadata.name, s.address_type, format_slice_ports(s.ports),
            format_slice_endpoints(s.endpoints), ctx.age(s)]


def _endpoints_row(e: Any, ctx: Any) -> Sequence[str]:
    return [e.metadata.name, format_endpoints(e), ctx.age(e)]


def register_printers() -> None:
    """Register every column provider this component owns (no-op without the CLI)."""
    try:
        from kservice.cli.printers import register_columns
    except ImportError:  # pragma: no cover
        return
    register_columns("Node", _node_row, headers=("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
                     wide_headers=("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
                                   "CONTAINER-RUNTIME"))
    register_columns("Pod", _pod_row, headers=("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
                     wide_headers=("IP", "NODE", "NOMINATED NODE", "READINESS GATES"))
    register_columns("Deployment", _deployment_row,
                     headers=("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
                     wide_headers=("CONTAINERS", "IMAGES", "SELECTOR"))
    register_columns("ReplicaSet", _rs_row,
                     headers=("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
                     wide_headers=("CONTAINERS", "IMAGES", "SELECTOR"))
    register_columns("StatefulSet", _sts_row, headers=("NAME", "READY", "AGE"),
                     wide_headers=("CONTAINERS", "IMAGES"))
    register_columns("DaemonSet", _ds_row,
                     headers=("NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                              "NODE SELECTOR", "AGE"),
                     wide_headers=("CONTAINERS", "IMAGES", "SELECTOR"))
    register_columns("EndpointSlice", _slice_row,
                     headers=("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"))
    register_columns("Endpoints", _endpoints_row, headers=("NAME", "ENDPOINTS", "AGE"))
