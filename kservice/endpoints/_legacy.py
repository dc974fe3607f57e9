"""The legacy Endpoints controller's output for one Service (pure).

Upstream ``pkg/controller/endpoint/endpoints_controller.go`` (``syncService``,
``podToEndpointAddressForService``, ``addEndpointSubset``, ``truncateEndpoints``) and
``pkg/api/v1/endpoints`` (``RepackSubsets``). Differences from the EndpointSlice controller
worth knowing:

* one family only -- the Service's primary (``ipFamilies[0]``);
* terminating pods are left out unless ``publishNotReadyAddresses`` is set;
* not-ready pods go to ``notReadyAddresses`` (with ``publishNotReadyAddresses`` everything is
  in ``addresses``);
* at most 1000 addresses: beyond that the lists are truncated (ready ones preferred,
  proportionally per subset) and ``endpoints.kubernetes.io/over-capacity: truncated`` is set.

``RepackSubsets`` sorts by Go hashes of addresses and ports; kservice sorts addresses by
(IP, UID), ports by (name, port, protocol) and subsets by their first address -- the same
grouping, a stable but different order than a real cluster's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from kservice.endpoints._desired import (
    find_port,
    should_pod_be_in_endpoints,
    should_set_hostname,
)
from kservice.models.discovery import (
    EndpointAddress,
    Endpoints,
    EndpointSubset,
    LegacyEndpointPort,
    ObjectReference,
)
from kservice.models.meta import ObjectMeta
from kservice.models.service import Service
from kservice.models.workloads import Pod

__all__ = [
    "ANNOTATION_OVER_CAPACITY",
    "LABEL_SKIP_MIRROR",
    "MAX_CAPACITY",
    "desired_legacy_endpoints",
    "legacy_endpoints_from_entries",
    "pod_legacy_entries",
    "repack_subsets",
    "truncate_endpoints",
]

MAX_CAPACITY = 1000
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LABEL_HEADLESS = "service.kubernetes.io/headless"

_Entry = tuple[EndpointAddress, bool, LegacyEndpointPort | None]


def _family(svc: Service, pod: Pod) -> str:
    if svc.spec.ip_families:
        return svc.spec.ip_families[0]
    cip = svc.spec.cluster_ip or ""
    if cip and cip != "None":
        return "IPv6" if ":" in cip else "IPv4"
    return "IPv6" if ":" in pod.status.pod_ip else "IPv4"


def _port_key(p: LegacyEndpointPort) -> tuple[str, int, str]:
    return (p.name, p.port, p.protocol)


def repack_subsets(entries: Iterable[_Entry]) -> tuple[EndpointSubset, ...]:
    """Group addresses offering the same set of ports into one subset."""
    addr_ports: dict[tuple[str, str], set[LegacyEndpointPort | None]] = {}
    addr_info: dict[tuple[str, str], tuple[EndpointAddress, bool]] = {}
    port_addrs: dict[LegacyEndpointPort | None, set[tuple[str, str, bool]]] = {}
    for addr, ready, port in entries:
        uid = addr.target_ref.uid if addr.target_ref else ""
        key = (addr.ip, uid)
        addr_info[key] = (addr, ready)
        addr_ports.setdefault(key, set()).add(port)
        port_addrs.setdefault(port, set()).add((addr.ip, uid, ready))
    groups: dict[frozenset[tuple[str, str, bool]], list[LegacyEndpointPort]] = {}
    for port, addrs in port_addrs.items():
        g = groups.setdefault(frozenset(addrs), [])
        if port is not None:
            g.append(port)
    subsets = []
    for group, ports in groups.items():
        ordered = sorted(group)
        ready_addrs = tuple(addr_info[(ip, uid)][0] for ip, uid, r in ordered if r)
        not_ready = tuple(addr_info[(ip, uid)][0] for ip, uid, r in ordered if not r)
        subsets.append(EndpointSubset(
            addresses=ready_addrs, not_ready_addresses=not_ready,
            ports=tuple(sorted(ports, key=_port_key)),
        ))
    subsets.sort(key=lambda s: ((s.addresses or s.not_ready_addresses)[0].ip,
                                [(p.name, p.port) for p in s.ports]))
    return tuple(subsets)


def truncate_endpoints(subsets: tuple[EndpointSubset, ...]) -> tuple[tuple[EndpointSubset, ...],
                                                                     bool]:
    """``truncateEndpoints``: cap at 1000 addresses; ready ones preferred, per-subset share."""
    total_ready = sum(len(s.addresses) for s in subsets)
    total_not_ready = sum(len(s.not_ready_addresses) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return subsets, False
    truncate_ready = False
    max_ = MAX_CAPACITY - total_ready
    num_total = total_not_ready
    if total_ready > MAX_CAPACITY:
        truncate_ready = True
        max_ = MAX_CAPACITY
        num_total = total_ready
    can_add = max_
    out = []
    for s in subsets:
        n = len(s.addresses) if truncate_ready else len(s.not_ready_addresses)
        to_add = min(math.ceil(n / num_total * max_), can_add) if num_total else 0
        if truncate_ready:
            s = EndpointSubset(addresses=s.addresses[:to_add], not_ready_addresses=(),
                               ports=s.ports)
            can_add -= len(s.addresses)
        else:
            s = EndpointSubset(addresses=s.addresses,
                               not_ready_addresses=s.not_ready_addresses[:to_add],
                               ports=s.ports)
            can_add -= len(s.not_ready_addresses)
        out.append(s)
    return tuple(out), True


@functools.lru_cache(maxsize=4096)
def _legacy_port(name: str, port: int, protocol: str, app_protocol: str | None
                 ) -> LegacyEndpointPort:
    return LegacyEndpointPort(name=name, port=port, protocol=protocol, app_protocol=app_protocol)


def pod_legacy_entries(svc: Service, pod: Pod, ref: ObjectReference | None = None
                       ) -> tuple[_Entry, ...]:
    """One pod's (address, ready, port) entries for the legacy Endpoints object."""
    pnr = svc.spec.publish_not_ready_addresses
    if not should_pod_be_in_endpoints(pod, include_terminating=pnr):
        return ()
    fam = _family(svc, pod)
    ip = next((i for i in pod.status.ips if (":" in i) == (fam == "IPv6")), None)
    if ip is None:
        return ()
    addr = EndpointAddress(
        ip=ip,
        hostname=pod.spec.hostname if should_set_hostname(pod, svc) else "",
        node_name=pod.spec.node_name,
        target_ref=ref or ObjectReference(kind="Pod", namespace=pod.metadata.namespace,
                                          name=pod.metadata.name, uid=pod.metadata.uid),
    )
    ready = pnr or pod.is_ready
    if not svc.spec.ports:
        return ((addr, ready, None),) if svc.is_headless else ()
    out = []
    for sp in svc.spec.ports:
        protocol = sp.protocol or "TCP"
        tp: int | str = sp.target_port if sp.target_port not in (0, "") else sp.port
        num = find_port(pod, tp, protocol)
        if num is None:
            continue
        out.append((addr, ready, _legacy_port(sp.name, num, protocol, sp.app_protocol)))
    return tuple(out)


def legacy_endpoints_from_entries(svc: Service, entries: Iterable[_Entry]) -> Endpoints:
    """Repack, truncate and label: the Endpoints object (without server metadata)."""
    subsets, truncated = truncate_endpoints(repack_subsets(entries))
    labels = {k: v for k, v in svc.metadata.labels.items()}
    labels[LABEL_SKIP_MIRROR] = "true"
    if svc.is_headless:
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    annotations = {ANNOTATION_OVER_CAPACITY: "truncated"} if truncated else {}
    return Endpoints(
        metadata=ObjectMeta(name=svc.metadata.name, namespace=svc.metadata.namespace,
                            labels=labels, annotations=annotations),
        subsets=subsets,
    )


def desired_legacy_endpoints(svc: Service, pods: Iterable[Pod]) -> Endpoints:
    """The Endpoints object the controller writes for ``svc`` (without server metadata)."""
    ordered = sorted(pods, key=lambda p: p.metadata.name)
    return legacy_endpoints_from_entries(
        svc, (e for p in ordered for e in pod_legacy_entries(svc, p)))
