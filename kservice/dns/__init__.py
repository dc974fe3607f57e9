"""Cluster DNS, sans-IO: the records CoreDNS serves for a cluster, a pod's resolver, the wire.

* :mod:`kservice.dns.zone` -- :class:`ClusterZone`, an index of Services, EndpointSlices and
  Pods answering one question the way CoreDNS's ``kubernetes`` plugin does (A/AAAA, SRV,
  PTR, CNAME, TXT, SOA/NS; NXDOMAIN vs NODATA).
* :mod:`kservice.dns.resolver` -- a pod's resolv.conf (kubelet) and :func:`resolve`, a short
  name resolved through the search path with ``ndots:5`` (glibc).
* :mod:`kservice.dns.wire` -- the DNS message format as pure functions on bytes.

The DNS server that puts this on a socket is an adapter: ``backends/dnsserver``.
"""

from kservice.dns._rr import AAAA, CNAME, NS, PTR, SOA, SRV, TXT, A, Record
from kservice.dns.resolver import PodDNSConfig, candidates, pod_dns_config, resolve
from kservice.dns.zone import (
    DNS_SCHEMA_VERSION,
    Answer,
    ClusterZone,
    DnsOptions,
    reverse_name,
)

__all__ = [
    "AAAA",
    "CNAME",
    "DNS_SCHEMA_VERSION",
    "NS",
    "PTR",
    "SOA",
    "SRV",
    "TXT",
    "A",
    "Answer",
    "ClusterZone",
    "DnsOptions",
    "PodDNSConfig",
    "Record",
    "candidates",
    "pod_dns_config",
    "resolve",
    "reverse_name",
]
