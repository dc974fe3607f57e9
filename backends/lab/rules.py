"""What each lab node runs, and what the mock kernel predicts for it -- from one rendering.

:func:`node_state` builds the node's :class:`~kservice.proxy.types.NodeProxyState` exactly as
``kservice trace`` does (:func:`kservice.proxy.snapshot.build_node_state`), plus two facts of
the lab's machine that a real kube-proxy would know: the node's interfaces (``lo``, ``eth0``
on the underlay, ``cni0`` for the pods) and that no nfacct objects exist (the lab does not
create them, so kube-proxy would not reference them). :func:`render` gives the text loaded
into the real kernel; :func:`predict` loads the *same* rendering into the mock kernel, so a
disagreement is the kernel's word against the mock's, never two different rule sets.
"""

from __future__ import annotations

import attrs
import netaddr

from backends.lab.plan import POD_BRIDGE, LabPlan
from kservice.backend import Rendering, get_backend
from kservice.cluster import Cluster
from kservice.errors import InvalidInput
from kservice.proxy.types import NodeProxyState, ProxierOptions
from kservice.trace import Packet, TraceResult

__all__ = ["MODES", "load_payload", "node_state", "predict", "render"]

#: Lab modes -> (backend rendering them, section loaded into the real kernel, loader).
MODES: dict[str, tuple[str, str, str]] = {
    # The complete iptables-save (built-in chains, kube-proxy's jump rules, every chain):
    # what the node holds after a sync, loadable by iptables-restore as is.
    "iptables": ("iptables", "save", "iptables-restore"),
    # kube-proxy's own transaction (it creates, flushes and fills table ip kube-proxy).
    "nftables": ("nftables", "transaction", "nft"),
    # The userspace proxy programs no kernel rules of its own; it listens on the node.
    "userspace": ("userspace", "", ""),
}


def node_state(cluster: Cluster, plan: LabPlan, node: str) -> NodeProxyState:
    from kservice.proxy.snapshot import build_node_state

    n = plan.node(node)
    state = build_node_state(cluster, node, "IPv4",
                             options=ProxierOptions(nfacct_counters=()))
    ul_len = netaddr.IPNetwork(plan.underlay_cidr).prefixlen
    pod_len = netaddr.IPNetwork(n.pod_cidr).prefixlen
    interfaces = (("lo", "127.0.0.1/8"), ("eth0", f"{n.ip}/{ul_len}"),
                  (POD_BRIDGE, f"{n.gateway}/{pod_len}"))
    return attrs.evolve(state, node=attrs.evolve(state.node, interfaces=interfaces))


def render(state: NodeProxyState, mode: str) -> Rendering:
    if mode not in MODES:
        raise InvalidInput(f'unknown lab mode "{mode}"', hint="modes: " + ", ".join(MODES))
    return get_backend(MODES[mode][0]).render(state)


def load_payload(rendering: Rendering, mode: str) -> str:
    section = MODES[mode][1]
    return rendering.section(section) if section else ""


def predict(state: NodeProxyState, rendering: Rendering, mode: str, packet: Packet) -> TraceResult:
    """The mock kernel's answer for ``packet`` on this node, with this rendering loaded."""
    from backends.mockkernel import MockKernel

    kernel = MockKernel(state.node)
    get_backend(MODES[mode][0]).load(kernel, rendering)
    return kernel.trace(packet, mode=mode)
