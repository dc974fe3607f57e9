"""Node podCIDR and pod IP allocation.

* **Node podCIDRs** -- kube-controller-manager's range allocator: the next free
  ``/node_cidr_mask_size`` block of each ``pod_subnets`` CIDR, in address order (kind's first
  node gets ``10.244.0.0/24``).
* **Pod IPs** -- the CNI's host-local IPAM as kind's kindnet configures it: the range is the
  node's podCIDR without the network address, the gateway (the first host address, ``.1``)
  and, for IPv4, the broadcast address. Allocation is host-local's round robin: the next free
  address *after the last one handed out*, wrapping around -- so a node's pods get ``.2``,
  ``.3`` ..., and a deleted pod's address is not reused until the range wraps.

Allocators are rebuilt from the stored Nodes and Pods (never stored themselves). host-local
keeps its last reserved address on the node's disk; a rebuild takes the highest address in use.
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


@functools.lru_cache(maxsize=4096)
def _range(cidr: str) -> tuple[int, int, type[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(network address as int, exclusive end offset, address class) of a podCIDR.

    The end excludes the IPv4 broadcast address; the hot allocation path works on ints.
    """
    net = _parse_net(cidr)
    end = net.num_addresses - (1 if net.version == 4 else 0)
    return int(net.network_address), end, type(net.network_address)


@attrs.define
class PodIPAM:
    """Per-node host-local allocators: node name -> CIDR -> used offsets."""

    used: dict[str, dict[str, set[int]]] = attrs.field(factory=dict)
    #: host-local's ``last_reserved_ip``, as an offset, per (node, cidr).
    last: dict[tuple[str, str], int] = attrs.field(factory=dict)

    def clear(self) -> None:
        self.used.clear()
        self.last.clear()

    def _net(self, cidr: str) -> Network:
        return _parse_net(cidr)

    def mark(self, node: str, cidr: str, ip: str) -> None:
        net = self._net(cidr)
        addr = ipaddress.ip_address(ip)
        if addr in net:
            off = int(addr) - int(net.network_address)
            self.used.setdefault(node, {}).setdefault(cidr, set()).add(off)
            key = (node, cidr)
            self.last[key] = max(self.last.get(key, off), off)

    def allocate(self, node: str, cidr: str) -> str:
        base, end, addr_cls = _range(cidr)  # end: exclusive; no broadcast
        used = self.used.setdefault(node, {}).setdefault(cidr, set())
        first = 2  # the network address and the .1 gateway are not in the range
        key = (node, cidr)
        start = self.last.get(key, first - 1) + 1
        if not first <= start < end:
            start = first
        offset = start
        while offset in used:
            offset += 1
            if offset >= end:
                offset = first
            if offset == start:
                raise RangeFull(range=cidr)
        if offset >= end:
            raise RangeFull(range=cidr)
        used.add(offset)
        self.last[key] = offset
        return str(addr_cls(base + offset))

    def release(self, node: str, cidr: str, ip: str) -> None:
        net = self._net(cidr)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr in net:
            off = int(addr) - int(net.network_address)
            self.used.get(node, {}).get(cidr, set()).discard(off)
