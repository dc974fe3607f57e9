"""Service validation as kube-apiserver v1.34 runs it (pkg/apis/core/validation).

What this module owns: ``ValidateService``, ``ValidateServiceUpdate`` and
``ValidateServiceClusterIPsRelatedFields`` as pure functions of Service models returning
:class:`~kservice.errors.FieldError` lists in upstream's order (the order decides how a
multi-error 422 message reads). Label and annotation maps are walked in sorted key order:
upstream walks a Go map (random order); sorting keeps our output deterministic.

Feature-gate state pinned to v1.34 defaults: ``PreferSameTrafficDistribution`` is beta and
on (three trafficDistribution values), ``StrictIPCIDRValidation`` is off (IPs are parsed
sloppily, leading zeros accepted).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from kservice.api._names import (
    family_of,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    parse_cidr_sloppy,
    parse_ip_sloppy,
)
from kservice.api.defaults import (
    MAX_CLIENT_IP_AFFINITY_SECONDS,
    externally_accessible,
    needs_health_check,
)
from kservice.errors import FieldError, GoLiteral
from kservice.models import ObjectMeta, Service, ServicePort

__all__ = [
    "ANNOTATION_LB_SOURCE_RANGES",
    "SUPPORTED_TRAFFIC_DISTRIBUTIONS",
    "go_ip_families",
    "go_service_port_key",
    "is_headless",
    "service_warnings",
    "validate_annotations",
    "validate_labels",
    "validate_load_balancer_status",
    "validate_object_meta",
    "validate_service",
    "validate_service_cluster_ips_related_fields",
    "validate_service_status_update",
    "validate_service_update",
]

ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
ANNOTATION_TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"
ANNOTATION_LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
#: v1.34: PreferSameTrafficDistribution is beta (on); upstream passes this list unsorted.
SUPPORTED_TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def is_headless(svc: Service) -> bool:
    """validation.go ``isHeadlessService``: ``clusterIPs == ["None"]``."""
    return len(svc.spec.cluster_ips) == 1 and svc.spec.cluster_ips[0] == "None"


def go_ip_families(families: tuple[str, ...]) -> GoLiteral:
    """``%#v`` of a ``[]core.IPFamily``."""
    if not families:
        return GoLiteral("[]core.IPFamily(nil)")
    return GoLiteral("[]core.IPFamily{" + ", ".join(f'"{f}"' for f in families) + "}")


def go_service_port_key(protocol: str | None, port: int) -> GoLiteral:
    """``%#v`` of the ``core.ServicePort{Protocol, Port}`` key upstream's duplicate check uses."""
    return GoLiteral(
        f'core.ServicePort{{Name:"", Protocol:"{protocol or ""}", AppProtocol:(*string)(nil), '
        f"Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, "
        "NodePort:0}"
    )


def _each(fn: Callable[[str], list[str]], field: str, value: str) -> list[FieldError]:
    return [FieldError.invalid(field, value, m) for m in fn(value)]


def validate_labels(labels: Mapping[str, str] | None, field: str) -> list[FieldError]:
    """metav1validation.ValidateLabels (errors carry the map's path, not the key's)."""
    errs: list[FieldError] = []
    for k in sorted(labels or {}):
        errs += _each(is_qualified_name, field, k)
        errs += _each(is_valid_label_value, field, (labels or {})[k])
    return errs


