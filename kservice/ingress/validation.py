"""Ingress and IngressClass validation, with upstream's messages and order.

Follows ``pkg/apis/networking/validation/validation.go`` (``ValidateIngressCreate``,
``ValidateIngressSpec``, ``validateIngressRules``, ``validateHTTPIngressPath``,
``validateIngressBackend``, ``validateIngressTLS``, ``ValidateIngressClass``). Errors come
back as :class:`~kservice.errors.FieldError` lists; :func:`check_ingress` raises them as
``Ingress.networking.k8s.io "<name>" is invalid: ...``.

Update ratcheting (upstream's ``IngressValidationOptions``): a TLS secret name or a
wildcard-host rule that was already invalid in the stored object stays accepted.
"""

from __future__ import annotations

import re

import attrs

from kservice.api._names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_port_name,
    is_valid_port_num,
    max_len_error,
    parse_ip_sloppy,
)
from kservice.api.validation import validate_object_meta
from kservice.errors import FieldError, GoLiteral, InvalidObject
from kservice.ingress.models import (
    PATH_TYPES,
    HTTPIngressPath,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressRule,
    TypedLocalObjectReference,
)

__all__ = [
    "ANNOTATION_INGRESS_CLASS",
    "INGRESS_CLASS_KIND",
    "INGRESS_KIND",
    "check_ingress",
    "check_ingress_class",
    "validate_ingress",
    "validate_ingress_class",
]

INGRESS_KIND = "Ingress.networking.k8s.io"
INGRESS_CLASS_KIND = "IngressClass.networking.k8s.io"
ANNOTATION_INGRESS_CLASS = "kubernetes.io/ingress.class"

# Path text Exact/Prefix paths may not contain / end with (upstream's tables).
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")

WILDCARD_DNS1123_SUBDOMAIN_FMT = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD = re.compile(f"^{WILDCARD_DNS1123_SUBDOMAIN_FMT}$")
WILDCARD_ERR = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character (e.g. '*.example.com', regex used for validation is '"
    + WILDCARD_DNS1123_SUBDOMAIN_FMT + "')"
)
#: IngressClass spec.controller max length (upstream's maxLenIngressClassController).
MAX_CONTROLLER_LEN = 250


@attrs.frozen
class _Opts:
    allow_invalid_secret_name: bool = False
    allow_invalid_wildcard_host_rule: bool = False


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD.match(value):
        errs.append(WILDCARD_ERR)
    return errs


def _is_valid_path_segment_name(name: str) -> list[str]:
    # apimachinery/pkg/api/validation/path.IsValidPathSegmentName
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


