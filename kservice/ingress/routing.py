"""Which backend an Ingress sends a request to: host and path matching, then endpoints.

Theory of operation
-------------------
The API defines matching only loosely (reference §6.3); controllers fill the gaps. The
choices here, each the common controller behaviour:

1. **Host.** The request's ``Host`` is lower-cased and loses any ``:port``. Rules are
   grouped in tiers: exact host (``foo.bar.com``), wildcard (``*.bar.com`` -- exactly one
   extra leading label, so not ``a.b.bar.com`` nor ``bar.com``), catch-all (no host). The
   first tier holding a rule for the host is *the* server for the request, as nginx picks a
   ``server`` block; its paths are all that are searched.
2. **Path** within the tier, across every considered Ingress:

   * ``Exact``: case-sensitive string equality (``/foo`` != ``/foo/``);
   * ``Prefix``: element-wise -- split both on ``/``, drop empty elements, the rule's
     elements must begin the request's (``/aaa/bb`` does not match ``/aaa/bbb``);
   * ``ImplementationSpecific``: a path ending in ``/*`` is a glob as in the GCE controller
     (``/bar/*`` matches everything beginning ``/bar/``, not ``/bar`` itself); any other
     path behaves as ``Prefix`` (ingress-nginx's reading); an empty path matches all.

   The longest match wins -- measured in path elements, then characters -- and on a tie
   ``Exact`` beats the others; further ties go to the oldest Ingress (creationTimestamp,
   then namespace/name), then to the earlier rule and path, as ingress-nginx orders them.
3. **defaultBackend** when no path matches (or no tier has the host): the
   ``spec.defaultBackend`` of the oldest considered Ingress owning a rule of the chosen
   tier, else of the oldest considered Ingress that has one. With none: no route (the
   controller's own 404 backend).
4. **Endpoints**: the backend Service in the Ingress's namespace; ``port.number`` selects
   the service port with that ``port``, ``port.name`` the one with that name; the ready
   endpoints (``conditions.ready`` not false, kube-proxy's reading) of the Service's
   EndpointSlices whose port carries that service port's name, as ``ip:port``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from kservice.errors import KServiceError, NotFound
from kservice.ingress.models import HTTPIngressPath, Ingress, IngressBackend
from kservice.proxy.types import join_host_port

__all__ = [
    "NoRoute",
    "Route",
    "host_matches",
    "ingress_class_of",
    "normalize_host",
    "path_match",
    "route",
]


class NoRoute(KServiceError, LookupError):
    """No rule and no defaultBackend takes the request."""


@attrs.frozen
class Route:
    """Where one request goes."""

    #: ``namespace/name`` of the Ingress that routed it.
    ingress: str
    #: The matched rule's host (``None`` for a catch-all rule or the defaultBackend).
    host: str | None
    path: str | None
    path_type: str | None
    default_backend: bool
    service_name: str | None
    #: The backend's port: number or name, as the Ingress wrote it.
    service_port: int | str | None
    endpoints: tuple[str, ...] = ()
    #: A resource backend (``apiGroup/kind/name``) instead of a Service.
    resource: str | None = None
    #: Why ``endpoints`` is empty, when it is.
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ingress": self.ingress,
            "host": self.host,
            "path": self.path,
            "pathType": self.path_type,
            "defaultBackend": self.default_backend,
            "service": (None if self.service_name is None
                        else {"name": self.service_name, "port": self.service_port}),
            "endpoints": list(self.endpoints),
        }
        if self.resource is not None:
            out["resource"] = self.resource
        if self.note:
            out["note"] = self.note
        return out


def normalize_host(host: str) -> str:
    """Lower-case, without ``:port`` (and without the brackets of an IPv6 literal)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end != -1 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_matches(rule_host: str, host: str) -> int:
    """Tier of the match: 3 exact, 2 wildcard, 1 catch-all, 0 no match."""
    if not rule_host:
        return 1
    if rule_host.startswith("*."):
        first, _, rest = host.partition(".")
        return 2 if first and rest == rule_host[2:] else 0
    return 3 if rule_host == host else 0


def _elements(path: str) -> list[str]:
    return [e for e in path.split("/") if e]


def path_match(path_type: str | None, rule_path: str, request_path: str
               ) -> tuple[int, int, int] | None:
    """The match's score (elements, characters, exact) or ``None`` if it does not match."""
    if path_type == "Exact":
        if rule_path == request_path:
            return (len(_elements(rule_path)), len(rule_path), 1)
        return None
    if path_type == "ImplementationSpecific" and rule_path.endswith("/*"):
        prefix = rule_path[:-1]
        if request_path.startswith(prefix):
            return (len(_elements(prefix)), len(rule_path), 0)
        return None
    if path_type in ("Prefix", "ImplementationSpecific"):
        rule_el = _elements(rule_path)
        if _elements(request_path)[:len(rule_el)] == rule_el:
            return (len(rule_el), len(rule_path), 0)
        return None
    return None


def _age_key(ing: Ingress) -> tuple[str, str, str]:
    return (ing.metadata.creation_timestamp or "", ing.metadata.namespace, ing.metadata.name)


def ingress_class_of(ing: Ingress) -> str | None:
    """The class an Ingress asks for: ``ingressClassName``, else the legacy annotation."""
    if ing.spec.ingress_class_name is not None:
        return ing.spec.ingress_class_name
    return ing.metadata.annotations.get("kubernetes.io/ingress.class")


