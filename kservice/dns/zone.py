"""The cluster DNS zone: what CoreDNS's ``kubernetes`` plugin answers, computed from objects.

Theory of operation
-------------------
:meth:`ClusterZone.from_cluster` reads the stored Services, EndpointSlices and Pods once and
indexes them the way CoreDNS's informers do (``SvcIndex``, ``EpIndex``, the reverse
indexes, ``PodIndex``). :meth:`ClusterZone.lookup` then answers one question for one exact
name, following CoreDNS v1.11 ``plugin/kubernetes`` (``parseRequest``, ``Records``,
``findServices``, ``findPods``, ``Reverse``) and ``plugin/backend_lookup.go`` (how A, AAAA,
SRV, TXT, CNAME and PTR answers are assembled), with the spec (kubernetes/dns
``docs/specification.md``, schema 1.0.1) where CoreDNS is silent:

* a name is split as ``[_port._proto. | endpoint.] service.namespace.(svc|pod).<zone>``;
  anything longer, or with a fourth label from the right other than ``svc``/``pod``, does
  not exist (NXDOMAIN);
* ``<ns>.svc.<zone>`` of an existing namespace, ``svc.<zone>``, ``pod.<zone>`` and the apex
  exist but hold no data (NODATA: NOERROR with the zone's SOA in the authority section);
* a ClusterIP Service answers with its clusterIPs -- one entry per (port matching the
  query, clusterIP); A keeps the IPv4 ones, AAAA the IPv6 ones; the other family is NODATA;
* a headless Service, and any ``<endpoint>.<svc>`` query, answer from the *ready* endpoint
  addresses of the Service's EndpointSlices (``conditions.ready`` nil counts as ready, as
  CoreDNS's ``EndpointSliceToEndpoints`` reads it); no ready address is NXDOMAIN;
* an endpoint's name is its ``hostname``, else (``endpoint_pod_names``) the pod name, else
  the IP with ``.``/``:`` replaced by ``-``;
* an ExternalName Service is a CNAME; an A/AAAA query follows it when the target is inside
  the zone (up to 8 links) and otherwise returns the CNAME alone -- resolving outside names
  is the upstream resolver's job, which this emulator does not do; SRV ignores it;
* pods: ``a-b-c-d.<ns>.pod.<zone>`` per the ``pods`` mode (insecure / verified / disabled);
* PTR: a clusterIP maps to ``<svc>.<ns>.svc.<zone>``; otherwise every ready endpoint
  address of any Service maps to ``<endpoint>.<svc>.<ns>.svc.<zone>``;
* ``dns-version.<zone>. TXT`` carries the schema version (TTL 28800, as CoreDNS);
* SRV weights are CoreDNS's: ``floor(100 / n)`` for ``n`` entries of priority 0 (counting
  duplicates dropped later, a CoreDNS quirk kept on purpose), priority 0, the target's
  address in the additional section.

Namespaces: CoreDNS asks the API whether a namespace exists. The store has no Namespace
kind unless one is registered, so a namespace exists when a Namespace object names it, when
any stored object lives in it, or when it is one of the four namespaces every cluster has.
"""

from __future__ import annotations

import ipaddress
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import attrs

from kservice.dns._rr import AAAA, CNAME, NS, PTR, SOA, SRV, TXT, A, Record, fqdn

__all__ = [
    "DNS_SCHEMA_VERSION",
    "PODS_MODES",
    "Answer",
    "ClusterZone",
    "DnsOptions",
    "reverse_name",
]

#: The version of the kubernetes/dns specification this zone implements (vector 97).
DNS_SCHEMA_VERSION = "1.0.1"
#: CoreDNS's ``pods`` option values.
PODS_MODES = ("insecure", "verified", "disabled")
#: Namespaces a fresh cluster always has (created by the apiserver itself).
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
#: The reverse zones kubeadm's Corefile hands to the kubernetes plugin.
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
#: CoreDNS stops following CNAMEs after this many links (``len(previousRecords) > 7``).
MAX_CNAME_CHAIN = 8
#: TTL of the dns-version TXT record, fixed in CoreDNS.
SCHEMA_TXT_TTL = 28800
# SOA timers CoreDNS's plugin.SOA writes (refresh, retry, expire).
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400


