"""Per-service and per-endpoint chain and set names (reference §3.4, upstream ``proxier.go``).

kube-proxy's nftables mode names every object it creates for a service port from a
readable *base* and a short hash of it, so a name is both unique and greppable:

* service-port base: ``<ns>/<svc>/<proto>/<portName>`` (an unnamed port leaves a trailing
  ``/``);
* endpoint base: ``<service-port base>__<epIP>/<epPort>``, with the ``:`` of IPv6 addresses
  replaced by ``.`` (``fd00:10:180::1`` -> ``fd00.10.180..1``) because ``:`` has a meaning
  in nft syntax;
* ``hashAndTruncate``: the first 8 characters of the RFC 4648 base32 encoding of
  SHA-256(base), a dash, then the base; cut to 237 characters plus ``...`` when longer than
  240 (nft's object-name limit is 256 bytes including the prefix).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

import attrs

from kservice.proxy.types import Endpoint, ServicePortInfo

__all__ = [
    "AFFINITY_PREFIX",
    "ENDPOINT_PREFIX",
    "EXTERNAL_PREFIX",
    "FIREWALL_PREFIX",
    "LOCAL_PREFIX",
    "SERVICE_PREFIX",
    "EndpointNames",
    "ServicePortNames",
    "endpoint_hash",
    "endpoint_names",
    "hash_and_truncate",
    "is_affinity_set_name",
    "is_service_chain_name",
    "service_port_names",
]

# Prefixes exactly as upstream spells them (servicePortPolicyClusterChainNamePrefix ...).
SERVICE_PREFIX = "service-"    # the Cluster traffic-policy chain
LOCAL_PREFIX = "local-"        # the Local traffic-policy chain
EXTERNAL_PREFIX = "external-"  # entry point for NodePort / externalIP / LB traffic
FIREWALL_PREFIX = "firewall-"  # loadBalancerSourceRanges filter
ENDPOINT_PREFIX = "endpoint-"  # DNAT to one endpoint
AFFINITY_PREFIX = "affinity-"  # per-endpoint ClientIP affinity set

_MAX_BASE = 240  # upstream: if len(name) > 240, cut to 237 and append "..."


def _b32_prefix8(digest: bytes) -> str:
    """The first 8 characters of base32(digest): base32 maps each 5 bytes to 8 characters
    independently, so they are the encoding of the first 5 bytes (same as
    ``base64.b32encode(digest)[:8]``, without encoding the other 27 bytes)."""
    return base64.b32encode(digest[:5]).decode("ascii")


@lru_cache(maxsize=1 << 18)
def hash_and_truncate(name: str) -> str:
    """Upstream ``hashAndTruncate``: ``<8 base32 chars of sha256>-<name, max 240>``."""
    short = _b32_prefix8(hashlib.sha256(name.encode()).digest())
    if len(name) > _MAX_BASE:
        name = name[: _MAX_BASE - 3] + "..."
    return f"{short}-{name}"


def _service_base(sp: ServicePortInfo) -> str:
    n = sp.name
    return f"{n.namespace}/{n.name}/{sp.protocol_lower}/{n.port}"


@attrs.frozen
class ServicePortNames:
    """The names of the per-service-port chains (whether or not they are used)."""

    base: str
    cluster_chain: str
    local_chain: str
    external_chain: str
    firewall_chain: str


@attrs.frozen
class EndpointNames:
    chain: str
    affinity_set: str


def service_port_names(sp: ServicePortInfo) -> ServicePortNames:
    h = hash_and_truncate(_service_base(sp))
    return ServicePortNames(
        base=_service_base(sp),
        cluster_chain=SERVICE_PREFIX + h,
        local_chain=LOCAL_PREFIX + h,
        external_chain=EXTERNAL_PREFIX + h,
        firewall_chain=FIREWALL_PREFIX + h,
    )


def endpoint_names(sp: ServicePortInfo, ep: Endpoint) -> EndpointNames:
    h = endpoint_hash(_service_base(sp), ep.ip, ep.port)
    return EndpointNames(chain=ENDPOINT_PREFIX + h, affinity_set=AFFINITY_PREFIX + h)


def endpoint_hash(service_base: str, ip: str, port: int) -> str:
    """``hashAndTruncate`` of an endpoint's base (the part after ``endpoint-``)."""
    return hash_and_truncate(f"{service_base}__{ip.replace(':', '.')}/{port}")


def is_service_chain_name(name: str) -> bool:
    """Upstream ``isServiceChainName``: every per-service chain contains a ``/``."""
    return "/" in name


def is_affinity_set_name(name: str) -> bool:
    return name.startswith(AFFINITY_PREFIX)
