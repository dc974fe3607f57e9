"""Reading and validating a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file.

Reading is strict like the models (unknown field or wrong type -> :class:`InvalidInput` with a
field path). Fields kservice does not model but kube-proxy accepts (``clientConnection``,
``logging``, ``metricsBindAddress``, ``winkernel`` ...) are accepted and ignored. Unset fields
take upstream's v1alpha1 defaults (already the defaults of
:class:`~kservice.proxy.config.KubeProxyConfiguration`).

Validation follows ``pkg/proxy/apis/config/validation`` (Linux): errors are aggregated and
printed like kube-proxy, with Go-struct field paths (``KubeProxyConfiguration.IPTables.
MasqueradeBit: Invalid value: 33: must be within the range [0, 31]``). Exact detail strings
for detectLocal are BELIEVED, not re-read.

Upstream-faithful choices worth knowing: ``detectLocalMode: ClusterCIDR`` with no
``clusterCIDR`` is *valid* -- kube-proxy then detects nothing as local (no ``-s``/``! -s`` pod
matches); ``nodePortAddresses: [primary]`` is only valid alone.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from kservice.errors import FieldError, InvalidInput, InvalidObject
from kservice.models._reader import Reader
from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    IPVSConfiguration,
    KubeProxyConfiguration,
    NFTablesConfiguration,
)

__all__ = [
    "API_VERSION",
    "DETECT_LOCAL_MODES",
    "IPVS_SCHEDULERS",
    "PROXY_MODES",
    "InvalidKubeProxyConfiguration",
    "load_kube_proxy_config",
    "validate_kube_proxy_config",
]

API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
#: Linux modes kube-proxy 1.34 accepts ("" means iptables). ``userspace`` (removed in 1.26)
#: is accepted by kservice for teaching, and flagged as such in the error hint.
PROXY_MODES = ("iptables", "ipvs", "nftables")
KSERVICE_EXTRA_MODES = ("userspace",)
DETECT_LOCAL_MODES = ("ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")
#: IPVS schedulers kube-proxy validates against (``""`` = rr).
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh")

# Top-level fields kube-proxy reads that do not shape the dataplane kservice renders.
_IGNORED_TOP = (
    "bindAddress", "bindAddressHardFail", "clientConnection", "configSyncPeriod",
    "enableProfiling", "featureGates", "healthzBindAddress", "logging", "metricsBindAddress",
    "oomScoreAdj", "portRange", "showHiddenMetricsForVersion", "winkernel",
    "windowsRunAsService", "syncPeriod", "minSyncPeriod", "ipFamily",
)

_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^0$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration_seconds(text: str) -> float | None:
    """Go ``time.ParseDuration``; ``None`` when malformed."""
    if not _DURATION.match(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    total = 0.0
    for num, _frac, unit in re.findall(r"(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text):
        total += float(num) * _UNIT_S[unit]
    return sign * total


class InvalidKubeProxyConfiguration(InvalidObject):
    """A KubeProxyConfiguration that kube-proxy would refuse to start with."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("KubeProxyConfiguration", "", errors)

    def status_message(self) -> str:
        return f"invalid configuration: {self.aggregate()}"

    def kubectl_message(self) -> str:
        return self.status_message()


def _duration_field(r: Reader, key: str, default: str) -> str:
    """A Go duration; zero counts as unset and takes the default (v1alpha1 defaulting
    checks ``Duration == 0``, which is why kubeadm's ``syncPeriod: 0s`` means 30s)."""
    v = r.str(key)
    if v is None:
        return default
    secs = _duration_seconds(v)
    if secs is None:
        raise InvalidInput(
            f'time: invalid duration "{v}"', path=r._p(key), hint="use Go durations like 30s, 1m0s"
        )
    return default if secs == 0 else v


