"""``kservice ingress route`` and ``kservice proxy-url`` (entry point group ``kservice.commands``).

* ``ingress route [NAME] --host H --path P`` -- which rule, Service and ready endpoints a
  request reaches (:func:`kservice.ingress.route`); no route -> a clear error, exit 1.
* ``proxy-url /api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH`` -- the
  upstream URL the apiserver's service proxy forwards to
  (:func:`kservice.serviceproxy.proxy_url`); refusals print as kubectl prints a Status
  (``Error from server (ServiceUnavailable): ...``) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "register_ingress", "register_proxy_url"]

_HTTP_TEXT = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 404: "Not Found",
              503: "Service Unavailable"}


def _state(args: argparse.Namespace) -> str:
    from kservice.cli.state import default_state_path

    return getattr(args, "state", None) or default_state_path()


def _route(args: argparse.Namespace) -> int:
    from kservice.cli.state import open_session
    from kservice.ingress import NoRoute, route

    with open_session(_state(args), write=False) as cluster:
        try:
            r = route(cluster, args.host, args.path, args.name, namespace=args.namespace,
                      ingress_class=args.ingress_class)
        except NoRoute as exc:
            if args.output == "json":
                print(json.dumps({"error": str(exc)}, indent=2))
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.output == "json":
        print(json.dumps(r.to_json(), indent=2))
        return 0
    where = "defaultBackend" if r.default_backend else (
        f"host {r.host or '*'} path {r.path or '(any)'} ({r.path_type})")
    print(f"ingress:   {r.ingress} ({where})")
    if r.service_name is not None:
        print(f"service:   {r.service_name}:{r.service_port}")
    if r.resource is not None:
        print(f"resource:  {r.resource}")
    print(f"endpoints: {', '.join(r.endpoints) if r.endpoints else '<none>'}")
    if r.note:
        print(f"note:      {r.note}")
    return 0


def _proxy_url(args: argparse.Namespace) -> int:
    import random

    from kservice.cli.state import open_session
    from kservice.serviceproxy import proxy_url

    with open_session(_state(args), write=False) as cluster:
        rng = random.Random(cluster.config.seed if args.seed is None else args.seed)
        res = proxy_url(cluster, args.request, method=args.method, rng=rng)
    if args.output == "json":
        print(json.dumps(res.to_json(), indent=2))
    elif res.status == 200:
        print(res.url)
    elif res.status == 301:
        print(f"HTTP 301 {_HTTP_TEXT[301]}\nLocation: {res.location}")
    if res.status >= 400:
        if args.output != "json":
            print(f"Error from server ({res.reason}): {res.message}", file=sys.stderr)
        return 1
    return 0


def register_ingress(subparsers: Any) -> None:
    p = subparsers.add_parser("ingress", help="Ingress routing")
    sub = p.add_subparsers(dest="ingress_command", metavar="SUBCOMMAND")
    sub.required = True
    r = sub.add_parser("route", help="which backend and endpoints a request reaches")
    r.add_argument("name", metavar="NAME", nargs="?", default=None,
                   help="only this Ingress (NAME or NAMESPACE/NAME); default: all, merged")
    r.add_argument("--host", required=True, help="the request's Host header")
    r.add_argument("--path", default="/", help="the request path (default /)")
    r.add_argument("-n", "--namespace", default=None)
    r.add_argument("--class", dest="ingress_class", default=None, metavar="CLASS",
                   help="only Ingresses of this class (one controller's view)")
    r.add_argument("-o", "--output", choices=("text", "json"), default="text")
    r.set_defaults(func=_route)


def register_proxy_url(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "proxy-url", help="the upstream URL of an apiserver service-proxy request")
    p.add_argument("request", metavar="PATH",
                   help="/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH")
    p.add_argument("-X", "--method", default="GET", type=str.upper,
                   choices=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the random endpoint choice (default: the cluster's)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=_proxy_url)


def register(subparsers: Any) -> None:
    """Add ``ingress`` and ``proxy-url``."""
    register_ingress(subparsers)
    register_proxy_url(subparsers)