def validate_annotations(annotations: Mapping[str, str], field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k in sorted(annotations):
        errs += [FieldError.invalid(field, k, m) for m in is_qualified_name(k.lower())]
        total += len(k) + len(annotations[k])
    if total > _TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(
            FieldError(field, "Too long", None, f"may not be more than {_TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
        )
    return errs


def validate_object_meta(
    meta: ObjectMeta, name_fn: Callable[[str], list[str]], *, namespaced: bool = True
) -> list[FieldError]:
    """``ValidateObjectMeta`` with the kind's name function."""
    errs: list[FieldError] = []
    if meta.generate_name:
        # A generateName is validated as a prefix: upstream's maskTrailingDash replaces
        # the last two characters of "x-"-ending prefixes with "a" (verbatim quirk).
        prefix = meta.generate_name
        if len(prefix) > 1 and prefix.endswith("-"):
            prefix = prefix[:-2] + "a"
        errs += [FieldError.invalid("metadata.generateName", meta.generate_name, m)
                 for m in name_fn(prefix)]
    if not meta.name:
        errs.append(FieldError.required("metadata.name", "name or generateName is required"))
    else:
        errs += _each(name_fn, "metadata.name", meta.name)
    if namespaced:
        if not meta.namespace:
            errs.append(FieldError.required("metadata.namespace"))
        else:
            errs += _each(is_dns1123_label, "metadata.namespace", meta.namespace)
    elif meta.namespace:
        errs.append(FieldError.forbidden("metadata.namespace", "not allowed on this type"))
    if meta.generation < 0:
        errs.append(FieldError.invalid("metadata.generation", meta.generation,
                                       "must be greater than or equal to 0"))
    errs += validate_labels(meta.labels, "metadata.labels")
    errs += validate_annotations(meta.annotations, "metadata.annotations")
    return errs


# --------------------------------------------------------------------------- ports


def _validate_port(
    sp: ServicePort, require_name: bool, names: set[str], path: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    if require_name and not sp.name:
        errs.append(FieldError.required(f"{path}.name"))
    elif sp.name:
        errs += _each(is_dns1123_label, f"{path}.name", sp.name)
        if sp.name in names:
            errs.append(FieldError.duplicate(f"{path}.name", sp.name))
        else:
            names.add(sp.name)
    errs += [FieldError.invalid(f"{path}.port", sp.port, m) for m in is_valid_port_num(sp.port)]
    if not sp.protocol:
        errs.append(FieldError.required(f"{path}.protocol"))
    elif sp.protocol not in PROTOCOLS:
        errs.append(FieldError.not_supported(f"{path}.protocol", sp.protocol, PROTOCOLS))
    tp = sp.target_port
    if isinstance(tp, int):
        errs += [FieldError.invalid(f"{path}.targetPort", tp, m) for m in is_valid_port_num(tp)]
    else:
        errs += _each(is_valid_port_name, f"{path}.targetPort", tp)
    if sp.app_protocol is not None:
        errs += _each(is_qualified_name, f"{path}.appProtocol", sp.app_protocol)
    # Headless services may have any targetPort: upstream commented the check out for
    # compatibility with the v1 API.
    return errs


# --------------------------------------------------------------------------- dual-stack


def validate_service_cluster_ips_related_fields(svc: Service) -> list[FieldError]:
    """``ValidateServiceClusterIPsRelatedFields`` (skipped for ExternalName)."""
    spec = svc.spec
    if spec.type == "ExternalName":
        return []
    errs: list[FieldError] = []
    ips = list(spec.cluster_ips)
    if spec.cluster_ip:
        if not ips:
            errs.append(FieldError.required("spec.clusterIPs"))
        elif ips[0] != spec.cluster_ip:
            errs.append(FieldError.invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif ips:
        errs.append(FieldError.invalid(
            "spec.clusterIPs", ips, "must be empty when `clusterIP` is not specified"))

    seen: set[str] = set()
    for i, fam in enumerate(spec.ip_families):
        if fam not in IP_FAMILIES:
            errs.append(FieldError.not_supported(f"spec.ipFamilies[{i}]", fam, IP_FAMILIES))
        if fam in seen:
            errs.append(FieldError.duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(fam)

    if spec.ip_family_policy is not None and spec.ip_family_policy not in IP_FAMILY_POLICIES:
        errs.append(FieldError.not_supported(
            "spec.ipFamilyPolicy", spec.ip_family_policy, IP_FAMILY_POLICIES))

    invalid_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                invalid_ips = True
                errs.append(FieldError.invalid(
                    "spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        msgs = is_valid_ip(ip)
        if msgs:
            invalid_ips = True
            errs += [FieldError.invalid(f"spec.clusterIPs[{i}]", ip, m) for m in msgs]

    if len(ips) > 2:
        errs.append(FieldError.invalid("spec.clusterIPs", ips, "may only hold up to 2 values"))
    if invalid_ips:
        # Bad entries would skew the index and dual-stackness messages below.
        return errs

    if len(ips) > 1:
        fams = {family_of(ip) for ip in ips}
        if fams != {"IPv4", "IPv6"}:
            errs.append(FieldError.invalid(
                "spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))

    if not is_headless(svc) and ips and spec.ip_families:
        for i, ip in enumerate(ips):
            if i > len(spec.ip_families) - 1:
                break
            fam = spec.ip_families[i]
            if fam == "IPv4" and family_of(ip) == "IPv6":
                errs.append(FieldError.invalid(
                    f"spec.clusterIPs[{i}]", ip,
                    f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if fam == "IPv6" and family_of(ip) != "IPv6":
                errs.append(FieldError.invalid(
                    f"spec.clusterIPs[{i}]", ip,
                    f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


# --------------------------------------------------------------------------- non-special IPs


def _validate_non_special_ip(text: str, field: str) -> list[FieldError]:
    ip = parse_ip_sloppy(text)
    if ip is None:
        return [FieldError.invalid(field, text, "must be a valid IP address")]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Go's To4(): mapped addresses are judged as IPv4
    errs = []
    if ip.is_unspecified:
        errs.append(FieldError.invalid(field, text, f"may not be unspecified ({text})"))
    if ip.is_loopback:
        errs.append(FieldError.invalid(
            field, text, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(FieldError.invalid(
            field, text, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    packed = ip.packed
    link_local_mc = (
        packed[:3] == b"\xe0\x00\x00" if ip.version == 4
        else packed[0] == 0xFF and packed[1] & 0x0F == 0x02  # Go: multicast, scope 2
    )
    if link_local_mc:
        errs.append(FieldError.invalid(
            field, text, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


# --------------------------------------------------------------------------- ValidateService


def _validate_lb_class(old: Service | None, svc: Service) -> list[FieldError]:
    errs: list[FieldError] = []
    cls = svc.spec.load_balancer_class
    if old is not None and old.spec.type == "LoadBalancer" and svc.spec.type == "LoadBalancer":
        if old.spec.load_balancer_class != cls:
            errs.append(FieldError.invalid("spec.loadBalancerClass", cls, "may not change once set"))
    if svc.spec.type == "LoadBalancer":
        if cls is not None:
            errs += _each(is_qualified_name, "spec.loadBalancerClass", cls)
    elif cls is not None:
        errs.append(FieldError.forbidden(
            "spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def validate_service(svc: Service) -> list[FieldError]:
    """``ValidateService``: every create-time check, in upstream's order."""
    spec = svc.spec
    errs = validate_object_meta(svc.metadata, is_dns1035_label)
    ann = svc.metadata.annotations
    if (ANNOTATION_TOPOLOGY_MODE in ann and ANNOTATION_TOPOLOGY_HINTS in ann
            and ann[ANNOTATION_TOPOLOGY_MODE] != ann[ANNOTATION_TOPOLOGY_HINTS]):
        errs.append(FieldError.invalid(
            f"metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]", ann[ANNOTATION_TOPOLOGY_MODE],
            f"must match annotations[{ANNOTATION_TOPOLOGY_HINTS}] when both are specified"))

    headless = is_headless(svc)
    if not spec.ports and not headless and spec.type != "ExternalName":
        errs.append(FieldError.required("spec.ports"))
    if spec.type in ("LoadBalancer", "NodePort"):
        if headless:
            errs.append(FieldError.invalid(
                "spec.clusterIPs[0]", spec.cluster_ips[0],
                f"may not be set to 'None' for {spec.type} services"))
    elif spec.type == "ExternalName":
        if spec.cluster_ips:
            errs.append(FieldError.forbidden(
                "spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.ip_families:
            errs.append(FieldError.forbidden(
                "spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.ip_family_policy is not None:
            errs.append(FieldError.forbidden(
                "spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        # The value (a CNAME) may carry one trailing dot to mark it fully qualified.
        cname = spec.external_name or ""
        if cname.endswith("."):
            cname = cname[:-1]
        if cname:
            errs += _each(is_dns1123_subdomain, "spec.externalName", cname)
        else:
            errs.append(FieldError.required("spec.externalName"))

    names: set[str] = set()
    for i, p in enumerate(spec.ports):
        errs += _validate_port(p, len(spec.ports) > 1, names, f"spec.ports[{i}]")

    if spec.selector is not None:
        errs += validate_labels(spec.selector, "spec.selector")

    if not spec.session_affinity:
        errs.append(FieldError.required("spec.sessionAffinity"))
    elif spec.session_affinity not in SESSION_AFFINITIES:
        errs.append(FieldError.not_supported(
            "spec.sessionAffinity", spec.session_affinity, SESSION_AFFINITIES))
    if spec.session_affinity == "ClientIP":
        errs += _validate_client_ip_config(svc)
    elif spec.session_affinity == "None" and spec.session_affinity_config is not None:
        errs.append(FieldError.forbidden(
            "spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs += validate_service_cluster_ips_related_fields(svc)

    for i, ip in enumerate(spec.external_ips):
        path = f"spec.externalIPs[{i}]"
        msgs = is_valid_ip(ip)
        if msgs:
            errs += [FieldError.invalid(path, ip, m) for m in msgs]
        else:
            errs += _validate_non_special_ip(ip, path)

    if not spec.type:
        errs.append(FieldError.required("spec.type"))
    elif spec.type not in SERVICE_TYPES:
        errs.append(FieldError.not_supported("spec.type", spec.type, SERVICE_TYPES))

    if spec.type == "ClusterIP":
        for i, p in enumerate(spec.ports):
            if p.node_port:
                errs.append(FieldError.forbidden(
                    f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))

    # Duplicate nodePorts are keyed on (protocol, nodePort): TCP and UDP may share one.
    node_ports: set[tuple[str | None, int]] = set()
    for i, p in enumerate(spec.ports):
        if not p.node_port:
            continue
        key = (p.protocol, p.node_port)
        if key in node_ports:
            errs.append(FieldError.duplicate(f"spec.ports[{i}].nodePort", p.node_port))
        node_ports.add(key)

    ports: set[tuple[str | None, int]] = set()
    for i, p in enumerate(spec.ports):
        key = (p.protocol, p.port)
        if key in ports:
            errs.append(FieldError.duplicate(f"spec.ports[{i}]", go_service_port_key(*key)))
        ports.add(key)

    if spec.load_balancer_source_ranges:
        # The capitalised path is upstream's, verbatim.
        path = "spec.LoadBalancerSourceRanges"
        if spec.type != "LoadBalancer":
            errs.append(FieldError.forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, value in enumerate(spec.load_balancer_source_ranges):
            # Space padding is tolerated: a leftover of the annotation's format.
            v = value.strip()
            errs += [FieldError.invalid(f"{path}[{i}]", v, m) for m in is_valid_cidr(v)]
    elif ANNOTATION_LB_SOURCE_RANGES in ann:
        path = f"metadata.annotations[{ANNOTATION_LB_SOURCE_RANGES}]"
        if spec.type != "LoadBalancer":
            errs.append(FieldError.forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        val = ann[ANNOTATION_LB_SOURCE_RANGES].strip()
        if val:
            for v in val.split(","):
                v = v.strip()
                errs += [FieldError.invalid(path, v, m) for m in is_valid_cidr(v)]

    if spec.allocate_load_balancer_node_ports is not None and spec.type != "LoadBalancer":
        errs.append(FieldError.forbidden(
            "spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if spec.type == "LoadBalancer" and spec.allocate_load_balancer_node_ports is None:
        # Upstream's path really lacks "spec.".
        errs.append(FieldError.required("allocateLoadBalancerNodePorts"))

    errs += _validate_lb_class(None, svc)
    errs += _validate_traffic_policies(svc)
    return errs


def _validate_client_ip_config(svc: Service) -> list[FieldError]:
    cfg = svc.spec.session_affinity_config
    why = "when session affinity type is ClientIP"
    if cfg is None:
        return [FieldError.required("spec.sessionAffinityConfig", why)]
    if cfg.client_ip is None:
        return [FieldError.required("spec.sessionAffinityConfig.clientIP", why)]
    t = cfg.client_ip.timeout_seconds
    path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
    if t is None:
        return [FieldError.required(path, why)]
    if t <= 0 or t > MAX_CLIENT_IP_AFFINITY_SECONDS:
        # The wording says "less than" but 86400 itself is accepted.
        return [FieldError.invalid(
            path, t, f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}")]
    return []


def _validate_traffic_policies(svc: Service) -> list[FieldError]:
    spec = svc.spec
    errs: list[FieldError] = []
    etp = spec.external_traffic_policy
    if not externally_accessible(svc):
        if etp:
            errs.append(FieldError.invalid(
                "spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(FieldError.required("spec.externalTrafficPolicy"))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(FieldError.not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES))

    hc = spec.health_check_node_port
    if not needs_health_check(svc):
        if hc:
            errs.append(FieldError.invalid(
                "spec.healthCheckNodePort", hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif not hc:
        errs.append(FieldError.required("spec.healthCheckNodePort"))
    else:
        errs += [FieldError.invalid("spec.healthCheckNodePort", hc, m) for m in is_valid_port_num(hc)]

    itp = spec.internal_traffic_policy
    if itp is None:
        # Not forbidden on ExternalName: upstream never checked it there before beta.
        if spec.type in ("NodePort", "LoadBalancer", "ClusterIP"):
            errs.append(FieldError.required("spec.internalTrafficPolicy"))
    elif itp not in TRAFFIC_POLICIES:
        errs.append(FieldError.not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES))

    td = spec.traffic_distribution
    if td is not None and td not in SUPPORTED_TRAFFIC_DISTRIBUTIONS:
        # field.NotSupported with an unsorted list: upstream's order is kept.
        errs.append(FieldError(
            "spec.trafficDistribution", "Unsupported value", td,
            "supported values: " + ", ".join(f'"{v}"' for v in SUPPORTED_TRAFFIC_DISTRIBUTIONS)))
    return errs


# --------------------------------------------------------------------------- update


def _validate_upgrade_downgrade_cluster_ips(old: Service, svc: Service) -> list[FieldError]:
    if "ExternalName" in (svc.spec.type, old.spec.type):
        return []
    if is_headless(old) and is_headless(svc):
        return []
    errs: list[FieldError] = []
    o, n = list(old.spec.cluster_ips), list(svc.spec.cluster_ips)
    if len(o) == len(n):
        for i, ip in enumerate(o):
            if ip != n[i]:
                errs.append(FieldError.invalid(f"spec.clusterIPs[{i}]", n, "may not change once set"))
    elif len(o) > len(n):
        if not n:
            errs.append(FieldError.invalid(
                "spec.clusterIPs[0]", n, "primary clusterIP can not be unset"))
        if o and n and n[0] != o[0]:
            errs.append(FieldError.invalid("spec.clusterIPs[0]", n, "may not change once set"))
        if len(n) == 1 and svc.spec.ip_family_policy != "SingleStack":
            errs.append(FieldError.invalid(
                "spec.ipFamilyPolicy", svc.spec.ip_family_policy,
                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif o and n[0] != o[0]:
        errs.append(FieldError.invalid("spec.clusterIPs[0]", n, "may not change once set"))
    return errs


def _validate_upgrade_downgrade_ip_families(old: Service, svc: Service) -> list[FieldError]:
    if "ExternalName" in (svc.spec.type, old.spec.type):
        return []
    if is_headless(old) or is_headless(svc):
        # Moving to or from headless, and headless services, may change families freely.
        return []
    errs: list[FieldError] = []
    o, n = old.spec.ip_families, svc.spec.ip_families
    if len(o) == len(n):
        for i, fam in enumerate(o):
            if fam != n[i]:
                # Upstream reports index 0 whichever entry changed.
                errs.append(FieldError.invalid(
                    "spec.ipFamilies[0]", go_ip_families(n), "may not change once set"))
    elif len(o) > len(n):
        if not svc.spec.cluster_ips:
            errs.append(FieldError.invalid(
                "spec.ipFamilies[0]", go_ip_families(n), "primary ipFamily can not be unset"))
        if n and n[0] != o[0]:
            errs.append(FieldError.invalid(
                "spec.ipFamilies[0]", list(svc.spec.cluster_ips), "may not change once set"))
        if len(n) == 1 and svc.spec.ip_family_policy != "SingleStack":
            errs.append(FieldError.invalid(
                "spec.ipFamilyPolicy", svc.spec.ip_family_policy,
                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif o and n and n[0] != o[0]:
        errs.append(FieldError.invalid(
            "spec.ipFamilies[0]", list(svc.spec.cluster_ips), "may not change once set"))
    return errs


def validate_service_update(svc: Service, old: Service) -> list[FieldError]:
    """``ValidateServiceUpdate``: update-only checks, then the full :func:`validate_service`."""
    errs: list[FieldError] = []
    if svc.metadata.name != old.metadata.name:
        errs.append(FieldError.invalid("metadata.name", svc.metadata.name, "field is immutable"))
    if svc.metadata.namespace != old.metadata.namespace:
        errs.append(FieldError.invalid(
            "metadata.namespace", svc.metadata.namespace, "field is immutable"))
    errs += _validate_upgrade_downgrade_cluster_ips(old, svc)
    errs += _validate_upgrade_downgrade_ip_families(old, svc)
    errs += _validate_lb_class(old, svc)
    if needs_health_check(old) and needs_health_check(svc):
        if old.spec.health_check_node_port != svc.spec.health_check_node_port:
            errs.append(FieldError.forbidden("spec.healthCheckNodePort", "field is immutable"))
    return errs + validate_service(svc)


#: ``supportedLoadBalancerIPMode``.
LB_IP_MODES = ("Proxy", "VIP")


def validate_load_balancer_status(svc: Service, field: str = "status.loadBalancer"
                                  ) -> list[FieldError]:
    """``ValidateLoadBalancerStatus`` (v1.34, AllowServiceLBStatusOnNonLB off): ingress only
    on a LoadBalancer; each ``ip`` a valid IP with an ``ipMode`` (VIP or Proxy), ``ipMode``
    only with an ``ip``; each ``hostname`` a DNS-1123 subdomain and not an IP."""
    errs: list[FieldError] = []
    ingress = svc.status.load_balancer_ingress
    path = f"{field}.ingress"
    if (svc.spec.type or "ClusterIP") != "LoadBalancer" and ingress:
        return [FieldError.forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    for i, ing in enumerate(ingress):
        idx = f"{path}[{i}]"
        if ing.ip:
            errs += _each(is_valid_ip, f"{idx}.ip", ing.ip)
        if ing.ip_mode is None:
            if ing.ip:
                errs.append(FieldError.required(f"{idx}.ipMode", "must be specified when `ip` is set"))
        elif not ing.ip:
            errs.append(FieldError.forbidden(f"{idx}.ipMode",
                                             "may not be specified when `ip` is not set"))
        elif ing.ip_mode not in LB_IP_MODES:
            errs.append(FieldError.not_supported(f"{idx}.ipMode", ing.ip_mode, LB_IP_MODES))
        if ing.hostname:
            errs += _each(is_dns1123_subdomain, f"{idx}.hostname", ing.hostname)
            if parse_ip_sloppy(ing.hostname) is not None:
                errs.append(FieldError.invalid(f"{idx}.hostname", ing.hostname,
                                               "must be a DNS name, not an IP address"))
    return errs


def validate_service_status_update(svc: Service, old: Service) -> list[FieldError]:
    """``ValidateServiceStatusUpdate``: metadata identity, then the load balancer status."""
    errs: list[FieldError] = []
    if svc.metadata.name != old.metadata.name:
        errs.append(FieldError.invalid("metadata.name", svc.metadata.name, "field is immutable"))
    return errs + validate_load_balancer_status(svc)


# --------------------------------------------------------------------------- warnings


def _ip_warnings(path: str, value: str) -> list[str]:
    """apimachinery ``GetWarningsForIP`` (only for values that passed validation)."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return []
    strict = _parse_ip_strict(value)
    if strict is None or (strict.version == 6 and strict.ipv4_mapped is not None):
        # Leading zeros (accepted sloppily, refused strictly) or IPv4-mapped IPv6.
        return [f'{path}: non-standard IP address "{value}" will be considered invalid in a '
                f'future Kubernetes release: use "{ip}"']
    if strict.version == 6 and str(strict) != value:
        return [f'{path}: IPv6 address "{value}" should be in RFC 5952 canonical format '
                f'("{strict}")']
    return []


def _parse_ip_strict(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _cidr_warnings(path: str, value: str) -> list[str]:
    """apimachinery ``GetWarningsForCIDR``."""
    net = parse_cidr_sloppy(value)
    if net is None:
        return []
    addr = parse_ip_sloppy(value.partition("/")[0])
    out: list[str] = []
    if addr is not None and addr != net.network_address:
        out.append(f'{path}: CIDR value "{value}" is ambiguous in this context (should be '
                   f'"{net}" or "{addr}/{net.max_prefixlen}"?)')
    try:
        strict = ipaddress.ip_network(value, strict=False)
        mapped = strict.version == 6 and strict.network_address.ipv4_mapped is not None
        strict_ok = not mapped and _parse_ip_strict(value.partition("/")[0]) is not None
    except ValueError:
        strict_ok = False
    if not strict_ok:
        out.append(f'{path}: non-standard CIDR value "{value}" will be considered invalid in a '
                   f'future Kubernetes release: use "{net}"')
    if not out and net.version == 6:
        canon = f"{_parse_ip_strict(value.partition('/')[0])}/{net.prefixlen}"
        if canon != value:
            out.append(f'{path}: IPv6 CIDR value "{value}" should be in RFC 5952 canonical '
                       f'format ("{canon}")')
    return out


def service_warnings(svc: Service) -> list[str]:
    """``GetWarningsForService``: what kubectl prints as ``Warning: ...`` on success.

    Wording read from pkg/api/service/warnings.go and apimachinery's IP warnings
    (BELIEVED for the exact CIDR texts); deterministic order as upstream's.
    """
    spec = svc.spec
    out: list[str] = []
    if ANNOTATION_TOPOLOGY_HINTS in svc.metadata.annotations:
        out.append(f"annotation {ANNOTATION_TOPOLOGY_HINTS} is deprecated, please use "
                   f"{ANNOTATION_TOPOLOGY_MODE} instead")
    if spec.cluster_ip and spec.cluster_ip != "None":
        for i, ip in enumerate(spec.cluster_ips):
            out += _ip_warnings(f"spec.clusterIPs[{i}]", ip)
    for i, ip in enumerate(spec.external_ips):
        out += _ip_warnings(f"spec.externalIPs[{i}]", ip)
    if spec.load_balancer_ip:
        out += _ip_warnings("spec.loadBalancerIP", spec.load_balancer_ip)
    for i, c in enumerate(spec.load_balancer_source_ranges):
        out += _cidr_warnings(f"spec.loadBalancerSourceRanges[{i}]", c)
    if spec.type == "ExternalName" and spec.external_ips:
        out.append('spec.externalIPs is ignored when spec.type is "ExternalName"')
    if spec.type != "ExternalName" and spec.external_name:
        out.append('spec.externalName is ignored when spec.type is not "ExternalName"')
    return out
