"""Pictures of packet paths and chain graphs, as Graphviz DOT text (pure: text in, text out).

* :func:`trace_to_dot` -- a :class:`~kservice.trace.TraceResult` drawn as the packet's walk:
  the netfilter hooks it crossed (the backbone, in order), the chains whose rules matched
  (each chain node lists the rules hit in it), the jumps between them, the NAT rewrites
  (DNAT with the original and the new destination, masquerade with the source the endpoint
  sees) and where each outcome ends, with its exact probability.
* :func:`iptables_to_dot` -- an ``iptables-save`` / ``iptables-restore`` text drawn as its
  chain graph: one node per chain, one edge per jump, DNAT targets as endpoint nodes.
* :func:`nft_to_dot` -- the same for an ``nft list ruleset`` text (verdict maps included).
* :func:`nft_base_chains` -- which netfilter hook each base chain of an ``nft list
  ruleset`` text is attached to (nftables chain names say nothing about their hook).
* :func:`convert` -- DOT to ``svg``/``png`` through the converter registered in the
  ``kservice.graph_converters`` entry-point group (the Graphviz adapter,
  ``backends.graphviz``, which runs ``dot``); the core itself runs no program.

Theory of operation
-------------------
A trace's rule path is a list of ``"<where> <rule text>"`` strings, where ``<where>`` is
``<table> <chain>`` for iptables, ``<family> <table> <chain>`` for nftables, ``ipvs
<HOOK>`` for the IPVS scheduler and ``kube-proxy ...`` for the userspace proxy's socket
(where the connection ends and the proxy opens its own, drawn as a new walk from OUTPUT). Only rules that *matched* are listed, so the graph shows
the hooks and chains that did something to the packet, not every hook it crossed. The hook
of a step is the built-in chain's name (iptables), the base chain's ``hook`` (nftables,
from :func:`nft_base_chains` or, lacking a ruleset, a hook name inside the chain's name) or
the IPVS hook (``LOCAL_IN`` is netfilter's INPUT); a user chain belongs to the hook the walk
is in. Consecutive steps in different chains become an edge labelled by how the walk got
there (``jump``, ``goto``, a verdict map, or a return to the calling chain, which draws no
edge). Nodes and edges appear in first-seen order so that the text is deterministic.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points

import attrs

from kservice.errors import BackendError, InvalidInput
from kservice.trace import Outcome, TraceResult

__all__ = [
    "CONVERTER_GROUP",
    "IMAGE_FORMATS",
    "Step",
    "convert",
    "iptables_to_dot",
    "nft_base_chains",
    "nft_to_dot",
    "parse_step",
    "trace_to_dot",
]

#: Entry-point group of DOT converters: ``name = "module:function"`` where
#: ``function(dot_text: str, fmt: str) -> bytes``.
CONVERTER_GROUP = "kservice.graph_converters"
#: Output formats a converter is asked for (``dot`` itself needs none).
IMAGE_FORMATS = ("svg", "png")

#: The netfilter hooks, in the order a forwarded or local packet meets them; used to name
#: hook nodes consistently whatever spelling a backend uses.
HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

#: iptables tables (a trace step starting with one of these is ``<table> <chain> <rule>``).
IPTABLES_TABLES = frozenset({"raw", "mangle", "nat", "filter", "security"})
#: nftables families (a step starting with one of these is ``<family> <table> <chain> ...``).
NFT_FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
#: IPVS hooks as the mock kernel names them -> the netfilter hook they run at. IPVS
#: schedules at LOCAL_IN (``ip_vs_remote_request4``, INPUT) and at LOCAL_OUT for packets
#: the node itself sends (``ip_vs_local_request4``, OUTPUT).
IPVS_HOOKS = {"LOCAL_IN": "INPUT", "LOCAL_OUT": "OUTPUT", "INPUT": "INPUT",
              "OUTPUT": "OUTPUT", "FORWARD": "FORWARD"}

# iptables targets that are not chains: drawn as actions inside the chain, never as edges.
_IPT_ACTIONS = frozenset({
    "ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "CONNMARK", "MASQUERADE", "SNAT", "DNAT",
    "REDIRECT", "LOG", "NFLOG", "CT", "NOTRACK", "TPROXY", "CHECKSUM", "QUEUE", "NFQUEUE",
})


@attrs.frozen
class Step:
    """One matched rule of a trace, split into where it lives and what it says."""

    #: ``iptables``, ``nftables``, ``ipvs`` or ``other``.
    kind: str
    #: The table (``nat``), nft ``family table`` (``ip kube-proxy``) or ``ipvs``.
    table: str
    #: The chain (``KUBE-SERVICES``), or the IPVS hook (``LOCAL_IN``).
    chain: str
    #: The rule text after the location.
    rule: str

    @property
    def node_id(self) -> str:
        return f"{self.table} {self.chain}"


def parse_step(text: str) -> Step:
    """Split one trace rule string (see the module docstring for the three shapes)."""
    parts = text.split(" ", 3)
    if parts[0] in IPTABLES_TABLES and len(parts) >= 2:
        return Step("iptables", parts[0], parts[1], text.split(" ", 2)[2] if len(parts) > 2
                    else "")
    if parts[0] in NFT_FAMILIES and len(parts) >= 3:
        return Step("nftables", f"{parts[0]} {parts[1]}", parts[2],
                    parts[3] if len(parts) > 3 else "")
    if parts[0] == "ipvs" and len(parts) >= 2:
        return Step("ipvs", "ipvs", parts[1], text.split(" ", 2)[2] if len(parts) > 2 else "")
    if parts[0] == "kube-proxy":
        # The userspace proxier's socket: the connection ends here and the proxy opens its
        # own to the chosen endpoint.
        return Step("proxy", "kube-proxy", "userspace proxy", text.split(" ", 1)[1]
                    if " " in text else "")
    return Step("other", "", parts[0], text)


# --------------------------------------------------------------------------- rule reading


def _ipt_tokens(rule: str) -> list[str]:
    try:
        return shlex.split(rule)
    except ValueError:  # an unbalanced quote: fall back to plain splitting
        return rule.split()


def _ipt_target(rule: str) -> tuple[str | None, str | None]:
    """(``-j``/``-g``, target) of an iptables rule, or (None, None)."""
    toks = _ipt_tokens(rule)
    for i, tok in enumerate(toks[:-1]):
        if tok in ("-j", "--jump"):
            return "jump", toks[i + 1]
        if tok in ("-g", "--goto"):
            return "goto", toks[i + 1]
    return None, None


def _ipt_option(rule: str, option: str) -> str | None:
    toks = _ipt_tokens(rule)
    for i, tok in enumerate(toks[:-1]):
        if tok == option:
            return toks[i + 1]
    return None


_NFT_JUMP = re.compile(r"\b(jump|goto)\s+(\S+)\s*$")
_NFT_DNAT = re.compile(r"\bdnat\s+(?:ip6?\s+)?to\s+(\S+)")
_IPVS_DEST = re.compile(r"->\s+(\S+)")


def _nft_target(rule: str) -> tuple[str | None, str | None]:
    m = _NFT_JUMP.search(rule)
    return (m.group(1), m.group(2)) if m else (None, None)


def _short(rule: str, width: int = 60) -> str:
    """A rule shortened for a picture: long comments and set names kept, noise dropped."""
    text = re.sub(r"\s+", " ", rule).strip()
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _dnat_target(step: Step) -> str | None:
    """Where a destination-rewriting step sends the packet (``None``: it does not)."""
    if step.kind == "iptables":
        target = _ipt_target(step.rule)[1]
        if target == "DNAT":
            return _ipt_option(step.rule, "--to-destination")
        if target == "REDIRECT":
            # REDIRECT is DNAT to the primary address of the interface the packet came in
            # on (127.0.0.1 for locally generated packets); the trace text does not say
            # which, so the picture says "this node".
            port = _ipt_option(step.rule, "--to-ports")
            return f"this node:{port}" if port else "this node"
        return None
    if step.kind == "nftables":
        m = _NFT_DNAT.search(step.rule)
        return m.group(1) if m else None
    if step.kind == "ipvs":
        m = _IPVS_DEST.search(step.rule)
        return m.group(1) if m else None
    return None


def _is_masquerade(step: Step) -> bool:
    if step.kind == "iptables":
        return _ipt_target(step.rule)[1] in ("MASQUERADE", "SNAT")
    if step.kind == "nftables":
        # The statement, not a chain named after it (``jump mark-for-masquerade``).
        return bool(re.search(r"(?<![-\w])(masquerade|snat)(?![-\w])", step.rule)) and \
            not re.search(r"\b(jump|goto)\s+\S*(masquerade|snat)", step.rule)
    return False


def _hook_of(step: Step, base_chains: Mapping[str, str]) -> str | None:
    """The netfilter hook a step's chain is attached to, if the chain is a base chain."""
    if step.kind == "iptables":
        return step.chain if step.chain in HOOKS else None
    if step.kind == "ipvs":
        return IPVS_HOOKS.get(step.chain.upper())
    if step.kind == "nftables":
        hook = base_chains.get(step.chain)
        if hook is not None:
            return hook.upper()
        if not base_chains:
            # No ruleset given: kube-proxy (and most hand-written tables) name base chains
            # after their hook (``nat-prerouting``, ``filter-output-pre-dnat``).
            for token in re.split(r"[-_]", step.chain.lower()):
                if token.upper() in HOOKS:
                    return token.upper()
        return None
    return None


