"""``initIPFamilyFields``: the registry's dual-stack defaulting and cluster checks (alloc.go).

What this module owns: filling ``ipFamilyPolicy`` and ``ipFamilies`` at allocation time
against the cluster's configured service families, and the 422 errors that
short-circuit everything after it (full validation never runs when this fails).
"""

from __future__ import annotations

from collections.abc import Sequence

from kservice.api._names import family_of
from kservice.api.validation import validate_service_cluster_ips_related_fields
from kservice.errors import FieldError, InvalidObject
from kservice.models import Service

__all__ = ["init_ip_family_fields", "is_matching_prefer_dual_stack"]

_OTHER = {"IPv4": "IPv6", "IPv6": "IPv4"}


def is_matching_prefer_dual_stack(new: Service, old: Service | None) -> bool:
    """``isMatchingPreferDualStackClusterIPFields``: an untouched PreferDualStack service.

    Such services are never auto-upgraded or -downgraded when the cluster's
    dual-stackness changes; only an explicit policy/IP/family edit does that.
    """
    if old is None or new.spec.ip_family_policy is None:
        return False
    if old.spec.type != new.spec.type:
        return False
    if new.spec.type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        return False
    if (old.spec.cluster_ip == "None") != (new.spec.cluster_ip == "None"):
        return False
    if new.spec.ip_family_policy != "PreferDualStack":
        return False
    if old.spec.ip_family_policy != new.spec.ip_family_policy:
        return False
    return (old.spec.cluster_ips == new.spec.cluster_ips
            and old.spec.ip_families == new.spec.ip_families)


def _reduced(new: Sequence[str], old: Sequence[str]) -> bool:
    return bool(new) and len(new) < len(old)


def init_ip_family_fields(
    svc: Service, old: Service | None, configured: Sequence[str]
) -> Service:
    """Default policy and families; raise :class:`InvalidObject` (422) on a misfit.

    ``configured`` are the cluster's service families, primary first (the order of
    ``--service-cluster-ip-range``).
    """
    spec = svc.spec
    if spec.type == "ExternalName":
        return svc
    if is_matching_prefer_dual_stack(svc, old):
        return svc
    name = svc.metadata.name

    policy = spec.ip_family_policy
    if policy is None:
        # Inferred, never a static default: a type edit must not flip single/dual stack.
        if old is not None and old.spec.ip_family_policy is not None:
            policy = old.spec.ip_family_policy
        elif spec.cluster_ip == "None" and not spec.selector:
            policy = "RequireDualStack"  # headless + selectorless defaults to dual
        else:
            policy = "SingleStack"

    # Loose pre-validation so the rest need not consider malformed input. (A defaulted
    # policy is always a supported value, so validating before setting it is equivalent.)
    pre = validate_service_cluster_ips_related_fields(svc)
    if pre:
        raise InvalidObject("Service", name, pre)

    ips = list(svc.spec.cluster_ips)
    fams = list(svc.spec.ip_families)
    errs: list[FieldError] = []
    if old is not None:
        if policy == "SingleStack":
            # Unchanged fields + SingleStack is clear intent to downgrade; [0] is immutable.
            if ips == list(old.spec.cluster_ips) and len(ips) > 1:
                ips = ips[:1]
            if fams == list(old.spec.ip_families) and len(fams) > 1:
                fams = fams[:1]
        else:
            if _reduced(ips, old.spec.cluster_ips):
                errs.append(FieldError.invalid(
                    "spec.ipFamilyPolicy", policy,
                    "must be 'SingleStack' to release the secondary cluster IP"))
            if _reduced(fams, old.spec.ip_families):
                errs.append(FieldError.invalid(
                    "spec.ipFamilyPolicy", policy,
                    "must be 'SingleStack' to release the secondary IP family"))

    if policy == "SingleStack":
        if len(ips) == 2:
            errs.append(FieldError.invalid(
                "spec.ipFamilyPolicy", policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"))
        if len(fams) == 2:
            errs.append(FieldError.invalid(
                "spec.ipFamilyPolicy", policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))

    for i, ip in enumerate(ips):
        if ip == "None":
            break
        fam = family_of(ip)
        if i >= len(fams):
            if fam not in configured:
                errs.append(FieldError.invalid(
                    f"spec.clusterIPs[{i}]", ips, f"{fam} is not configured on this cluster"))
            else:
                fams.append(fam)

    if errs:
        raise InvalidObject("Service", name, errs)

    if spec.cluster_ip == "None" and not spec.selector:
        # Headless + selectorless may carry both families even on a single-stack cluster.
        if not fams:
            fams = [configured[0]]
        if len(fams) < 2 and policy != "SingleStack":
            fams.append(_OTHER.get(fams[0], "IPv4"))
        return svc.evolve_spec(
            ip_family_policy=policy, cluster_ips=tuple(ips), ip_families=tuple(fams))

    if policy == "RequireDualStack" and len(configured) < 2:
        errs.append(FieldError.invalid(
            "spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"))
    for i, fam in enumerate(fams):
        if fam not in configured:
            errs.append(FieldError.invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
    if errs:
        raise InvalidObject("Service", name, errs)

    if not fams:
        fams = [configured[0]]
    if policy != "SingleStack" and len(fams) == 1 and len(configured) == 2:
        fams.append(_OTHER[fams[0]])
    return svc.evolve_spec(
        ip_family_policy=policy, cluster_ips=tuple(ips), ip_families=tuple(fams))
