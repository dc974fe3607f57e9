"""The apiserver's service proxy: where ``/api/v1/namespaces/NS/services/ID/proxy/PATH`` goes.

Follows ``pkg/registry/core/service/storage`` ``ResourceLocation`` and the
``UpgradeAwareHandler`` that serves the result (reference §7):

1. ``ID`` is ``name``, ``name:port`` or ``scheme:name:port`` (``SplitSchemeNamePort``);
   more parts, an empty name or a scheme other than ``http``/``https``/empty ->
   400 ``invalid service request "<id>"``.
2. A *numeric* port is looked up among the Service's ports (the Service must exist: 404
   otherwise) and replaced by that port's **name**; none -> 503 ``no service port <n> found
   for service "<name>"``. A non-numeric port is a port name (empty = the unnamed port).
3. The legacy **Endpoints** object of that name is read (404 when absent); no subsets ->
   503 ``no endpoints available for service "<name>"``.
4. From a random subset onwards, a subset with addresses and a port of that name; from a
   random address onwards, the first *valid* one: its ``targetRef`` names a Pod in the same
   namespace whose ``podIPs`` contain the address (``isValidAddress``). Addresses that are
   not pods -- the apiserver's own endpoints behind ``default/kubernetes``, user-managed
   endpoints of selectorless Services -- never qualify (kubernetes#105092, #114670).
   Nothing valid -> 503 ``no endpoints available for service "<id>"`` (the *whole* id).
5. The upstream URL is ``<scheme or http>://<ip>:<port>`` + the cleaned path (Go's
   ``path.Join``, trailing slash kept; without a subpath, the ``?path=`` parameter) + the
   query, passed through whole. A GET or HEAD with an empty path
   (``.../proxy`` without the slash) is answered 301 to the same path plus ``/`` -- only
   after the location resolved, so a missing endpoint still gives 503.

The root proxy ``/api/v1/proxy/namespaces/...`` was removed in v1.10 (PR #59884): 404.

Endpoints come from a stored ``Endpoints`` object when the cluster has that kind; else they
are derived from the Service's EndpointSlices the way the Endpoints controller would write
them (ready endpoints under ``addresses``, the others under ``notReadyAddresses``, one
subset per distinct port list). Randomness is a seedable :class:`random.Random`.
"""

from __future__ import annotations

import posixpath
import random
import re
import urllib.parse
from typing import Any

import attrs

from kservice.errors import KServiceError

__all__ = [
    "ProxyResult",
    "ServiceProxyError",
    "parse_proxy_path",
    "proxy_url",
    "resource_location",
    "split_scheme_name_port",
]

_VALID_SCHEMES = ("", "http", "https")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_PROXY_PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<id>[^/]+)/proxy(?P<rest>/.*)?$")
#: The Status message of a 404 for an API path nothing serves.
NOT_FOUND_RESOURCE = "the server could not find the requested resource"

# HTTP status -> metav1.StatusReason, as the Status object carries it.
_REASONS = {301: "MovedPermanently", 400: "BadRequest", 404: "NotFound",
            503: "ServiceUnavailable", 200: ""}


class ServiceProxyError(KServiceError):
    """A proxy request the apiserver refuses; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.reason = _REASONS.get(status, "")
        self.message = message
        super().__init__(message)


@attrs.frozen
class ProxyResult:
    """What the apiserver does with one proxy request."""

    status: int
    #: The upstream URL the request is forwarded to (status 200: proxied).
    url: str | None = None
    #: The ``Location`` header of a 301.
    location: str | None = None
    #: The Status message of an error.
    message: str = ""

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.url is not None:
            out["url"] = self.url
        if self.location is not None:
            out["location"] = self.location
        if self.message:
            out["message"] = self.message
            out["reason"] = self.reason
        return out


def split_scheme_name_port(id_: str) -> tuple[str, str, str] | None:
    """apimachinery ``SplitSchemeNamePort``; ``None`` when invalid."""
    parts = id_.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if name and scheme in _VALID_SCHEMES:
        return scheme, name, port
    return None


def _go_parse_int64(text: str) -> int | None:
    if not _GO_INT.match(text):
        return None
    n = int(text)
    return n if -(1 << 63) <= n < (1 << 63) else None


# --------------------------------------------------------------------------- Endpoints view


@attrs.frozen
class _Address:
    ip: str
    target_kind: str | None
    target_name: str | None
    target_namespace: str | None


@attrs.frozen
class _Subset:
    addresses: tuple[_Address, ...]
    #: (name, port)
    ports: tuple[tuple[str, int], ...]


def _kinds(cluster: Any) -> tuple[str, ...]:
    return tuple(cluster.kinds)


def _legacy_endpoints(cluster: Any, namespace: str, name: str) -> list[_Subset] | None:
    """The Endpoints object's subsets, or ``None`` when it does not exist."""
    if "Endpoints" in _kinds(cluster):
        eps = cluster.find("Endpoints", name, namespace)
        if eps is None:
            return None
        out = []
        for ss in eps.subsets:
            addrs = tuple(_Address(a.ip, *(_ref(a.target_ref))) for a in ss.addresses)
            out.append(_Subset(addrs, tuple((p.name, p.port) for p in ss.ports)))
        return out
    return _endpoints_from_slices(cluster, namespace, name)


def _ref(ref: Any) -> tuple[str | None, str | None, str | None]:
    if ref is None:
        return None, None, None
    return ref.kind, ref.name, ref.namespace


