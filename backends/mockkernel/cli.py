"""``kservice trace``: follow one packet through a node's dataplane in the mock kernel.

Two ways to get the node's rules:

* from the stored cluster (plus ``-f`` manifests applied for this trace only): the node's
  state is built as kube-proxy would see it (``kservice.proxy.snapshot.build_node_state``),
  rendered by the chosen backend (``--mode``) and loaded with ``backend.load``;
* from a real node's dumps: ``--rules`` (``iptables-save``), ``--nft`` (``nft list
  ruleset``), ``--ipvs`` + ``--ipset`` (``ipvsadm -Sn``, ``ipset save``), with the node
  described by ``--node-ip``/``--pod-cidr``/``--iface``/``--route``.

``-o json`` prints exactly ``TraceResult.to_json()``; the text form is a table of outcomes,
each with its rule path; ``-o dot|svg|png`` draws the path (hooks, chains, rules hit, NAT
rewrites, where each outcome ends) with :mod:`kservice.graph` and ``backends.graphviz``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from backends.mockkernel.kernel import MockKernel
from backends.mockkernel.netfilter_parse import BUILTIN_CHAINS
from kservice.errors import InvalidInput
from kservice.proxy.types import NodeInfo
from kservice.trace import Packet, TraceResult

__all__ = ["cmd_trace", "format_text", "parse_endpoint", "register"]

MODES = ("iptables", "ipvs", "nftables", "userspace")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace",
        help="trace a packet through a node's dataplane (exact outcome probabilities)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  kservice trace --node node-1 --src 10.244.1.5 --dst 10.96.0.10:53 --proto udp\n"
               "  kservice trace --mode ipvs --node node-1 --src 203.0.113.9 --dst 192.168.0.2:30080\n"
               "  kservice trace --rules node.iptables-save --node-ip 192.168.0.2 \\\n"
               "      --pod-cidr 10.244.1.0/24 --src 10.244.1.5 --dst 10.96.0.1:443 -o json",
    )
    p.add_argument("-f", "--filename", action="append", default=None, metavar="FILE",
                   help="manifests applied on top of the stored cluster for this trace only "
                        "(nothing is stored); repeatable")
    p.add_argument("--mode", choices=MODES, default="iptables",
                   help="proxy mode whose rules are rendered (default iptables)")
    p.add_argument("--node", help="the node the packet is on (required unless tracing dumps)")
    p.add_argument("--family", choices=("IPv4", "IPv6"),
                   help="IP family (default: the destination's)")
    p.add_argument("--src", required=True, metavar="IP[:PORT]", help="packet source")
    p.add_argument("--dst", required=True, metavar="IP:PORT", help="packet destination")
    p.add_argument("--proto", choices=("tcp", "udp", "sctp"), default="tcp")
    p.add_argument("--entry", choices=("pod", "local", "external"),
                   help="where the packet enters (default: follows from --src)")
    p.add_argument("-o", "--output", choices=("text", "json", "dot", "svg", "png"),
                   default="text",
                   help="text (a table), json (TraceResult.to_json()), or a picture of the "
                        "packet's path: dot (Graphviz source), svg or png (need Graphviz `dot`)")
    p.add_argument("--lenient", action="store_true",
                   help="load rules the mock kernel does not implement; packets reaching them "
                        "get an UNKNOWN outcome")
    p.add_argument("--raw", action="store_true",
                   help="the -f files alone are the cluster, read as stored objects "
                        "(kubectl get svc,endpointslices,nodes -A -o yaml): no defaulting, "
                        "validation or allocation, the way kube-proxy sees them")
    p.add_argument("--kernel-probabilities", action="store_true",
                   help="exact kernel arithmetic for 'statistic' probabilities "
                        "(lround(p*2^31)/2^31) instead of kube-proxy's intended 1/k")
    dumps = p.add_argument_group("tracing a real node's dumps")
    dumps.add_argument("--rules", metavar="DUMP", help="iptables-save output ('-' = stdin)")
    dumps.add_argument("--nft", metavar="RULESET", help="nft list ruleset output")
    dumps.add_argument("--ipvs", metavar="SAVE",
                       help="ipvsadm -Sn output (with --ipset), or a whole `kservice render "
                            "--mode ipvs --format all` file (alone)")
    dumps.add_argument("--ipset", metavar="SAVE", help="ipset save output")
    dumps.add_argument("--node-ip", action="append", default=[], metavar="IP",
                       help="a node address (repeatable; the first is the primary)")
    dumps.add_argument("--pod-cidr", action="append", default=[], metavar="CIDR",
                       help="this node's pod CIDR (repeatable)")
    dumps.add_argument("--iface", action="append", default=[], metavar="NAME=ADDR/PREFIX",
                       help="an interface address, e.g. eth0=192.168.0.2/24 (repeatable)")
    dumps.add_argument("--route", action="append", default=[], metavar="CIDR=IFACE",
                       help="an extra route, e.g. 10.244.2.0/24=flannel.1 (repeatable)")
    dumps.add_argument("--jump-rules", choices=("auto", "yes", "no"), default="auto",
                       help="add kube-proxy's jumps from the built-in chains (PREROUTING -> "
                            "KUBE-SERVICES ...); auto: when --rules is a restore payload "
                            "whose built-in chains are empty")
    p.set_defaults(func=cmd_trace)


def parse_endpoint(text: str, *, need_port: bool, what: str) -> tuple[str, int | None]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (a bare IPv6 address has no port)."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise InvalidInput(f"{what} {text!r}: expected [IPv6]:PORT")
        host, rest = text[1:end], text[end + 2:]
        port = _port(rest, what, text) if rest else None
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, what, text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise InvalidInput(f"{what} {text!r}: {host!r} is not an IP address") from None
    if need_port and port is None:
        raise InvalidInput(f"{what} {text!r} needs a port: IP:PORT (or [IPv6]:PORT)")
    return host, port


def _port(text: str, what: str, full: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidInput(f"{what} {full!r}: port must be 1-65535")
    return int(text)


def _read(path: str, what: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                           "is it a dump?") from None
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror or e}") from None


def _node_from_flags(args: argparse.Namespace) -> NodeInfo:
    ifaces: list[tuple[str, str]] = []
    for spec in args.iface:
        name, sep, cidr = spec.partition("=")
        try:
            ipaddress.ip_interface(cidr)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise InvalidInput(f"--iface {spec!r}: expected NAME=ADDR/PREFIX")
        ifaces.append((name, cidr))
    for ip in args.node_ip:
        parse_endpoint(ip, need_port=False, what="--node-ip")
    for cidr in args.pod_cidr:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(f"--pod-cidr {cidr!r} is not a CIDR") from None
    if not args.node_ip and not ifaces:
        stored = _stored_node(args)
        if stored is not None:
            return stored
        raise InvalidInput("tracing a dump needs the node's addresses: --node-ip IP "
                           "(or --iface NAME=ADDR/PREFIX), or --node NAME of a node of the "
                           "stored cluster")
    ips = tuple(args.node_ip) or tuple(c.split("/")[0] for _n, c in ifaces)
    name = args.node or _stored_node_name(args, ips[0]) or ips[0]
    return NodeInfo(name=name, ips=tuple(args.node_ip),
                    pod_cidrs=tuple(args.pod_cidr), interfaces=tuple(ifaces))


def _stored_node(args: argparse.Namespace) -> NodeInfo | None:
    """``--node NAME`` alone: the node as the stored cluster describes it (its addresses,
    pod CIDRs and interfaces, exactly as ``trace --mode`` would see it)."""
    if not args.node:
        return None
    from kservice.cli.state import open_session
    from kservice.proxy.snapshot import node_info_for

    with open_session(getattr(args, "state", None), write=False) as cluster:
        if "Node" not in cluster.kinds or cluster.find("Node", args.node, "") is None:
            return None
        return node_info_for(cluster, args.node)


def _stored_node_name(args: argparse.Namespace, ip: str) -> str | None:
    """The stored cluster's node that has address ``ip`` (the header names the node)."""
    from kservice.cli.state import open_session

    with open_session(getattr(args, "state", None), write=False) as cluster:
        if "Node" not in cluster.kinds:
            return None
        for node in cluster.list("Node"):
            if ip in node.node_ips:
                return str(node.metadata.name)
    return None


