"""A pod's view of cluster DNS: its resolv.conf and how its stub resolver walks the search path.

:func:`pod_dns_config` follows kubelet's ``pkg/kubelet/network/dns/dns.go`` (``GetPodDNS``):
``ClusterFirst`` gives ``nameserver <clusterDNS>``, ``search <ns>.svc.<zone> svc.<zone>
<zone>`` plus the node's search domains, ``options ndots:5``; a hostNetwork pod with
``ClusterFirst`` falls back to the node's file (``Default``); ``None`` starts empty;
``dnsConfig`` is merged last (nameservers appended, searches appended then de-duplicated,
options overriding by name). kubelet keeps at most 3 nameservers, 32 search domains and
2048 characters of search list (``MaxDNSSearchPaths``/``MaxDNSSearchListChars`` since
v1.28), dropping the rest as it warns.

:func:`resolve` is glibc's ``res_search``: a name with at least ``ndots`` dots (or ending in
a dot) is tried as is first; otherwise each search domain is tried in turn and the bare name
last. NXDOMAIN *and* NODATA move on to the next candidate; the first answer with records
wins; if none has records, NODATA beats NXDOMAIN (glibc's ``got_nodata``). musl differs (it
stops at the first NODATA) -- the choice is glibc because most images are glibc-based.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs

from kservice.dns._rr import fqdn
from kservice.dns.zone import Answer, ClusterZone, DnsOptions

__all__ = [
    "DNS_POLICIES",
    "MAX_NAMESERVERS",
    "MAX_SEARCH_CHARS",
    "MAX_SEARCH_PATHS",
    "PodDNSConfig",
    "candidates",
    "pod_dns_config",
    "resolve",
]

DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
DEFAULT_NDOTS = 5


@attrs.frozen
class PodDNSConfig:
    """The resolv.conf kubelet writes into a pod."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    #: (name, value or None), in file order.
    options: tuple[tuple[str, str | None], ...] = ()

    @property
    def ndots(self) -> int:
        for name, value in self.options:
            if name == "ndots" and value is not None and value.isdigit():
                return min(int(value), 15)  # glibc caps ndots at 15
        return 1  # glibc's default when resolv.conf says nothing

    def text(self) -> str:
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            opts = " ".join(n if v is None else f"{n}:{v}" for n, v in self.options)
            lines.append(f"options {opts}")
        return "\n".join(lines) + "\n"


def _merge_options(base: Sequence[tuple[str, str | None]],
                   extra: Sequence[tuple[str, str | None]]) -> tuple[tuple[str, str | None], ...]:
    out: dict[str, str | None] = dict(base)
    for name, value in extra:
        out[name] = value
    return tuple(out.items())


def pod_dns_config(
    config: Any,
    namespace: str,
    *,
    dns_policy: str = "ClusterFirst",
    host_network: bool = False,
    node_nameservers: Sequence[str] = (),
    node_searches: Sequence[str] = (),
    dns_config: dict[str, Any] | None = None,
) -> PodDNSConfig:
    """kubelet's resolv.conf for a pod in ``namespace`` (``config``: a ClusterConfig)."""
    if dns_policy not in DNS_POLICIES:
        raise ValueError(f'dnsPolicy "{dns_policy}" is not one of {", ".join(DNS_POLICIES)}')
    zone = config.dns_domain.rstrip(".")
    cluster_first = dns_policy == "ClusterFirstWithHostNet" or (
        dns_policy == "ClusterFirst" and not host_network)
    if dns_policy == "None":
        nameservers: list[str] = []
        searches: list[str] = []
        options: tuple[tuple[str, str | None], ...] = ()
    elif cluster_first and config.cluster_dns:
        nameservers = list(config.cluster_dns)
        searches = [f"{namespace}.svc.{zone}", f"svc.{zone}", zone, *node_searches]
        options = (("ndots", str(DEFAULT_NDOTS)),)
    else:
        # Default (or ClusterFirst for a hostNetwork pod): the node's own resolv.conf.
        nameservers = list(node_nameservers)
        searches = list(node_searches)
        options = ()
    if dns_config:
        nameservers += list(dns_config.get("nameservers") or ())
        searches += list(dns_config.get("searches") or ())
        extra = tuple((o["name"], o.get("value")) for o in dns_config.get("options") or ())
        options = _merge_options(options, extra)
    # De-duplicate searches keeping the first occurrence, then apply kubelet's limits.
    searches = list(dict.fromkeys(s.rstrip(".") for s in searches))
    kept: list[str] = []
    for s in searches[:MAX_SEARCH_PATHS]:
        if len(" ".join([*kept, s])) > MAX_SEARCH_CHARS:
            break
        kept.append(s)
    return PodDNSConfig(nameservers=tuple(nameservers[:MAX_NAMESERVERS]),
                        searches=tuple(kept), options=options)


