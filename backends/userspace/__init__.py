"""kube-proxy's legacy userspace mode (removed upstream in v1.26), for teaching and comparison.

* :mod:`~backends.userspace.render` -- the iptables rules (KUBE-PORTALS-*, KUBE-NODEPORT-*)
  and the proxy table of a :class:`~kservice.proxy.types.NodeProxyState` (pure);
* :mod:`~backends.userspace.loadbalancer` -- ``LoadBalancerRR`` (pure);
* :mod:`~backends.userspace.mock` -- the proxy as a socket owner in the mock kernel;
* :mod:`~backends.userspace.proxier` -- a real proxy on sockets (asyncio in a thread);
* :mod:`~backends.userspace.cli` -- ``kservice proxy --mode userspace``.

See ``README.md`` here for the packet flow and ``docs/divergences-userspace.md`` for how the
mode differs from what current Kubernetes promises.
"""

from __future__ import annotations

from typing import Any

from backends.userspace.loadbalancer import DEFAULT_AFFINITY_TTL, LoadBalancerRR
from backends.userspace.render import (
    DEFAULT_PROXY_PORT_BASE,
    ProxyEntry,
    UserspaceOptions,
    UserspacePlan,
    plan_node,
    proxy_endpoints,
    render_sections,
)
from kservice.backend import Rendering
from kservice.proxy.types import NodeProxyState

__all__ = [
    "DEFAULT_AFFINITY_TTL",
    "DEFAULT_PROXY_PORT_BASE",
    "LoadBalancerRR",
    "ProxyEntry",
    "UserspaceBackend",
    "UserspaceOptions",
    "UserspacePlan",
    "backend",
    "plan_node",
    "proxy_endpoints",
]


class UserspaceBackend:
    """kube-proxy ``--proxy-mode=userspace`` (v1.22-v1.25 behaviour)."""

    name = "userspace"
    #: ``iptables``: iptables-save of the node; ``commands``: the iptables calls;
    #: ``proxy``: service port -> proxy socket -> endpoints; ``json``: the same, machine-readable.
    formats = ("iptables", "commands", "proxy", "json")

    def __init__(self, options: UserspaceOptions | None = None) -> None:
        self.options = options or UserspaceOptions()

    def plan(self, state: NodeProxyState) -> UserspacePlan:
        return plan_node(state, self.options)

    def render(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> Rendering:
        # The userspace proxier has no partial sync: rules are ensured one by one, so a
        # rendering is always the whole node (``previous`` is accepted and ignored).
        plan = plan_node(state, self.options)
        return Rendering(backend=self.name, node=state.node.name, family=state.family,
                         sections=render_sections(plan), partial=False)

    def load(self, kernel: Any, rendering: Rendering) -> None:
        from backends.userspace.mock import load

        load(kernel, rendering)


#: The entry point ``kservice.backends: userspace``.
backend = UserspaceBackend()