@attrs.frozen
class DnsOptions:
    """The Corefile's ``kubernetes`` block, as far as answers depend on it."""

    zone: str = "cluster.local"
    #: ``ttl`` (CoreDNS default 5; kubeadm's Corefile says 30).
    ttl: int = 30
    pods_mode: str = "insecure"
    endpoint_pod_names: bool = False
    #: The cluster DNS Service's addresses (``ns.dns.<zone>``, NS glue).
    nameservers: tuple[str, ...] = ("10.96.0.10",)
    schema_version: str = DNS_SCHEMA_VERSION

    def __attrs_post_init__(self) -> None:
        if self.pods_mode not in PODS_MODES:
            raise ValueError(f"pods mode {self.pods_mode!r} is not one of {', '.join(PODS_MODES)}")
        if not 0 <= self.ttl <= 3600:
            # CoreDNS's setup refuses ttl outside 0..3600.
            raise ValueError(f"ttl {self.ttl} is out of range 0..3600")

    @classmethod
    def from_config(cls, config: Any, *, ttl: int | None = None,
                    endpoint_pod_names: bool = False) -> DnsOptions:
        """From a :class:`~kservice.config.ClusterConfig` (``dns_domain``, ``dns_ttl``...)."""
        return cls(
            zone=config.dns_domain.rstrip("."),
            ttl=config.dns_ttl if ttl is None else ttl,
            pods_mode=config.dns_pods_mode,
            endpoint_pod_names=endpoint_pod_names,
            nameservers=tuple(config.cluster_dns),
        )


@attrs.frozen
class Answer:
    """The outcome of one DNS question (or of a search-path resolution)."""

    #: The name asked (as given, made absolute).
    name: str
    qtype: str
    rcode: str
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    authoritative: bool = True
    #: For :func:`kservice.dns.resolve`: every (absolute name, rcode) tried, in order.
    tried: tuple[tuple[str, str], ...] = ()
    note: str = ""

    @property
    def nodata(self) -> bool:
        return self.rcode == "NOERROR" and not self.answer

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "type": self.qtype, "rcode": self.rcode,
            "authoritative": self.authoritative,
            "answer": [r.to_json() for r in self.answer],
            "authority": [r.to_json() for r in self.authority],
            "additional": [r.to_json() for r in self.additional],
        }
        if self.tried:
            out["tried"] = [{"name": n, "rcode": rc} for n, rc in self.tried]
        if self.note:
            out["note"] = self.note
        return out

    def text(self) -> str:
        """A dig-like rendering."""
        status = self.rcode + (" (NODATA)" if self.nodata else "")
        lines = [f";; {self.name} {self.qtype}: status {status}"]
        if self.note:
            lines.append(f";; {self.note}")
        for name, rc in self.tried:
            lines.append(f";; tried {name} -> {rc}")
        for title, rrs in (("ANSWER", self.answer), ("AUTHORITY", self.authority),
                           ("ADDITIONAL", self.additional)):
            if rrs:
                lines.append(f";; {title} SECTION:")
                lines += [r.text() for r in rrs]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the index


@attrs.frozen
class _Addr:
    ip: str
    hostname: str
    target_name: str


@attrs.frozen
class _EpSet:
    """One EndpointSlice as CoreDNS's ``object.Endpoints``: ready addresses and ports."""

    #: (name, port, protocol); ``(None, -1, "")`` is CoreDNS's no-ports sentinel.
    ports: tuple[tuple[str, int, str], ...]
    addrs: tuple[_Addr, ...]


@attrs.frozen
class _Svc:
    name: str
    namespace: str
    type: str
    headless: bool
    cluster_ips: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]
    external_name: str


@attrs.frozen
class _Entry:
    """CoreDNS's ``msg.Service``: a host (IP or name), a port, and the owner key."""

    host: str
    port: int
    #: The domain the entry's key spells (the SRV target): ``svc.ns.svc.zone.`` or
    #: ``endpoint.svc.ns.svc.zone.``.
    key: str