_NFT_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")
_NFT_HOOK = re.compile(r"\btype\s+\w+\s+hook\s+(\w+)")


def nft_base_chains(ruleset: str) -> dict[str, str]:
    """``{chain: HOOK}`` for every base chain of an ``nft list ruleset`` (or ``nft -f``) text."""
    out: dict[str, str] = {}
    chain: str | None = None
    for line in ruleset.splitlines():
        m = _NFT_CHAIN.match(line)
        if m:
            chain = m.group(1)
        hm = _NFT_HOOK.search(line)
        if hm is None:
            continue
        if chain is not None and line.strip().startswith("type"):
            out.setdefault(chain, hm.group(1).upper())
            continue
        # ``add chain ip kube-proxy nat-prerouting { type nat hook prerouting ... }``
        am = re.match(r"^\s*add\s+chain\s+\S+\s+\S+\s+(\S+)\s*\{", line)
        if am:
            out.setdefault(am.group(1), hm.group(1).upper())
    return out


# --------------------------------------------------------------------------- DOT writing


def _q(text: str) -> str:
    """A DOT double-quoted string (escaped; newlines as centred line breaks)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _left(lines: Sequence[str]) -> str:
    """A DOT label of left-justified lines (``\\l`` ends each line)."""
    body = "".join(line.replace("\\", "\\\\").replace('"', '\\"') + "\\l" for line in lines)
    return f'"{body}"'


class _Dot:
    """Nodes and edges in first-seen order, de-duplicated; clusters by name."""

    def __init__(self, name: str, attrs_: Sequence[str]) -> None:
        self.name = name
        self.graph_attrs = list(attrs_)
        self.nodes: dict[str, str] = {}
        self.clusters: dict[str, tuple[str, list[str]]] = {}
        self.loose: list[str] = []
        self.edges: dict[tuple[str, str, str], str] = {}

    def node(self, nid: str, attributes: str, cluster: str | None = None,
             cluster_label: str = "") -> None:
        if nid in self.nodes:
            return
        self.nodes[nid] = attributes
        if cluster is None:
            self.loose.append(nid)
        else:
            self.clusters.setdefault(cluster, (cluster_label or cluster, []))[1].append(nid)

    def edge(self, a: str, b: str, attributes: str = "", key: str = "") -> None:
        self.edges.setdefault((a, b, key), attributes)

    def text(self) -> str:
        out = [f"digraph {_q(self.name)} {{"]
        out += [f"  {a};" for a in self.graph_attrs]
        for i, (_cluster, (label, members)) in enumerate(self.clusters.items()):
            out.append(f"  subgraph cluster_{i} {{")
            out.append(f"    label={_q(label)}; style=rounded; color=gray60; "
                       f"fontname=Helvetica;")
            out += [f"    {_q(n)} [{self.nodes[n]}];" for n in members]
            out.append("  }")
        out += [f"  {_q(n)} [{self.nodes[n]}];" for n in self.loose]
        for (a, b, _k), at in self.edges.items():
            out.append(f"  {_q(a)} -> {_q(b)}" + (f" [{at}]" if at else "") + ";")
        out.append("}")
        return "\n".join(out) + "\n"


_CHAIN_STYLE = "shape=box, style=\"rounded,filled\", fillcolor=white, fontname=Courier, fontsize=10"
_HOOK_STYLE = "shape=cds, style=filled, fillcolor=lightsteelblue, fontname=Helvetica"
_NAT_STYLE = "shape=note, style=filled, fillcolor=lightyellow, fontname=Helvetica, fontsize=10"
_END_STYLE = "shape=box, style=\"filled,bold\", fillcolor=palegreen, fontname=Helvetica"
_DROP_STYLE = "shape=octagon, style=filled, fillcolor=lightpink, fontname=Helvetica"
_PROXY_STYLE = "shape=component, style=filled, fillcolor=thistle, fontname=Courier, fontsize=10"
_SRC_STYLE = "shape=ellipse, style=filled, fillcolor=gray90, fontname=Helvetica"


def _hp(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _edge_label(step: Step, next_step: Step) -> str:
    """How the walk went from ``step``'s chain to ``next_step``'s."""
    if step.kind == "iptables":
        kind, target = _ipt_target(step.rule)
        if target == next_step.chain and kind:
            comment = _ipt_option(step.rule, "--comment")
            return kind + (f"\n{_short(comment, 40)}" if comment else "")
    elif step.kind == "nftables":
        kind, target = _nft_target(step.rule)
        if target == next_step.chain and kind:
            return kind
        if "vmap" in step.rule:
            return "vmap"
    return ""


def trace_to_dot(result: TraceResult, *, base_chains: Mapping[str, str] | None = None,
                 names: Mapping[str, str] | None = None, max_rules: int = 6) -> str:
    """Draw ``result`` (every outcome; shared prefixes merge) as a DOT digraph.

    ``base_chains`` maps nftables base chains to hooks (:func:`nft_base_chains`);
    ``names`` labels addresses (``{"10.244.1.2": "pod myapp-abc"}``); each chain node
    lists at most ``max_rules`` of the rules hit in it.
    """
    bases = dict(base_chains or {})
    names = dict(names or {})
    p = result.packet
    dot = _Dot(f"trace {p.proto} {_hp(p.src, p.sport)} -> {_hp(p.dst, p.dport)}", [
        "rankdir=TB", "newrank=true", "nodesep=0.3", "ranksep=0.35",
        f"label={_q(f'node {result.node} ({result.mode}): {p.proto} {_hp(p.src, p.sport)} -> {_hp(p.dst, p.dport)}')}",
        "labelloc=t", "fontname=Helvetica",
        "node [fontname=Helvetica]", "edge [fontname=Helvetica, fontsize=9]",
    ])
    src_label = f"source {_hp(p.src, p.sport)}" + (f"\n{names[p.src]}" if p.src in names else "")
    dot.node("src", f"label={_q(src_label)}, {_SRC_STYLE}")
    rules_in: dict[str, list[str]] = {}

    for idx, outcome in enumerate(result.outcomes):
        steps = [parse_step(r) for r in outcome.rules]
        hook: str | None = None
        prev_hook_node = "src"
        stack: list[str] = []  # chains entered in this hook (returns go back down it)
        for i, step in enumerate(steps):
            nid = step.node_id
            if step.kind == "proxy":
                # The connection ends at the proxy's socket; the proxy's own connection to
                # the endpoint starts a new walk from the node (OUTPUT onwards).
                dot.node(nid, "")
                lines = rules_in.setdefault(nid, ["kube-proxy (userspace proxy)"])
                if _short(step.rule, 96) not in lines:
                    lines.append(_short(step.rule, 96))
                dot.edge(prev_hook_node, nid, "penwidth=2, color=steelblue4")
                prev_hook_node, hook, stack = nid, None, []
                continue
            h = _hook_of(step, bases)
            if h is not None and h != hook:
                # The walk reaches the next hook: a backbone edge, then its base chain.
                hook_node = f"hook {h}"
                dot.node(hook_node, f"label={_q(h)}, {_HOOK_STYLE}", cluster=h)
                label = ', label="new connection\\nfrom the node"' \
                    if prev_hook_node.startswith("kube-proxy") else ""
                dot.edge(prev_hook_node, hook_node, "penwidth=2, color=steelblue4" + label)
                prev_hook_node, hook, stack = hook_node, h, []
            if h is not None and nid not in stack:
                # Another base chain at this hook (another table, or IPVS after filter).
                dot.edge(f"hook {h}", nid, "style=dashed, color=gray40")
                stack = [nid]
            elif nid in stack:
                stack = stack[: stack.index(nid) + 1]  # back in a calling chain (RETURN)
            else:
                stack.append(nid)
            label = "IPVS " + step.chain if step.kind == "ipvs" else nid
            dot.node(nid, "", cluster=hook or "?")
            lines = rules_in.setdefault(nid, [label])
            text = _short(step.rule, 72)
            if text and text not in lines:
                lines.append(text)
            # An edge to the next chain when the walk moves there within this hook (a base
            # chain is reached through its hook instead; a calling chain by returning).
            if i + 1 < len(steps):
                nxt = steps[i + 1]
                if (nxt.node_id != nid and _hook_of(nxt, bases) is None
                        and nxt.node_id not in stack):
                    how = _edge_label(step, nxt)
                    dot.edge(nid, nxt.node_id, f"label={_q(how)}" if how else "")
            target = _dnat_target(step)
            if target is not None and outcome.delivered_to is not None:
                before = _hp(p.dst, p.dport)
                how = "REDIRECT" if target.startswith("this node") else "DNAT"
                nat = f"{how} {before} -> {target}"
                text = f"{how} (destination rewrite)\n{before}\n-> {target}"
                dot.node(nat, f"label={_q(text)}, {_NAT_STYLE}", cluster=hook or "?")
                dot.edge(nid, nat, f'label="{how}", color=firebrick, fontcolor=firebrick, '
                                   "penwidth=1.5")
            if _is_masquerade(step) and outcome.source_seen is not None:
                nat = f"SNAT {p.src} -> {outcome.source_seen}"
                text = f"masquerade (source rewrite)\n{p.src}\n-> {outcome.source_seen}"
                dot.node(nat, f"label={_q(text)}, {_NAT_STYLE}", cluster=hook or "?")
                dot.edge(nid, nat, 'label="SNAT", color=darkorange3, fontcolor=darkorange3')
        end = _end_node(dot, outcome, idx, names)
        dot.edge(prev_hook_node, end, f"label={_q(str(outcome.probability))}, penwidth=2, "
                                      "color=steelblue4", key=str(idx))

    for nid, lines in rules_in.items():
        shown = lines[: max_rules + 1]
        if len(lines) > len(shown):
            shown.append(f"(+{len(lines) - len(shown)} more)")
        style = _PROXY_STYLE if nid.startswith("kube-proxy") else _CHAIN_STYLE
        dot.nodes[nid] = f"label={_left(shown)}, {style}"
    return dot.text()


def _end_node(dot: _Dot, o: Outcome, idx: int, names: Mapping[str, str]) -> str:
    if o.verdict == "ACCEPT" and o.delivered_to is not None:
        nid = f"end {o.delivered_to} {o.source_seen}"
        host = o.delivered_to.rsplit(":", 1)[0].strip("[]")
        who = names.get(host, "")
        lines = [f"delivered to {o.delivered_to}"] + ([who] if who else [])
        lines.append(f"source seen: {o.source_seen}" + (" (masqueraded)" if o.masqueraded
                                                       else ""))
        dot.node(nid, f"label={_q(chr(10).join(lines))}, {_END_STYLE}")
        return nid
    nid = f"end {o.verdict} {idx}"
    dot.node(nid, f"label={_q(o.verdict)}, {_DROP_STYLE}")
    return nid


# --------------------------------------------------------------------------- chain graphs


def iptables_to_dot(text: str, *, title: str = "iptables chains",
                    tables: Iterable[str] = ("nat", "filter")) -> str:
    """Draw an ``iptables-save``/``iptables-restore`` text as its chain graph.

    One cluster per table; one node per chain (built-in chains drawn as hooks); one edge
    per jump or goto, labelled with the rule's comment or matches; DNAT rules end in a node
    for their ``--to-destination``; other targets (``MARK``, ``MASQUERADE``, ``DROP`` ...)
    are listed inside their chain's node.
    """
    wanted = set(tables)
    dot = _Dot(title, ["rankdir=LR", f"label={_q(title)}", "labelloc=t", "fontname=Helvetica",
                       "node [fontname=Helvetica]", "edge [fontname=Helvetica, fontsize=9]"])
    table = ""
    actions: dict[str, list[str]] = {}
    builtin: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table not in wanted:
            continue
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            nid = f"{table} {name}"
            if rest.split()[:1] != ["-"]:
                builtin.add(nid)
            dot.node(nid, "", cluster=table, cluster_label=f"table {table}")
            actions.setdefault(nid, [name])
            continue
        if not line.startswith(("-A ", "-I ")):
            raise InvalidInput(f"line {lineno}: expected -A CHAIN ..., got {line[:40]!r}")
        _, chain, rule = [*line.split(" ", 2), ""][:3]
        nid = f"{table} {chain}"
        dot.node(nid, "", cluster=table, cluster_label=f"table {table}")
        actions.setdefault(nid, [chain])
        kind, target = _ipt_target(rule)
        comment = _ipt_option(rule, "--comment")
        matches = re.sub(r"\s*-[jg]\s+\S+.*$", "", rule)
        matches = re.sub(r'-m comment --comment ("[^"]*"|\S+)\s*', "", matches).strip()
        label = _short(comment or matches or "(all)", 44)
        if target is None:
            actions[nid].append(_short(rule, 60))
        elif target == "DNAT":
            dest = _ipt_option(rule, "--to-destination") or "?"
            end = f"endpoint {dest}"
            dot.node(end, f"label={_q(dest)}, {_END_STYLE}")
            dot.edge(nid, end, f"label={_q('DNAT')}, color=firebrick, fontcolor=firebrick")
        elif target in _IPT_ACTIONS or target is None:
            actions[nid].append(_short(f"{matches + ' ' if matches else ''}-j {target}"
                                       + rule.split(f"-j {target}", 1)[-1], 60))
        else:
            dest = f"{table} {target}"
            dot.node(dest, "", cluster=table, cluster_label=f"table {table}")
            actions.setdefault(dest, [target])
            dot.edge(nid, dest, f"label={_q(f'{kind}: {label}')}", key=label)
    for nid, lines in actions.items():
        style = _HOOK_STYLE if nid in builtin else _CHAIN_STYLE
        dot.nodes[nid] = f"label={_left(lines[:7] + ([f'(+{len(lines) - 7} more)'] if len(lines) > 7 else []))}, {style}"
    if not dot.nodes:
        raise InvalidInput(f"no chains of table(s) {', '.join(sorted(wanted))} in the rules")
    return dot.text()


_NFT_VERDICT = re.compile(r"\b(jump|goto)\s+([^\s,}]+)")
_NFT_MAP_REF = re.compile(r"\bvmap\s+@(\S+)")


def nft_to_dot(ruleset: str, *, title: str = "nftables chains") -> str:
    """Draw an ``nft list ruleset`` text as its chain graph.

    One node per chain (base chains drawn as hooks, labelled with their hook); an edge per
    ``jump``/``goto``, including those inside anonymous verdict maps and, for ``vmap @map``,
    those in the named map's elements; ``dnat to`` statements end in endpoint nodes.
    """
    dot = _Dot(title, ["rankdir=LR", f"label={_q(title)}", "labelloc=t", "fontname=Helvetica",
                       "node [fontname=Helvetica]", "edge [fontname=Helvetica, fontsize=9]"])
    hooks = nft_base_chains(ruleset)
    maps: dict[str, list[tuple[str, str]]] = {}
    chains: dict[str, list[str]] = {}
    kind, name = "", ""
    for raw in ruleset.splitlines():
        line = raw.strip()
        m = re.match(r"^(chain|map|set)\s+(\S+)\s*\{", line)
        if m:
            kind, name = m.group(1), m.group(2)
            if kind == "chain":
                chains.setdefault(name, [])
            continue
        if line == "}":
            kind = ""
            continue
        if kind == "map":
            maps.setdefault(name, []).extend(_NFT_VERDICT.findall(line))
        elif kind == "chain" and line and not line.startswith(("type ", "comment ", "policy ")):
            chains[name].append(line)
    if not chains:
        raise InvalidInput("no chains in the ruleset (expected `nft list ruleset` output)")
    labels: dict[str, list[str]] = {}
    for chain, rules in chains.items():
        nid = f"chain {chain}"
        dot.node(nid, "")
        labels[nid] = [chain + (f"  (hook {hooks[chain].lower()})" if chain in hooks else "")]
        for rule in rules:
            targets = _NFT_VERDICT.findall(rule)
            ref = _NFT_MAP_REF.search(rule)
            if ref:
                targets += maps.get(ref.group(1), [])
            dnat = _NFT_DNAT.search(rule)
            if dnat:
                end = f"endpoint {dnat.group(1)}"
                dot.node(end, f"label={_q(dnat.group(1))}, {_END_STYLE}")
                dot.edge(nid, end, 'label="DNAT", color=firebrick, fontcolor=firebrick')
            if not targets and not dnat:
                labels[nid].append(_short(rule, 60))
            how = f"vmap @{ref.group(1)}" if ref else ("vmap" if "vmap" in rule else "")
            for verb, target in targets:
                dest = f"chain {target}"
                dot.node(dest, "")
                labels.setdefault(dest, [target])
                dot.edge(nid, dest, f"label={_q(how or verb)}")
    for nid, lines in labels.items():
        style = _HOOK_STYLE if nid[len("chain "):] in hooks else _CHAIN_STYLE
        shown = lines[:7] + ([f"(+{len(lines) - 7} more)"] if len(lines) > 7 else [])
        dot.nodes[nid] = f"label={_left(shown)}, {style}"
    return dot.text()


# --------------------------------------------------------------------------- conversion


def convert(dot_text: str, fmt: str) -> bytes:
    """DOT text to ``fmt`` (``svg``, ``png``) through the registered converter.

    The converter runs a program (Graphviz ``dot``), so it lives in an adapter and is
    found through the ``kservice.graph_converters`` entry-point group.
    """
    if fmt == "dot":
        return dot_text.encode()
    if fmt not in IMAGE_FORMATS:
        raise InvalidInput(f"unknown picture format {fmt!r}; use dot, svg or png")
    eps = sorted(entry_points(group=CONVERTER_GROUP), key=lambda e: e.name)
    if not eps:
        raise BackendError(
            f"no DOT converter is registered (entry-point group {CONVERTER_GROUP}); "
            "reinstall kservice (`pip install -e .`) so that backends.graphviz registers, "
            "or use -o dot and run Graphviz yourself: dot -Tsvg graph.dot > graph.svg")
    func = eps[0].load()
    out = func(dot_text, fmt)
    if not isinstance(out, bytes):
        raise BackendError(f"converter {eps[0].name} returned {type(out).__name__}, not bytes")
    return out
