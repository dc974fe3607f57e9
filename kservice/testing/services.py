"""Hypothesis strategies for Services: valid ones of every type/option, and invalid ones.

Every strategy is composite with keyword-only sub-strategies so callers can narrow it;
defaults shrink toward the smallest Service (one TCP port, type ClusterIP). Each
constraint cites the Kubernetes rule it encodes (reference §1). Manifests are plain dicts
(what ``kubectl apply`` reads); :func:`services` builds models from them.

Valid manifests never request explicit clusterIPs or nodePorts unless asked
(``explicit_node_ports=True``): two independently drawn Services would otherwise collide
in the allocators, which is a property of the *pair*, not of either Service.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kservice.models import Service

__all__ = [
    "INVALID_MUTATIONS",
    "dns1035_labels",
    "iana_service_names",
    "invalid_service_manifests",
    "service_manifests",
    "service_ports",
    "services",
]

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_ANY_TYPE = st.sampled_from(SERVICE_TYPES)
_ANY_PROTOCOL = st.sampled_from(["TCP", "UDP", "SCTP"])
_ANY_PORT = st.integers(1, 65535)

# DNS-1035 label (ValidateServiceName): [a-z]([-a-z0-9]*[a-z0-9])?, max 63.
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def dns1035_labels(draw: st.DrawFn, *, max_size: int = 12) -> str:
    first = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    if max_size <= 1:
        return first
    middle = draw(st.text(alphabet=_ALNUM + "-", max_size=max(0, max_size - 2)))
    last = draw(st.text(alphabet=_ALNUM, max_size=1))
    return first + (middle + last if last else middle.rstrip("-"))


@st.composite
def iana_service_names(draw: st.DrawFn) -> str:
    """IANA_SVC_NAME: <=15 chars of [-a-z0-9], a letter, no '--', no edge hyphen."""
    head = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    parts = draw(st.lists(st.text(alphabet=_ALNUM, min_size=1, max_size=3), max_size=3))
    name = "-".join([head, *parts]) if parts else head
    return name[:15].rstrip("-")


@st.composite
def service_ports(
    draw: st.DrawFn,
    *,
    min_size: int = 1,
    max_size: int = 4,
    protocols: st.SearchStrategy[str] = _ANY_PROTOCOL,
    port_numbers: st.SearchStrategy[int] = _ANY_PORT,
    named_target_ports: bool = True,
) -> list[dict[str, Any]]:
    """Ports with unique names (required when >1) and unique (protocol, port) pairs."""
    n = draw(st.integers(min_size, max_size))
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for i in range(n):
        proto = draw(protocols)

        def unused(p: int, proto: str = proto) -> bool:
            return (proto, p) not in seen

        port = draw(port_numbers.filter(unused))
        seen.add((proto, port))
        p: dict[str, Any] = {"port": port}
        if proto != "TCP" or draw(st.booleans()):
            p["protocol"] = proto
        if n > 1:
            p["name"] = f"p{i}"  # every port must be named once there are several
        target = draw(st.one_of(
            st.none(), st.integers(1, 65535),
            iana_service_names() if named_target_ports else st.nothing()))
        if target is not None:
            p["targetPort"] = target
        out.append(p)
    return out


@st.composite
def service_manifests(
    draw: st.DrawFn,
    *,
    names: st.SearchStrategy[str] | None = None,
    namespace: str = "default",
    types: st.SearchStrategy[str] = _ANY_TYPE,
    ports: st.SearchStrategy[list[dict[str, Any]]] | None = None,
    dual_stack: bool = False,
    explicit_node_ports: bool = False,
    node_port_range: tuple[int, int] = (30000, 32767),
) -> dict[str, Any]:
    """A v1 Service manifest the apiserver accepts on a cluster of the given stack."""
    name = draw(names if names is not None else dns1035_labels())
    svc_type = draw(types)
    spec: dict[str, Any] = {}
    if svc_type != "ClusterIP" or draw(st.booleans()):
        spec["type"] = svc_type
    if svc_type == "ExternalName":
        # DNS-1123 subdomain, one trailing dot allowed; ports optional (§1.2.3/4).
        spec["externalName"] = draw(st.sampled_from(
            ["db.example.com", "db.example.com.", "example.org", "a-b.c.example"]))
        if draw(st.booleans()):
            spec["ports"] = draw(ports if ports is not None else service_ports(max_size=2))
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}

    headless = svc_type == "ClusterIP" and draw(st.integers(0, 4)) == 0
    port_list = draw(ports if ports is not None else service_ports())
    if headless:
        spec["clusterIP"] = "None"  # NodePort/LB may not be headless (§1.2.4)
    if draw(st.booleans()):
        spec["selector"] = {"app": name}
    if explicit_node_ports and svc_type in ("NodePort", "LoadBalancer"):
        lo, hi = node_port_range
        nps = draw(st.lists(st.integers(lo, hi), min_size=len(port_list),
                            max_size=len(port_list), unique=True))
        for p, np in zip(port_list, nps, strict=True):
            p["nodePort"] = np
    spec["ports"] = port_list

    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
        if draw(st.booleans()):
            # 1..86400 inclusive despite the "less than" wording (§1.2.7).
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.integers(1, 86400))}}
    if svc_type == "ClusterIP" and not headless and draw(st.integers(0, 3)) == 0:
        spec["externalIPs"] = [f"203.0.113.{draw(st.integers(1, 254))}"]
    accessible = svc_type in ("NodePort", "LoadBalancer") or "externalIPs" in spec
    if accessible and draw(st.booleans()):
        spec["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    if draw(st.booleans()):
        spec["internalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    if svc_type == "LoadBalancer":
        if draw(st.booleans()):
            spec["allocateLoadBalancerNodePorts"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            spec["loadBalancerClass"] = "example.com/lb"
        if draw(st.integers(0, 3)) == 0:
            spec["loadBalancerSourceRanges"] = ["192.0.2.0/24"]
    if draw(st.integers(0, 3)) == 0:
        spec["trafficDistribution"] = draw(st.sampled_from(
            ["PreferClose", "PreferSameZone", "PreferSameNode"]))
    policies = ["SingleStack", "PreferDualStack"] + (["RequireDualStack"] if dual_stack else [])
    if draw(st.booleans()):
        spec["ipFamilyPolicy"] = draw(st.sampled_from(policies))
    if dual_stack and spec.get("ipFamilyPolicy") in ("PreferDualStack", "RequireDualStack") \
            and draw(st.booleans()):
        spec["ipFamilies"] = draw(st.permutations(["IPv4", "IPv6"]))
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@st.composite
def services(draw: st.DrawFn, *, manifests: st.SearchStrategy[dict[str, Any]] | None = None) -> Service:
    """Service models (undefaulted, as decoded) from :func:`service_manifests`."""
    return Service.from_manifest(draw(manifests if manifests is not None else service_manifests()))


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def apply(m: dict[str, Any]) -> None:
        cur: Any = m
        for key in path[:-1]:
            cur = cur[key]
        cur[path[-1]] = value
    return apply


#: (description, mutation of a valid ClusterIP manifest, field path the 422 must name).
INVALID_MUTATIONS: tuple[tuple[str, Any, str], ...] = (
    ("port 0", _set(("spec", "ports", 0, "port"), 0), "spec.ports[0].port"),
    ("port 70000", _set(("spec", "ports", 0, "port"), 70000), "spec.ports[0].port"),
    ("protocol ICMP", _set(("spec", "ports", 0, "protocol"), "ICMP"), "spec.ports[0].protocol"),
    ("targetPort 0x", _set(("spec", "ports", 0, "targetPort"), "http_x"), "spec.ports[0].targetPort"),
    ("upper-case name", _set(("metadata", "name"), "Bad"), "metadata.name"),
    ("type Foo", _set(("spec", "type"), "Foo"), "spec.type"),
    ("timeout 0", _set(("spec", "sessionAffinityConfig"), {"clientIP": {"timeoutSeconds": 0}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
    ("ETP on ClusterIP", _set(("spec", "externalTrafficPolicy"), "Local"), "spec.externalTrafficPolicy"),
    ("loopback externalIP", _set(("spec", "externalIPs"), ["127.0.0.1"]), "spec.externalIPs[0]"),
    ("trafficDistribution", _set(("spec", "trafficDistribution"), "Random"), "spec.trafficDistribution"),
    ("nodePort on ClusterIP", _set(("spec", "ports", 0, "nodePort"), 30080), "spec.ports[0].nodePort"),
    ("LB source ranges on ClusterIP", _set(("spec", "loadBalancerSourceRanges"), ["10.0.0.0/8"]),
     "spec.LoadBalancerSourceRanges"),
)


@st.composite
def invalid_service_manifests(
    draw: st.DrawFn, *, base: st.SearchStrategy[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """``(manifest, field, description)``: one rule broken on a valid ClusterIP Service."""
    manifest = draw(base if base is not None else service_manifests(
        types=st.just("ClusterIP"), ports=service_ports(max_size=2)))
    manifest["spec"].pop("externalIPs", None)
    manifest["spec"].pop("externalTrafficPolicy", None)
    manifest["spec"]["sessionAffinity"] = "ClientIP" if draw(st.booleans()) else \
        manifest["spec"].get("sessionAffinity", "None")
    desc, mutate, field = draw(st.sampled_from(INVALID_MUTATIONS))
    if field.startswith("spec.sessionAffinityConfig"):
        manifest["spec"]["sessionAffinity"] = "ClientIP"
    if manifest["spec"].get("clusterIP") == "None" and field == "spec.ports[0].nodePort":
        manifest["spec"].pop("clusterIP")
    mutate(manifest)
    return manifest, field, desc
