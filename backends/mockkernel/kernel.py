"""The mock kernel: interfaces, routing, the packet path through the hooks, tracing.

:class:`MockKernel` owns one node's network stack as kube-proxy sees it: its addresses
and routes (from :class:`~kservice.proxy.types.NodeInfo`), the hook programs registered
by rule sets (iptables tables here; nftables and IPVS plug in through
:mod:`backends.mockkernel.engine`), and the state on one virtual clock (conntrack,
``recent`` lists). See README.md for the drawn packet flow.
"""

from __future__ import annotations

import gc
import ipaddress
import random
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from backends.mockkernel.conntrack import (
    ConntrackEntry,
    ConntrackTable,
    RecentLists,
    VirtualClock,
)
from backends.mockkernel.engine import (
    ACCEPT,
    NAT_MANIP,
    ONE,
    PRIORITY,
    HookProgram,
    PacketState,
    Verdict,
)
from backends.mockkernel.netfilter import IptablesTable, load_tables
from backends.mockkernel.netfilter_parse import RawRule, parse_iptables_save, recent_names
from kservice.errors import BackendError
from kservice.proxy.types import NodeInfo, join_host_port
from kservice.trace import Outcome, Packet, TraceResult

__all__ = ["KUBE_PROXY_JUMP_RULES", "MockKernel", "NoIPSets"]

_ONE = ONE  # the shared object (see engine.ONE)

#: The jump rules kube-proxy installs with EnsureRule (reference §1.2), in the order they
#: end up in each built-in chain (each is prepended, so the list is reversed per chain).
#: (table, chain, rule text).
KUBE_PROXY_JUMP_RULES: tuple[tuple[str, str, str], ...] = (
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" '
     '-j KUBE-NODEPORTS'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment '
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" '
     '-j KUBE-POSTROUTING'),
)

_LOOPBACK = {4: ipaddress.ip_network("127.0.0.0/8"), 6: ipaddress.ip_network("::1/128")}
_MULTICAST = {4: ipaddress.ip_network("224.0.0.0/4"), 6: ipaddress.ip_network("ff00::/8")}
_BRIDGE_PREFIXES = ("cni", "cbr", "docker", "br-", "kube-bridge")


class NoIPSets:
    """``kernel.ipsets`` before an ipset loader installed sets: every set is missing."""

    def test(self, name: str, state: PacketState, flags: tuple[str, ...]) -> bool:
        raise BackendError(f"ipset {name} does not exist (load the ipsets first)")


class _Iface:
    def __init__(self, name: str) -> None:
        self.name = name
        #: (version, address int, network, text)
        self.addrs: list[tuple[int, int, Any, str]] = []

    def add(self, cidr: str) -> None:
        itf = ipaddress.ip_interface(cidr)
        self.addrs.append((itf.version, int(itf.ip), itf.network, str(itf.ip)))


