"""``kservice dns serve|resolve|resolv-conf`` (entry point ``dns-serve`` in ``kservice.commands``).

* ``serve`` runs :class:`~backends.dnsserver.server.DNSServer` on the state file, reloading it
  when another ``kservice`` command changes it;
* ``resolve NAME`` answers as a ClusterFirst pod in ``--namespace`` would (search path,
  ``ndots:5``), without a socket; exit 0 when records came back, 1 otherwise (as ``host``);
* ``resolv-conf`` prints the resolv.conf kubelet writes into a pod of ``--namespace``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

from kservice.errors import InvalidInput

__all__ = ["register"]

QTYPES = ("A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "SOA", "NS")


def _state(args: argparse.Namespace) -> str:
    from kservice.cli.state import default_state_path

    return getattr(args, "state", None) or default_state_path()


def _ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid TTL {text!r}: not an integer") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"TTL {value} is out of range 0..3600 (CoreDNS's)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 0..65535")
    return value


def _serve(args: argparse.Namespace) -> int:
    from backends.dnsserver.server import DNSServer, StateFileProvider

    logging.getLogger("backends.dnsserver").setLevel(logging.INFO)
    provider = StateFileProvider(_state(args))
    provider()  # fail early (and clearly) on an unreadable state file
    server = DNSServer(provider, host=args.bind, port=args.port, ttl=args.ttl,
                       endpoint_pod_names=args.endpoint_pod_names,
                       max_tcp_clients=args.max_tcp_clients)
    try:
        server.start()
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}",
                           hint="pick another --port (53 needs root)") from None
    print(f"kservice dns: serving {provider().config.dns_domain} on {args.bind}:{server.port} "
          f"(udp+tcp), state {_state(args)}; Ctrl-C stops", file=sys.stderr, flush=True)
    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (systemd, kill) stops as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _check_namespace(ns: str) -> None:
    """The asking pod's namespace is a DNS-1123 label (it becomes a search domain)."""
    from kservice.api._names import is_dns1123_label

    errs = is_dns1123_label(ns)
    if errs:
        raise InvalidInput(f'invalid namespace "{ns}": {"; ".join(errs)}')


def _resolve(args: argparse.Namespace) -> int:
    from kservice.cli.state import open_session
    from kservice.dns import DnsOptions, resolve

    _check_namespace(args.namespace)
    with open_session(_state(args), write=False) as cluster:
        opts = DnsOptions.from_config(cluster.config, ttl=args.ttl)
        try:
            ans = resolve(cluster, args.name, args.type, args.namespace, options=opts)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    if args.output == "json":
        print(json.dumps(ans.to_json(), indent=2))
    else:
        print(ans.text())
    return 0 if ans.answer else 1


def _resolv_conf(args: argparse.Namespace) -> int:
    from kservice.cli.state import open_session
    from kservice.dns import pod_dns_config

    _check_namespace(args.namespace)
    with open_session(_state(args), write=False) as cluster:
        try:
            conf = pod_dns_config(cluster.config, args.namespace, dns_policy=args.dns_policy,
                                  host_network=args.host_network)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    sys.stdout.write(conf.text())
    return 0


def register(subparsers: Any) -> None:
    """Add ``kservice dns`` and its subcommands."""
    p = subparsers.add_parser("dns", help="cluster DNS: serve it, or resolve a name as a pod")
    sub = p.add_subparsers(dest="dns_command", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run a DNS server (UDP+TCP) answering from the cluster")
    s.add_argument("--port", type=_port, default=5353, help="port (default 5353; 0 = any)")
    s.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    s.add_argument("--ttl", type=_ttl, default=None,
                   help="record TTL in seconds (default: the cluster's dns_ttl, 30)")
    s.add_argument("--endpoint-pod-names", action="store_true",
                   help="CoreDNS endpoint_pod_names: name endpoints without a hostname "
                        "after their pod")
    s.add_argument("--max-tcp-clients", type=int, default=64,
                   help="concurrent TCP connections (default 64)")
    s.set_defaults(func=_serve)

    r = sub.add_parser("resolve", help="resolve NAME as a ClusterFirst pod would")
    r.add_argument("name", metavar="NAME")
    r.add_argument("-t", "--type", default="A", type=str.upper, choices=QTYPES)
    r.add_argument("-n", "--namespace", default="default",
                   help="the asking pod's namespace (search path)")
    r.add_argument("--ttl", type=_ttl, default=None)
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(func=_resolve)

    c = sub.add_parser("resolv-conf", help="the resolv.conf kubelet writes into a pod")
    c.add_argument("-n", "--namespace", default="default")
    c.add_argument("--dns-policy", default="ClusterFirst",
                   choices=("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
    c.add_argument("--host-network", action="store_true")
    c.set_defaults(func=_resolv_conf)
