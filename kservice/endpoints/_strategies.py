"""Store strategies for EndpointSlice (discovery.k8s.io/v1) and legacy v1 Endpoints.

These run for *user* writes (selectorless Services get their endpoints this way); the
controllers write with ``put_raw`` like any controller whose objects are already valid.

EndpointSlice defaulting: ``ports[].name`` nil -> ``""``, ``ports[].protocol`` nil -> ``TCP``.
Validation (``ValidateEndpointSlice``, reference §4.5): addressType required and one of
IPv4/IPv6/FQDN and immutable; at most 1000 endpoints; 1..100 addresses per endpoint, each of
the addressType's family; hostname a DNS-1123 label; ports at most 20000 (1.34), numbers
1..65535, protocol TCP/UDP/SCTP, names IANA-service-name-like.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import attrs

from kservice.errors import FieldError, InvalidObject
from kservice.models.discovery import Endpoints, EndpointSlice

__all__ = ["EndpointSliceStrategy", "EndpointsStrategy", "validate_endpoint_slice"]

MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROTOCOLS = ("SCTP", "TCP", "UDP")


def _ip_error(path: str, value: str, family: str) -> FieldError | None:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return FieldError.invalid(path, value, "must be a valid IP address")
    if (ip.version == 6) != (family == "IPv6"):
        want = "IPv6" if family == "IPv6" else "IPv4"
        return FieldError.invalid(path, value, f"must be an {want} address")
    if ip.is_unspecified:
        return FieldError.invalid(path, value, "may not be unspecified (0.0.0.0)"
                                  if ip.version == 4 else "may not be unspecified (::)")
    if ip.is_loopback:
        return FieldError.invalid(path, value, "may not be in the loopback range (127.0.0.0/8, "
                                  "::1/128)")
    if ip.is_link_local:
        return FieldError.invalid(path, value, "may not be in the link-local range "
                                  "(169.254.0.0/16, fe80::/10)")
    if ip.is_multicast:
        return FieldError.invalid(path, value, "may not be in the link-local multicast range "
                                  "(224.0.0.0/24, ff02::/10)")
    return None


def validate_endpoint_slice(sl: EndpointSlice) -> list[FieldError]:
    errs: list[FieldError] = []
    if not sl.metadata.name:
        errs.append(FieldError.required("metadata.name", "name or generateName is required"))
    at = sl.address_type
    if not at:
        errs.append(FieldError.required("addressType"))
    elif at not in ("IPv4", "IPv6", "FQDN"):
        errs.append(FieldError.not_supported("addressType", at, ("FQDN", "IPv4", "IPv6")))
    if len(sl.endpoints) > MAX_ENDPOINTS:
        errs.append(FieldError.too_many("endpoints", len(sl.endpoints),
                                        f"must have at most {MAX_ENDPOINTS} items"))
    for i, ep in enumerate(sl.endpoints):
        p = f"endpoints[{i}]"
        if not ep.addresses:
            errs.append(FieldError.required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(ep.addresses) > MAX_ADDRESSES:
            errs.append(FieldError.too_many(f"{p}.addresses", len(ep.addresses),
                                            f"must have at most {MAX_ADDRESSES} items"))
        if at in ("IPv4", "IPv6"):
            for j, a in enumerate(ep.addresses):
                e = _ip_error(f"{p}.addresses[{j}]", a, at)
                if e is not None:
                    errs.append(e)
        if ep.hostname is not None and not _LABEL.match(ep.hostname):
            errs.append(FieldError.invalid(
                f"{p}.hostname", ep.hostname,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
                "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
    if len(sl.ports) > MAX_PORTS:
        errs.append(FieldError.too_many("ports", len(sl.ports),
                                        f"must have at most {MAX_PORTS} items"))
    seen: set[str] = set()
    for i, port in enumerate(sl.ports):
        p = f"ports[{i}]"
        if port.name:
            if port.name in seen:
                errs.append(FieldError.duplicate(f"{p}.name", port.name))
            seen.add(port.name)
        if port.protocol is not None and port.protocol not in _PROTOCOLS:
            errs.append(FieldError.not_supported(f"{p}.protocol", port.protocol, _PROTOCOLS))
        if port.port is not None and not 1 <= port.port <= 65535:
            errs.append(FieldError.invalid(f"{p}.port", port.port,
                                           "must be between 1 and 65535, inclusive"))
    return errs


def _default_slice(sl: EndpointSlice) -> EndpointSlice:
    ports = tuple(
        attrs.evolve(p, name="" if p.name is None else p.name, protocol=p.protocol or "TCP")
        for p in sl.ports
    )
    return attrs.evolve(sl, ports=ports)


class EndpointSliceStrategy:
    kind = "EndpointSlice"
    api_version = "discovery.k8s.io/v1"
    resource = "endpointslices"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> EndpointSlice:
        return EndpointSlice.from_manifest(data, path)

    def create(self, cluster: Any, obj: EndpointSlice) -> EndpointSlice:
        obj = _default_slice(obj)
        errs = validate_endpoint_slice(obj)
        if errs:
            raise InvalidObject("EndpointSlice", obj.metadata.name, errs)
        return obj

    def update(self, cluster: Any, old: EndpointSlice, new: EndpointSlice) -> EndpointSlice:
        new = _default_slice(new)
        errs = validate_endpoint_slice(new)
        if old.address_type != new.address_type:
            errs.append(FieldError.invalid("addressType", new.address_type,
                                           "field is immutable"))
        if errs:
            raise InvalidObject("EndpointSlice", new.metadata.name, errs)
        return new

    def delete(self, cluster: Any, obj: EndpointSlice) -> None:
        pass

    def rebuild(self, cluster: Any) -> None:
        # The controllers' indexes are derived from stored objects: re-derive them after a
        # restore (``load_objects``) or a rolled-back transaction.
        ctrl = cluster.extensions.get("endpoints.controller")
        if ctrl is not None and "Service" in cluster.kinds and "Pod" in cluster.kinds:
            ctrl.rebuild_indexes(cluster)
        mirror = cluster.extensions.get("endpoints.mirroring")
        if mirror is not None:
            mirror.rebuild(cluster)


class EndpointsStrategy:
    kind = "Endpoints"
    api_version = "v1"
    resource = "endpoints"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Endpoints:
        return Endpoints.from_manifest(data, path)

    def _validate(self, ep: Endpoints) -> None:
        errs: list[FieldError] = []
        if not ep.metadata.name:
            errs.append(FieldError.required("metadata.name", "name or generateName is required"))
        for i, ss in enumerate(ep.subsets):
            for field, addrs in (("addresses", ss.addresses),
                                 ("notReadyAddresses", ss.not_ready_addresses)):
                for j, a in enumerate(addrs):
                    fam = "IPv6" if ":" in a.ip else "IPv4"
                    e = _ip_error(f"subsets[{i}].{field}[{j}].ip", a.ip, fam)
                    if e is not None:
                        errs.append(e)
            for j, port in enumerate(ss.ports):
                if not 1 <= port.port <= 65535:
                    errs.append(FieldError.invalid(f"subsets[{i}].ports[{j}].port", port.port,
                                                   "must be between 1 and 65535, inclusive"))
                if port.protocol not in _PROTOCOLS:
                    errs.append(FieldError.not_supported(f"subsets[{i}].ports[{j}].protocol",
                                                         port.protocol, _PROTOCOLS))
        if errs:
            raise InvalidObject("Endpoints", ep.metadata.name, errs)

    def create(self, cluster: Any, obj: Endpoints) -> Endpoints:
        self._validate(obj)
        return obj

    def update(self, cluster: Any, old: Endpoints, new: Endpoints) -> Endpoints:
        self._validate(new)
        return new

    def delete(self, cluster: Any, obj: Endpoints) -> None:
        pass

    def rebuild(self, cluster: Any) -> None:
        pass