class MockKernel:
    """One node's network stack: ``load_*`` rules, then ``trace`` or ``send`` packets.

    ``lenient``: rules the model does not implement load with a warning (see
    :attr:`warnings`) and yield an ``UNKNOWN`` outcome when a packet reaches them.
    ``exact_kernel_probabilities``: read ``statistic`` probabilities with the kernel's
    31-bit rounding instead of kube-proxy's intended ``1/k`` (README "Exact probabilities").
    ``bridge``: the pod bridge device (default: a ``cni*``-like interface of the node, else
    ``cni0`` with the first address of each pod CIDR). ``routes``: extra ``(cidr, iface)``
    routes, e.g. other nodes' pod CIDRs over an overlay device.
    """

    def __init__(
        self, node: NodeInfo, *, lenient: bool = False,
        exact_kernel_probabilities: bool = False, bridge: str | None = None,
        routes: Iterable[tuple[str, str]] = (), use_index: bool = True,
    ) -> None:
        self.node = node
        self.lenient = lenient
        self.exact_kernel_probabilities = exact_kernel_probabilities
        self.use_index = use_index
        self.warnings: list[str] = []
        self.clock = VirtualClock()
        self.conntrack = ConntrackTable(self.clock)
        self.recent = RecentLists(self.clock)
        self.ipsets: Any = NoIPSets()
        #: Set by an IPVS loader (H6) if it wants; the engine does not need it.
        self.ipvs: Any = None
        self.iptables: dict[int, dict[str, IptablesTable]] = {4: {}, 6: {}}
        self._programs: list[HookProgram] = []
        self._hook_cache: dict[str, list[tuple[int, int, Any]]] = {}
        self._ifaces: dict[str, _Iface] = {}
        self._routes: list[tuple[Any, str]] = []
        self._invalidate()
        self._setup_interfaces(bridge)
        for cidr, dev in routes:
            self.add_route(cidr, dev)

    # ------------------------------------------------------------------ interfaces, routing

    def _iface(self, name: str) -> _Iface:
        if name not in self._ifaces:
            self._ifaces[name] = _Iface(name)
        return self._ifaces[name]

    def _setup_interfaces(self, bridge: str | None) -> None:
        node = self.node
        lo = self._iface("lo")
        lo.add("127.0.0.1/8")
        lo.add("::1/128")
        for name, cidr in node.interfaces:
            if name == "lo":
                continue
            self._iface(name).add(cidr)
        have = {a[3] for i in self._ifaces.values() for a in i.addrs}
        # Node IPs not on any listed interface live on the primary interface.
        primary = None
        for ip in node.ips:
            for itf in self._ifaces.values():
                if itf.name != "lo" and any(a[3] == str(ipaddress.ip_address(ip)) for a in itf.addrs):
                    primary = primary or itf.name
        self.primary = primary or "eth0"
        for ip in node.ips:
            a = ipaddress.ip_address(ip)
            if str(a) not in have:
                self._iface(self.primary).add(f"{a}/{a.max_prefixlen}")
        if bridge is None:
            bridge = next((n for n in self._ifaces if n.startswith(_BRIDGE_PREFIXES)), "cni0")
        self.bridge = bridge
        br = self._iface(bridge)
        self.pod_cidrs = [ipaddress.ip_network(c, strict=False) for c in node.pod_cidrs]
        for net in self.pod_cidrs:
            if not any(a[2].overlaps(net) for a in br.addrs if a[0] == net.version):
                # The CNI bridge gets the first address of the node's pod CIDR (cni0/cbr0).
                br.add(f"{net.network_address + 1}/{net.prefixlen}")
        self._locals: dict[tuple[int, int], str] = {}
        for itf in self._ifaces.values():
            for v, i, _net, _t in itf.addrs:
                self._locals[(v, i)] = itf.name

    def add_local_address(self, ip: str, iface: str = "kube-ipvs0") -> None:
        """Bind an address to a (dummy) interface: it becomes LOCAL (IPVS's kube-ipvs0)."""
        a = ipaddress.ip_address(ip)
        self._iface(iface).add(f"{a}/{a.max_prefixlen}")
        self._locals[(a.version, int(a))] = iface
        self._invalidate()

    def remove_local_address(self, ip: str) -> None:
        a = ipaddress.ip_address(ip)
        dev = self._locals.pop((a.version, int(a)), None)
        if dev is not None:
            itf = self._ifaces[dev]
            itf.addrs = [x for x in itf.addrs if x[3] != str(a)]
        self._invalidate()

    def add_route(self, cidr: str, iface: str) -> None:
        """An extra route (longest prefix wins over connected routes and the default)."""
        self._iface(iface)
        self._routes.append((ipaddress.ip_network(cidr, strict=False), iface))
        self._routes.sort(key=lambda r: -r[0].prefixlen)
        self._invalidate()

    def _invalidate(self) -> None:
        self._route_cache: dict[str, str] = {}
        self._local_cache: dict[tuple[str, str | None], bool] = {}
        self._type_cache: dict[tuple[str, str | None], str] = {}

    def is_local(self, ip: str, iface: str | None = None) -> bool:
        key = (ip, iface)
        got = self._local_cache.get(key)
        if got is None:
            got = self._is_local(ip, iface)
            self._local_cache[key] = got
        return got

    def _is_local(self, ip: str, iface: str | None = None) -> bool:
        a = ipaddress.ip_address(ip)
        if a in _LOOPBACK[a.version]:
            return iface is None or iface == "lo"
        dev = self._locals.get((a.version, int(a)))
        return dev is not None and (iface is None or dev == iface)

    def addr_type(self, ip: str, iface: str | None = None) -> str:
        """What ``inet_addr_type`` says (``LOCAL``/``UNICAST``/``MULTICAST``/``BROADCAST``)."""
        key = (ip, iface)
        got = self._type_cache.get(key)
        if got is None:
            got = self._addr_type(ip, iface)
            self._type_cache[key] = got
        return got

    def _addr_type(self, ip: str, iface: str | None = None) -> str:
        a = ipaddress.ip_address(ip)
        if self.is_local(ip, iface):
            return "LOCAL"
        if a in _MULTICAST[a.version]:
            return "MULTICAST"
        if a.version == 4:
            if int(a) == 0xFFFFFFFF:
                return "BROADCAST"
            for itf in self._ifaces.values():
                for v, _i, net, _t in itf.addrs:
                    if v == 4 and net.prefixlen < 31 and a == net.broadcast_address:
                        return "BROADCAST"
        return "UNICAST"

    def route(self, ip: str) -> str:
        """The output device for ``ip`` (``lo`` for local addresses)."""
        got = self._route_cache.get(ip)
        if got is None:
            got = self._route(ip)
            self._route_cache[ip] = got
        return got

    def _route(self, ip: str) -> str:
        a = ipaddress.ip_address(ip)
        if self.is_local(ip):
            return "lo"
        for net in self.pod_cidrs:
            if a.version == net.version and a in net:
                return self.bridge
        for net, dev in self._routes:
            if a.version == net.version and a in net:
                return dev
        for itf in self._ifaces.values():
            for v, _i, net, _t in itf.addrs:
                if v == a.version and net.prefixlen < net.max_prefixlen and a in net:
                    return itf.name
        return self.primary

    def iface_address(self, dev: str | None, version: int, toward: str | None = None) -> str | None:
        """The address MASQUERADE picks on ``dev`` (same subnet as ``toward`` if any)."""
        if dev is None or dev not in self._ifaces:
            return None
        addrs = [x for x in self._ifaces[dev].addrs if x[0] == version]
        if not addrs:
            return None
        if toward is not None:
            t = ipaddress.ip_address(toward)
            for _v, _i, net, text in addrs:
                if t in net and net.prefixlen < net.max_prefixlen:
                    return text
        return addrs[0][3]

    def masquerade_address(self, st: PacketState) -> str | None:
        if st.oif == "lo":
            # nf_nat_masquerade_ipv4 asks inet_select_addr(lo, nexthop, RT_SCOPE_UNIVERSE):
            # 127.0.0.1 is host-scope and skipped, so the first universe-scope address of
            # the namespace is used -- the node's primary IP, not loopback (seen on a real
            # kernel by the lab: a node reaching a ClusterIP served by itself).
            for ip in self.node.ips:
                if (":" in ip) == (st.version == 6):
                    return ip
        return self.iface_address(st.oif, st.version, st.dst)

    def redirect_address(self, st: PacketState) -> str | None:
        # REDIRECT: the primary address of the incoming interface; 127.0.0.1/::1 for
        # locally generated packets (nf_nat_redirect_ipv4/6).
        if st.iif is None or st.iif == "lo":
            return "127.0.0.1" if st.version == 4 else "::1"
        return self.iface_address(st.iif, st.version)

    # ------------------------------------------------------------------ programs

    def register(self, program: HookProgram) -> None:
        """Attach a hook program (see engine.HookProgram)."""
        self._programs.append(program)
        self._hook_cache.clear()

    def unregister(self, name: str) -> None:
        self._programs = [p for p in self._programs if p.name != name]
        self._hook_cache.clear()

    @property
    def programs(self) -> tuple[HookProgram, ...]:
        return tuple(self._programs)

    def _steps(self, hook: str) -> list[tuple[int, int, Any]]:
        got = self._hook_cache.get(hook)
        if got is not None:
            return got
        steps: list[tuple[int, int, Any]] = []
        for seq, prog in enumerate(self._programs):
            prio = prog.hooks.get(hook)
            if prio is not None:
                steps.append((prio, seq, prog))
        if hook in ("PREROUTING", "OUTPUT"):
            steps.append((PRIORITY["conntrack"], -2, "conntrack"))
        if hook in NAT_MANIP:
            # An existing connection's NAT binding is applied at the nat hook priority.
            prio = PRIORITY["dstnat"] if NAT_MANIP[hook] == "dst" else PRIORITY["srcnat"]
            steps.append((prio, -1, "natbind"))
        steps.sort(key=lambda x: (x[0], x[1]))
        self._hook_cache[hook] = steps
        return steps

    # ------------------------------------------------------------------ loading

    def load_iptables_save(
        self, text: str, family: str = "IPv4", *, noflush: bool = True,
        source: str | None = None,
    ) -> None:
        """Load ``iptables-save`` output or an ``iptables-restore`` payload.

        ``noflush`` (default, as kube-proxy runs ``iptables-restore --noflush``): a chain
        declared in ``text`` is replaced, other chains are kept. ``noflush=False`` replaces
        every table that appears in ``text`` wholesale.
        """
        v = _family_version(family)
        tables = self.iptables[v]
        before = set(tables)
        # A big dump allocates hundreds of thousands of small objects and no cycles: the
        # cyclic GC would rescan them over and over (superlinear); pause it while loading.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            load_tables(tables, text, family=v, noflush=noflush, lenient=self.lenient,
                        exact_kernel_probabilities=self.exact_kernel_probabilities,
                        source=source, warnings=self.warnings, use_index=self.use_index)
            for name in set(tables) - before:
                self.register(tables[name])
            if self.recent.lists or "-m recent" in text:
                # xt_recent creates a list when a rule naming it is loaded (recent_mt_check)
                # and frees it with the last such rule (recent_mt_destroy); a restore whose
                # new rules name it again keeps it, entries included (they are checked
                # before the old rules go). tests/test_iptables_kernel.py pins this on Linux.
                self.recent.sync_names(self._recent_names())
        finally:
            if was_enabled:
                if text.count("\n", 0, _BULK_LOAD_CHARS) >= _BULK_LOAD_LINES:
                    # Then keep them out of the collector's sight for good: the rule set
                    # lives as long as the kernel, is acyclic (dropping a kernel frees it
                    # by reference counting), and would otherwise be traced by the very
                    # next young collection and by every later full one.
                    gc.freeze()
                gc.enable()

    def _recent_names(self) -> set[str]:
        """The ``xt_recent`` list names some loaded rule uses, in either family (the kernel
        keeps one set of lists per network namespace)."""
        names: set[str] = set()
        for tables in self.iptables.values():
            for table in tables.values():
                for chain in table.chains.values():
                    for rule in chain.rules:
                        text = rule.full if isinstance(rule, RawRule) else rule.text
                        if "-m recent" in text:
                            names.update(recent_names(text))
        return names

    def install_kube_proxy_jump_rules(self, family: str = "IPv4") -> None:
        """Add kube-proxy's EnsureRule jumps from the built-in chains (reference §1.2).

        Missing target chains are created empty (EnsureChain); rules already present are
        not duplicated.
        """
        v = _family_version(family)
        lines: dict[str, list[str]] = {}
        for table, builtin, rule in KUBE_PROXY_JUMP_RULES:
            lines.setdefault(table, []).append(f"-A {builtin} {rule}")
        for table, rules in lines.items():
            existing = self.iptables[v].get(table)
            have = set(existing.chains) if existing else set()
            targets = sorted({r.rsplit("-j ", 1)[1] for r in rules} - have)
            text = "\n".join([f"*{table}"] + [f":{t} - [0:0]" for t in targets]
                             + rules + ["COMMIT", ""])
            parsed = parse_iptables_save(text, source="kube-proxy jump rules")[0]
            if existing is None:
                self.load_iptables_save(text, family)
                continue
            for t in targets:
                existing.chains[t] = parsed.chains[t]
            for cname, chain in parsed.chains.items():
                if cname in targets:
                    continue
                old = existing.chains[cname].rules
                old_texts = {r.text for r in old}
                new = [r for r in chain.rules if r.text not in old_texts]
                existing.chains[cname].rules = new + old
            existing._index = {}

    # ------------------------------------------------------------------ packet path

    def entry_of(self, src: str, entry: str | None = None) -> tuple[str, str | None]:
        """Where a packet from ``src`` enters: (``pod``/``local``/``external``, interface)."""
        return self._origin(str(ipaddress.ip_address(src)), entry)

    def _origin(self, src: str, entry: str | None) -> tuple[str, str | None]:
        if entry is not None:
            if entry == "local":
                return "local", None
            if entry == "pod":
                return "pod", self.bridge
            if entry == "external":
                return "external", self.primary
            return ("pod" if entry == self.bridge else "external"), entry
        a = ipaddress.ip_address(src)
        if self.is_local(src):
            return "local", None
        for net in self.pod_cidrs:
            if a.version == net.version and a in net:
                return "pod", self.bridge
        return "external", self.primary

    def _hook(self, hook: str, branches: list[tuple[Fraction, PacketState]]
              ) -> tuple[list[tuple[Fraction, PacketState]], list[tuple[Fraction, PacketState, Verdict]]]:
        """Run ``hook`` on every branch: (continuing branches, finished branches)."""
        live = branches
        done: list[tuple[Fraction, PacketState, Verdict]] = []
        manip = NAT_MANIP.get(hook)
        for _prio, _seq, prog in self._steps(hook):
            nxt: list[tuple[Fraction, PacketState]] = []
            # The pseudo-steps are told apart once per step, not once per branch (comparing
            # a program object with a string is slow, and a trace has many branches).
            if isinstance(prog, str):
                for p, st in live:
                    st.hook = hook
                    if prog == "conntrack":
                        self._ct_lookup(st)
                    else:  # "natbind"
                        self._ct_bind(st, manip)
                    nxt.append((p, st))
                live = nxt
                continue
            fams = getattr(prog, "families", (4, 6))
            is_nat = prog.is_nat
            evaluate = prog.evaluate
            for p, st in live:
                st.hook = hook
                if st.version not in fams:
                    nxt.append((p, st))
                    continue
                if is_nat and (manip in st.nat_done or st.ct_state == "UNTRACKED"
                               or manip is None):
                    nxt.append((p, st))
                    continue
                for q, s2, verdict in evaluate(hook, st):
                    pq = p if q is _ONE or q == 1 else (q if p is _ONE else p * q)
                    if verdict.kind == "ACCEPT":
                        nxt.append((pq, s2))
                    else:
                        done.append((pq, s2, verdict))
            live = nxt
        if manip is not None:
            for _p, st in live:
                if st.ct_state != "UNTRACKED":
                    st.nat_done.add(manip)  # the null binding (nf_nat_alloc_null_binding)
        return live, done

    def _ct_lookup(self, st: PacketState) -> None:
        if st.ct is not None or st.ct_state == "UNTRACKED":
            return
        e = self.conntrack.lookup(st.proto, st.src, st.sport, st.dst, st.dport)
        if e is not None:
            st.ct = e
            st.ct_state = "ESTABLISHED" if e.seen_reply else "NEW"
            st.nat_done.update(("dst", "src"))
            st.notes["ct_existing"] = True
            return
        st.ct = ConntrackEntry(st.proto, st.src, st.sport, st.dst, st.dport,
                               created=self.clock.now)
        st.ct_state = "NEW"

    def _ct_bind(self, st: PacketState, manip: str | None) -> None:
        e = st.ct
        if e is None or not st.notes.get("ct_existing"):
            return
        if manip == "dst" and e.dnat is not None and st.dnat is None:
            st.set_dst(*e.dnat)
        elif manip == "src" and e.snat is not None and st.snat is None:
            st.set_src(*e.snat)
            st.masqueraded = e.masqueraded

    def _path(self, st: PacketState) -> list[tuple[Fraction, PacketState, Verdict, str]]:
        """All fates of ``st``: (prob, final state, verdict, where) with where =
        ``local``/``forward`` for delivered packets."""
        results: list[tuple[Fraction, PacketState, Verdict, str]] = []
        if st.origin == "local":
            st.oif = self.route(st.dst)
            self._local_out([(_ONE, st)], results, reinjected=False)
            return results
        live, done = self._hook("PREROUTING", [(_ONE, st)])
        results += [(p, s, v, "") for p, s, v in done]
        self._after_prerouting(live, results)
        return results

    def _after_prerouting(self, live: list[tuple[Fraction, PacketState]],
                          results: list[tuple[Fraction, PacketState, Verdict, str]]) -> None:
        to_input, to_forward = [], []
        for p, s in live:
            dev = self.route(s.dst)
            if dev == "lo":
                s.oif = None
                to_input.append((p, s))
            else:
                s.oif = dev
                to_forward.append((p, s))
        if to_input:
            live_in, done = self._hook("INPUT", to_input)
            for p, s, v in done:
                if v.kind == "REROUTE":
                    # IPVS: rewritten and re-injected at LOCAL_OUT (ip_vs_nat_send_or_cont).
                    s.oif = self.route(s.dst)
                    s.iif = None
                    self._local_out([(p, s)], results, reinjected=True)
                else:
                    results.append((p, s, v, ""))
            results += [(p, s, ACCEPT, "local") for p, s in live_in]
        if to_forward:
            live_fw, done = self._hook("FORWARD", to_forward)
            results += [(p, s, v, "") for p, s, v in done]
            live_post, done = self._hook("POSTROUTING", live_fw)
            results += [(p, s, v, "") for p, s, v in done]
            results += [(p, s, ACCEPT, "forward") for p, s in live_post]

    def _local_out(self, branches: list[tuple[Fraction, PacketState]],
                   results: list[tuple[Fraction, PacketState, Verdict, str]], *,
                   reinjected: bool) -> None:
        live, done = self._hook("OUTPUT", branches)
        results += [(p, s, v, "") for p, s, v in done if v.kind != "REROUTE"]
        for p, s, v in done:
            if v.kind == "REROUTE":
                live.append((p, s))
        for _p, s in live:
            # ip_route_me_harder: a dst changed by nat OUTPUT (or IPVS) is routed again.
            s.oif = self.route(s.dst)
        live, done = self._hook("POSTROUTING", live)
        results += [(p, s, v, "") for p, s, v in done]
        to_lo = [(p, s) for p, s in live if s.oif == "lo"]
        results += [(p, s, ACCEPT, "forward") for p, s in live if s.oif != "lo"]
        if to_lo:
            # Over the loopback device: PREROUTING again (conntrack and NAT already done),
            # then INPUT.
            for _p, s in to_lo:
                s.iif, s.oif = "lo", None
            live, done = self._hook("PREROUTING", to_lo)
            results += [(p, s, v, "") for p, s, v in done]
            live_in, done = self._hook("INPUT", live)
            results += [(p, s, v, "") for p, s, v in done if v.kind != "REROUTE"]
            results += [(p, s, ACCEPT, "local") for p, s in live_in]

    def _start(self, packet: Packet, entry: str | None, commit: bool,
               rng: random.Random | None) -> PacketState:
        origin, iif = self._origin(packet.src, entry)
        try:
            st = PacketState.new(src=str(ipaddress.ip_address(packet.src)),
                                 dst=str(ipaddress.ip_address(packet.dst)),
                                 sport=packet.sport, dport=packet.dport, proto=packet.proto,
                                 kernel=self, commit=commit, origin=origin)
        except ValueError as e:
            raise BackendError(f"bad packet {packet}: {e}") from None
        st.iif = iif
        st.rng = rng
        return st

    @staticmethod
    def _outcome(p: Fraction, st: PacketState, verdict: Verdict) -> Outcome:
        if verdict.kind == "ACCEPT":
            return Outcome(p, "ACCEPT", join_host_port(st.dst, st.dport), st.src,
                           st.masqueraded, tuple(st.rules))
        return Outcome(p, verdict.kind, None, None, False, tuple(st.rules))

    # ------------------------------------------------------------------ public API

    def packet_state(self, packet: Packet, *, entry: str | None = None, commit: bool = False,
                     rng: random.Random | None = None) -> PacketState:
        """A fresh packet state entering where ``entry`` (or its source) says.

        For plug-ins that originate packets themselves (a userspace proxy's own
        connection): adjust the state, then :meth:`walk` it.
        """
        return self._start(packet, entry, commit, rng)

    def walk(self, st: PacketState) -> list[tuple[Fraction, PacketState, Verdict, str]]:
        """Every branch of ``st``'s path through the hooks: (probability, state, verdict, where)."""
        return self._path(st)

    def trace(self, packet: Packet, *, entry: str | None = None,
              mode: str = "iptables") -> TraceResult:
        """Every possible fate of ``packet`` with its exact probability; no state changes.

        ``entry`` overrides where the packet comes from: ``pod``, ``local``, ``external``
        or an interface name (default: follows from the source address).
        """
        st = self._start(packet, entry, commit=False, rng=None)
        outs = [self._outcome(p, s, v) for p, s, v, _w in self._path(st)]
        return TraceResult(node=self.node.name, mode=mode, packet=packet, outcomes=tuple(outs))

    def send(self, packet: Packet, rng: random.Random, *, entry: str | None = None) -> Outcome:
        """Send one packet: one sampled outcome; conntrack, ``recent`` and counters update."""
        st = self._start(packet, entry, commit=True, rng=rng)
        res = self._path(st)
        if len(res) != 1:
            raise BackendError(f"internal: sampled walk produced {len(res)} outcomes")
        _p, s, v, _w = res[0]
        if v.kind == "ACCEPT" and s.ct is not None and s.ct_state != "UNTRACKED":
            e = s.ct
            if not e.confirmed:
                e.dnat = s.dnat
                e.snat = s.snat
                e.masqueraded = s.masqueraded
            if "ctmark" in s.notes:
                e.mark = int(s.notes["ctmark"])
            # The destination is assumed to answer: the flow becomes ESTABLISHED.
            self.conntrack.confirm(e, answered=True)
        return self._outcome(_ONE, s, v)


#: A load of at least this many lines (counted in the first _BULK_LOAD_CHARS characters)
#: is "bulk": its objects are frozen out of the cyclic collector afterwards (gc.freeze).
_BULK_LOAD_LINES = 20_000
_BULK_LOAD_CHARS = 4_000_000


def _family_version(family: str) -> int:
    if family in ("IPv4", "ipv4", "4", "ip"):
        return 4
    if family in ("IPv6", "ipv6", "6", "ip6"):
        return 6
    raise BackendError(f"unknown IP family {family!r} (IPv4 or IPv6)")