def _is_ipvs_all(text: str) -> bool:
    """A ``kservice render --mode ipvs --format all`` file: ``### section`` headers."""
    return text.startswith("### ")


def _routes(args: argparse.Namespace) -> list[tuple[str, str]]:
    out = []
    for spec in args.route:
        cidr, sep, dev = spec.partition("=")
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            sep = ""
        if not sep or not dev:
            raise InvalidInput(f"--route {spec!r}: expected CIDR=IFACE")
        out.append((cidr, dev))
    return out


def _kernel_from_dumps(args: argparse.Namespace, family: str) -> tuple[MockKernel, str]:
    node = _node_from_flags(args)
    kernel = MockKernel(node, lenient=args.lenient,
                        exact_kernel_probabilities=args.kernel_probabilities,
                        routes=_routes(args))
    mode = "iptables"
    ipvs_text: str | None = getattr(args, "ipvs_text", None)
    if ipvs_text is not None and _is_ipvs_all(ipvs_text):
        # A whole `render --mode ipvs --format all` file: the IPVS backend loads it as it
        # loads its own rendering (ipsets, virtual servers, kube-ipvs0 addresses, and the
        # iptables payload with IPVS mode's jump rules from the built-in chains).
        _load_ipvs_all(kernel, ipvs_text, args, node.name, family)
        return kernel, "ipvs"
    if args.ipset:
        from backends.mockkernel.ipset import IPSetStore

        store = IPSetStore()
        store.restore(_read(args.ipset, "--ipset"), source=args.ipset)
        kernel.ipsets = store
    if ipvs_text is not None:
        from backends.mockkernel.ipvs import IPVS

        ipvs = IPVS(kernel.clock)
        ipvs.restore(ipvs_text, source=args.ipvs)
        kernel.ipvs = ipvs
        kernel.register(ipvs)
        # Every virtual address is bound to kube-ipvs0 on a kube-proxy IPVS node.
        for svc in ipvs.services.values():
            kernel.add_local_address(svc.vs.address, "kube-ipvs0")
        mode = "ipvs"
    if args.rules:
        rules_text = _read(args.rules, "--rules")
        kernel.load_iptables_save(rules_text, family, source=args.rules)
        tables = kernel.iptables[6 if family == "IPv6" else 4]
        empty_builtins = all(not c.rules for t in tables.values() for name, c in t.chains.items()
                             if name in BUILTIN_CHAINS[t.name])
        has_kube = "nat" in tables and "KUBE-SERVICES" in tables["nat"].chains
        if args.jump_rules == "yes" or (args.jump_rules == "auto" and empty_builtins and has_kube):
            if mode == "ipvs":
                # IPVS mode ensures its own jumps (KUBE-SERVICES, KUBE-POSTROUTING,
                # KUBE-NODE-PORT via KUBE-SERVICES, KUBE-FORWARD, KUBE-PROXY-FIREWALL,
                # KUBE-IPVS-FILTER...), not iptables mode's.
                from backends.ipvs.backend import full_iptables_save

                kernel.load_iptables_save(full_iptables_save(rules_text), family,
                                          source=args.rules)
            else:
                kernel.install_kube_proxy_jump_rules(family)
            if args.jump_rules == "auto":
                kernel.warnings.append(
                    "the dump's built-in chains are empty (an iptables-restore payload): "
                    f"added kube-proxy's {'IPVS-mode ' if mode == 'ipvs' else ''}jump rules "
                    "(--jump-rules no to disable)")
    if args.nft:
        from backends.mockkernel.nft import nft_apply

        nft_apply(kernel, _read(args.nft, "--nft"), source=args.nft)
        mode = "nftables"
    return kernel, mode


