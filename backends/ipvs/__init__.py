"""kube-proxy's IPVS mode: render a node's virtual servers, ipsets, kube-ipvs0 addresses and
iptables rules from a :class:`~kservice.proxy.types.NodeProxyState`, print them as the real
tools do, compute the incremental commands of a sync, and load them into the mock kernel.

See ``README.md`` in this directory for the packet flow.
"""

from backends.ipvs.backend import IPVSBackend, full_iptables_save
from backends.ipvs.formats import (
    ipset_restore,
    ipset_save,
    ipvsadm_list,
    ipvsadm_save,
    kube_ipvs0_addr,
    split_all,
)
from backends.ipvs.model import IPSet, IPVSNode, RealServer, VirtualServer
from backends.ipvs.reconcile import Plan, reconcile
from backends.ipvs.render import chosen_endpoints, render_node

__all__ = [
    "IPSet",
    "IPVSBackend",
    "IPVSNode",
    "Plan",
    "RealServer",
    "VirtualServer",
    "backend",
    "chosen_endpoints",
    "full_iptables_save",
    "ipset_restore",
    "ipset_save",
    "ipvsadm_list",
    "ipvsadm_save",
    "kube_ipvs0_addr",
    "reconcile",
    "render_node",
    "split_all",
]

#: The entry point ``kservice.backends: ipvs``.
backend = IPVSBackend()
