"""The lab's plan: from a Cluster to the namespaces, links, addresses, routes and commands.

Pure (no I/O, no root): :func:`plan_lab` reads the cluster's Nodes and Pods and returns a
:class:`LabPlan` -- every network namespace, every ``ip`` command that builds the topology,
and the processes to start -- which :mod:`backends.lab.executor` then runs. Keeping the plan
a value makes it unit-testable and makes the safety rule checkable before anything runs:
every command names a namespace carrying the lab's prefix (:func:`confined`).

Topology (IPv4; the addresses are the cluster's own, so they compare with ``kservice
trace``)::

    ksl-<lab>-ul  (underlay: bridge "ul0", like kind's docker network)
      |  u<i> ==veth== eth0 of each node namespace (InternalIP/<underlay prefix>)
      |  ux   ==veth== eth0 of the external namespace (client address, the nodes' gateway)
    ksl-<lab>-n-<node>  (bridge "cni0" = first host of the node's podCIDR, the pods' gateway;
      |                  routes: other nodes' podCIDRs via their InternalIP; default via the
      |                  external namespace; kube-proxy's rules loaded here)
      |  vp<j> ==veth== eth0 of each pod namespace of this node (hairpin on)
    ksl-<lab>-p-<ns>-<pod>  (pod IP/<podCIDR prefix>, default via cni0's address,
                             responder on every container port)

The pods' bridge owning the first host of the pod CIDR is the convention in
:mod:`kservice.semantics` that the mock kernel shares, so masqueraded sources agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs
import netaddr

from kservice.cluster import Cluster
from kservice.errors import InvalidInput

__all__ = [
    "LAB_PREFIX",
    "Command",
    "ExternalPlan",
    "LabPlan",
    "NodePlan",
    "PodChanges",
    "PodPlan",
    "confined",
    "netns_prefix",
    "pin_transient_pods",
    "plan_from_objects",
    "plan_lab",
    "reconcile",
    "validate_lab_name",
]

#: Every namespace the lab creates starts with this, then the lab name and a dash.
LAB_PREFIX = "ksl-"
#: Lab names: short, lower-case letters and digits only. No "-": the lab's namespaces are
#: "ksl-<lab>-...", and with a dash in names lab "a" would own the prefix of lab "a-b".
_NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")
#: Linux IFNAMSIZ is 16 including the NUL.
IFNAMSIZ = 15
UNDERLAY_BRIDGE = "ul0"
POD_BRIDGE = "cni0"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def _strs(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _ints(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


def _pairs(values: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for v in values:
        a, b = v
        out.append((a, b))
    return tuple(out)


def validate_lab_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidInput(f"lab name {name!r} is not valid",
                           hint="1-12 characters of a-z and 0-9 (no '-': the lab's namespaces "
                                "are named ksl-<lab>-...)")
    return name


def netns_prefix(lab: str) -> str:
    return f"{LAB_PREFIX}{lab}-"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", text.lower())[:60]


@attrs.frozen
class Command:
    """One command, and why it runs (shown on failure and in ``--dry-run``)."""

    argv: tuple[str, ...] = attrs.field(converter=_strs)
    why: str = ""
    #: Text fed on stdin (a rule file for ``iptables-restore`` / ``nft -f``).
    stdin: str | None = None

    def __str__(self) -> str:
        return " ".join(self.argv)


@attrs.frozen
class NodePlan:
    name: str
    netns: str
    ip: str
    #: The node's pod CIDR (IPv4) and the bridge address inside it.
    pod_cidr: str
    gateway: str
    #: The underlay-side end of the node's eth0 veth.
    underlay_port: str


@attrs.frozen
class PodPlan:
    namespace: str
    name: str
    node: str
    netns: str
    ip: str
    #: The veth end in the node namespace, attached to the pod bridge.
    host_port: str
    tcp_ports: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    udp_ports: tuple[int, ...] = attrs.field(default=(), converter=_ints)
    #: hostNetwork pods answer from the node's namespace on the node's address.
    host_network: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _node_tuple(values: Iterable[NodePlan]) -> tuple[NodePlan, ...]:
    return tuple(values)


def _pod_tuple(values: Iterable[PodPlan]) -> tuple[PodPlan, ...]:
    return tuple(values)


@attrs.frozen
class ExternalPlan:
    netns: str
    ip: str
    #: Routes to the LoadBalancer / external IPs: (destination, node IP carrying it).
    vip_routes: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)


@attrs.frozen
class LabPlan:
    name: str
    underlay_netns: str
    underlay_cidr: str
    nodes: tuple[NodePlan, ...] = attrs.field(converter=_node_tuple)
    pods: tuple[PodPlan, ...] = attrs.field(converter=_pod_tuple)
    external: ExternalPlan

    @property
    def prefix(self) -> str:
        return netns_prefix(self.name)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace, underlay first (creation order; deletion order is reversed)."""
        return (self.underlay_netns, self.external.netns,
                *(n.netns for n in self.nodes),
                *(p.netns for p in self.pods if not p.host_network))

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidInput(f'node "{name}" is not in lab "{self.name}"',
                           hint="nodes: " + ", ".join(n.name for n in self.nodes))

    def pod(self, ref: str) -> PodPlan:
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        for p in self.pods:
            if p.namespace == ns and p.name == name:
                return p
        raise InvalidInput(f'pod "{ns}/{name}" is not in lab "{self.name}"',
                           hint="pods: " + ", ".join(p.ref for p in self.pods))

    def pod_by_ip(self, ip: str) -> PodPlan | None:
        for p in self.pods:
            if p.ip == ip and not p.host_network:
                return p
        return None

    def node_of_ip(self, ip: str) -> NodePlan | None:
        addr = netaddr.IPAddress(ip)
        for n in self.nodes:
            if n.ip == ip or addr in netaddr.IPNetwork(n.pod_cidr):
                return n
        return None

    # ------------------------------------------------------------------ commands

    def build_commands(self) -> list[Command]:
        """Everything that builds the topology, in order (no rules, no processes)."""
        cmds: list[Command] = []
        prefix_len = netaddr.IPNetwork(self.underlay_cidr).prefixlen
        ul = self.underlay_netns

        def ipn(ns: str, *args: str, why: str = "") -> None:
            cmds.append(Command(("ip", "-n", ns, *args), why))

        def sysctl(ns: str, key: str, value: str, why: str) -> None:
            cmds.append(Command(("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                                 f"{key}={value}"), why))

        for ns in self.namespaces:
            cmds.append(Command(("ip", "netns", "add", ns), "a namespace of the lab"))
            ipn(ns, "link", "set", "lo", "up", why="loopback up")
            # ICMP errors (REJECT's port-unreachable) are rate-limited per destination by
            # default (a burst of 6, then 1/s): a probe burst would turn REJECTs into
            # timeouts. The lab measures the rules, not the limiter, so it is off.
            sysctl(ns, "net.ipv4.icmp_ratelimit", "0",
                   "REJECT answers must not be rate-limited during a probe burst")
        ipn(ul, "link", "add", UNDERLAY_BRIDGE, "type", "bridge",
            why="the underlay: the network the nodes' InternalIPs live on")
        ipn(ul, "link", "set", UNDERLAY_BRIDGE, "up")

        # External client: on the underlay; also the nodes' default gateway (the "internet").
        ext = self.external
        ipn(ext.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "ux",
            "netns", ul, why="the external client's link to the underlay")
        ipn(ul, "link", "set", "ux", "master", UNDERLAY_BRIDGE)
        ipn(ul, "link", "set", "ux", "up")
        ipn(ext.netns, "addr", "add", f"{ext.ip}/{prefix_len}", "dev", "eth0")
        ipn(ext.netns, "link", "set", "eth0", "up")
        for dst, via in ext.vip_routes:
            ipn(ext.netns, "route", "replace", f"{dst}/32", "via", via,
                why="a LoadBalancer/external IP reaches the cluster through a node "
                    "(as MetalLB's L2 mode or a cloud balancer does)")

        for node in self.nodes:
            ns = node.netns
            ipn(ns, "link", "add", "eth0", "type", "veth", "peer", "name", node.underlay_port,
                "netns", ul, why=f"node {node.name}'s link to the underlay")
            ipn(ul, "link", "set", node.underlay_port, "master", UNDERLAY_BRIDGE)
            ipn(ul, "link", "set", node.underlay_port, "up")
            ipn(ns, "addr", "add", f"{node.ip}/{prefix_len}", "dev", "eth0")
            ipn(ns, "link", "set", "eth0", "up")
            gw_len = netaddr.IPNetwork(node.pod_cidr).prefixlen
            ipn(ns, "link", "add", POD_BRIDGE, "type", "bridge",
                why="the pods' bridge (its address is the pods' gateway)")
            ipn(ns, "addr", "add", f"{node.gateway}/{gw_len}", "dev", POD_BRIDGE)
            ipn(ns, "link", "set", POD_BRIDGE, "up")
            for other in self.nodes:
                if other is not node:
                    ipn(ns, "route", "replace", other.pod_cidr, "via", other.ip,
                        why=f"pods of {other.name} live behind its InternalIP")
            ipn(ns, "route", "replace", "default", "via", ext.ip,
                why="replies to outside clients (and unknown destinations) leave here")
            # What kube-proxy / the kubelet need on a node.
            sysctl(ns, "net.ipv4.ip_forward", "1", "nodes route pod and service traffic")
            sysctl(ns, "net.ipv4.conf.all.route_localnet", "1",
                   "kube-proxy sets it for NodePorts on 127.0.0.1 (localhostNodePorts)")
            sysctl(ns, "net.ipv4.conf.all.rp_filter", "0", "asymmetric paths are normal here")
            sysctl(ns, "net.ipv4.conf.default.rp_filter", "0", "")

        for node in self.nodes:
            for pod in (p for p in self.pods if p.node == node.name and not p.host_network):
                cmds += self.pod_link_commands(pod)
        return cmds

    def pod_link_commands(self, pod: PodPlan) -> list[Command]:
        """The pod's veth into its node's bridge, its address and default route (the
        pod's namespace exists already)."""
        node = self.node(pod.node)
        gw_len = netaddr.IPNetwork(node.pod_cidr).prefixlen

        def ipn(ns: str, *args: str, why: str = "") -> Command:
            return Command(("ip", "-n", ns, *args), why)

        return [
            ipn(pod.netns, "link", "add", "eth0", "type", "veth", "peer", "name",
                pod.host_port, "netns", node.netns, why=f"pod {pod.ref}'s interface"),
            ipn(node.netns, "link", "set", pod.host_port, "master", POD_BRIDGE),
            ipn(node.netns, "link", "set", pod.host_port, "type", "bridge_slave",
                "hairpin", "on", why="hairpin: a pod may reach itself through a Service"),
            ipn(node.netns, "link", "set", pod.host_port, "up"),
            ipn(pod.netns, "addr", "add", f"{pod.ip}/{gw_len}", "dev", "eth0"),
            ipn(pod.netns, "link", "set", "eth0", "up"),
            ipn(pod.netns, "route", "replace", "default", "via", node.gateway),
        ]

    def pod_namespace_commands(self, pod: PodPlan) -> list[Command]:
        return [
            Command(("ip", "netns", "add", pod.netns), "a namespace of the lab"),
            Command(("ip", "-n", pod.netns, "link", "set", "lo", "up"), "loopback up"),
            Command(("ip", "netns", "exec", pod.netns, "sysctl", "-q", "-w",
                     "net.ipv4.icmp_ratelimit=0"), "no ICMP rate limit during probes"),
        ]

    def bridge_nf_commands(self) -> list[Command]:
        """br_netfilter: bridged pod-to-pod replies must meet conntrack to be un-DNATed."""
        return [Command(("ip", "netns", "exec", n.netns, "sysctl", "-q", "-w",
                         "net.bridge.bridge-nf-call-iptables=1"),
                        "replies bridged between pods of one node need conntrack's un-DNAT")
                for n in self.nodes]

    def teardown_commands(self) -> list[Command]:
        return [Command(("ip", "netns", "del", ns), "remove the lab's namespace")
                for ns in reversed(self.namespaces)]

    # ------------------------------------------------------------------ (de)serialise

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabPlan:
        ext = data["external"]
        return cls(
            name=data["name"], underlay_netns=data["underlay_netns"],
            underlay_cidr=data["underlay_cidr"],
            nodes=[NodePlan(**n) for n in data["nodes"]],
            pods=[PodPlan(**p) for p in data["pods"]],
            external=ExternalPlan(ext["netns"], ext["ip"],
                                  [tuple(r) for r in ext["vip_routes"]]),
        )


@attrs.frozen
class PodChanges:
    """What ``lab sync`` does to the pods when the cluster's pods changed."""

    plan: LabPlan
    added: tuple[PodPlan, ...] = attrs.field(converter=_pod_tuple)
    removed: tuple[PodPlan, ...] = attrs.field(converter=_pod_tuple)


def reconcile(old: LabPlan, new: LabPlan) -> PodChanges:
    """Merge a freshly computed plan into the built one: pods kept as built (their veth
    names stay), new pods get a free ``vp<j>`` on their node, gone pods are removed.
    Nodes, the underlay and the external client must be unchanged."""
    if (old.nodes, old.underlay_cidr, old.external) != (new.nodes, new.underlay_cidr,
                                                          new.external):
        raise InvalidInput(f'the nodes, their addresses or the Services\' external addresses '
                           f'changed since lab "{old.name}" was built',
                           hint="rebuild it: `kservice lab down` then `kservice lab up`")

    def key(p: PodPlan) -> tuple[str, str, str, str, bool]:
        return (p.namespace, p.name, p.node, p.ip, p.host_network)

    old_by = {key(p): p for p in old.pods}
    new_keys = {key(p) for p in new.pods}
    kept = [p for p in old.pods if key(p) in new_keys]
    removed = [p for p in old.pods if key(p) not in new_keys]
    used: dict[str, set[str]] = {}
    for p in kept:
        used.setdefault(p.node, set()).add(p.host_port)
    added: list[PodPlan] = []
    for p in new.pods:
        if key(p) in old_by:
            built = old_by[key(p)]
            if (built.tcp_ports, built.udp_ports) != (p.tcp_ports, p.udp_ports):
                # Same pod, other ports: rebuilt (its responder must listen elsewhere).
                removed.append(built)
                kept.remove(built)
                used[p.node].discard(built.host_port)
            else:
                continue
        taken = used.setdefault(p.node, set())
        j = next(i for i in range(len(taken) + 1) if f"vp{i}" not in taken)
        taken.add(f"vp{j}")
        added.append(attrs.evolve(p, host_port=f"vp{j}"))
    pods = sorted([*kept, *added], key=lambda p: (p.namespace, p.name))
    return PodChanges(attrs.evolve(old, pods=pods), added, removed)


def pin_transient_pods(old: LabPlan, new: LabPlan, stored: set[tuple[str, str]]) -> LabPlan:
    """``new`` with the built names kept for pods that exist only through ``lab up -f``.

    Files are applied to the stored cluster in memory on every read, so a pod a file's
    Deployment creates gets a name generated from the stored cluster's resourceVersion: it
    changes whenever the stored state changes, although the pod (namespace, node, address,
    ports) is the same. Such a pod -- its ``(namespace, name)`` not in ``stored`` (the
    stored cluster's pods), in both plans -- keeps the name it was built with, so ``sync``
    neither rebuilds it nor renames it. Stored pods keep their true identity: a stored pod
    recreated under another name is a real change.
    """
    def body(p: PodPlan) -> tuple[str, str, str, bool, tuple[int, ...], tuple[int, ...]]:
        return (p.namespace, p.node, p.ip, p.host_network, tuple(p.tcp_ports),
                tuple(p.udp_ports))

    built: dict[tuple[Any, ...], list[PodPlan]] = {}
    new_refs = {(p.namespace, p.name) for p in new.pods}
    for p in old.pods:
        if (p.namespace, p.name) not in stored and (p.namespace, p.name) not in new_refs:
            built.setdefault(body(p), []).append(p)
    pods: list[PodPlan] = []
    for p in new.pods:
        candidates = built.get(body(p)) if (p.namespace, p.name) not in stored else None
        if candidates:
            b = candidates.pop(0)
            pods.append(attrs.evolve(p, name=b.name, netns=b.netns))
        else:
            pods.append(p)
    return attrs.evolve(new, pods=sorted(pods, key=lambda p: (p.namespace, p.name)))


def confined(cmd: Command, prefix: str) -> bool:
    """Does ``cmd`` act only inside namespaces named with ``prefix``?

    Accepted forms: ``ip netns add|del|pids NS``, ``ip -n NS ...``, ``ip netns exec NS ...``.
    Anything else -- in particular any command in the host namespace -- is refused.
    """
    a = cmd.argv
    if len(a) >= 4 and a[0] == "ip" and a[1] == "netns" and a[2] in ("add", "del", "pids"):
        return len(a) == 4 and a[3].startswith(prefix)
    if len(a) >= 4 and a[0] == "ip" and a[1] == "-n":
        return a[2].startswith(prefix)
    if len(a) >= 5 and a[0] == "ip" and a[1] == "netns" and a[2] == "exec":
        return a[3].startswith(prefix)
    return False


# ---------------------------------------------------------------------------- planning


def _v4(values: Iterable[str]) -> list[str]:
    return [v for v in values if v and ":" not in v]


def _underlay_cidr(ips: list[str]) -> str:
    """The smallest network of at least /24 holding every node IP (kind's is a /16)."""
    if not ips:
        raise InvalidInput("the cluster has no node with an IPv4 InternalIP")
    addrs = [netaddr.IPAddress(ip) for ip in ips]
    for plen in range(24, 7, -1):
        net = netaddr.IPNetwork(f"{ips[0]}/{plen}").cidr
        if all(a in net for a in addrs):
            return str(net)
    raise InvalidInput("the nodes' InternalIPs are too far apart for one underlay network",
                       hint="; ".join(ips))


def _external_ip(cidr: str, used: set[str]) -> str:
    """The client's address: high in the underlay's first /24, away from the nodes."""
    net = netaddr.IPNetwork(cidr)
    for i in range(254, 1, -1):
        ip = str(netaddr.IPAddress(net.first + i))
        if ip not in used and netaddr.IPAddress(ip) in net:
            return ip
    raise InvalidInput(f"no free address for the external client in {cidr}")


def plan_from_objects(lab: str, nodes: list[Any], pods: list[Any], services: list[Any],
                      slices: list[Any] | None = None) -> LabPlan:
    """The plan for Node, Pod, Service and EndpointSlice objects (``kservice.models``).

    An endpoint on a node's own address that no hostNetwork pod serves (the apiserver
    behind ``default/kubernetes``: a static pod the store does not hold) gets a responder
    in the node's namespace too, named as kubeadm names the static pod
    (``kube-system/kube-apiserver-<node>``) or ``<ns>/<service>-host-<node>``.
    """
    validate_lab_name(lab)
    prefix = netns_prefix(lab)
    node_plans: list[NodePlan] = []
    for i, node in enumerate(sorted(nodes, key=lambda n: n.metadata.name)):
        ips = _v4(node.node_ips)
        cidrs = _v4(node.pod_cidrs)
        if not ips or not cidrs:
            raise InvalidInput(f'node "{node.metadata.name}" has no IPv4 InternalIP or '
                               f"podCIDR; the lab builds IPv4 clusters",
                               hint="give the Node status.addresses and spec.podCIDR")
        net = netaddr.IPNetwork(cidrs[0])
        node_plans.append(NodePlan(
            name=node.metadata.name, netns=f"{prefix}n-{_slug(node.metadata.name)}",
            ip=ips[0], pod_cidr=str(net.cidr),
            gateway=str(netaddr.IPAddress(net.first + 1)),
            underlay_port=f"u{i}",
        ))
    if not node_plans:
        raise InvalidInput("the cluster has no nodes; the lab needs at least one")
    by_name = {n.name: n for n in node_plans}
    pod_plans: list[PodPlan] = []
    per_node: dict[str, int] = {}
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        node = by_name.get(pod.spec.node_name)
        ips = _v4(pod.status.ips)
        if node is None or not ips:
            # Not scheduled or no address yet: nothing to build. A terminating pod still
            # runs (and may still serve), so it is built like any other.
            continue
        tcp: set[int] = set()
        udp: set[int] = set()
        for c in (*pod.spec.containers, *pod.spec.sidecars):
            for cp in c.ports:
                proto = (cp.protocol or "TCP").upper()
                (udp if proto == "UDP" else tcp).add(cp.container_port)
        j = per_node.get(node.name, 0)
        per_node[node.name] = j + 1
        host_net = bool(pod.spec.host_network)
        pod_plans.append(PodPlan(
            namespace=pod.metadata.namespace, name=pod.metadata.name, node=node.name,
            netns=node.netns if host_net else
            f"{prefix}p-{_slug(pod.metadata.namespace)}-{_slug(pod.metadata.name)}",
            ip=ips[0], host_port=f"vp{j}", tcp_ports=sorted(tcp), udp_ports=sorted(udp),
            host_network=host_net,
        ))
    pod_plans += _host_endpoints(node_plans, pod_plans, slices or [])
    node_ips = [n.ip for n in node_plans]
    cidr = _underlay_cidr(node_ips)
    vips: list[str] = []
    for svc in services:
        m = svc.to_manifest()
        vips.extend(_v4((m.get("spec") or {}).get("externalIPs") or ()))
        lb = ((m.get("status") or {}).get("loadBalancer") or {})
        vips.extend(_v4(str(i.get("ip") or "") for i in lb.get("ingress") or ()))
    vips = sorted(set(vips), key=lambda v: netaddr.IPAddress(v))
    ext_ip = _external_ip(cidr, set(node_ips) | set(vips))
    # By default a VIP is carried by the first node a cloud balancer would use (not one
    # labelled node.kubernetes.io/exclude-from-external-load-balancers); a probe may pick
    # another with --via.
    excluded = {n.metadata.name for n in nodes
                if EXCLUDE_LB_LABEL in (n.metadata.labels or {})}
    carrier = next((n.ip for n in node_plans if n.name not in excluded), node_ips[0])
    external = ExternalPlan(f"{prefix}ext", ext_ip, [(v, carrier) for v in vips])
    return LabPlan(name=lab, underlay_netns=f"{prefix}ul", underlay_cidr=cidr,
                   nodes=node_plans, pods=pod_plans, external=external)


def _host_endpoints(nodes: list[NodePlan], pods: list[PodPlan], slices: list[Any]
                    ) -> list[PodPlan]:
    by_ip = {n.ip: n for n in nodes}
    served = {(p.ip, port, "TCP") for p in pods for port in p.tcp_ports} | {
        (p.ip, port, "UDP") for p in pods for port in p.udp_ports}
    wanted: dict[tuple[str, str, str], tuple[set[int], set[int]]] = {}
    for sl in slices:
        m = sl.to_manifest()
        if m.get("addressType") != "IPv4":
            continue
        meta = m.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
        ns = meta.get("namespace", "default")
        for ep in m.get("endpoints") or ():
            for ip in ep.get("addresses") or ():
                node = by_ip.get(ip)
                if node is None:
                    continue
                for port in m.get("ports") or ():
                    number, proto = port.get("port"), (port.get("protocol") or "TCP")
                    if not number or proto not in ("TCP", "UDP") or (ip, number, proto) in served:
                        continue
                    name = (f"kube-apiserver-{node.name}" if (ns, svc) == ("default", "kubernetes")
                            else f"{svc}-host-{node.name}")
                    pod_ns = "kube-system" if (ns, svc) == ("default", "kubernetes") else ns
                    tcp, udp = wanted.setdefault((pod_ns, name, node.name), (set(), set()))
                    (tcp if proto == "TCP" else udp).add(int(number))
    return [PodPlan(namespace=pod_ns, name=name, node=node, netns=by_name.netns, ip=by_name.ip,
                    host_port="", tcp_ports=sorted(tcp), udp_ports=sorted(udp),
                    host_network=True)
            for (pod_ns, name, node), (tcp, udp) in sorted(wanted.items())
            for by_name in [next(n for n in nodes if n.name == node)]]


def plan_lab(cluster: Cluster, lab: str) -> LabPlan:
    """The plan for the cluster's Nodes and Pods (running, with an IPv4 address), and the
    node-address endpoints without a pod (the apiserver)."""
    kinds = cluster.kinds
    nodes = cluster.list("Node") if "Node" in kinds else []
    pods = cluster.list("Pod") if "Pod" in kinds else []
    services = cluster.list("Service") if "Service" in kinds else []
    slices = cluster.list("EndpointSlice") if "EndpointSlice" in kinds else []
    return plan_from_objects(lab, nodes, pods, services, slices)