def _typed_ref(ref: TypedLocalObjectReference, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if ref.api_group is not None:
        errs += [FieldError.invalid(f"{path}.apiGroup", ref.api_group, m)
                 for m in is_dns1123_subdomain(ref.api_group)]
    if not ref.kind:
        errs.append(FieldError.required(f"{path}.kind", "kind is required"))
    else:
        errs += [FieldError.invalid(f"{path}.kind", ref.kind, m)
                 for m in _is_valid_path_segment_name(ref.kind)]
    if not ref.name:
        errs.append(FieldError.required(f"{path}.name", "name is required"))
    else:
        errs += [FieldError.invalid(f"{path}.name", ref.name, m)
                 for m in _is_valid_path_segment_name(ref.name)]
    return errs


def _backend(b: IngressBackend, path: str) -> list[FieldError]:
    if b.resource is not None and b.service is not None:
        return [FieldError.invalid(path, "", "cannot set both resource and service backends")]
    if b.resource is not None:
        return _typed_ref(b.resource, f"{path}.resource")
    if b.service is None:
        return [FieldError.invalid(path, "", "resource or service backend is required")]
    s = b.service
    errs: list[FieldError] = []
    if not s.name:
        errs.append(FieldError.required(f"{path}.service.name"))
    else:
        errs += [FieldError.invalid(f"{path}.service.name", s.name, m)
                 for m in is_dns1035_label(s.name)]
    if s.port_name and s.port_number:
        errs.append(FieldError.invalid(path, "", "cannot set both port name & port number"))
    elif s.port_name:
        errs += [FieldError.invalid(f"{path}.service.port.name", s.port_name, m)
                 for m in is_valid_port_name(s.port_name)]
    elif s.port_number:
        errs += [FieldError.invalid(f"{path}.service.port.number", s.port_number, m)
                 for m in is_valid_port_num(s.port_number)]
    else:
        errs.append(FieldError.required(path, "port name or number is required"))
    return errs


def _http_path(p: HTTPIngressPath, path: str) -> list[FieldError]:
    if p.path_type is None:
        return [FieldError.required(f"{path}.pathType", "pathType must be specified")]
    errs: list[FieldError] = []
    if p.path_type in ("Exact", "Prefix"):
        if not p.path.startswith("/"):
            errs.append(FieldError.invalid(f"{path}.path", p.path, "must be an absolute path"))
        if p.path:
            for seq in INVALID_PATH_SEQUENCES:
                if seq in p.path:
                    errs.append(FieldError.invalid(f"{path}.path", p.path,
                                                   f"must not contain '{seq}'"))
            for suffix in INVALID_PATH_SUFFIXES:
                if p.path.endswith(suffix):
                    errs.append(FieldError.invalid(f"{path}.path", p.path,
                                                   f"cannot end with '{suffix}'"))
    elif p.path_type == "ImplementationSpecific":
        if p.path and not p.path.startswith("/"):
            errs.append(FieldError.invalid(f"{path}.path", p.path, "must be an absolute path"))
    else:
        errs.append(FieldError.not_supported(f"{path}.pathType", p.path_type, PATH_TYPES))
    errs += _backend(p.backend, f"{path}.backend")
    return errs


def _rule_value(rule: IngressRule, path: str) -> list[FieldError]:
    if rule.paths is None:
        return []
    errs: list[FieldError] = []
    if not rule.paths:
        errs.append(FieldError.required(f"{path}.http.paths"))
    for j, p in enumerate(rule.paths):
        errs += _http_path(p, f"{path}.http.paths[{j}]")
    return errs


def _rules(rules: tuple[IngressRule, ...], opts: _Opts) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(rules):
        path = f"spec.rules[{i}]"
        wildcard = False
        if rule.host:
            if parse_ip_sloppy(rule.host) is not None:
                errs.append(FieldError.invalid(f"{path}.host", rule.host,
                                               "must be a DNS name, not an IP address"))
            if "*" in rule.host:
                errs += [FieldError.invalid(f"{path}.host", rule.host, m)
                         for m in is_wildcard_dns1123_subdomain(rule.host)]
                wildcard = True
            else:
                errs += [FieldError.invalid(f"{path}.host", rule.host, m)
                         for m in is_dns1123_subdomain(rule.host)]
        if not wildcard or not opts.allow_invalid_wildcard_host_rule:
            errs += _rule_value(rule, path)
    return errs


def _tls(ing: Ingress, opts: _Opts) -> list[FieldError]:
    errs: list[FieldError] = []
    for t, tls in enumerate(ing.spec.tls):
        for i, host in enumerate(tls.hosts):
            fn = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            errs += [FieldError.invalid(f"spec.tls[{t}].hosts[{i}]", host, m) for m in fn(host)]
        if not opts.allow_invalid_secret_name and tls.secret_name:
            errs += [FieldError.invalid(f"spec.tls[{t}].secretName", tls.secret_name, m)
                     for m in is_dns1123_subdomain(tls.secret_name)]
    return errs


def _spec(ing: Ingress, opts: _Opts) -> list[FieldError]:
    spec = ing.spec
    errs: list[FieldError] = []
    if not spec.rules and spec.default_backend is None:
        errs.append(FieldError.invalid(
            "spec", GoLiteral("[]networking.IngressRule(nil)"),
            "either `defaultBackend` or `rules` must be specified"))
    if spec.default_backend is not None:
        errs += _backend(spec.default_backend, "spec.defaultBackend")
    if spec.rules:
        errs += _rules(spec.rules, opts)
    if spec.tls:
        errs += _tls(ing, opts)
    if spec.ingress_class_name is not None:
        errs += [FieldError.invalid("spec.ingressClassName", spec.ingress_class_name, m)
                 for m in is_dns1123_subdomain(spec.ingress_class_name)]
    return errs


def _allow_invalid_secret_name(old: Ingress) -> bool:
    return any(t.secret_name and is_dns1123_subdomain(t.secret_name) for t in old.spec.tls)


def _allow_invalid_wildcard_host_rule(old: Ingress) -> bool:
    return any("*" in r.host and _rule_value(r, "") for r in old.spec.rules)


def validate_ingress(ing: Ingress, old: Ingress | None = None) -> list[FieldError]:
    """ValidateIngressCreate, or ValidateIngressUpdate when ``old`` is given."""
    opts = _Opts()
    if old is not None:
        opts = _Opts(allow_invalid_secret_name=_allow_invalid_secret_name(old),
                     allow_invalid_wildcard_host_rule=_allow_invalid_wildcard_host_rule(old))
    errs = validate_object_meta(ing.metadata, is_dns1123_subdomain)
    errs += _spec(ing, opts)
    if old is None:
        annotation = ing.metadata.annotations.get(ANNOTATION_INGRESS_CLASS)
        name = ing.spec.ingress_class_name
        if annotation is not None and name is not None and annotation != name:
            # The path lacks "metadata.", exactly as upstream builds it.
            errs.append(FieldError.invalid(
                f"annotations.{ANNOTATION_INGRESS_CLASS}", annotation,
                "must match `ingressClassName` when both are specified"))
    return errs


def check_ingress(ing: Ingress, old: Ingress | None = None) -> None:
    errs = validate_ingress(ing, old)
    if errs:
        raise InvalidObject(INGRESS_KIND, ing.metadata.name, errs)


_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(f"^{_HTTP_PATH_FMT}$")


def _domain_prefixed_path(field: str, value: str) -> list[FieldError]:
    # apimachinery validation.IsDomainPrefixedPath
    if not value:
        return [FieldError.required(field)]
    host, sep, path = value.partition("/")
    if not sep or not host or not path:
        return [FieldError.invalid(field, value,
                                   'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [FieldError.invalid(field, host, m) for m in is_dns1123_subdomain(host)]
    if not _HTTP_PATH.match(path):
        errs.append(FieldError.invalid(
            field, path, f"Invalid path (regex used for validation is '{_HTTP_PATH_FMT}')"))
    return errs


def validate_ingress_class(ic: IngressClass, old: IngressClass | None = None
                           ) -> list[FieldError]:
    """ValidateIngressClass (+ the controller immutability of ValidateIngressClassUpdate)."""
    errs = validate_object_meta(ic.metadata, is_dns1123_subdomain, namespaced=False)
    if len(ic.controller) > MAX_CONTROLLER_LEN:
        errs.append(FieldError("spec.controller", "Too long", None,
                               f"may not be more than {MAX_CONTROLLER_LEN} bytes"))
    errs += _domain_prefixed_path("spec.controller", ic.controller)
    p = ic.parameters
    if p is not None:
        path = "spec.parameters"
        errs += _typed_ref(TypedLocalObjectReference(kind=p.kind, name=p.name,
                                                     api_group=p.api_group), path)
        if p.scope is None:
            errs.append(FieldError.required(f"{path}.scope"))
        elif p.scope not in ("Cluster", "Namespace"):
            errs.append(FieldError.not_supported(f"{path}.scope", p.scope,
                                                 ("Cluster", "Namespace")))
        elif p.scope == "Namespace" and p.namespace is None:
            errs.append(FieldError.required(
                f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        elif p.scope == "Namespace":
            errs += [FieldError.invalid(f"{path}.namespace", p.namespace, m)
                     for m in is_dns1123_label(p.namespace or "")]
        elif p.scope == "Cluster" and p.namespace is not None:
            errs.append(FieldError.forbidden(
                f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    if old is not None and old.controller != ic.controller:
        errs.append(FieldError.invalid("spec.controller", ic.controller, "field is immutable"))
    return errs


def check_ingress_class(ic: IngressClass, old: IngressClass | None = None) -> None:
    errs = validate_ingress_class(ic, old)
    if errs:
        raise InvalidObject(INGRESS_CLASS_KIND, ic.metadata.name, errs)
