"""Node podCIDR and pod IP allocation.

* **Node podCIDRs** -- kube-controller-manager's range allocator: the next free
  ``/node_cidr_mask_size`` block of each ``pod_subnets`` CIDR, in address order (kind's first
  node gets ``10.244.0.0/24``).
* **Pod IPs** -- the CNI's host-local IPAM as kind's kindnet configures it: the next free address
  of the node's podCIDR, skipping the network address and ``.1`` (host-local reserves the
  first host address as the gateway; on kind the node side of each pod's veth answers there).
  So a node's pods get ``.2``, ``.3`` ... and a freed address is reused lowest-first (host-local
  actually continues round-robin after the last one it handed out; kservice picks lowest
  free for reproducibility). The broadcast address of an IPv4 block is never used.

Allocators are rebuilt from the stored Nodes and Pods (never stored themselves).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

import attrs

from kservice.errors import RangeFull

__all__ = ["PodIPAM", "next_node_cidrs"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def next_node_cidrs(
    pod_subnets: Iterable[str], used: Iterable[str], mask_v4: int, mask_v6: int
) -> tuple[str, ...]:
    """One free node CIDR per pod subnet (primary family first)."""
    used_nets = set()
    for c in used:
        try:
            used_nets.add(ipaddress.ip_network(c, strict=False))
        except ValueError:
            continue
    out = []
    for subnet_text in pod_subnets:
        subnet = ipaddress.ip_network(subnet_text, strict=False)
        mask = mask_v4 if subnet.version == 4 else mask_v6
        mask = max(mask, subnet.prefixlen)
        for cand in subnet.subnets(new_prefix=mask):
            if not any(cand.overlaps(u) for u in used_nets):
                out.append(str(cand))
                break
        else:
            raise RangeFull(range=subnet_text)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _parse_net(cidr: str) -> Network:
    return ipaddress.ip_network(cidr, strict=False)


@attrs.define
class PodIPAM:
    """Per-node host-local allocators: node name -> CIDR -> used offsets."""

    used: dict[str, dict[str, set[int]]] = attrs.field(factory=dict)
    #: Lowest offset that may be free, per (node, cidr): keeps allocation amortised O(1).
    hint: dict[tuple[str, str], int] = attrs.field(factory=dict)

    def clear(self) -> None:
        self.used.clear()
        self.hint.clear()

    def _net(self, cidr: str) -> Network:
        return _parse_net(cidr)

    def mark(self, node: str, cidr: str, ip: str) -> None:
        net = self._net(cidr)
        addr = ipaddress.ip_address(ip)
        if addr in net:
            self.used.setdefault(node, {}).setdefault(cidr, set()).add(
                int(addr) - int(net.network_address)
            )

    def allocate(self, node: str, cidr: str) -> str:
        net = self._net(cidr)
        used = self.used.setdefault(node, {}).setdefault(cidr, set())
        last = net.num_addresses - (1 if net.version == 4 else 0)  # skip IPv4 broadcast
        offset = max(2, self.hint.get((node, cidr), 2))  # network and .1 gateway reserved
        while offset in used:
            offset += 1
        if offset >= last:
            raise RangeFull(range=cidr)
        used.add(offset)
        self.hint[(node, cidr)] = offset + 1
        return str(net.network_address + offset)

    def release(self, node: str, cidr: str, ip: str) -> None:
        net = self._net(cidr)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr in net:
            off = int(addr) - int(net.network_address)
            self.used.get(node, {}).get(cidr, set()).discard(off)
            key = (node, cidr)
            self.hint[key] = min(self.hint.get(key, 2), off)