def _load_ipvs_all(kernel: MockKernel, text: str, args: argparse.Namespace, node: str,
                   family: str) -> None:
    from backends.ipvs.formats import split_all
    from kservice.backend import Rendering, get_backend
    from kservice.errors import BackendError

    if args.ipset or args.rules or args.nft:
        raise InvalidInput(f"--ipvs {args.ipvs} is a whole `render --format all` file (it "
                           "holds the ipset and iptables sections): give it alone, without "
                           "--ipset/--rules/--nft")
    try:
        sections = split_all(text)
    except BackendError as exc:
        raise InvalidInput(f"--ipvs {args.ipvs}: {exc}") from None
    rendering = Rendering(backend="ipvs", node=node, family=family,
                          sections=tuple(sections.items()))
    try:
        get_backend("ipvs").load(kernel, rendering)
    except BackendError as exc:
        raise InvalidInput(f"--ipvs {args.ipvs}: {exc}") from None


def _kernel_from_cluster(args: argparse.Namespace, family: str) -> MockKernel:
    from kservice.backend import get_backend
    from kservice.cli.state import open_session
    from kservice.proxy.snapshot import build_node_state

    if not args.node and not (args.raw and args.node_ip):
        raise InvalidInput("--node is required (or trace a dump with --rules/--nft/--ipvs)")
    backend = get_backend(args.mode)
    if args.raw:
        from kservice.cli.commands import raw_node_states

        if not args.filename:
            raise InvalidInput("--raw needs -f FILE (the stored objects to trace)")
        (state,) = raw_node_states(args.filename, args.node, family,
                                   node_ips=args.node_ip, pod_cidrs=args.pod_cidr)
        kernel = MockKernel(state.node, lenient=args.lenient,
                            exact_kernel_probabilities=args.kernel_probabilities)
        backend.load(kernel, backend.render(state))
        return kernel
    # Read-only: -f manifests change the in-memory cluster for this trace only.
    with open_session(getattr(args, "state", None), write=False) as cluster:
        if args.filename:
            from kservice.cli.commands import apply_documents
            from kservice.manifest import load_files

            apply_documents(cluster, load_files(args.filename), None, warn=lambda _m: None)
        if "Node" in cluster.kinds and cluster.find("Node", args.node, "") is None:
            names = ", ".join(n.metadata.name for n in cluster.list("Node")) or "none"
            raise InvalidInput(f"node {args.node!r} not found; nodes: {names}")
        from kservice.cli.commands import check_cluster_family

        check_cluster_family(cluster, family, args.node)
        state = build_node_state(cluster, args.node, family)
    rendering = backend.render(state)
    kernel = MockKernel(state.node, lenient=args.lenient,
                        exact_kernel_probabilities=args.kernel_probabilities)
    backend.load(kernel, rendering)
    return kernel


