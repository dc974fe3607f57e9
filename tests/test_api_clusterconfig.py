"""kubeadm ClusterConfiguration reading and kube-apiserver flag validation (reference §2.1, §3)."""

from __future__ import annotations

import pytest

from kservice import Cluster
from kservice.api import install_service_api, load_cluster_config
from kservice.api.clusterconfig import parse_port_range, validate_service_cluster_ip_ranges
from kservice.errors import InvalidInput

V1BETA4 = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  serviceSubnet: "10.100.0.0/16,fd00:100::/112"
  podSubnet: "10.244.0.0/16,fd00:244::/56"
  dnsDomain: example.local
apiServer:
  extraArgs:
  - name: service-node-port-range
    value: 20000-22767
"""


def test_reads_v1beta4() -> None:
    cfg = load_cluster_config(V1BETA4)
    assert cfg.service_subnets == ("10.100.0.0/16", "fd00:100::/112")
    assert cfg.pod_subnets == ("10.244.0.0/16", "fd00:244::/56")
    assert cfg.dns_domain == "example.local"
    assert cfg.node_port_range == (20000, 22767)
    assert cfg.cluster_dns == ("10.100.0.10",)
    assert cfg.dual_stack and cfg.families == ("IPv4", "IPv6")


def test_config_drives_allocators() -> None:
    c = Cluster(load_cluster_config(V1BETA4))
    install_service_api(c)
    from kservice import Service
    s = c.create(Service.from_manifest({"metadata": {"name": "a"}, "spec": {
        "type": "NodePort", "ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}}))
    assert 20000 <= s.spec.ports[0].node_port <= 22767
    assert s.spec.cluster_ips[1].startswith("fd00:100::")


def test_v1beta3_map_extra_args() -> None:
    cfg = load_cluster_config("""
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
apiServer:
  extraArgs:
    service-node-port-range: "30000+99"
""")
    assert cfg.node_port_range == (30000, 30099)


def test_v1beta4_refuses_map_extra_args() -> None:
    with pytest.raises(InvalidInput, match=r"list of \{name, value\}"):
        load_cluster_config("""
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  extraArgs:
    service-node-port-range: "30000-32767"
""")


@pytest.mark.parametrize(("ranges", "message"), [
    (["10.0.0.0/8"], "specified --service-cluster-ip-range is too large; for 32-bit addresses, "
                     "the mask must be >= 12"),
    (["10.0.0.0/12", "fd00::/64"], "specified --service-cluster-ip-range[1] is too large; for "
                                   "128-bit addresses, the mask must be >= 108"),
    (["10.0.0.0/16", "10.1.0.0/16"], "--service-cluster-ip-range[0] and "
                                     "--service-cluster-ip-range[1] must be of different IP family"),
    (["10.0.0.0/16", "fd00::/112", "10.1.0.0/16"], "--service-cluster-ip-range must not contain "
                                                   "more than two entries"),
])
def test_apiserver_flag_messages_legacy(ranges: list[str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_service_cluster_ip_ranges(ranges, legacy_bitmap=True)
    assert message in str(info.value)


def test_v134_lifts_size_cap_but_not_ipv6_64() -> None:
    # MultiCIDRServiceAllocator + DisableAllocatorDualWrite (both on in v1.34): no 20-bit cap.
    assert validate_service_cluster_ip_ranges(["10.0.0.0/8", "fd00::/64"]) == (
        "10.0.0.0/8", "fd00::/64")
    with pytest.raises(InvalidInput) as info:
        validate_service_cluster_ip_ranges(["10.0.0.0/16", "fd00::/48"])
    assert "shortest allowed prefix length for service CIDR is 64, got 48" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        validate_service_cluster_ip_ranges(["10.0.0.0/16", "10.1.0.0/16"])
    assert "must be of different IP family" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("30000-32767", (30000, 32767)), ("30000+2767", (30000, 32767)), ("8080", (8080, 8080))])
def test_port_range_forms(value: str, expected: tuple[int, int]) -> None:
    assert parse_port_range(value) == expected


@pytest.mark.parametrize(("value", "why"), [
    ("abc", 'strconv.Atoi: parsing "abc": invalid syntax'),
    ("30000-70000", "the port range cannot be greater than 65535: 30000-70000"),
    ("32767-30000", "end port cannot be less than start port: 32767-30000"),
    ("1-2+3", "unable to parse port range: 1-2+3"),
])
def test_port_range_errors(value: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_port_range(value)
    assert str(info.value) == (f'invalid argument "{value}" for "--service-node-port-range" '
                               f"flag: {why}")


def test_missing_document_and_bad_yaml() -> None:
    with pytest.raises(InvalidInput, match="no ClusterConfiguration document found"):
        load_cluster_config("kind: InitConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\n")
    with pytest.raises(InvalidInput) as info:
        load_cluster_config("kind: [\n", source="kubeadm.yaml")
    assert str(info.value).startswith("kubeadm.yaml:")