def load_kube_proxy_config(data: object, path: str = "") -> KubeProxyConfiguration:
    """Read (strictly), default and validate a KubeProxyConfiguration manifest."""
    r = Reader(data, path, "KubeProxyConfiguration")
    api_version = r.str("apiVersion")
    kind = r.str("kind")
    if kind not in (None, "KubeProxyConfiguration"):
        raise InvalidInput(f'expected kind "KubeProxyConfiguration", got "{kind}"', path="kind")
    if api_version not in (None, API_VERSION):
        raise InvalidInput(
            f'no kind "KubeProxyConfiguration" is registered for version "{api_version}"',
            path="apiVersion", hint=f'use apiVersion "{API_VERSION}"',
        )
    r.ignore(*_IGNORED_TOP)
    d_ipt = IPTablesConfiguration()
    d_ipvs = IPVSConfiguration()
    d_nft = NFTablesConfiguration()

    def iptables(x: Reader) -> IPTablesConfiguration:
        mb = x.int("masqueradeBit")
        return IPTablesConfiguration(
            masquerade_all=bool(x.bool("masqueradeAll")),
            masquerade_bit=d_ipt.masquerade_bit if mb is None else mb,
            localhost_node_ports=x.bool("localhostNodePorts", d_ipt.localhost_node_ports)
            is not False,
            sync_period=_duration_field(x, "syncPeriod", d_ipt.sync_period),
            min_sync_period=_duration_field(x, "minSyncPeriod", d_ipt.min_sync_period),
        )

    def ipvs(x: Reader) -> IPVSConfiguration:
        return IPVSConfiguration(
            scheduler=x.str("scheduler") or "",
            strict_arp=bool(x.bool("strictARP")),
            exclude_cidrs=tuple(x.str_list("excludeCIDRs") or ()),
            sync_period=_duration_field(x, "syncPeriod", d_ipvs.sync_period),
            min_sync_period=_duration_field(x, "minSyncPeriod", d_ipvs.min_sync_period),
            tcp_timeout=_duration_field(x, "tcpTimeout", d_ipvs.tcp_timeout),
            tcp_fin_timeout=_duration_field(x, "tcpFinTimeout", d_ipvs.tcp_fin_timeout),
            udp_timeout=_duration_field(x, "udpTimeout", d_ipvs.udp_timeout),
        )

    def nftables(x: Reader) -> NFTablesConfiguration:
        mb = x.int("masqueradeBit")
        return NFTablesConfiguration(
            masquerade_all=bool(x.bool("masqueradeAll")),
            masquerade_bit=d_nft.masquerade_bit if mb is None else mb,
            sync_period=_duration_field(x, "syncPeriod", d_nft.sync_period),
            min_sync_period=_duration_field(x, "minSyncPeriod", d_nft.min_sync_period),
        )

    def detect_local(x: Reader) -> DetectLocalConfiguration:
        return DetectLocalConfiguration(
            bridge_interface=x.str("bridgeInterface") or "",
            interface_name_prefix=x.str("interfaceNamePrefix") or "",
        )

    def conntrack(x: Reader) -> bool:
        x.ignore("maxPerCore", "min", "tcpCloseWaitTimeout", "tcpEstablishedTimeout",
                 "udpStreamTimeout", "udpTimeout")
        return bool(x.bool("tcpBeLiberal"))

    def linux(x: Reader) -> tuple[bool | None, bool | None]:
        x.ignore("oomScoreAdj")
        return x.obj("conntrack", conntrack), x.bool("masqueradeAll")

    ipt = r.obj("iptables", iptables) or d_ipt
    liberal = r.obj("conntrack", conntrack)
    lin_liberal, lin_masq_all = r.obj("linux", linux) or (None, None)
    if lin_masq_all:
        # 1.33+ moved masqueradeAll under linux:; it applies to both rule-based modes.
        ipt = attrs.evolve(ipt, masquerade_all=True)
    cfg = KubeProxyConfiguration(
        mode=r.str("mode") or "iptables",
        cluster_cidr=r.str("clusterCIDR") or "",
        detect_local_mode=r.str("detectLocalMode") or "ClusterCIDR",
        detect_local=r.obj("detectLocal", detect_local) or DetectLocalConfiguration(),
        iptables=ipt,
        ipvs=r.obj("ipvs", ipvs) or d_ipvs,
        nftables=r.obj("nftables", nftables) or d_nft,
        node_port_addresses=tuple(r.str_list("nodePortAddresses") or ()),
        hostname_override=r.str("hostnameOverride") or "",
        conntrack_tcp_be_liberal=bool(liberal or lin_liberal),
    )
    if lin_masq_all:
        cfg = attrs.evolve(cfg, nftables=attrs.evolve(cfg.nftables, masquerade_all=True))
    r.finish()
    validate_kube_proxy_config(cfg)
    return cfg


