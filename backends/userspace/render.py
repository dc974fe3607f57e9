"""The legacy userspace proxier's iptables rules and proxy table for one node state.

kube-proxy ``--proxy-mode=userspace`` (``pkg/proxy/userspace/proxier.go``, removed in v1.26;
reference ``kube-proxy-ipvs-nft-userspace.md`` §4) does not load-balance in the kernel. It
opens one proxy socket per service port in kube-proxy itself and adds nat rules that send
the service's traffic to that socket:

* ``KUBE-PORTALS-CONTAINER`` (from ``PREROUTING``: pods and the outside) and
  ``KUBE-NODEPORT-CONTAINER``: ``REDIRECT --to-ports <proxyPort>`` when kube-proxy listens on
  0.0.0.0/:: (the "primary address of the incoming interface"), else ``DNAT`` to
  ``<listenIP>:<proxyPort>``;
* ``KUBE-PORTALS-HOST`` / ``KUBE-NODEPORT-HOST`` (from ``OUTPUT``: the node itself): always
  ``DNAT --to-destination <hostIP>:<proxyPort>`` (REDIRECT of local traffic answers from the
  wrong address, upstream comment);
* filter ``KUBE-NODEPORT-NON-LOCAL``: ``ACCEPT`` NEW connections to the proxy port of NodePort
  services.

Proxy ports. Upstream asked the kernel for an ephemeral port (``--proxy-port-range`` empty:
bind to port 0) or picked a random free port of the range -- neither is reproducible. Here
they are allocated deterministically: service ports in :class:`NodeProxyState` order (sorted
by ``ServicePortName``), consecutive ports from :attr:`UserspaceOptions.proxy_port_base`
(default 32768, the start of Linux's ``ip_local_port_range``). The real proxy
(:mod:`backends.userspace.proxier`) binds port 0 as upstream did and reports what it got.

Endpoints. The userspace proxier read the core ``Endpoints`` API (ready addresses only) and
knew nothing of EndpointSlice conditions, topology or traffic policies: it balances over the
*ready* endpoints of the port (see ``docs/divergences-userspace.md``).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from backends.iptables.save import IPTABLES_VERSION, save_string
from kservice.errors import InvalidInput
from kservice.proxy.types import NodeProxyState, ServicePortInfo, join_host_port

__all__ = [
    "BASE_CHAINS",
    "DEFAULT_PROXY_PORT_BASE",
    "JUMP_RULES",
    "PortalRule",
    "ProxyEntry",
    "UserspaceOptions",
    "UserspacePlan",
    "plan_node",
    "proxy_endpoints",
    "render_sections",
]

#: First deterministic proxy port: Linux's default ``net.ipv4.ip_local_port_range`` start.
DEFAULT_PROXY_PORT_BASE = 32768

CONTAINER_PORTAL = "KUBE-PORTALS-CONTAINER"
HOST_PORTAL = "KUBE-PORTALS-HOST"
CONTAINER_NODEPORT = "KUBE-NODEPORT-CONTAINER"
HOST_NODEPORT = "KUBE-NODEPORT-HOST"
NON_LOCAL_NODEPORT = "KUBE-NODEPORT-NON-LOCAL"

#: (table, chain, why): the chains ``iptablesInit`` ensures (and flushes at start-up).
BASE_CHAINS: tuple[tuple[str, str, str], ...] = (
    ("nat", CONTAINER_PORTAL, "service portals, traffic from pods and the outside (PREROUTING)"),
    ("nat", HOST_PORTAL, "service portals, traffic from the node itself (OUTPUT)"),
    ("nat", CONTAINER_NODEPORT, "NodePorts, traffic arriving at the node (PREROUTING)"),
    ("nat", HOST_NODEPORT, "NodePorts, traffic from the node itself (OUTPUT)"),
    ("filter", NON_LOCAL_NODEPORT, "let NEW connections to NodePort proxy ports in (INPUT)"),
)

_PORTALS_COMMENT = "handle ClusterIPs; NOTE: this must be before the NodePort rules"
_NODEPORTS_COMMENT = "handle service NodePorts; NOTE: this must be the last rule in the chain"
_NON_LOCAL_COMMENT = "Ensure that non-local NodePort traffic can flow"

#: The jumps ``iptablesInit`` ensures, in call order: (table, chain, prepend?, args, why).
#: Comments are upstream's strings verbatim.
JUMP_RULES: tuple[tuple[str, str, bool, tuple[str, ...], str], ...] = (
    ("nat", "PREROUTING", True,
     ("-m", "comment", "--comment", _PORTALS_COMMENT, "-j", CONTAINER_PORTAL),
     "portals first: a service IP must win over a NodePort match on the same port"),
    ("nat", "OUTPUT", True,
     ("-m", "comment", "--comment", _PORTALS_COMMENT, "-j", HOST_PORTAL),
     "the same for connections the node opens itself"),
    ("nat", "PREROUTING", False,
     ("-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment",
      _NODEPORTS_COMMENT, "-j", CONTAINER_NODEPORT),
     "NodePorts match broadly (any LOCAL address + port), so appended after everything"),
    ("nat", "OUTPUT", False,
     ("-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment",
      _NODEPORTS_COMMENT, "-j", HOST_NODEPORT),
     "the same for the node's own connections"),
    ("filter", "INPUT", True,
     ("-m", "comment", "--comment", _NON_LOCAL_COMMENT, "-j", NON_LOCAL_NODEPORT),
     "redirected NodePort traffic must pass a restrictive INPUT policy"),
)

#: Built-in chains of the tables the userspace proxier writes to, in iptables-save order.
_BUILTINS = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
#: iptables-nft-save's table order (filter before nat), as the iptables backend prints it.
_TABLE_ORDER = ("filter", "nat")
_GENERATED_ON = "Thu Jan  1 00:00:00 1970"


def _zero(ip: str) -> bool:
    return ip in ("0.0.0.0", "::")


@attrs.frozen
class UserspaceOptions:
    """The proxier's flags that shape rules (not in KubeProxyConfiguration any more)."""

    #: ``--bind-address``: where the proxy sockets listen. ``None``: 0.0.0.0 / ::.
    listen_ip: str | None = None
    #: The address host rules DNAT to; ``None``: ``listen_ip`` when specific, else the
    #: node's primary IP of the family (upstream ``ChooseHostInterface``).
    host_ip: str | None = None
    proxy_port_base: int = DEFAULT_PROXY_PORT_BASE

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.proxy_port_base <= 65535:
            raise InvalidInput(f"proxy port base {self.proxy_port_base}: must be 1-65535")


