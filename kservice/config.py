"""Cluster-wide settings: what kubeadm's ClusterConfiguration and apiserver flags decide.

Reading ``kubeadm.k8s.io/v1beta4`` ClusterConfiguration manifests lives in
:mod:`kservice.api.clusterconfig`. With none given, :data:`DEFAULT_CLUSTER_CONFIG` describes
a fresh kind cluster.
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_CLUSTER_CONFIG", "ClusterConfig"]


@attrs.frozen
class ClusterConfig:
    #: --service-cluster-ip-range: one or two CIDRs (different families), primary first.
    service_subnets: tuple[str, ...] = ("10.96.0.0/12",)
    #: --cluster-cidr / podSubnet: one or two CIDRs.
    pod_subnets: tuple[str, ...] = ("10.244.0.0/16",)
    dns_domain: str = "cluster.local"
    #: --service-node-port-range
    node_port_range: tuple[int, int] = (30000, 32767)
    #: Seed of every random choice the emulated apiserver and controllers make.
    seed: int = 0
    #: --max-endpoints-per-slice of the EndpointSlice controller.
    max_endpoints_per_slice: int = 100
    #: kubelet --cluster-dns
    cluster_dns: tuple[str, ...] = ("10.96.0.10",)
    #: CoreDNS ``pods`` mode: insecure (kubeadm's Corefile), verified or disabled.
    dns_pods_mode: str = "insecure"
    dns_ttl: int = 30
    #: Per-node pod CIDR mask sizes (IPv4, IPv6), as kube-controller-manager's defaults.
    node_cidr_mask_size_v4: int = 24
    node_cidr_mask_size_v6: int = 64

    @property
    def families(self) -> tuple[str, ...]:
        return tuple("IPv6" if ":" in c else "IPv4" for c in self.service_subnets)

    @property
    def dual_stack(self) -> bool:
        return len(self.service_subnets) == 2


DEFAULT_CLUSTER_CONFIG = ClusterConfig()