def cmd_trace(args: argparse.Namespace) -> int:
    src, sport = parse_endpoint(args.src, need_port=False, what="--src")
    dst, dport = parse_endpoint(args.dst, need_port=True, what="--dst")
    if (":" in src) != (":" in dst):
        raise InvalidInput(f"--src {src} and --dst {dst} are of different IP families")
    family = args.family or ("IPv6" if ":" in dst else "IPv4")
    if (family == "IPv6") != (":" in dst):
        raise InvalidInput(f"--family {family} does not match --dst {dst}")
    packet = Packet(src=src, dst=dst, dport=int(dport or 0), sport=sport or 40000,
                    proto=args.proto)
    # Read once: "-" is stdin.
    args.ipvs_text = _read(args.ipvs, "--ipvs") if args.ipvs else None
    if args.ipvs and not args.ipset and not _is_ipvs_all(args.ipvs_text or ""):
        raise InvalidInput("--ipvs needs --ipset too (kube-proxy's IPVS rules match ipsets), "
                           "unless it is a whole `kservice render --mode ipvs --format all` "
                           "file")
    if args.rules or args.nft or args.ipvs:
        kernel, mode = _kernel_from_dumps(args, family)
    else:
        kernel, mode = _kernel_from_cluster(args, family), args.mode
    result = kernel.trace(packet, entry=args.entry, mode=mode)
    if args.output in ("dot", "svg", "png"):
        return _picture(result, args, kernel.warnings)
    if args.output == "json":
        data = result.to_json()
        if kernel.warnings:
            # Only when there are some: without warnings the documented
            # `TraceResult.to_json()` contract is printed unchanged.
            data["warnings"] = list(kernel.warnings)
        print(json.dumps(data, indent=2))
    else:
        origin, iif = kernel.entry_of(src, args.entry)
        where = {"pod": f"a pod on this node (in via {iif})", "local": "this node itself",
                 "external": f"outside the node (in via {iif})"}[origin]
        print(format_text(result, warnings=kernel.warnings, entry=where), end="")
    return 0


def _picture(result: TraceResult, args: argparse.Namespace, warnings: list[str]) -> int:
    """``-o dot|svg|png``: the packet's path drawn by :func:`kservice.graph.trace_to_dot`."""
    from backends.graphviz import emit
    from kservice.graph import nft_base_chains, trace_to_dot

    # nftables chain names do not say which hook a base chain is on; a ruleset file does
    # (kube-proxy's own names do too, which is what the graph falls back to).
    bases = nft_base_chains(_read(args.nft, "--nft")) if args.nft and args.nft != "-" else None
    emit(trace_to_dot(result, base_chains=bases), args.output)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def format_text(result: TraceResult, *, warnings: list[str] | tuple[str, ...] = (),
                entry: str | None = None) -> str:
    """A readable table: one row per outcome, then each outcome's rule path."""
    p = result.packet
    src = f"[{p.src}]" if ":" in p.src else p.src
    dst = f"[{p.dst}]" if ":" in p.dst else p.dst
    lines = [f"node {result.node} ({result.mode}): {p.proto} {src}:{p.sport} -> {dst}:{p.dport}"]
    if entry:
        lines.append(f"from {entry}")
    lines.append("")
    rows = [("#", "PROBABILITY", "", "VERDICT", "DELIVERED TO", "SOURCE SEEN", "MASQ")]
    for i, o in enumerate(result.outcomes, 1):
        rows.append((str(i), str(o.probability), f"{float(o.probability):.4f}", o.verdict,
                     o.delivered_to or "-", o.source_seen or "-", "yes" if o.masqueraded else "no"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for i, o in enumerate(result.outcomes, 1):
        lines.append("")
        lines.append(f"outcome {i} path:")
        lines += [f"  {rule}" for rule in o.rules] or ["  (no rule matched)"]
    for w in warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"
