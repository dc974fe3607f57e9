"""The mock kernel's hook engine: packet state, hook programs, hook order.

This module owns the *plug-in interface* of the mock kernel. Rule sets (the iptables
tables in :mod:`backends.mockkernel.netfilter`, nftables tables in ``nft.py``, IPVS in
``ipvs.py``) are :class:`HookProgram` objects registered at a netfilter hook with a numeric
priority, exactly like kernel hook ops (``nf_register_net_hook``). The packet path in
:mod:`backends.mockkernel.kernel` visits the hooks in the kernel's order and, at each hook,
runs the registered programs in ascending priority; iptables tables and nftables base
chains therefore interleave as they do in the kernel.

Theory of operation
-------------------
A trace is a *branching* walk. A program receives one :class:`PacketState` and returns a
list of ``(probability, state, verdict)`` branches whose probabilities sum to 1 (a
``statistic --mode random`` rule or an nft ``numgen random`` map splits the walk, a plain
rule set returns one branch). The engine multiplies the branch probabilities along the
path, so the final outcome distribution is exact (:class:`fractions.Fraction`).

Programs must not mutate the state they receive when they branch: :meth:`PacketState.fork`
gives each branch its own copy (the rule path and the pending NAT are per branch).

Stateful matches (``recent``, ``statistic --mode nth``, conntrack, IPVS connection table)
read kernel state through ``state.kernel``; they write it only when ``state.commit`` is true
(:meth:`MockKernel.send`), never during :meth:`MockKernel.trace`, which is a pure what-if.
"""

from __future__ import annotations

import functools
import ipaddress
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import attrs

if TYPE_CHECKING:
    from backends.mockkernel.conntrack import ConntrackEntry

__all__ = [
    "HOOKS",
    "NAT_MANIP",
    "ONE",
    "PRIORITY",
    "Branch",
    "HookProgram",
    "PacketState",
    "Verdict",
    "command_argv",
]

#: Netfilter hook names as iptables spells its built-in chains. The nftables names
#: (``prerouting`` ...) map onto these lower-cased.
HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

#: Kernel hook priorities (``enum nf_ip_hook_priorities``). nft base chains use the same
#: numbers (``priority dstnat`` = -100 ...), so programs of both kinds interleave.
PRIORITY: dict[str, int] = {
    "raw": -300,            # NF_IP_PRI_RAW
    "conntrack": -200,      # NF_IP_PRI_CONNTRACK: conntrack lookup/creation (engine built-in)
    "mangle": -150,         # NF_IP_PRI_MANGLE
    "dstnat": -100,         # NF_IP_PRI_NAT_DST: nat PREROUTING / OUTPUT
    "filter": 0,            # NF_IP_PRI_FILTER
    "security": 50,         # NF_IP_PRI_SECURITY
    "srcnat": 100,          # NF_IP_PRI_NAT_SRC: nat POSTROUTING / INPUT
    # IPVS (net/netfilter/ipvs/ip_vs_core.c ip_vs_ops4): ip_vs_remote_request4 on LOCAL_IN at
    # NF_IP_PRI_NAT_SRC - 1, ip_vs_local_request4 on LOCAL_OUT at NF_IP_PRI_NAT_DST + 2.
    "ipvs_in": 99,
    "ipvs_out": -98,
}

#: Which NAT manipulation a nat-type program performs at each hook: the kernel runs a
#: hook's nat chains only while that manipulation is not yet initialised for the
#: connection (``nf_nat_initialized``), i.e. only for the first packet of a flow.
NAT_MANIP: dict[str, str] = {
    "PREROUTING": "dst",
    "OUTPUT": "dst",
    "POSTROUTING": "src",
    "INPUT": "src",
}


