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

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import attrs
import netaddr

from backends.lab.plan import POD_BRIDGE, LabPlan
from kservice.backend import Rendering, get_backend
from kservice.cluster import Cluster
from kservice.errors import BackendError, InvalidInput
from kservice.proxy.types import NodeInfo, NodeProxyState, ProxierOptions
from kservice.trace import Outcome, Packet, TraceResult

__all__ = ["MAX_HOPS", "MODES", "load_payload", "load_rendering", "node_state", "predict",
           "predict_path", "render", "save_rendering"]

#: A packet crosses at most this many lab nodes (client's node, the node it is sent to).
MAX_HOPS = 3

#: Lab modes -> (backend rendering them, section loaded into the real kernel, loader).
MODES: dict[str, tuple[str, str, str]] = {
    # The complete iptables-save (built-in chains, kube-proxy's jump rules, every chain):
    # what the node holds after a sync, loadable by iptables-restore as is.
    "iptables": ("iptables", "save", "iptables-restore"),
    # kube-proxy's own transaction (it creates, flushes and fills table ip kube-proxy).
    "nftables": ("nftables", "transaction", "nft"),
    # The userspace proxier's portal rules (REDIRECT/DNAT to its sockets), loaded once the
    # real proxy reported its ports (backends.lab.userspace).
    "userspace": ("userspace", "iptables", "iptables-restore"),
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


def predict(node: NodeInfo, rendering: Rendering, mode: str, packet: Packet) -> TraceResult:
    """The mock kernel's answer for ``packet`` on ``node``, with this rendering loaded."""
    from backends.mockkernel import MockKernel

    kernel = MockKernel(node)
    get_backend(MODES[mode][0]).load(kernel, rendering)
    return kernel.trace(packet, mode=mode)


def save_rendering(path: Path, node: NodeInfo, rendering: Rendering) -> None:
    """What a node was loaded with, kept so ``probe --check`` predicts from exactly that
    (never from a re-rendering of a state that may have changed since)."""
    data = {
        "node": {"name": node.name, "ips": list(node.ips), "labels": dict(node.labels),
                 "pod_cidrs": list(node.pod_cidrs),
                 "interfaces": [list(i) for i in node.interfaces]},
        "rendering": {"backend": rendering.backend, "node": rendering.node,
                      "family": rendering.family, "partial": rendering.partial,
                      "sections": [[k, rendering.section(k)] for k in rendering.names]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def load_rendering(path: Path) -> tuple[NodeInfo, Rendering]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"the lab's saved rendering {path} is unreadable ({exc}); "
                           "`kservice lab sync` writes it again") from None
    n, r = data["node"], data["rendering"]
    node = NodeInfo(name=n["name"], ips=tuple(n["ips"]), labels=n["labels"],
                    pod_cidrs=tuple(n["pod_cidrs"]),
                    interfaces=tuple((a, b) for a, b in n["interfaces"]))
    rendering = Rendering(backend=r["backend"], node=r["node"], family=r["family"],
                          sections=tuple((k, v) for k, v in r["sections"]),
                          partial=r["partial"])
    return node, rendering


def predict_path(plan: LabPlan, mode: str, node: str, packet: Packet,
                 node_rules: Callable[[str], tuple[NodeInfo, Rendering]]) -> TraceResult:
    """The mock kernel's answer across nodes: an outcome that forwards the packet to another
    lab node's address (a pod sending to a remote node's NodePort) is traced again on that
    node, with the source it left with. Probabilities multiply; rule paths concatenate."""
    def walk(node: str, packet: Packet, hops: int) -> list[Outcome]:
        info, rendering = node_rules(node)
        result = predict(info, rendering, mode, packet)
        out: list[Outcome] = []
        for o in result.outcomes:
            nxt = _next_node(plan, node, o)
            if nxt is None or hops >= MAX_HOPS or o.source_seen is None or o.delivered_to is None:
                out.append(attrs.evolve(o, rules=(f"[node {node}]", *o.rules)))
                continue
            ip, _, port = o.delivered_to.rpartition(":")
            again = Packet(src=o.source_seen, dst=ip, dport=int(port), sport=packet.sport,
                           proto=packet.proto)
            for sub in walk(nxt, again, hops + 1):
                out.append(attrs.evolve(
                    sub, probability=o.probability * sub.probability,
                    masqueraded=o.masqueraded or sub.masqueraded,
                    rules=(f"[node {node}]", *o.rules, *sub.rules)))
        return out

    outcomes = walk(node, packet, 1)
    assert sum((o.probability for o in outcomes), Fraction(0)) == 1
    return TraceResult(node=node, mode=mode, packet=packet, outcomes=tuple(outcomes))


def _next_node(plan: LabPlan, node: str, o: Outcome) -> str | None:
    """The other lab node an ACCEPTed packet is handed to, if its destination is one."""
    if o.verdict != "ACCEPT" or not o.delivered_to:
        return None
    ip = o.delivered_to.rpartition(":")[0].strip("[]")
    for n in plan.nodes:
        if n.name != node and n.ip == ip:
            return n.name
    return None
