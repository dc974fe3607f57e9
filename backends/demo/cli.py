"""The ``kservice demo`` subcommand (a ``kservice.commands`` plugin)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backends.demo.walkthrough import run

__all__ = ["cmd_demo", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="walk through the seed note's cluster: services, DNS, rules, packets",
        description="Apply docs/examples/ to a throwaway in-memory cluster and show, one step\n"
                    "at a time: get svc, get endpoints, DNS answers, the iptables and IPVS\n"
                    "rules of one Service, packet traces (pod -> ClusterIP, outside client ->\n"
                    "NodeIP:NodePort -> pod, session affinity before/after, LoadBalancer\n"
                    "source ranges) and Ingress routes. Deterministic; your state file is\n"
                    "not touched.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--examples", metavar="DIR",
                   help="the manifests to apply (default: docs/examples)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the sampled connections (default 1)")
    p.add_argument("--state", default=argparse.SUPPRESS, metavar="PATH",
                   help="ignored: the demo always runs on a throwaway cluster")
    p.set_defaults(func=cmd_demo, command="demo")


def cmd_demo(args: argparse.Namespace) -> int:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    facts = run(write, examples=Path(args.examples) if args.examples else None,
                seed=args.seed)
    # Timing goes to stderr so that stdout stays byte-for-byte reproducible.
    sys.stderr.write(f"kservice demo: {facts.seconds:.2f} s\n")
    return 0
