"""KubeProxyConfiguration files: strict reading, upstream defaults, validation messages."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given

from kservice.errors import InvalidInput
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.configfile import (
    InvalidKubeProxyConfiguration,
    load_kube_proxy_config,
    validate_kube_proxy_config,
)
from kservice.testing.workloads import kube_proxy_configs

# kubeadm/kind write this (trimmed): fields kservice does not model must be accepted.
KIND_CONFIG = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection: {kubeconfig: /var/lib/kube-proxy/kubeconfig.conf, qps: 0}
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack: {maxPerCore: 0, min: null, tcpCloseWaitTimeout: null,
            tcpEstablishedTimeout: null, udpStreamTimeout: 0s, udpTimeout: 0s}
detectLocal: {bridgeInterface: "", interfaceNamePrefix: ""}
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables: {localhostNodePorts: null, masqueradeAll: false, masqueradeBit: null,
           minSyncPeriod: 1s, syncPeriod: 0s}
ipvs: {excludeCIDRs: null, minSyncPeriod: 0s, scheduler: "", strictARP: false,
       syncPeriod: 0s, tcpFinTimeout: 0s, tcpTimeout: 0s, udpTimeout: 0s}
logging: {flushFrequency: 0, options: {json: {infoBufferSize: "0"}}, verbosity: 0}
metricsBindAddress: ""
mode: iptables
nftables: {masqueradeAll: false, masqueradeBit: null, minSyncPeriod: 0s, syncPeriod: 0s}
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel: {enableDSR: false}
"""


def _load(text: str) -> KubeProxyConfiguration:
    return load_kube_proxy_config(yaml.safe_load(text))


def test_defaults() -> None:
    cfg = _load("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n")
    assert cfg == KubeProxyConfiguration()
    assert cfg.iptables.masquerade_bit == 14 and cfg.iptables.localhost_node_ports
    assert cfg.iptables.sync_period == "30s" and cfg.iptables.min_sync_period == "1s"


def test_kind_config_reads_and_zero_durations_are_defaulted() -> None:
    # kubeadm prints syncPeriod: 0s; v1alpha1 defaulting treats a zero Duration as unset.
    cfg = _load(KIND_CONFIG)
    assert cfg.mode == "iptables" and cfg.cluster_cidr == "10.244.0.0/16"
    assert cfg.detect_local_mode == "ClusterCIDR"  # "" means ClusterCIDR
    assert cfg.iptables.sync_period == "30s" and cfg.nftables.min_sync_period == "1s"
    assert cfg.iptables.masquerade_bit == 14 and cfg.iptables.localhost_node_ports


def test_negative_sync_period_is_refused() -> None:
    with pytest.raises(InvalidKubeProxyConfiguration) as ei:
        load_kube_proxy_config({"kind": "KubeProxyConfiguration",
                                "iptables": {"syncPeriod": "-1s"}})
    assert ('KubeProxyConfiguration.IPTables.SyncPeriod: Invalid value: "-1s": '
            "must be greater than 0") in str(ei.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"mode": "userspacex"},
         'KubeProxyConfiguration.ProxyMode: Invalid value: "userspacex": '
         "must be iptables,ipvs,nftables"),
        ({"iptables": {"masqueradeBit": 32}},
         "KubeProxyConfiguration.IPTables.MasqueradeBit: Invalid value: 32: "
         "must be within the range [0, 31]"),
        ({"detectLocalMode": "Magic"},
         'KubeProxyConfiguration.DetectLocalMode: Unsupported value: "Magic"'),
        ({"detectLocalMode": "BridgeInterface"},
         "KubeProxyConfiguration.DetectLocal.BridgeInterface: Invalid value: \"\": "
         "must not be empty"),
        ({"detectLocalMode": "InterfaceNamePrefix"},
         "KubeProxyConfiguration.DetectLocal.InterfaceNamePrefix"),
        ({"clusterCIDR": "10.0.0.0/33"}, "KubeProxyConfiguration.ClusterCIDR"),
        ({"nodePortAddresses": ["primary", "10.0.0.0/8"]},
         'KubeProxyConfiguration.NodePortAddresses[0]: Invalid value: "primary": '
         "must be a valid CIDR"),
        ({"nodePortAddresses": ["10.0.0.1"]}, "NodePortAddresses[0]"),
        ({"mode": "ipvs", "ipvs": {"scheduler": "fastest"}},
         'KubeProxyConfiguration.IPVS.Scheduler: Invalid value: "fastest"'),
    ],
)
def test_validation_messages(patch: dict, message: str) -> None:
    doc = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
           **patch}
    with pytest.raises(InvalidKubeProxyConfiguration) as ei:
        load_kube_proxy_config(doc)
    assert message in str(ei.value)
    assert str(ei.value).startswith("invalid configuration: ")


def test_valid_special_cases() -> None:
    doc = {"kind": "KubeProxyConfiguration", "nodePortAddresses": ["primary"],
           "detectLocalMode": "ClusterCIDR"}  # no clusterCIDR: valid, nothing is "local"
    cfg = load_kube_proxy_config(doc)
    assert cfg.node_port_addresses == ("primary",) and cfg.cluster_cidr == ""
    cfg = load_kube_proxy_config({"kind": "KubeProxyConfiguration",
                                  "linux": {"masqueradeAll": True},
                                  "conntrack": {"tcpBeLiberal": True}})
    assert cfg.iptables.masquerade_all and cfg.nftables.masquerade_all
    assert cfg.conntrack_tcp_be_liberal


def test_strict_reading() -> None:
    with pytest.raises(InvalidInput) as ei:
        load_kube_proxy_config({"kind": "KubeProxyConfiguration", "iptables": {"masqBit": 3}})
    assert ei.value.path == "iptables.masqBit"
    with pytest.raises(InvalidInput):
        load_kube_proxy_config({"kind": "KubeProxyConfiguration", "mode": 3})
    with pytest.raises(InvalidInput) as ei:
        load_kube_proxy_config({"kind": "KubeProxyConfiguration",
                                "iptables": {"syncPeriod": "30 seconds"}})
    assert "invalid duration" in str(ei.value)
    with pytest.raises(InvalidInput):
        load_kube_proxy_config({"apiVersion": "kubeproxy.config.k8s.io/v1beta9",
                                "kind": "KubeProxyConfiguration"})


@given(cfg=kube_proxy_configs())
def test_strategy_configs_are_valid(cfg: KubeProxyConfiguration) -> None:
    validate_kube_proxy_config(cfg)
