"""The userspace mode in the lab: the real proxy in each node namespace, and its rules.

The real proxy (:mod:`backends.userspace.proxier`, run as ``kservice proxy --mode userspace
--bind 0.0.0.0 -o json``) binds kernel-chosen ports, as upstream did with an empty
``--proxy-port-range``; the rendering (:func:`backends.userspace.render.plan_node`) numbers
them deterministically from 32768. :func:`rules_for` renders the node's plan and moves every
proxy port to the one the running proxy reported, so the kernel's REDIRECT/DNAT rules point
at the real sockets. Predictions (the mock kernel's local proxy) use the rendered ports;
agreement compares pods and sources, never proxy ports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from kservice.errors import BackendError
from kservice.proxy.types import NodeProxyState

__all__ = ["listening_from_log", "proxy_argv", "rules_for"]


def proxy_argv(python: str, state: str | None, files: list[str] | None, node: str) -> list[str]:
    argv = [python, "-c", "import sys; from kservice.cli import main; sys.exit(main(sys.argv[1:]))"]
    if state:
        argv += ["--state", state]
    argv += ["proxy", "--mode", "userspace", "--node", node, "--bind", "0.0.0.0", "-o", "json"]
    for f in files or []:
        argv += ["-f", f]
    return argv


def listening_from_log(log: Path) -> list[dict[str, Any]] | None:
    """The last ``{"listening": [...]}`` line the proxy printed, if any yet."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith('{"listening"'):
            try:
                return list(json.loads(line)["listening"])
            except (ValueError, KeyError):
                continue
    return None


def rules_for(state: NodeProxyState, listening: list[dict[str, Any]]) -> str:
    """The node's userspace iptables-save with the running proxy's ports."""
    from backends.userspace.render import iptables_save, plan_node

    plan = plan_node(state)
    actual = {(x["service"], x["protocol"]): int(x["port"]) for x in listening}
    port_map: dict[int, int] = {}
    for e in plan.entries:
        got = actual.get((e.name, e.protocol))
        if got is None:
            raise BackendError(f"the userspace proxy on {state.node.name} does not listen "
                               f"for {e.name} ({e.protocol})")
        port_map[e.proxy_port] = got
    rules = []
    for r in plan.rules:
        if r.target == "REDIRECT":
            r = attrs.evolve(r, to=str(port_map.get(int(r.to), int(r.to))))
        elif r.target == "DNAT":
            host, _, port = r.to.rpartition(":")
            r = attrs.evolve(r, to=f"{host}:{port_map.get(int(port), int(port))}")
        elif r.dport in port_map and "NON-LOCAL" in r.chain:
            r = attrs.evolve(r, dport=port_map[r.dport])
        rules.append(r)
    return iptables_save(attrs.evolve(plan, rules=tuple(rules)))