@attrs.frozen
class PortalRule:
    """One rule as the proxier passes it to ``iptables -A`` (and as iptables-save prints it)."""

    table: str
    chain: str
    comment: str
    proto: str  # lower case
    dport: int
    dest: str | None = None  # "ip/32" or "ip/128"
    physdev_not_in: bool = False
    dst_local: bool = False
    state_new: bool = False
    #: ``REDIRECT`` (to_ports), ``DNAT`` (to_destination) or ``ACCEPT``.
    target: str = "ACCEPT"
    to: str = ""

    def args(self) -> tuple[str, ...]:
        """The argument list in upstream's order (``iptablesCommonPortalArgs`` + target)."""
        out = ["-m", "comment", "--comment", self.comment, "-p", self.proto, "-m", self.proto,
               "--dport", str(self.dport)]
        if self.dest:
            out += ["-d", self.dest]
        if self.physdev_not_in:
            out += ["-m", "physdev", "!", "--physdev-is-in"]
        if self.dst_local:
            out += ["-m", "addrtype", "--dst-type", "LOCAL"]
        if self.state_new:
            out += ["-m", "state", "--state", "NEW"]
        out += ["-j", self.target]
        if self.target == "REDIRECT":
            out += ["--to-ports", self.to]
        elif self.target == "DNAT":
            out += ["--to-destination", self.to]
        return tuple(out)

    def saved(self) -> str:
        """The rule as ``iptables-save`` prints it back (IP header fields first)."""
        parts = ["-A", self.chain]
        if self.dest:
            parts += ["-d", self.dest]
        parts += ["-p", self.proto, "-m", "comment", "--comment", save_string(self.comment),
                  "-m", self.proto, "--dport", str(self.dport)]
        if self.physdev_not_in:
            parts += ["-m", "physdev", "!", "--physdev-is-in"]
        if self.dst_local:
            parts += ["-m", "addrtype", "--dst-type", "LOCAL"]
        if self.state_new:
            parts += ["-m", "state", "--state", "NEW"]
        parts += ["-j", self.target]
        if self.target == "REDIRECT":
            parts += ["--to-ports", self.to]
        elif self.target == "DNAT":
            parts += ["--to-destination", self.to]
        return " ".join(parts)


