"""``iptables-save`` output of a node after kube-proxy's full sync, in the kernel's own form.

kube-proxy writes rules in "restore" form (``-m comment --comment "..." -m tcp -p tcp -d IP
--dport N -j X``). The kernel keeps them as an ``ipt_entry`` (addresses, interfaces,
protocol) followed by matches and a target, and ``iptables-save`` prints them back from that
structure, so the text changes:

* the IP header fields come first, always in the order ``-s -d -i -o -p`` (each may be
  negated ``! -s``), addresses with their prefix (``/32``, ``/128``, masked networks);
* then every ``-m module`` in the order given, with its options in the module's own save
  order and format (see :data:`_MODULE_SAVERS`);
* then ``-j TARGET`` and its options in save form (``MARK --or-mark M`` becomes
  ``--set-xmark M/M``, ``REJECT`` gains ``--reject-with icmp-port-unreachable``);
* comments are printed by ``xtables_save_string``: bare when they only hold
  ``[A-Za-z0-9_-]``, else double-quoted with ``"``, ``\\`` and ``'`` backslash-escaped;
* ``statistic --probability`` is stored as ``lround(p * 2^31)`` and printed ``%.11f``
  (``0.3333333333`` comes back as ``0.33333333349``).

These rules were checked against iptables v1.8.9 (legacy and nft) in a network namespace; see
``tests/test_iptables_kernel.py``. :func:`render_save` builds the node (built-in chains, the
14 jump rules kube-proxy prepends, the canary chains, then the restore payload applied with
``--noflush``) and prints it table by table as ``iptables-save`` does. Output is accepted by
``iptables-restore`` as is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache

from backends.iptables.apply import IPTablesState
from backends.iptables.tables import (
    BUILTIN_CHAINS,
    CANARY_CHAIN,
    CANARY_TABLES,
    JUMP_RULES,
    SAVE_TABLE_ORDER,
)
from kservice.errors import UnsupportedRule

__all__ = [
    "IPTABLES_VERSION",
    "node_state",
    "render_save",
    "save_rule",
    "save_string",
]

#: The iptables release whose output format this reproduces.
IPTABLES_VERSION = "v1.8.9"
#: Deterministic stand-in for the ctime() iptables-save prints (the epoch, ctime format).
DEFAULT_GENERATED_ON = "Thu Jan  1 00:00:00 1970"

_NO_QUOTE = re.compile(r"[A-Za-z0-9_-]+")
_TOKENS = re.compile(r'"[^"]*"|\S+')


def save_string(value: str) -> str:
    """``xtables_save_string``: bare if safe, else quoted with ``"\\'`` escaped."""
    if _NO_QUOTE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'") + '"'


@lru_cache(maxsize=8192)
def _addr(value: str, v6: bool) -> str:
    net = ipaddress.ip_network(value, strict=False)
    if (net.version == 6) != v6:
        raise UnsupportedRule(f"address {value!r} is not {'IPv6' if v6 else 'IPv4'}", option=value)
    return f"{net.network_address}/{net.prefixlen}"


def _int(text: str) -> int:
    return int(text, 0)