#: RFC 1035 §2.3.4: a label is at most 63 octets, a name at most 255 on the wire.
MAX_LABEL = 63
MAX_NAME_WIRE = 255
_LABEL_SPLIT = re.compile(r"(?<!\\)\.")


def _labels(name: str) -> list[str]:
    body = name[:-1] if name.endswith(".") and not name.endswith("\\.") else name
    return _LABEL_SPLIT.split(body) if body else []


def _wire_length(name: str) -> int:
    return sum(len(label) + 1 for label in _labels(name)) + 1


def check_name(name: str) -> None:
    """Refuse what the resolver library refuses before sending anything (the words are
    ``host``/``dig``'s): an empty label (``..``, a leading dot), a label over 63 octets, a
    name over 255 octets on the wire."""
    labels = _labels(name)
    if any(label == "" for label in labels):
        raise ValueError(f"'{name}' is not a legal name (empty label)")
    long = [label for label in labels if len(label) > MAX_LABEL]
    if long:
        raise ValueError(f"'{name}' is not a legal name (label too long: {len(long[0])} "
                         f"octets, at most {MAX_LABEL})")
    if _wire_length(name) > MAX_NAME_WIRE:
        raise ValueError(f"'{name}' is not a legal name (name too long: "
                         f"{_wire_length(name)} octets on the wire, at most {MAX_NAME_WIRE})")


def candidates(name: str, searches: Sequence[str], ndots: int) -> list[str]:
    """The absolute names glibc's res_search tries, in order (a search-path expansion that
    would exceed 255 octets is skipped, as res_querydomain refuses it)."""
    if name.endswith("."):
        return [name]
    bare = fqdn(name)
    expanded = [fqdn(f"{name}.{s}") for s in searches
                if _wire_length(fqdn(f"{name}.{s}")) <= MAX_NAME_WIRE]
    if name.count(".") >= ndots:
        return [bare, *expanded]
    return [*expanded, bare]


def resolve(cluster: Any, name: str, qtype: str = "A", namespace: str = "default", *,
            zone: ClusterZone | None = None, options: DnsOptions | None = None) -> Answer:
    """Resolve ``name`` as a ClusterFirst pod in ``namespace`` would, against cluster DNS.

    ``zone`` reuses an index built earlier (the DNS server does); otherwise one is built
    from ``cluster``. Names outside the cluster zone come back REFUSED with a note: a
    real CoreDNS forwards them upstream, which the emulator does not do.
    """
    if not name or name == ".":
        raise ValueError("empty name")
    check_name(name)
    z = zone or ClusterZone.from_cluster(cluster, options)
    conf = pod_dns_config(cluster.config, namespace)
    tried: list[tuple[str, str]] = []
    nodata: Answer | None = None
    last: Answer | None = None
    for cand in candidates(name, conf.searches, conf.ndots):
        ans = z.lookup(cand, qtype)
        tried.append((ans.name, ans.rcode + (" (NODATA)" if ans.nodata else "")))
        if ans.rcode == "NOERROR" and ans.answer:
            return attrs.evolve(ans, tried=tuple(tried))
        if ans.nodata and nodata is None:
            nodata = ans
        if ans.rcode not in ("NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL"):
            last = ans
            break
        last = ans
    result = nodata or last
    assert result is not None
    return attrs.evolve(result, tried=tuple(tried))