def _shell(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_/:.,[]!" for c in arg) else f'"{arg}"'


@attrs.frozen
class ProxyEntry:
    """One service port's proxy socket and what the balancer knows about it."""

    name: str
    namespace: str
    service: str
    port_name: str
    protocol: str
    proxy_port: int
    cluster_ip: str
    port: int
    node_port: int
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]
    #: ``None``: sessionAffinity None; else the ClientIP TTL (0 already mapped to 10800).
    affinity_timeout: int | None
    #: ``ip:port`` of the ready endpoints, sorted (the balancer shuffles its own copy).
    endpoints: tuple[str, ...]
    #: Sockets kube-proxy opens only to hold a port (``claimNodePort``): ``ip:port``,
    #: ``:nodePort`` for NodePorts.
    reserved: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyEntry:
        kw: dict[str, Any] = {}
        for f in attrs.fields(cls):
            v = data[f.name]
            kw[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)


@attrs.frozen
class UserspacePlan:
    """Everything the userspace proxier sets up on one node for one family."""

    node: str
    family: str
    listen_ip: str
    host_ip: str
    entries: tuple[ProxyEntry, ...]
    #: (service port, reason) of ports the proxier could not serve.
    skipped: tuple[tuple[str, str], ...]
    rules: tuple[PortalRule, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "family": self.family, "listenIP": self.listen_ip,
            "hostIP": self.host_ip,
            "proxies": [e.to_json() for e in self.entries],
            "skipped": [{"service": n, "reason": r} for n, r in self.skipped],
        }


def proxy_endpoints(sp: ServicePortInfo) -> tuple[str, ...]:
    """The endpoints the userspace proxier balances over: ready ones (``Endpoints`` API
    ``addresses``), ``ip:port``, sorted. No topology, no traffic policy, no terminating
    fallback -- the mode predates them."""
    return tuple(sorted({ep.string for ep in sp.endpoints if ep.ready}))