def _select(cluster: Any, ingress_name: str | None, namespace: str | None) -> list[Ingress]:
    if "Ingress" not in cluster.kinds:
        raise NoRoute("this cluster has no Ingress kind installed")
    if ingress_name is None:
        found = cluster.list("Ingress", namespace)
    else:
        ns, sep, name = ingress_name.partition("/")
        if not sep:
            ns, name = namespace or "", ingress_name
        if ns:
            found = [cluster.get("Ingress", name, ns)]
        else:
            found = [i for i in cluster.list("Ingress") if i.metadata.name == name]
            if not found:
                raise NotFound("ingresses", name)
            if len(found) > 1:
                raise NoRoute(f'Ingress "{name}" exists in several namespaces '
                              f'({", ".join(i.metadata.namespace for i in found)}); '
                              "name it as NAMESPACE/NAME")
    return sorted(found, key=_age_key)


def route(cluster: Any, host: str, path: str, ingress_name: str | None = None, *,
          namespace: str | None = None, ingress_class: str | None = None) -> Route:
    """Route a request for ``host`` + ``path`` through the cluster's Ingresses.

    ``ingress_name`` (``name`` or ``namespace/name``) restricts routing to one Ingress;
    otherwise every Ingress (of ``namespace``, if given) is merged as a controller does.
    ``ingress_class`` keeps only the Ingresses of that class, as one controller sees them.
    """
    ingresses = _select(cluster, ingress_name, namespace)
    if ingress_class is not None:
        ingresses = [i for i in ingresses if ingress_class_of(i) == ingress_class]
    req_host = normalize_host(host)
    req_path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    if not req_path.startswith("/"):
        req_path = "/" + req_path

    # Which host tier serves this request.
    tier = 0
    for ing in ingresses:
        for rule in ing.spec.rules:
            tier = max(tier, host_matches(rule.host, req_host))

    best: tuple[tuple[int, int, int], tuple[int, int, int], Ingress, str, HTTPIngressPath
                ] | None = None
    owners: list[Ingress] = []
    for order, ing in enumerate(ingresses):
        for r_i, rule in enumerate(ing.spec.rules):
            if tier == 0 or host_matches(rule.host, req_host) != tier:
                continue
            if ing not in owners:
                owners.append(ing)
            for p_i, p in enumerate(rule.paths or ()):
                score = path_match(p.path_type, p.path, req_path)
                if score is None:
                    continue
                rank = (-score[0], -score[1], -score[2])
                pos = (order, r_i, p_i)
                if best is None or (rank, pos) < (best[0], best[1]):
                    best = (rank, pos, ing, rule.host, p)
    if best is not None:
        _, _, ing, rule_host, p = best
        return _resolve(cluster, ing, p.backend, host=rule_host or None, path=p.path,
                        path_type=p.path_type, default=False)
    for ing in [*owners, *ingresses]:
        if ing.spec.default_backend is not None:
            return _resolve(cluster, ing, ing.spec.default_backend, host=None, path=None,
                            path_type=None, default=True)
    scope = (f"Ingress {ingress_name}" if ingress_name
             else f"{len(ingresses)} Ingress(es)")
    if ingress_class is not None:
        scope += f" of class {ingress_class}"
    raise NoRoute(f"no route for http://{req_host or host}{req_path}: no rule of {scope} "
                  "matches and none has a defaultBackend (the controller answers 404)")


def _resolve(cluster: Any, ing: Ingress, backend: IngressBackend, *, host: str | None,
             path: str | None, path_type: str | None, default: bool) -> Route:
    key = f"{ing.metadata.namespace}/{ing.metadata.name}"
    base = {"ingress": key, "host": host, "path": path, "path_type": path_type,
            "default_backend": default}
    if backend.service is None:
        res = backend.resource
        ref = None if res is None else f"{res.api_group or ''}/{res.kind}/{res.name}"
        return Route(service_name=None, service_port=None, resource=ref,
                     note="a resource backend: the controller decides what serves it",
                     **base)  # type: ignore[arg-type]
    svc_b = backend.service
    endpoints, note = service_endpoints(cluster, ing.metadata.namespace, svc_b.name,
                                        svc_b.port)
    return Route(service_name=svc_b.name, service_port=svc_b.port, endpoints=endpoints,
                 note=note, **base)  # type: ignore[arg-type]


def service_endpoints(cluster: Any, namespace: str, name: str, port: int | str
                      ) -> tuple[tuple[str, ...], str]:
    """Ready ``ip:port`` endpoints of a Service port, and a note when there are none."""
    svc = cluster.find("Service", name, namespace) if "Service" in cluster.kinds else None
    if svc is None:
        return (), f'service "{namespace}/{name}" not found (the controller answers 503)'
    if svc.spec.type == "ExternalName":
        return (), (f'service "{namespace}/{name}" is ExternalName '
                    f'({svc.spec.external_name}); the controller proxies to that name')
    sp = None
    for candidate in svc.spec.ports:
        if (isinstance(port, int) and candidate.port == port) or (
                isinstance(port, str) and candidate.name == port):
            sp = candidate
            break
    if sp is None:
        return (), f'service "{namespace}/{name}" has no port {port}'
    protocol = sp.protocol or "TCP"
    out: list[str] = []
    for sl in _slices(cluster, namespace, name):
        ep_port = None
        for p in sl.ports:
            if (p.name or "") == sp.name and (p.protocol or "TCP") == protocol:
                ep_port = p.port
        if ep_port is None:
            continue
        for ep in sl.endpoints:
            if ep.conditions.ready is False or not ep.addresses:
                continue
            out.append(join_host_port(ep.addresses[0], ep_port))
    endpoints = tuple(sorted(set(out)))
    note = "" if endpoints else f'no ready endpoints for service "{namespace}/{name}"'
    return endpoints, note


def _slices(cluster: Any, namespace: str, name: str) -> Iterable[Any]:
    if "EndpointSlice" not in cluster.kinds:
        return ()
    return [s for s in cluster.list("EndpointSlice", namespace)
            if s.metadata.labels.get("kubernetes.io/service-name") == name]
