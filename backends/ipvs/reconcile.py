"""The minimal commands that move a node from one IPVS-mode state to the next.

kube-proxy programs IPVS through netlink and ipsets one command at a time, diffing what
the kernel has against what it wants (reference §2.1). :func:`reconcile` reproduces that
diff as the equivalent shell commands, in kube-proxy's order:

1. (first sync only) create ``kube-ipvs0``, the kube chains and their jump rules, and
   every ipset;
2. per virtual server: ``ipvsadm -A`` (new) or ``-E`` (changed), bind its address on
   kube-ipvs0, ``-a`` new destinations, and retire old ones -- UDP/SCTP at once (``-d``),
   TCP gracefully (``-e ... -w 0`` now, ``-d`` once its connections drain);
3. ``ipset del``/``ipset add -exist`` per changed entry;
4. ``iptables-restore --noflush --counters`` with the new payload;
5. unbind addresses no longer wanted; ``ipvsadm -D`` services no longer wanted.

A destination already at weight 0 in ``previous`` is on the graceful-termination list:
wanted again, it is deleted for real and re-added at weight 1; still unwanted, it is left
for the termination loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from backends.ipvs.formats import service_args, svc_option
from backends.ipvs.model import IPVSNode, RealServer, VirtualServer
from backends.ipvs.render import DUMMY_DEVICE, FILTER_CHAINS, JUMP_RULES, NAT_CHAINS

__all__ = ["Plan", "reconcile"]


@attrs.frozen
class Plan:
    """The commands of one sync."""

    #: Run now, in order.
    commands: tuple[str, ...]
    #: Run later by the graceful-termination loop (every minute) once the TCP
    #: destination has no active or inactive connections.
    deferred: tuple[str, ...] = ()

    def text(self) -> str:
        lines = list(self.commands)
        if self.deferred:
            lines.append("# graceful termination, once ActiveConn+InActConn == 0:")
            lines.extend(self.deferred)
        return "".join(line + "\n" for line in lines)


def _prefix(node: IPVSNode) -> str:
    return "ip6tables" if node.family == "IPv6" else "iptables"


def _host_prefix(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _first_sync(node: IPVSNode) -> list[str]:
    ipt = _prefix(node)
    # Proxier start-up (NewProxier): sysctls and IPVS timeouts, then the first sync.
    out = [f"sysctl -w {path.replace('/', '.')}={value}" for path, value in node.sysctls]
    if node.timeouts is not None:
        tcp, fin, udp = node.timeouts
        out.append(f"ipvsadm --set {tcp} {fin} {udp}")
    out.append(f"ip link add {DUMMY_DEVICE} type dummy")
    for c in NAT_CHAINS:
        out.append(f"{ipt} -w -t nat -N {c}")
    for c in FILTER_CHAINS:
        out.append(f"{ipt} -w -t filter -N {c}")
    for table, chain, comment, to, _why in JUMP_RULES:
        out.append(f'{ipt} -w -t {table} -I {chain} -m comment --comment "{comment}" -j {to}')
    for s in node.ipsets:
        out.append(f"ipset create {s.name} {s.create_args()} -exist")
    return out


def reconcile(previous: IPVSNode | None, new: IPVSNode,
              exclude_cidrs: Sequence[str] = ()) -> Plan:
    """Commands turning ``previous`` (``None``: a fresh node) into ``new``."""
    import ipaddress

    cmds: list[str] = []
    deferred: list[str] = []
    if previous is None:
        cmds.extend(_first_sync(new))
        prev_services: dict[str, VirtualServer] = {}
        prev_dests: dict[str, tuple[RealServer, ...]] = {}
        prev_bound: set[str] = set()
        prev_sets = {s.name: s.entries for s in new.ipsets}
        prev_sets = {k: frozenset() for k in prev_sets}
    else:
        prev_services = dict(previous.services)
        prev_dests = dict(previous.destinations)
        prev_bound = set(previous.bound)
        prev_sets = {s.name: s.entries for s in previous.ipsets}

    new_bound = set(new.bound)
    for key, vs in new.services.items():
        sel = svc_option(vs)
        old = prev_services.get(key)
        if old is None:
            cmds.append(f"ipvsadm -A {sel} {service_args(vs)}")
        elif old != vs:
            cmds.append(f"ipvsadm -E {sel} {service_args(vs)}")
        if vs.address in new_bound and vs.address not in prev_bound:
            cmds.append(f"ip addr add {_host_prefix(vs.address)} dev {DUMMY_DEVICE}")
            prev_bound.add(vs.address)
        have = {rs.key: rs for rs in prev_dests.get(key, ())} if old is not None else {}
        want = {rs.key: rs for rs in new.destinations.get(key, ())}
        for rk in sorted(want):
            cur = have.get(rk)
            if cur is not None and cur.weight != 0:
                continue
            if cur is not None:  # in the graceful-termination list: delete for real first
                cmds.append(f"ipvsadm -d {sel} -r {rk}")
            cmds.append(f"ipvsadm -a {sel} -r {rk} -m -w {want[rk].weight}")
        for rk in sorted(set(have) - set(want)):
            if have[rk].weight == 0:
                continue  # already terminating
            if vs.protocol in ("UDP", "SCTP"):
                cmds.append(f"ipvsadm -d {sel} -r {rk}")
            else:
                cmds.append(f"ipvsadm -e {sel} -r {rk} -m -w 0")
                deferred.append(f"ipvsadm -d {sel} -r {rk}")

    for s in new.ipsets:
        old_entries = prev_sets.get(s.name, frozenset())
        for e in sorted(old_entries - s.entries):
            cmds.append(f"ipset del {s.name} {e}")
        for e in sorted(s.entries - old_entries):
            cmds.append(f"ipset add {s.name} {e} -exist")

    cmds.append(f"{_prefix(new)}-restore --noflush --counters  # stdin: the iptables section")

    for ip in sorted(prev_bound - new_bound):
        cmds.append(f"ip addr del {_host_prefix(ip)} dev {DUMMY_DEVICE}")

    excluded = [ipaddress.ip_network(c, strict=False) for c in exclude_cidrs]
    for key, vs in prev_services.items():
        if key in new.services:
            continue
        addr = ipaddress.ip_address(vs.address)
        if any(addr in n for n in excluded if n.version == addr.version):
            continue
        cmds.append(f"ipvsadm -D {svc_option(vs)}")
    return Plan(tuple(cmds), tuple(deferred))