def _cidr(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


class _PortRules:
    """The rules of one service port (``openPortal`` / ``openOnePortal`` / ``openNodePort``)."""

    def __init__(self, sp: ServicePortInfo, proxy_port: int, listen: str, host_ip: str,
                 local: set[str]) -> None:
        self.sp = sp
        self.spn = str(sp.name)
        self.proto = sp.protocol.lower()
        self.proxy_port = proxy_port
        self.local = local
        # iptablesContainerPortalArgs: REDIRECT when listening on any address, else DNAT.
        self.container_target = "REDIRECT" if _zero(listen) else "DNAT"
        self.container_to = (str(proxy_port) if _zero(listen)
                             else join_host_port(listen, proxy_port))
        # iptablesHostPortalArgs: always DNAT, to the host IP when listening on any address.
        self.host_to = join_host_port(host_ip, proxy_port)
        self.rules: list[PortalRule] = []
        self.reserved: list[str] = []

    def rule(self, chain: str, dport: int, dest: str | None = None, *, target: str,
             to: str, physdev: bool = False, dst_local: bool = False, table: str = "nat",
             state_new: bool = False) -> None:
        self.rules.append(PortalRule(table, chain, self.spn, self.proto, dport,
                                     _cidr(dest) if dest else None, physdev, dst_local,
                                     state_new, target, to))

    def portal(self, ip: str, external: bool) -> None:
        port = self.sp.port
        # claimNodePort: a portal on a local address also gets a holding socket.
        if ip in self.local:
            self.reserved.append(join_host_port(ip, port))
        self.rule(CONTAINER_PORTAL, port, ip, target=self.container_target,
                  to=self.container_to, physdev=external)
        if external:
            self.rule(CONTAINER_PORTAL, port, ip, target=self.container_target,
                      to=self.container_to, dst_local=True)
            self.rule(HOST_PORTAL, port, ip, target="DNAT", to=self.host_to, dst_local=True)
            return
        self.rule(HOST_PORTAL, port, ip, target="DNAT", to=self.host_to)

    def node_port(self) -> None:
        np = self.sp.node_port
        self.reserved.append(f":{np}")
        self.rule(CONTAINER_NODEPORT, np, target=self.container_target, to=self.container_to)
        self.rule(HOST_NODEPORT, np, target="DNAT", to=self.host_to)
        # Matches the *proxy* port: the packet has been redirected by then.
        self.rule(NON_LOCAL_NODEPORT, self.proxy_port, table="filter", target="ACCEPT", to="",
                  state_new=True)


def plan_node(state: NodeProxyState, options: UserspaceOptions | None = None) -> UserspacePlan:
    """The proxy sockets and iptables rules for ``state`` (pure; deterministic)."""
    opts = options or UserspaceOptions()
    v6 = state.family == "IPv6"
    listen = opts.listen_ip or ("::" if v6 else "0.0.0.0")
    if opts.host_ip:
        host_ip = opts.host_ip
    elif not _zero(listen):
        host_ip = listen
    else:
        host_ip = state.node_ip or ("::1" if v6 else "127.0.0.1")
    local = set(state.node.ips) | {i.split("/")[0] for _, i in state.node.interfaces}
    entries: list[ProxyEntry] = []
    skipped: list[tuple[str, str]] = []
    rules: list[PortalRule] = []
    port = opts.proxy_port_base
    for sp in state.service_ports:
        spn = str(sp.name)
        if sp.protocol not in ("TCP", "UDP"):
            # newProxySocket: "SCTP is not supported for user space proxy".
            skipped.append((spn, f"{sp.protocol} is not supported for user space proxy"))
            continue
        if port > 65535:
            skipped.append((spn, "no free proxy port"))
            continue
        proxy_port, port = port, port + 1
        pr = _PortRules(sp, proxy_port, listen, host_ip, local)
        pr.portal(sp.cluster_ip, False)
        for ip in sp.external_ips:
            pr.portal(ip, True)
        for ip in sp.load_balancer_vips:
            pr.portal(ip, False)
        if sp.node_port:
            pr.node_port()
        rules += pr.rules
        ttl = sp.session_affinity_timeout
        entries.append(ProxyEntry(
            name=spn, namespace=sp.name.namespace, service=sp.name.name,
            port_name=sp.name.port, protocol=sp.protocol, proxy_port=proxy_port,
            cluster_ip=sp.cluster_ip, port=sp.port, node_port=sp.node_port,
            external_ips=tuple(sp.external_ips), load_balancer_ips=tuple(sp.load_balancer_vips),
            affinity_timeout=None if ttl is None else (ttl or 10800),
            endpoints=proxy_endpoints(sp), reserved=tuple(pr.reserved),
        ))
    return UserspacePlan(state.node.name, state.family, listen, host_ip, tuple(entries),
                         tuple(skipped), tuple(rules))


# ---------------------------------------------------------------------------- text


def _jump_saved(args: tuple[str, ...], chain: str) -> str:
    out = ["-A", chain]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--comment":
            out += [a, save_string(args[i + 1])]
            i += 2
            continue
        out.append(a)
        i += 1
    return " ".join(out)


def iptables_save(plan: UserspacePlan) -> str:
    """The ``nat`` and ``filter`` tables of a node running only this proxier, as
    ``iptables-save`` prints them (jump rules placed as ``iptablesInit`` leaves them)."""
    builtin_rules: dict[tuple[str, str], list[str]] = {}
    for table, chain, prepend, args, _why in JUMP_RULES:
        lst = builtin_rules.setdefault((table, chain), [])
        text = _jump_saved(args, chain)
        if prepend:
            lst.insert(0, text)
        else:
            lst.append(text)
    lines: list[str] = []
    for table in _TABLE_ORDER:
        lines.append(f"# Generated by iptables-save {IPTABLES_VERSION} on {_GENERATED_ON}")
        lines.append(f"*{table}")
        lines += [f":{c} ACCEPT [0:0]" for c in _BUILTINS[table]]
        lines += [f":{c} - [0:0]" for c in sorted(c for t, c, _ in BASE_CHAINS if t == table)]
        for chain in _BUILTINS[table]:
            lines += builtin_rules.get((table, chain), [])
        for chain in sorted(c for t, c, _ in BASE_CHAINS if t == table):
            lines += [r.saved() for r in plan.rules if r.table == table and r.chain == chain]
        lines.append("COMMIT")
        lines.append(f"# Completed on {_GENERATED_ON}")
    return "\n".join(lines) + "\n"


#: ``getIPTablesWaitFlag`` for iptables >= 1.6.2: wait 5s for the xtables lock, poll 100ms.
WAIT_FLAGS = ("-w", "5", "-W", "100000")


def _call(binary: str, op: str, chain: str, table: str, args: tuple[str, ...] = ()) -> str:
    # pkg/util/iptables: [wait flags] op, then makeFullArgs = chain, "-t", table, args...
    return " ".join([binary, *WAIT_FLAGS, op, chain, "-t", table,
                     *(_shell(a) for a in args)])


def iptables_commands(plan: UserspacePlan) -> str:
    """The iptables calls of a start-up sync on a clean node, in call order.

    ``iptablesInit`` (``EnsureChain`` = ``-N``; ``EnsureRule`` = ``-C`` probe, then ``-I``
    for Prepend or ``-A``), ``iptablesFlush`` (``-F`` of the five chains: proxy ports of a
    previous run are stale), then one ``EnsureRule(Append)`` per portal rule. Argument order
    is ``pkg/util/iptables``' (wait flags for iptables >= 1.6.2, op, chain, ``-t table``).
    On a clean node every ``-C`` probe fails (exit 1), so every rule is added.
    """
    binary = "ip6tables" if plan.family == "IPv6" else "iptables"
    out = [f"# kube-proxy --proxy-mode=userspace on {plan.node}: iptablesInit, iptablesFlush, "
           "then the service rules"]
    for table, chain, prepend, args, _why in JUMP_RULES:
        target = args[-1]
        out.append(_call(binary, "-N", target, table))
        out.append(_call(binary, "-C", chain, table, args))
        out.append(_call(binary, "-I" if prepend else "-A", chain, table, args))
    for table, chain, _why in BASE_CHAINS:
        out.append(_call(binary, "-F", chain, table))
    for r in plan.rules:
        out.append(_call(binary, "-C", r.chain, r.table, r.args()))
        out.append(_call(binary, "-A", r.chain, r.table, r.args()))
    return "\n".join(out) + "\n"


def proxy_table(plan: UserspacePlan) -> str:
    """The human table: service port -> proxy socket -> balancer endpoints."""
    head = (f"# userspace proxy on {plan.node} ({plan.family}): listening on {plan.listen_ip}, "
            f"host rules DNAT to {plan.host_ip}\n"
            "# proxy ports allocated in service-port order (upstream: kernel-chosen ephemeral "
            "ports or random ones of --proxy-port-range)\n")
    rows = [("SERVICE", "PROTOCOL", "PROXY", "PORTALS", "NODEPORT", "AFFINITY", "ENDPOINTS")]
    for e in plan.entries:
        portals = [join_host_port(e.cluster_ip, e.port)]
        portals += [join_host_port(ip, e.port) for ip in (*e.external_ips, *e.load_balancer_ips)]
        rows.append((
            e.name, e.protocol, join_host_port(plan.listen_ip, e.proxy_port), ",".join(portals),
            str(e.node_port) if e.node_port else "-",
            "None" if e.affinity_timeout is None else f"ClientIP/{e.affinity_timeout}s",
            ",".join(e.endpoints) or "<none>",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    body = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    tail = "".join(f"# {n}: not proxied: {why}\n" for n, why in plan.skipped)
    return head + body + "\n" + tail


def render_sections(plan: UserspacePlan) -> tuple[tuple[str, str], ...]:
    return (
        ("iptables", iptables_save(plan)),
        ("commands", iptables_commands(plan)),
        ("proxy", proxy_table(plan)),
        ("json", json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"),
    )


def entries_from_json(text: str) -> tuple[str, str, str | None, tuple[ProxyEntry, ...]]:
    """(family, listen IP, host IP, entries) from a rendering's ``json`` section."""
    try:
        data = json.loads(text)
        return (data["family"], data["listenIP"], data["hostIP"],
                tuple(ProxyEntry.from_json(e) for e in data["proxies"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"userspace rendering: bad json section ({exc})") from None