def _cidr_ok(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def validate_kube_proxy_config(cfg: KubeProxyConfiguration) -> None:
    """Raise :class:`InvalidKubeProxyConfiguration` listing every problem, upstream's order."""
    p = "KubeProxyConfiguration"
    errs: list[FieldError] = []
    for sub, conf in (("IPTables", cfg.iptables), ("NFTables", cfg.nftables)):
        if not 0 <= conf.masquerade_bit <= 31:
            errs.append(FieldError.invalid(f"{p}.{sub}.MasqueradeBit", conf.masquerade_bit,
                                           "must be within the range [0, 31]"))
        sync = _duration_seconds(conf.sync_period) or 0.0
        if sync <= 0:
            errs.append(FieldError.invalid(f"{p}.{sub}.SyncPeriod", conf.sync_period,
                                           "must be greater than 0"))
        if (_duration_seconds(conf.min_sync_period) or 0.0) < 0:
            errs.append(FieldError.invalid(f"{p}.{sub}.MinSyncPeriod", conf.min_sync_period,
                                           "must be greater than or equal to 0"))
    if cfg.mode == "ipvs":
        if (_duration_seconds(cfg.ipvs.sync_period) or 0.0) <= 0:
            errs.append(FieldError.invalid(f"{p}.IPVS.SyncPeriod", cfg.ipvs.sync_period,
                                           "must be greater than 0"))
        if cfg.ipvs.scheduler and cfg.ipvs.scheduler not in IPVS_SCHEDULERS:
            errs.append(FieldError.invalid(
                f"{p}.IPVS.Scheduler", cfg.ipvs.scheduler,
                f"must be in {list(IPVS_SCHEDULERS)}, blank means the default algorithm "
                "method (currently rr)".replace("'", ""),
            ))
        for i, c in enumerate(cfg.ipvs.exclude_cidrs):
            if not _cidr_ok(c):
                errs.append(FieldError.invalid(f"{p}.IPVS.ExcludeCIDRs[{i}]", c,
                                               "must be a valid CIDR"))
    if cfg.mode not in ("", *PROXY_MODES, *KSERVICE_EXTRA_MODES):
        errs.append(FieldError.invalid(f"{p}.ProxyMode", cfg.mode,
                                       "must be " + ",".join(PROXY_MODES)))
    if cfg.cluster_cidr:
        cidrs = cfg.cluster_cidr.split(",")
        if len(cidrs) > 2:
            errs.append(FieldError.invalid(
                f"{p}.ClusterCIDR", cfg.cluster_cidr,
                "only one CIDR allowed or a valid DualStack CIDR (e.g. 10.100.0.0/16, "
                "fde4:8dba:82e1::/48)"))
        elif not all(_cidr_ok(c.strip()) for c in cidrs):
            errs.append(FieldError.invalid(
                f"{p}.ClusterCIDR", cfg.cluster_cidr,
                "must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)"))
        elif len(cidrs) == 2 and (":" in cidrs[0]) == (":" in cidrs[1]):
            errs.append(FieldError.invalid(
                f"{p}.ClusterCIDR", cfg.cluster_cidr,
                "must be a valid DualStack CIDR (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)"))
    if cfg.detect_local_mode not in ("", *DETECT_LOCAL_MODES):
        errs.append(FieldError.not_supported(f"{p}.DetectLocalMode", cfg.detect_local_mode,
                                             DETECT_LOCAL_MODES))
    elif cfg.detect_local_mode == "BridgeInterface" and not cfg.detect_local.bridge_interface:
        errs.append(FieldError.invalid(f"{p}.DetectLocal.BridgeInterface", "",
                                       "must not be empty"))
    elif (cfg.detect_local_mode == "InterfaceNamePrefix"
          and not cfg.detect_local.interface_name_prefix):
        errs.append(FieldError.invalid(f"{p}.DetectLocal.InterfaceNamePrefix", "",
                                       "must not be empty"))
    npa = cfg.node_port_addresses
    if not (len(npa) == 1 and npa[0] == "primary"):
        for i, a in enumerate(npa):
            if not _cidr_ok(a):
                errs.append(FieldError.invalid(f"{p}.NodePortAddresses[{i}]", a,
                                               "must be a valid CIDR"))
    if errs:
        raise InvalidKubeProxyConfiguration(errs)