class _NameError(Exception):
    """errNoItems / errNsNotExposed / errInvalidRequest: the name does not exist."""


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def reverse_name(ip: str) -> str:
    """``10.0.96.10.in-addr.arpa.`` / the ip6.arpa nibble form of an address."""
    return ipaddress.ip_address(ip).reverse_pointer + "."


def _from_reverse(name: str) -> str | None:
    """dnsutil.ExtractAddressFromReverse: a full reverse name back to the address."""
    labels = name.rstrip(".").split(".")
    if name.endswith(".in-addr.arpa.") and len(labels) == 6:
        parts = labels[:4][::-1]
        if all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
            return ".".join(str(int(p)) for p in parts)
        return None
    if name.endswith(".ip6.arpa.") and len(labels) == 34:
        nibbles = labels[:32][::-1]
        if all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            hexs = "".join(nibbles)
            return str(ipaddress.IPv6Address(int(hexs, 16)))
    return None


def _endpoint_hostname(addr: _Addr, pod_names: bool) -> str:
    # CoreDNS endpointHostname: hostname, else pod name (endpoint_pod_names), else the IP.
    if addr.hostname:
        return addr.hostname
    if pod_names and addr.target_name:
        return addr.target_name
    if "." in addr.ip:
        return addr.ip.replace(".", "-")
    if ":" in addr.ip:
        h = addr.ip.replace(":", "-")
        # Newer CoreDNS: a label must not end with '-' ("fd00::" -> "fd00--0").
        return h + "0" if h.endswith("-") else h
    return ""


def _kinds(cluster: Any) -> tuple[str, ...]:
    return tuple(getattr(cluster, "kinds", ()))


def _list(cluster: Any, kind: str) -> list[Any]:
    return list(cluster.list(kind)) if kind in _kinds(cluster) else []


