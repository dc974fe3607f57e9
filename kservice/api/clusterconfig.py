"""kubeadm ``ClusterConfiguration`` -> :class:`kservice.config.ClusterConfig`.

What this module owns: reading ``kubeadm.k8s.io/v1beta4`` (and v1beta3) ClusterConfiguration
documents -- ``networking.serviceSubnet`` (``"v4"`` or ``"v4,v6"``), ``podSubnet``,
``dnsDomain``, and the kube-apiserver ``extraArgs`` that matter here
(``service-node-port-range``, ``service-cluster-ip-range``) -- and validating them with the
messages kube-apiserver's flag validation prints (cmd/kube-apiserver/app/options).
v1beta4 ``extraArgs`` is a list of ``{name, value}``; v1beta3's is a map.
Other documents in the stream (InitConfiguration, KubeletConfiguration...) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import yaml

from kservice.api._names import is_dns1123_subdomain, parse_cidr_sloppy
from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import FieldError, InvalidInput

__all__ = [
    "load_cluster_config",
    "parse_port_range",
    "read_cluster_configuration",
    "validate_dns_domain",
    "validate_pod_subnets",
    "validate_service_cluster_ip_ranges",
]

_GROUP_VERSIONS = ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")
#: While the legacy bitmap allocator is written (``DisableAllocatorDualWrite`` off: v1.33 and
#: older defaults), a service range may have at most 20 host bits. v1.34 lifts the cap.
MAX_CIDR_BITS = 20


def parse_port_range(value: str, flag: str = "--service-node-port-range") -> tuple[int, int]:
    """utilnet ``PortRange.Set``: ``30000-32767``, ``30000+2767`` or a single port."""

    def atoi(text: str) -> int:
        t = text.strip()
        if not t or not (t.lstrip("+-").isdigit() and t.isascii()):
            raise _flag_error(value, flag, f'strconv.Atoi: parsing "{text}": invalid syntax')
        return int(t)

    v = value.strip()
    if not v:
        raise _flag_error(value, flag, "an empty range disables nothing here; give first-last")
    hy, plus = v.find("-"), v.find("+")
    if hy == -1 and plus == -1:
        low = high = atoi(v)
    elif hy != -1 and plus == -1:
        low, high = atoi(v[:hy]), atoi(v[hy + 1:])
    elif plus != -1 and hy == -1:
        low = atoi(v[:plus])
        high = low + atoi(v[plus + 1:])
    else:
        raise _flag_error(value, flag, f"unable to parse port range: {v}")
    if low > 65535 or high > 65535:
        raise _flag_error(value, flag, f"the port range cannot be greater than 65535: {v}")
    if high < low:
        raise _flag_error(value, flag, f"end port cannot be less than start port: {v}")
    return low, high


def _flag_error(value: str, flag: str, why: str) -> InvalidInput:
    return InvalidInput(f'invalid argument "{value}" for "{flag}" flag: {why}')


def validate_service_cluster_ip_ranges(
    ranges: Iterable[str], *, legacy_bitmap: bool = False
) -> tuple[str, ...]:
    """Parse and check ``--service-cluster-ip-range`` as kube-apiserver does; return CIDRs.

    The 20-host-bit cap applies only with ``legacy_bitmap`` (dual-write on). Without it,
    the IPAddress allocator refuses IPv6 prefixes shorter than /64, which we report here
    because no Service could ever get an address from such a range.
    """
    items = [r.strip() for r in ranges]
    errs: list[str] = []
    nets = []
    for r in items:
        net = parse_cidr_sloppy(r)
        if net is None:
            raise InvalidInput(
                f'invalid argument "{",".join(items)}" for "--service-cluster-ip-range" flag: '
                f"invalid CIDR address: {r}")
        nets.append(net)
    if not nets:
        errs.append("--service-cluster-ip-range must contain at least one valid cidr")
    if len(nets) > 2:
        errs.append("--service-cluster-ip-range must not contain more than two entries")
    if nets and legacy_bitmap:
        errs += _max_cidr(nets[0], "--service-cluster-ip-range")
    if len(nets) == 2:
        if nets[0].version == nets[1].version:
            errs.append("--service-cluster-ip-range[0] and --service-cluster-ip-range[1] "
                        "must be of different IP family")
        if legacy_bitmap:
            errs += _max_cidr(nets[1], "--service-cluster-ip-range[1]")
    if not legacy_bitmap:
        errs += [f"shortest allowed prefix length for service CIDR is 64, got {n.prefixlen}"
                 for n in nets if n.version == 6 and n.prefixlen < 64]
    if errs:
        raise InvalidInput("; ".join(errs), path="networking.serviceSubnet")
    return tuple(str(n) for n in nets)


def validate_pod_subnets(value: str, field: str = "networking.podSubnet") -> tuple[str, ...]:
    """kubeadm's ``ValidateIPNetFromString`` for the pod subnet: one CIDR, or two of
    different families (dual-stack), comma separated; returns the masked CIDRs."""
    items = [p.strip() for p in value.split(",")]
    nets = [parse_cidr_sloppy(p) for p in items]
    if not value.strip() or any(n is None for n in nets):
        raise InvalidInput(str(FieldError.invalid(field, value, "couldn't parse subnet")))
    if len(nets) > 2 or (len(nets) == 2 and nets[0].version == nets[1].version):  # type: ignore[union-attr]
        raise InvalidInput(str(FieldError.invalid(
            field, value, "expected one (IPv4 or IPv6) CIDR or two CIDRs from each family "
                          "for dual-stack networking")))
    return tuple(str(n) for n in nets)


def validate_dns_domain(value: str, field: str = "networking.dnsDomain") -> str:
    """kubeadm's ``ValidateNetworking``: the cluster domain is an RFC 1123 subdomain
    (a trailing dot, as in a DNS zone name, is dropped first)."""
    domain = value[:-1] if value.endswith(".") else value
    errs = is_dns1123_subdomain(domain)
    if errs:
        raise InvalidInput("; ".join(str(FieldError.invalid(field, value, e)) for e in errs))
    return domain


def _max_cidr(net: Any, flag: str) -> list[str]:
    bits, ones = net.max_prefixlen, net.prefixlen
    if bits - ones > MAX_CIDR_BITS:
        return [f"specified {flag} is too large; for {bits}-bit addresses, "
                f"the mask must be >= {bits - MAX_CIDR_BITS}"]
    return []


def _extra_args(api_server: Mapping[str, Any], api_version: str) -> dict[str, str]:
    raw = api_server.get("extraArgs")
    if raw is None:
        return {}
    out: dict[str, str] = {}
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or "name" not in item:
                raise InvalidInput("extraArgs entries must be {name, value}",
                                   path=f"apiServer.extraArgs[{i}]")
            # v1beta4 allows repeated names; the last one wins for a single-valued flag.
            out[str(item["name"])] = str(item.get("value", ""))
        return out
    if isinstance(raw, Mapping):
        if api_version == "kubeadm.k8s.io/v1beta4":
            raise InvalidInput(
                "extraArgs is a list of {name, value} in kubeadm.k8s.io/v1beta4",
                path="apiServer.extraArgs", hint="a map is the v1beta3 format")
        return {str(k): str(v) for k, v in raw.items()}
    raise InvalidInput("extraArgs must be a list", path="apiServer.extraArgs")


def read_cluster_configuration(
    doc: Mapping[str, Any], base: ClusterConfig = DEFAULT_CLUSTER_CONFIG
) -> ClusterConfig:
    """One ClusterConfiguration document -> ClusterConfig (unset fields keep ``base``'s)."""
    api_version = doc.get("apiVersion")
    if doc.get("kind") != "ClusterConfiguration":
        raise InvalidInput(f'expected kind "ClusterConfiguration", got "{doc.get("kind")}"',
                           path="kind")
    if api_version not in _GROUP_VERSIONS:
        raise InvalidInput(
            f'unsupported ClusterConfiguration apiVersion "{api_version}"', path="apiVersion",
            hint="use kubeadm.k8s.io/v1beta4")
    changes: dict[str, Any] = {}
    networking = doc.get("networking") or {}
    if not isinstance(networking, Mapping):
        raise InvalidInput("networking must be an object", path="networking")
    api_server = doc.get("apiServer") or {}
    if not isinstance(api_server, Mapping):
        raise InvalidInput("apiServer must be an object", path="apiServer")
    args = _extra_args(api_server, str(api_version))

    # kubeadm passes serviceSubnet as --service-cluster-ip-range; an explicit extraArg wins.
    subnet = args.get("service-cluster-ip-range", networking.get("serviceSubnet"))
    if subnet is not None:
        changes["service_subnets"] = validate_service_cluster_ip_ranges(str(subnet).split(","))
    pod = networking.get("podSubnet")
    if pod is not None:
        changes["pod_subnets"] = validate_pod_subnets(str(pod))
    domain = networking.get("dnsDomain")
    if domain is not None:
        changes["dns_domain"] = validate_dns_domain(str(domain))
    if "service-node-port-range" in args:
        changes["node_port_range"] = parse_port_range(args["service-node-port-range"])
    cfg = attrs.evolve(base, **changes)
    if "service_subnets" in changes and "cluster_dns" not in changes:
        # kubeadm's DNS Service address: the 10th address of the primary range.
        net = parse_cidr_sloppy(cfg.service_subnets[0])
        if net is not None:
            cfg = attrs.evolve(cfg, cluster_dns=(str(net.network_address + 10),))
    return cfg


def load_cluster_config(text: str, base: ClusterConfig = DEFAULT_CLUSTER_CONFIG,
                        source: str | None = None) -> ClusterConfig:
    """Read a YAML stream; apply its ClusterConfiguration (other kubeadm kinds are skipped)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InvalidInput(f"invalid YAML: {getattr(e, 'problem', e)}", source=source,
                           line=mark.line + 1 if mark else None,
                           column=mark.column + 1 if mark else None) from None
    found = [d for d in docs if isinstance(d, Mapping) and d.get("kind") == "ClusterConfiguration"]
    if not found:
        raise InvalidInput("no ClusterConfiguration document found", source=source)
    cfg = base
    for d in found:
        cfg = read_cluster_configuration(d, cfg)
    return cfg