@attrs.frozen
class Verdict:
    """What a program decided for one branch.

    ``kind`` is one of:

    * ``ACCEPT`` -- continue with the next program at this hook (and then along the path);
    * ``DROP`` / ``REJECT`` -- terminal;
    * ``UNKNOWN`` -- lenient mode met something it cannot evaluate; terminal;
    * ``REROUTE`` -- the program changed the destination and sends the packet out itself
      (IPVS: ``ip_vs_nat_xmit`` re-routes and re-injects at ``LOCAL_OUT``; the engine
      continues the branch at hook ``reinject`` = ``OUTPUT``, then ``POSTROUTING``).
    """

    kind: str
    reinject: str | None = None
    reason: str = ""

    @property
    def terminal(self) -> bool:
        return self.kind in ("DROP", "REJECT", "UNKNOWN")


#: Probability one, shared by every program: the walks test ``p is ONE`` to skip Fraction
#: arithmetic on the (common) unsplit branches, which only works if all use this object.
ONE = Fraction(1)

ACCEPT = Verdict("ACCEPT")
DROP = Verdict("DROP")
REJECT = Verdict("REJECT")


@functools.lru_cache(maxsize=65536)
def ip_int(ip: str) -> tuple[int, int]:
    """(version, integer) of an address; the engine compares addresses as integers."""
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


@attrs.define(slots=True, eq=False)
class PacketState:
    """One packet (one branch of it) as it crosses the hooks.

    Addresses are the *current* ones: NAT rewrites ``dst``/``dport`` (DNAT at PREROUTING or
    OUTPUT) and ``src``/``sport`` (SNAT/MASQUERADE at POSTROUTING); the originals stay in
    ``orig_*``.
    """

    src: str
    dst: str
    sport: int
    dport: int
    #: lower case ``tcp``/``udp``/``sctp``.
    proto: str
    #: 4 or 6.
    version: int
    src_int: int
    dst_int: int
    orig_src: str
    orig_dst: str
    orig_sport: int
    orig_dport: int
    #: The kernel this packet lives in (``backends.mockkernel.MockKernel``): routing,
    #: local-address test (``kernel.is_local(ip)``), ``kernel.ipsets``, ``kernel.recent``,
    #: ``kernel.clock``, ``kernel.conntrack``, ``kernel.ipvs``.
    kernel: Any
    #: True in :meth:`MockKernel.send` (state may be written), False in ``trace``.
    commit: bool = False
    #: ``pod``, ``local`` or ``external``: where the packet entered.
    origin: str = "external"
    #: In/out interface names (``None`` where the hook has none, like iptables).
    iif: str | None = None
    oif: str | None = None
    #: The skb mark (``MARK``, ``meta mark``).
    mark: int = 0
    #: The conntrack entry (new or existing) the packet belongs to.
    ct: ConntrackEntry | None = None
    #: ``NEW``, ``ESTABLISHED``, ``RELATED``, ``INVALID`` or ``UNTRACKED``.
    ct_state: str = "NEW"
    #: NAT decided *for this packet so far* (``(ip, port)``); copied into the conntrack
    #: entry when the flow is new.
    dnat: tuple[str, int] | None = None
    snat: tuple[str, int] | None = None
    masqueraded: bool = False
    #: NAT manipulations already initialised for the connection (``dst``, ``src``).
    nat_done: set[str] = attrs.field(factory=set)
    #: The rule path: ``"<table> <chain> <rule text>"`` strings.
    rules: list[str] = attrs.field(factory=list)
    #: Free-form per-program scratch space (e.g. nft ``ct mark`` before confirmation).
    notes: dict[str, Any] = attrs.field(factory=dict)
    #: The hook currently being traversed.
    hook: str = ""
    #: Set in :meth:`MockKernel.send`: branching matches (``statistic --mode random``, nft
    #: ``numgen random``, IPVS schedulers) *sample* with this RNG instead of branching.
    rng: Any = None

    @classmethod
    def new(
        cls, *, src: str, dst: str, sport: int, dport: int, proto: str, kernel: Any,
        commit: bool = False, origin: str = "external",
    ) -> PacketState:
        sv, si = ip_int(src)
        dv, di = ip_int(dst)
        if sv != dv:
            raise ValueError(f"source {src} and destination {dst} are of different families")
        return cls(
            src=src, dst=dst, sport=sport, dport=dport, proto=proto.lower(), version=sv,
            src_int=si, dst_int=di, orig_src=src, orig_dst=dst, orig_sport=sport,
            orig_dport=dport, kernel=kernel, commit=commit, origin=origin,
        )

    def fork(self) -> PacketState:
        """An independent copy for one branch (mutable parts copied)."""
        return cast(PacketState, _fork(self))

    def set_dst(self, ip: str, port: int | None) -> None:
        """Rewrite the destination (DNAT / REDIRECT / IPVS)."""
        self.dst = ip
        self.dst_int = ip_int(ip)[1]
        if port is not None:
            self.dport = port
        self.dnat = (self.dst, self.dport)

    def set_src(self, ip: str, port: int | None) -> None:
        """Rewrite the source (SNAT / MASQUERADE)."""
        self.src = ip
        self.src_int = ip_int(ip)[1]
        if port is not None:
            self.sport = port
        self.snat = (self.src, self.sport)

    @property
    def ct_status(self) -> frozenset[str]:
        """Conntrack status bits as ``--ctstate`` sees them: ``DNAT``/``SNAT``."""
        out = set()
        if self.dnat is not None or (self.ct is not None and self.ct.dnat is not None):
            out.add("DNAT")
        if self.snat is not None or (self.ct is not None and self.ct.snat is not None):
            out.add("SNAT")
        return frozenset(out)