class ClusterZone:
    """An immutable index of one cluster state, answering single DNS questions."""

    def __init__(self, options: DnsOptions, services: Iterable[Any], slices: Iterable[Any],
                 pods: Iterable[Any], namespaces: Iterable[str] = (), serial: int = 0) -> None:
        self.options = options
        self.zone = fqdn(options.zone.lower())
        self.serial = serial
        self._namespaces = set(SYSTEM_NAMESPACES) | {n.lower() for n in namespaces}
        self._svcs: dict[tuple[str, str], _Svc] = {}
        self._eps: dict[tuple[str, str], list[_EpSet]] = defaultdict(list)
        self._rev_svc: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._rev_ep: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._pod_ips: dict[str, set[str]] = defaultdict(set)
        for svc in services:
            self._add_service(svc)
        for sl in slices:
            self._add_slice(sl)
        for pod in pods:
            ns = pod.metadata.namespace.lower()
            self._namespaces.add(ns)
            # CoreDNS indexes every pod by status.podIP (the primary IP only), whatever
            # its phase; verified mode compares that one address.
            if pod.status.pod_ip:
                self._pod_ips[pod.status.pod_ip].add(ns)
        for ep_list in self._eps.values():
            ep_list.sort(key=lambda e: e.ports)
        self._rev_ep_sorted = {ip: sorted(v) for ip, v in self._rev_ep.items()}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_cluster(cls, cluster: Any, options: DnsOptions | None = None) -> ClusterZone:
        """Index a :class:`~kservice.cluster.Cluster` (Services, EndpointSlices, Pods)."""
        opts = options or DnsOptions.from_config(cluster.config)
        namespaces = {o.metadata.name for o in _list(cluster, "Namespace")}
        for kind in ("Service", "EndpointSlice", "Pod"):
            namespaces |= {o.metadata.namespace for o in _list(cluster, kind)}
        return cls(opts, _list(cluster, "Service"), _list(cluster, "EndpointSlice"),
                   _list(cluster, "Pod"), namespaces,
                   serial=int(getattr(cluster, "resource_version", 0)))

    def _add_service(self, svc: Any) -> None:
        spec = svc.spec
        ns = svc.metadata.namespace.lower()
        name = svc.metadata.name.lower()
        self._namespaces.add(ns)
        ips = tuple(spec.cluster_ips) or ((spec.cluster_ip,) if spec.cluster_ip else ())
        headless = (spec.cluster_ip == "None") or ips[:1] == ("None",)
        stype = spec.type or "ClusterIP"
        ports = tuple((p.name or "", p.port, p.protocol or "TCP") for p in spec.ports)
        s = _Svc(name=name, namespace=ns, type=stype, headless=headless,
                 cluster_ips=() if headless else tuple(i for i in ips if _is_ip(i)),
                 ports=ports, external_name=spec.external_name or "")
        self._svcs[(ns, name)] = s
        if stype != "ExternalName":
            for ip in s.cluster_ips:
                self._rev_svc[ip].append((name, ns))

    def _add_slice(self, sl: Any) -> None:
        if sl.address_type not in ("IPv4", "IPv6"):
            return  # CoreDNS ignores FQDN slices
        svc_name = sl.metadata.labels.get("kubernetes.io/service-name")
        if not svc_name:
            return
        ns = sl.metadata.namespace.lower()
        svc_name = svc_name.lower()
        if sl.ports:
            ports = tuple((p.name or "", p.port if p.port is not None else -1,
                           p.protocol or "") for p in sl.ports)
        else:
            ports = (("", -1, ""),)
        addrs = []
        for ep in sl.endpoints:
            if ep.conditions.ready is False:
                continue
            target = ""
            if ep.target_ref is not None and len(ep.target_ref.name) < 64:
                target = ep.target_ref.name
            for ip in ep.addresses:
                a = _Addr(ip=ip, hostname=ep.hostname or "", target_name=target)
                addrs.append(a)
                self._rev_ep[ip].append(
                    (_endpoint_hostname(a, self.options.endpoint_pod_names), svc_name, ns))
        self._eps[(ns, svc_name)].append(_EpSet(ports=ports, addrs=tuple(addrs)))

    # ------------------------------------------------------------------ helpers
    def _soa(self, zone: str) -> Record:
        # plugin.SOA: the record's TTL is min(ttl, 300); MINIMUM is the plugin's ttl. The
        # serial is the cluster's resourceVersion (CoreDNS uses its last-change time).
        return Record(zone, min(self.options.ttl, 300), SOA(
            mname="ns.dns." + zone, rname="hostmaster." + zone, serial=self.serial & 0xFFFFFFFF,
            refresh=SOA_REFRESH, retry=SOA_RETRY, expire=SOA_EXPIRE, minimum=self.options.ttl))

    def _zone_of(self, lname: str) -> str | None:
        for z in (self.zone, *REVERSE_ZONES):
            if lname == z or lname.endswith("." + z):
                return z
        return None

    def _ns_exists(self, ns: str) -> bool:
        return ns in self._namespaces

    # ------------------------------------------------------------------ CoreDNS Records
    def _records(self, lname: str, zone: str) -> list[_Entry]:
        """parseRequest + Records + findServices/findPods. Raises _NameError."""
        if zone in REVERSE_ZONES:
            raise _NameError
        base = lname[: -len(zone)].rstrip(".") if lname != zone else ""
        if base in ("", "svc", "pod"):
            return []
        segs = base.split(".")
        pod_or_svc = segs[-1]
        if pod_or_svc not in ("svc", "pod"):
            raise _NameError
        rest = segs[:-1]
        namespace = rest[-1] if rest else ""
        if not self._ns_exists(namespace):
            raise _NameError
        service = rest[-2] if len(rest) >= 2 else ""
        left = rest[:-2]
        endpoint = port = proto = ""
        if len(left) == 1:
            endpoint = left[0]
        elif len(left) == 2:
            port, proto = left[0], left[1]
            port = port[1:] if port.startswith("_") else port
            proto = proto[1:] if proto.startswith("_") else proto
        elif len(left) > 2:
            raise _NameError
        if pod_or_svc == "pod":
            return self._find_pods(namespace, service)
        return self._find_services(namespace, service, endpoint, port, proto)

    def _find_pods(self, namespace: str, podname: str) -> list[_Entry]:
        mode = self.options.pods_mode
        if mode == "disabled":
            raise _NameError
        if not podname:
            return []
        if podname.count("-") == 3 and "--" not in podname:
            ip = podname.replace("-", ".")
        else:
            ip = podname.replace("-", ":")
        key = f"{podname}.{namespace}.pod.{self.zone}"
        if mode == "insecure":
            if not _is_ip(ip):
                raise _NameError
            return [_Entry(host=str(ipaddress.ip_address(ip)), port=0, key=key)]
        # verified: a pod with exactly that podIP in that namespace.
        if namespace in self._pod_ips.get(ip, set()):
            return [_Entry(host=ip, port=0, key=key)]
        raise _NameError

    def _find_services(self, namespace: str, service: str, endpoint: str, port: str,
                       proto: str) -> list[_Entry]:
        if not service:
            return []
        svc = self._svcs.get((namespace, service))
        if svc is None:
            raise _NameError
        out: list[_Entry] = []
        found = False
        base_key = f"{svc.name}.{svc.namespace}.svc.{self.zone}"
        if svc.type == "ExternalName":
            if endpoint:
                raise _NameError
            if svc.external_name and not _is_ip(svc.external_name):
                return [_Entry(host=fqdn(svc.external_name), port=0, key=base_key)]
            # An IP-shaped externalName is not a CNAME target: CoreDNS skips it.
            raise _NameError

        def match(want: str, have: str) -> bool:
            return want == "" or want == have.lower()

        if svc.headless or endpoint:
            pod_names = self.options.endpoint_pod_names
            for eps in self._eps.get((svc.namespace, svc.name), ()):
                for addr in eps.addrs:
                    host = _endpoint_hostname(addr, pod_names)
                    if endpoint and endpoint != host.lower():
                        continue
                    for pname, pnum, pproto in eps.ports:
                        if not (match(port, pname) and match(proto, pproto)):
                            continue
                        found = True
                        out.append(_Entry(host=addr.ip, port=pnum, key=f"{host}.{base_key}"))
        else:
            for pname, pnum, pproto in svc.ports:
                if not (match(port, pname) and match(proto, pproto)):
                    continue
                found = True
                for ip in svc.cluster_ips:
                    out.append(_Entry(host=ip, port=pnum, key=base_key))
        if not found:
            raise _NameError
        return out

    def _services(self, lname: str, zone: str, qtype: str) -> list[_Entry]:
        """kubernetes.Services: the default-NS name, then Records; SRV drops CNAMEs."""
        if lname == "ns.dns." + zone:
            want = 4 if qtype == "A" else 6 if qtype == "AAAA" else 0
            return [_Entry(host=ip, port=0, key=lname) for ip in self.options.nameservers
                    if _family(ip) == want]
        entries = self._records(lname, zone)
        if qtype == "SRV":
            entries = [e for e in entries if _is_ip(e.host)]
        return entries

    # ------------------------------------------------------------------ answers per type
    def _address(self, qname: str, lname: str, zone: str, qtype: str,
                 chain: list[Record]) -> list[Record]:
        """backend_lookup A/AAAA, CNAMEs followed inside the zone."""
        want = 4 if qtype == "A" else 6
        records: list[Record] = []
        seen: set[str] = set()
        ttl = self.options.ttl
        for e in self._services(lname, zone, qtype):
            if _is_ip(e.host):
                if _family(e.host) == want and e.host not in seen:
                    seen.add(e.host)
                    records.append(Record(qname, ttl, A(e.host) if want == 4 else AAAA(e.host)))
                continue
            target = e.host
            if target.lower() == lname:
                continue  # x CNAME x is a direct loop
            cname = Record(qname, ttl, CNAME(target))
            if len(chain) > MAX_CNAME_CHAIN - 1 or cname in chain:
                continue
            tzone = self._zone_of(target.lower())
            if tzone == zone:
                try:
                    nxt = self._address(target, target.lower(), zone, qtype, [*chain, cname])
                except _NameError:
                    continue
                if nxt:
                    records += [cname, *nxt]
                continue
            # Outside the zone: CoreDNS asks its upstream; the emulator stops at the CNAME.
            records.append(cname)
        return records

    def _srv(self, qname: str, lname: str, zone: str) -> tuple[list[Record], list[Record]]:
        entries = self._services(lname, zone, "SRV")
        ttl = self.options.ttl
        total = 100 * len(entries)
        records: list[Record] = []
        extra: list[Record] = []
        seen_srv: set[tuple[str, int]] = set()
        seen_addr: set[tuple[str, str]] = set()
        for e in entries:
            if e.port == -1:
                continue  # no declared ports: no SRV
            weight = max(1, math.floor(100.0 / total * 100)) if total else 100
            if (e.key, e.port) not in seen_srv:
                seen_srv.add((e.key, e.port))
                records.append(Record(qname, ttl, SRV(0, weight, e.port, e.key)))
            if (e.key, e.host) not in seen_addr:
                seen_addr.add((e.key, e.host))
                extra.append(Record(e.key, ttl, A(e.host) if _family(e.host) == 4
                                    else AAAA(e.host)))
        return records, extra

    def _ptr(self, qname: str, lname: str, zone: str) -> list[Record]:
        ip = _from_reverse(lname)
        if ip is None:
            # Not a full reverse name: Records decides between NODATA and NXDOMAIN.
            self._records(lname, zone)
            return []
        ttl = self.options.ttl
        svcs = self._rev_svc.get(ip)
        if svcs:
            name, ns = sorted(svcs)[0]
            return [Record(qname, ttl, PTR(f"{name}.{ns}.svc.{self.zone}"))]
        out = [Record(qname, ttl, PTR(f"{host}.{svc}.{ns}.svc.{self.zone}"))
               for host, svc, ns in self._rev_ep_sorted.get(ip, ())]
        if not out:
            raise _NameError
        # dnsutil.Dedup: identical records once.
        return list(dict.fromkeys(out))

    def _exists(self, lname: str, zone: str) -> None:
        """The fake A lookup CoreDNS does to tell NODATA from NXDOMAIN."""
        self._services(lname, zone, "A")

    def lookup(self, name: str, qtype: str) -> Answer:
        """Answer one question for an absolute ``name`` (case-insensitive)."""
        qname = fqdn(name)
        lname = qname.lower()
        qtype = qtype.upper()
        zone = self._zone_of(lname)
        if zone is None:
            return Answer(qname, qtype, "REFUSED", authoritative=False,
                          note=f"outside {self.zone} and the reverse zones; CoreDNS would "
                               "forward it to the upstream resolvers")
        records: list[Record] = []
        extra: list[Record] = []
        ttl = self.options.ttl
        try:
            if qtype in ("A", "AAAA"):
                records = self._address(qname, lname, zone, qtype, [])
            elif qtype == "SRV":
                records, extra = self._srv(qname, lname, zone)
            elif qtype == "TXT":
                if zone == self.zone and lname == "dns-version." + zone:
                    records = [Record(qname, SCHEMA_TXT_TTL, TXT((self.options.schema_version,)))]
                elif not self._services(lname, zone, "TXT"):
                    raise _NameError
            elif qtype == "CNAME":
                entries = self._services(lname, zone, "CNAME")
                if entries and not _is_ip(entries[0].host):
                    records = [Record(qname, ttl, CNAME(entries[0].host))]
            elif qtype == "PTR":
                records = self._ptr(qname, lname, zone)
            elif qtype == "SOA" and lname == zone:
                records = [self._soa(zone)]
            elif qtype == "NS" and lname == zone:
                target = "ns.dns." + zone
                records = [Record(qname, ttl, NS(target))]
                extra = [Record(target, ttl, A(ip) if _family(ip) == 4 else AAAA(ip))
                         for ip in self.options.nameservers]
            elif qtype in ("AXFR", "IXFR"):
                return Answer(qname, qtype, "REFUSED", note="zone transfers are not enabled")
            else:
                self._exists(lname, zone)
        except _NameError:
            return Answer(qname, qtype, "NXDOMAIN", authority=(self._soa(zone),))
        if not records:
            return Answer(qname, qtype, "NOERROR", authority=(self._soa(zone),))
        return Answer(qname, qtype, "NOERROR", answer=tuple(dict.fromkeys(records)),
                      additional=tuple(dict.fromkeys(extra)))