def _mark_value(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return _int(value), (_int(mask) if mask else 0xFFFFFFFF)


@lru_cache(maxsize=4096)
def _probability(text: str) -> str:
    p = float(text)
    stored = int(p * 0x80000000 + 0.5)  # C lround for positive values
    return "%.11f" % (stored / 0x80000000)


Opts = list[tuple[bool, str, str | None]]  # (negated, option, value)
Saver = Callable[[Opts, bool], str]


def _plain() -> Saver:
    """A module whose save form repeats its options as given (tcp, conntrack, addrtype ...)."""

    def save(opts: Opts, v6: bool) -> str:
        parts = []
        for neg, opt, val in opts:
            parts.append(("! " if neg else "") + opt + ("" if val is None else " " + val))
        return " ".join(parts)

    return save


def _comment(opts: Opts, v6: bool) -> str:
    (_, opt, val), *rest = opts
    if opt != "--comment" or rest or val is None:
        raise UnsupportedRule("comment match takes exactly --comment", option=opt)
    return "--comment " + save_string(val)


def _mark_match(opts: Opts, v6: bool) -> str:
    (neg, opt, val), *rest = opts
    if opt != "--mark" or rest or val is None:
        raise UnsupportedRule("mark match takes exactly --mark", option=opt)
    mark, mask = _mark_value(val)
    text = f"0x{mark:x}" if mask == 0xFFFFFFFF else f"0x{mark:x}/0x{mask:x}"
    return ("! " if neg else "") + "--mark " + text


def _statistic(opts: Opts, v6: bool) -> str:
    d = {opt: val for _, opt, val in opts}
    if d.get("--mode") != "random" or "--probability" not in d or len(d) != 2:
        raise UnsupportedRule("only statistic --mode random --probability P is supported", option="--mode")
    return f"--mode random --probability {_probability(d['--probability'] or '')}"


_RECENT_CMDS = ("--set", "--rcheck", "--update", "--remove")


def _recent(opts: Opts, v6: bool) -> str:
    d = {opt: (neg, val) for neg, opt, val in opts}
    unknown = set(d) - {*_RECENT_CMDS, "--seconds", "--hitcount", "--rttl", "--reap", "--name", "--mask", "--rsource", "--rdest"}
    if unknown:
        raise UnsupportedRule("unknown recent option", option=sorted(unknown)[0])
    parts = []
    for cmd in _RECENT_CMDS:
        if cmd in d:
            parts.append(("! " if d[cmd][0] else "") + cmd)
    for opt in ("--seconds", "--hitcount"):
        if opt in d:
            parts.append(f"{opt} {d[opt][1]}")
    for flag in ("--rttl", "--reap"):
        if flag in d:
            parts.append(flag)
    parts.append(f"--name {d['--name'][1] if '--name' in d else 'DEFAULT'}")
    if "--mask" in d:
        mask = str(ipaddress.ip_address(d["--mask"][1] or ""))
    else:
        mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if v6 else "255.255.255.255"
    parts.append(f"--mask {mask}")
    parts.append("--rdest" if "--rdest" in d else "--rsource")
    return " ".join(parts)


def _nfacct(opts: Opts, v6: bool) -> str:
    # libxt_nfacct prints " --nfacct-name " and then the name with its own leading space,
    # so real iptables-save (nft and legacy 1.8.9) shows two spaces; seen on a real kernel.
    d = {opt: val for _, opt, val in opts}
    if set(d) != {"--nfacct-name"}:
        raise UnsupportedRule("only nfacct --nfacct-name NAME is supported", option="--nfacct-name")
    return f"--nfacct-name  {d['--nfacct-name']}"


#: Match modules kube-proxy uses, and how each prints its options back.
_MODULE_SAVERS: dict[str, Saver] = {
    "comment": _comment,
    "tcp": _plain(),
    "udp": _plain(),
    "sctp": _plain(),
    "conntrack": _plain(),
    "addrtype": _plain(),
    "mark": _mark_match,
    "statistic": _statistic,
    "recent": _recent,
    "nfacct": _nfacct,
}

#: Options that take no value, per module.
_FLAG_OPTIONS = frozenset({"--set", "--rcheck", "--update", "--remove", "--reap", "--rttl",
                           "--rsource", "--rdest", "--random-fully", "--random", "--persistent"})


def _target(name: str, opts: Opts, v6: bool) -> str:
    if name == "MARK":
        d = {opt: val for _, opt, val in opts}
        if len(d) != 1:
            raise UnsupportedRule("MARK takes one of --set-xmark/--set-mark/--or-mark/--xor-mark/--and-mark", option="MARK")
        (opt, val), = d.items()
        mark, mask = _mark_value(val or "")
        if opt == "--or-mark":
            mark, mask = mark, mark
        elif opt == "--xor-mark":
            mask = 0
        elif opt == "--and-mark":
            mark, mask = 0, (~mark) & 0xFFFFFFFF
        elif opt not in ("--set-xmark", "--set-mark"):
            raise UnsupportedRule("unknown MARK option", option=opt)
        return f"-j MARK --set-xmark 0x{mark:x}/0x{mask:x}"
    if name == "REJECT":
        d = {opt: val for _, opt, val in opts}
        kind = d.get("--reject-with") or ("icmp6-port-unreachable" if v6 else "icmp-port-unreachable")
        return f"-j REJECT --reject-with {kind}"
    if name in ("DNAT", "SNAT", "MASQUERADE"):
        rest = "".join(f" {opt}" + ("" if val is None else f" {val}") for _, opt, val in opts)
        return f"-j {name}{rest}"
    if opts:
        raise UnsupportedRule(f"target {name} takes no options here", option=opts[0][1])
    return f"-j {name}"


_HEADER_ORDER = ("-s", "-d", "-i", "-o", "-p")
_HEADER_LONG = {"--source": "-s", "--destination": "-d", "--in-interface": "-i",
                "--out-interface": "-o", "--protocol": "-p", "--src": "-s", "--dst": "-d"}


def save_rule(line: str, family: str = "IPv4") -> str:
    """One restore-form ``-A`` line in the form ``iptables-save`` prints it back."""
    v6 = family == "IPv6"
    tokens = [t[1:-1] if t.startswith('"') else t for t in _TOKENS.findall(line)]
    if len(tokens) < 2 or tokens[0] != "-A":
        raise UnsupportedRule("expected '-A CHAIN ...'", text=line, option=tokens[0] if tokens else None)
    chain = tokens[1]
    header: dict[str, tuple[bool, str]] = {}
    modules: list[tuple[str, Opts]] = []
    target: str | None = None
    target_opts: Opts = []
    i = 2
    neg = False
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        tok = _HEADER_LONG.get(tok, tok)
        if tok in _HEADER_ORDER:
            if i + 1 >= n:
                raise UnsupportedRule("option needs a value", text=line, option=tok)
            header[tok] = (neg, tokens[i + 1])
            i += 2
        elif tok in ("-m", "--match"):
            mod = tokens[i + 1] if i + 1 < n else ""
            if mod not in _MODULE_SAVERS:
                raise UnsupportedRule(f"match module {mod!r} is not supported", text=line, option="-m")
            modules.append((mod, []))
            i += 2
        elif tok in ("-j", "--jump"):
            if i + 1 >= n:
                raise UnsupportedRule("-j needs a target", text=line, option=tok)
            target = tokens[i + 1]
            i += 2
        elif tok.startswith("--"):
            if tok in _FLAG_OPTIONS:
                opt = (neg, tok, None)
                i += 1
            else:
                if i + 1 >= n:
                    raise UnsupportedRule("option needs a value", text=line, option=tok)
                opt = (neg, tok, tokens[i + 1])
                i += 2
            if target is not None:
                target_opts.append(opt)
            elif modules:
                modules[-1][1].append(opt)
            else:
                raise UnsupportedRule("option outside of any match or target", text=line, option=tok)
        else:
            raise UnsupportedRule("unknown option", text=line, option=tok)
        neg = False

    parts = ["-A", chain]
    for hopt in _HEADER_ORDER:
        if hopt in header:
            hneg, val = header[hopt]
            if hopt in ("-s", "-d"):
                val = _addr(val, v6)
            parts.append(("! " if hneg else "") + f"{hopt} {val}")
    for mod, opts in modules:
        body = _MODULE_SAVERS[mod](opts, v6) if opts else ""
        parts.append(f"-m {mod}" + (f" {body}" if body else ""))
    if target is not None:
        parts.append(_target(target, target_opts, v6))
    return " ".join(parts)


def node_state(restore: str, family: str = "IPv4") -> IPTablesState:
    """The node's tables after kube-proxy's first full sync on a clean host.

    ``EnsureChain``/``EnsureRule(Prepend)`` for each jump rule in list order, the
    ``KUBE-PROXY-CANARY`` chains of the iptables monitor, then ``restore`` applied with
    ``--noflush``. (The kubelet's own chains, e.g. ``KUBE-KUBELET-CANARY``, are not modelled.)
    """
    st = IPTablesState.empty(family)
    for jump in JUMP_RULES:
        st.ensure_chain(jump.table, jump.dst)
        st.ensure_rule(jump.table, jump.src, jump.args(), prepend=True)
    for table in CANARY_TABLES:
        st.ensure_chain(table, CANARY_CHAIN)
    st.apply_restore(restore, noflush=True)
    return st


def render_save(
    st: IPTablesState, *, variant: str = "nft", generated_on: str = DEFAULT_GENERATED_ON
) -> str:
    """``iptables-save`` (``ip6tables-save`` for IPv6) of ``st``, with zero counters.

    ``variant="nft"`` (the default on current distributions) prints the header of
    ``iptables-nft-save`` and the tables in its fixed order (mangle, filter, nat);
    ``"legacy"`` prints ``iptables-save``'s header (legacy lists tables in the order the
    kernel modules were loaded, taken here to be the same). Rules are identical in both.
    """
    v6 = st.family == "IPv6"
    base = "ip6tables" if v6 else "iptables"
    if variant == "nft":
        header = f"# Generated by {base}-nft-save {IPTABLES_VERSION} (nf_tables) on {generated_on}\n"
    elif variant == "legacy":
        header = f"# Generated by {base}-save {IPTABLES_VERSION} on {generated_on}\n"
    else:
        raise ValueError(f"unknown iptables variant {variant!r} (nft or legacy)")
    out: list[str] = []
    order = [t for t in SAVE_TABLE_ORDER if t in st.tables] + sorted(
        t for t in st.tables if t not in SAVE_TABLE_ORDER
    )
    for table in order:
        chains = st.tables[table]
        builtins = [c for c in BUILTIN_CHAINS.get(table, ()) if c in chains]
        users = sorted(name for name, c in chains.items() if not c.builtin)
        out.append(header)
        out.append(f"*{table}\n")
        for name in builtins:
            out.append(f":{name} {chains[name].policy} [0:0]\n")
        for name in users:
            out.append(f":{name} - [0:0]\n")
        family = st.family
        for name in (*builtins, *users):
            for rule in chains[name].rules:
                out.append(save_rule(rule, family) + "\n")
        out.append("COMMIT\n")
        out.append(f"# Completed on {generated_on}\n")
    return "".join(out)