def _make_fork() -> Any:
    # A generated field-by-field copy: forks are the hot path of branching traces.
    names = [a.name for a in attrs.fields(PacketState)]
    copied = {"nat_done": "set(s.nat_done)", "rules": "list(s.rules)", "notes": "dict(s.notes)"}
    body = "".join(f"    n.{f} = {copied.get(f, 's.' + f)}\n" for f in names)
    ns: dict[str, Any] = {"PacketState": PacketState}
    exec(f"def _fork(s):\n    n = object.__new__(PacketState)\n{body}    return n\n", ns)
    return ns["_fork"]


_fork = _make_fork()

def command_argv(line: str, program: str) -> list[str]:
    """Split one ``ipset``/``ipvsadm`` command line shell-style; the program word is optional."""
    import shlex

    from kservice.errors import RuleParseError

    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise RuleParseError(f"cannot split {line!r}: {exc}", text=line) from exc
    return argv[1:] if argv and argv[0] == program else argv


#: One branch a program returns.
Branch = tuple[Fraction, PacketState, Verdict]


@runtime_checkable
class HookProgram(Protocol):
    """What a rule set registers at a hook (iptables table, nft base chain, IPVS).

    Attributes
    ----------
    name:
        For rule paths and errors (``"nat"``, ``"ip kube-proxy"``, ``"ipvs"``).
    hooks:
        ``{hook name: priority}`` -- where the program is attached.
    is_nat:
        True for NAT programs (iptables ``nat`` table, nft ``type nat`` chains): the engine
        runs them only while the hook's manipulation (:data:`NAT_MANIP`) is not yet
        initialised for the connection, and afterwards marks it initialised (the null
        binding), exactly as ``nf_nat_inet_fn`` does. Non-NAT programs run on every packet.
    families:
        Optional; address versions the program sees (``(4,)``, ``(6,)`` or ``(4, 6)`` for
        an nft ``inet`` table). Missing means both.
    """

    name: str
    hooks: dict[str, int]
    is_nat: bool

    def evaluate(self, hook: str, state: PacketState) -> list[Branch]:
        """Run the program at ``hook`` on ``state``; return the branches.

        Probabilities are :class:`~fractions.Fraction` and sum to 1. The states may be
        ``state`` itself (single branch) or forks of it. Append what you matched to
        ``state.rules`` as ``"<table> <chain> <rule text>"``.
        """
        ...
