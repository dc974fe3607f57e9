"""The mock Linux kernel: netfilter (iptables, and nftables/IPVS plug-ins), routing,
conntrack and exact packet tracing. See README.md."""

from backends.mockkernel.conntrack import ConntrackEntry, ConntrackTable, RecentLists, VirtualClock
from backends.mockkernel.engine import HOOKS, PRIORITY, HookProgram, PacketState, Verdict
from backends.mockkernel.kernel import KUBE_PROXY_JUMP_RULES, MockKernel
from backends.mockkernel.netfilter_parse import kernel_probability, parse_iptables_save

__all__ = [
    "HOOKS",
    "KUBE_PROXY_JUMP_RULES",
    "PRIORITY",
    "ConntrackEntry",
    "ConntrackTable",
    "HookProgram",
    "MockKernel",
    "PacketState",
    "RecentLists",
    "Verdict",
    "VirtualClock",
    "kernel_probability",
    "parse_iptables_save",
]
