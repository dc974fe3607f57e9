"""``kservice proxy --mode userspace``: run the legacy userspace proxy for one node, for real.

The node's state is built from the stored cluster (plus ``-f`` manifests applied to a
throwaway copy, as ``kservice render`` does) with
:func:`kservice.proxy.snapshot.build_node_state`; the proxy then listens on ``--bind`` at
kernel-chosen ports, one per TCP/UDP service port, and dials the endpoints' addresses
(``--endpoint-override`` points a cluster address at a reachable one). The state file is
re-read when it changes (every ``--sync-period``), like kube-proxy's periodic sync.

Every applied update prints where the proxies listen: a table, or with ``-o json`` one line
``{"listening": [{"service": "default/rr:p", "protocol": "TCP", "address": "127.0.0.1",
"port": 40123}, ...]}``. Ctrl-C (or ``--duration``) stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from kservice.errors import InvalidInput
from kservice.proxy.types import NodeProxyState

__all__ = ["cmd_proxy", "format_listening", "load_state", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "proxy",
        help="run kube-proxy's legacy userspace proxy for a node on real sockets",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  kservice proxy --mode userspace --node node-1 -o json\n"
               "  kservice proxy --mode userspace --node node-1 --bind 127.0.0.1 \\\n"
               "      --endpoint-override 10.244.1.5:8080=127.0.0.1:9000",
    )
    p.add_argument("--mode", choices=("userspace",), default="userspace",
                   help="proxy mode (only the userspace mode proxies in-process)")
    p.add_argument("-f", "--filename", action="append", default=None, metavar="FILE",
                   help="manifests applied on top of the stored cluster (nothing is stored)")
    p.add_argument("-n", "--namespace", default=None, help="namespace for -f objects")
    p.add_argument("--node", help="the node whose view to proxy (default: the first node)")
    p.add_argument("--family", choices=("IPv4", "IPv6"),
                   help="IP family (default: the cluster's primary)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="address the proxy sockets listen on (default 127.0.0.1; upstream "
                        "used --bind-address, typically 0.0.0.0)")
    p.add_argument("--udp-timeout", type=float, default=0.25, metavar="SECONDS",
                   help="idle timeout of a UDP session (upstream --udp-timeout, default 0.25)")
    p.add_argument("--endpoint-override", action="append", default=[], metavar="IP:PORT=HOST:PORT",
                   help="dial HOST:PORT instead of the endpoint IP:PORT (repeatable)")
    p.add_argument("--sync-period", type=float, default=1.0, metavar="SECONDS",
                   help="how often the state file is checked for changes (default 1)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this long (default: run until interrupted)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_proxy)


def _split_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{what} {text!r}: expected IP:PORT (or [IPv6]:PORT)")
    return host, int(port)


def parse_overrides(specs: list[str]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for spec in specs:
        old, sep, new = spec.partition("=")
        if not sep:
            raise InvalidInput(f"--endpoint-override {spec!r}: expected IP:PORT=HOST:PORT")
        oh, op = _split_hostport(old, "--endpoint-override")
        key = f"[{oh}]:{op}" if ":" in oh else f"{oh}:{op}"
        out[key] = _split_hostport(new, "--endpoint-override")
    return out


def load_state(args: argparse.Namespace) -> NodeProxyState:
    """The node's state from the stored cluster plus ``-f`` files (nothing is stored)."""
    from kservice.cli.commands import apply_documents
    from kservice.cli.state import open_session
    from kservice.manifest import load_files
    from kservice.proxy.snapshot import build_node_state

    with open_session(getattr(args, "state", None), write=False) as cluster:
        if args.filename:
            apply_documents(cluster, load_files(args.filename), args.namespace)
        nodes = ([n.metadata.name for n in cluster.list("Node")]
                 if "Node" in cluster.kinds else [])
        if args.node:
            if nodes and args.node not in nodes:
                raise InvalidInput(f'node "{args.node}" not found; nodes: {", ".join(nodes)}')
            node = args.node
        elif nodes:
            node = nodes[0]
        else:
            raise InvalidInput("the cluster has no nodes; pass --node NAME")
        family = args.family or cluster.config.families[0]
        return build_node_state(cluster, node, family)


def format_listening(listening: Any, output: str) -> str:
    if output == "json":
        return json.dumps({"listening": [x.to_json() for x in listening]}) + "\n"
    rows = [("SERVICE", "PROTOCOL", "ADDRESS", "PORT")]
    rows += [(x.service, x.protocol, x.address, str(x.port)) for x in listening]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                   for r in rows)


def _state_mtime(args: argparse.Namespace) -> float | None:
    from kservice.cli.state import default_state_path

    path = getattr(args, "state", None) or default_state_path()
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def cmd_proxy(args: argparse.Namespace) -> int:
    from backends.userspace.proxier import Proxier

    overrides = parse_overrides(args.endpoint_override)
    if args.udp_timeout <= 0:
        raise InvalidInput("--udp-timeout must be greater than 0")
    if args.sync_period <= 0:
        raise InvalidInput("--sync-period must be greater than 0")
    state = load_state(args)

    def resolve(_service: str, endpoint: str) -> tuple[str, int]:
        if endpoint in overrides:
            return overrides[endpoint]
        host, _, port = endpoint.rpartition(":")
        return host.strip("[]"), int(port)

    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (in-process callers)
            pass
    proxier = Proxier(bind=args.bind, udp_timeout=args.udp_timeout, resolve_endpoint=resolve)
    try:
        proxier.start()
        sys.stdout.write(format_listening(proxier.update(state), args.output))
        sys.stdout.flush()
        mtime = _state_mtime(args)
        waited = 0.0
        while not stop.is_set():
            step = args.sync_period
            if args.duration is not None:
                step = min(step, max(args.duration - waited, 0.0))
                if waited >= args.duration:
                    break
            stop.wait(step)
            waited += step
            now = _state_mtime(args)
            if now != mtime:
                mtime = now
                new = load_state(args)
                if new != state:
                    state = new
                    sys.stdout.write(format_listening(proxier.update(state), args.output))
                    sys.stdout.flush()
    finally:
        proxier.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