def _endpoints_from_slices(cluster: Any, namespace: str, name: str) -> list[_Subset] | None:
    # The Endpoints controller writes an object for every Service with a selector (not
    # ExternalName); the slices' existence stands for it here.
    if "EndpointSlice" not in _kinds(cluster):
        return None
    slices = [s for s in cluster.list("EndpointSlice", namespace)
              if s.metadata.labels.get("kubernetes.io/service-name") == name]
    svc = cluster.find("Service", name, namespace) if "Service" in _kinds(cluster) else None
    if not slices:
        if svc is not None and svc.spec.selector is not None and svc.spec.type != "ExternalName":
            return []  # an Endpoints object with no subsets
        return None
    by_ports: dict[tuple[tuple[str, int], ...], list[_Address]] = {}
    for sl in sorted(slices, key=lambda s: s.metadata.name):
        ports = tuple(sorted((p.name or "", p.port or 0) for p in sl.ports
                             if p.port is not None))
        for ep in sl.endpoints:
            ready = by_ports.setdefault(ports, [])
            if ep.conditions.ready is False:
                # notReadyAddresses: the subset exists, but is never proxied to.
                continue
            for ip in ep.addresses:
                ready.append(_Address(ip, *_ref(ep.target_ref)))
    # RepackSubsets: addresses sorted, one subset per distinct port list.
    return [_Subset(tuple(sorted(addrs, key=lambda a: a.ip)), ports)
            for ports, addrs in sorted(by_ports.items())]


def _valid_address(cluster: Any, namespace: str, addr: _Address) -> bool:
    # isValidAddress: a targetRef to a Pod of this namespace whose podIPs hold the IP.
    if addr.target_name is None or addr.target_namespace != namespace:
        return False
    if "Pod" not in _kinds(cluster):
        return False
    pod = cluster.find("Pod", addr.target_name, namespace)
    if pod is None:
        return False
    return addr.ip in pod.status.ips


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def resource_location(cluster: Any, namespace: str, id_: str, *,
                      rng: random.Random | None = None) -> str:
    """``ResourceLocation``: ``scheme://ip:port`` (scheme may be empty) or raise."""
    rng = rng or random.Random(cluster.config.seed)
    split = split_scheme_name_port(id_)
    if split is None:
        raise ServiceProxyError(400, f'invalid service request "{id_}"')
    scheme, name, port = split
    port_num = _go_parse_int64(port)
    if port_num is not None:
        svc = cluster.find("Service", name, namespace) if "Service" in _kinds(cluster) else None
        if svc is None:
            raise ServiceProxyError(404, f'services "{name}" not found')
        for sp in svc.spec.ports:
            if sp.port == port_num:
                port = sp.name
                break
        else:
            raise ServiceProxyError(
                503, f'no service port {port_num} found for service "{name}"')
    subsets = _legacy_endpoints(cluster, namespace, name)
    if subsets is None:
        raise ServiceProxyError(404, f'endpoints "{name}" not found')
    if not subsets:
        raise ServiceProxyError(503, f'no endpoints available for service "{name}"')
    ss_seed = rng.randrange(len(subsets))
    for i in range(len(subsets)):
        ss = subsets[(ss_seed + i) % len(subsets)]
        if not ss.addresses:
            continue
        for p_name, p_port in ss.ports:
            if p_name != port:
                continue
            addr_seed = rng.randrange(len(ss.addresses))
            for t in range(len(ss.addresses)):
                addr = ss.addresses[(addr_seed + t) % len(ss.addresses)]
                if not _valid_address(cluster, namespace, addr):
                    continue
                return f"{scheme}://{_join_host_port(addr.ip, p_port)}"
    raise ServiceProxyError(503, f'no endpoints available for service "{id_}"')


def _join_preserving_trailing_slash(*elems: str) -> str:
    # Go's path.Join (cleaned; "" when every element is empty) + the trailing slash kept.
    parts = [e for e in elems if e]
    result = posixpath.normpath("/".join(parts)) if parts else ""
    if result.startswith("//"):
        result = "/" + result.lstrip("/")
    if result == ".":
        result = ""
    for e in reversed(elems):
        if e:
            if e.endswith("/") and not result.endswith("/"):
                result += "/"
            break
    return result


def parse_proxy_path(request: str) -> tuple[str, str, str, str]:
    """Split a request URI into (namespace, id, path after ``proxy``, query).

    Raises :class:`ServiceProxyError` 404 for anything that is not a service proxy path
    (the removed root proxy ``/api/v1/proxy/...`` included).
    """
    uri, _, query = request.partition("?")
    m = _PROXY_PATH.match(uri)
    if m is None:
        raise ServiceProxyError(404, NOT_FOUND_RESOURCE)
    return m.group("ns"), m.group("id"), m.group("rest") or "", query


def proxy_url(cluster: Any, request: str, *, method: str = "GET",
              rng: random.Random | None = None) -> ProxyResult:
    """What the apiserver does with ``method request`` (a path with optional query)."""
    try:
        namespace, id_, rest, query = parse_proxy_path(request)
        location = resource_location(cluster, namespace, id_, rng=rng)
    except ServiceProxyError as exc:
        return ProxyResult(status=exc.status, message=exc.message)
    scheme, _, hostport = location.partition("://")
    if not rest and query:
        # ``.../proxy?path=/x``: without a subpath, ServiceProxyOptions.Path comes from the
        # query (with a subpath, the subpath overrides it).
        rest = urllib.parse.parse_qs(query).get("path", [""])[0]
    path = _join_preserving_trailing_slash("", rest)
    if not path and method.upper() in ("GET", "HEAD"):
        uri = request.partition("?")[0]
        return ProxyResult(status=301, location=uri + "/" + (f"?{query}" if query else ""))
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{scheme or 'http'}://{hostport}{path}" + (f"?{query}" if query else "")
    return ProxyResult(status=200, url=url)
