"""kube-proxy's iptables chain names (reference ``kube-proxy-iptables.md`` §2).

A service port's chains are ``KUBE-{SVC,SVL,EXT,FW}-<h>`` where ``h`` is the first 16
characters of ``base32(sha256(spn + protocol))``; an endpoint's chain is ``KUBE-SEP-<h>``
with ``h`` hashed over ``spn + protocol + ip:port``. ``spn`` is ``ns/name[:portName]``
(no protocol), the protocol is lower case and ``ip:port`` is Go's ``JoinHostPort``
(brackets for IPv6). The iptables limit on a chain name is 28 characters; these are 24/25.

Hashing is the hottest path of a large render (one SHA-256 per endpoint), so results are
memoised: the same service port hashes to the same chains on every sync.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

__all__ = [
    "CHAIN_NAME_MAX",
    "SERVICE_CHAIN_PREFIXES",
    "endpoint_chain",
    "ext_chain",
    "fw_chain",
    "is_service_chain",
    "port_chain_hash",
    "svc_chain",
    "svl_chain",
]

#: iptables' XT_EXTENSION_MAXNAMELEN - 1.
CHAIN_NAME_MAX = 28

#: Prefixes kube-proxy treats as its per-service chains when deleting stale ones
#: (``isServiceChainName``). ``KUBE-XLB-`` (<= 1.23) is no longer in the list.
SERVICE_CHAIN_PREFIXES: tuple[str, ...] = (
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
)

_sha = hashlib.sha256
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32 (Go's StdEncoding)
#: Two base32 characters per 10 bits.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _hash16(text: str) -> str:
    # The first 16 base32 characters encode exactly the first 10 digest bytes (base32 works
    # in independent 5-byte groups), so encode just those -- base64.b32encode is pure Python
    # and was the hottest call of a large render.
    n = int.from_bytes(_sha(text.encode()).digest()[:10], "big")
    p = _PAIRS
    return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])


def _hash16_reference(text: str) -> str:
    """The definition (reference §2.2), kept for tests: base32(sha256(text))[:16]."""
    return base64.b32encode(_sha(text.encode()).digest())[:16].decode()


@lru_cache(maxsize=1 << 16)
def port_chain_hash(spn: str, protocol: str) -> str:
    """The 16-character hash shared by a service port's SVC/SVL/EXT/FW chains.

    ``spn`` is ``str(ServicePortName)``; ``protocol`` is lower case (``tcp``).
    """
    return _hash16(spn + protocol)


@lru_cache(maxsize=1 << 20)
def endpoint_chain(spn: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-<h>`` for one endpoint (``endpoint`` is ``ip:port``, IPv6 bracketed)."""
    return "KUBE-SEP-" + _hash16(spn + protocol + endpoint)


def svc_chain(spn: str, protocol: str) -> str:
    """``KUBE-SVC-<h>``: Cluster-policy endpoint dispatch."""
    return "KUBE-SVC-" + port_chain_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    """``KUBE-SVL-<h>``: Local-policy endpoint dispatch."""
    return "KUBE-SVL-" + port_chain_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    """``KUBE-EXT-<h>``: entry for NodePort / externalIP / LB-IP traffic."""
    return "KUBE-EXT-" + port_chain_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    """``KUBE-FW-<h>``: loadBalancerSourceRanges allow-list."""
    return "KUBE-FW-" + port_chain_hash(spn, protocol)


def is_service_chain(name: str) -> bool:
    """Whether stale-chain cleanup may delete ``name`` (``isServiceChainName``)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)
