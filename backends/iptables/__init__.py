"""kube-proxy's iptables mode (v1.34), byte-faithful: restore payloads, partial syncs, saves.

``backend`` (registered as the ``iptables`` entry point) renders a
:class:`~kservice.proxy.types.NodeProxyState` into two sections:

* ``restore`` -- the exact ``iptables-restore --noflush`` payload kube-proxy writes for the
  sync (a KEP-3453 partial sync when ``previous`` is given and only services changed);
* ``save`` -- the node's complete ``iptables-save`` afterwards (built-in chains, the jump
  rules kube-proxy prepends, the canary chains, every kube-proxy chain), in the kernel's
  canonical form, loadable by ``iptables-restore`` as is.

Modules: :mod:`.names` (chain hashing), :mod:`.tables` (fixed structure), :mod:`.context`
(node-level facts), :mod:`.render` (per service port), :mod:`.restore` (payload assembly),
:mod:`.partial` (change tracking, stale chains), :mod:`.apply` (in-memory iptables with
restore semantics), :mod:`.save` (``iptables-save`` form), :mod:`.normalize` (upstream's test
normaliser). The packet flow is drawn in ``README.md``.
"""

from __future__ import annotations

from typing import Any

from backends.iptables.apply import IPTablesState
from backends.iptables.context import RenderContext
from backends.iptables.normalize import check_iptables_rule_jumps, sort_iptables_rules
from backends.iptables.render import PortCache, render_port
from backends.iptables.restore import SyncResult, render_restore
from backends.iptables.save import node_state, render_save, save_rule
from kservice.backend import Rendering
from kservice.proxy.types import NodeProxyState

__all__ = [
    "IPTablesBackend",
    "IPTablesState",
    "PortCache",
    "RenderContext",
    "SyncResult",
    "backend",
    "check_iptables_rule_jumps",
    "node_state",
    "render_port",
    "render_restore",
    "render_save",
    "save_rule",
    "sort_iptables_rules",
]


class IPTablesBackend:
    """The ``iptables`` backend. Keeps a per-service-port render cache between calls."""

    name = "iptables"
    formats: tuple[str, ...] = ("restore", "save")

    def __init__(self) -> None:
        self.cache = PortCache()

    def sync(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> SyncResult:
        """Only the restore payload (what kube-proxy computes on each sync)."""
        return render_restore(state, previous, cache=self.cache)

    def render(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> Rendering:
        result = render_restore(state, previous, cache=self.cache)

        def save() -> str:
            # The node's whole iptables-save needs a full payload; built only when asked
            # for (it costs several times the restore payload at 10k services).
            full = result.text if not result.partial and not result.stale else render_restore(
                state, cache=self.cache
            ).text
            return render_save(node_state(full, state.family))

        return Rendering(
            backend=self.name,
            node=state.node.name,
            family=state.family,
            sections=(("restore", result.text), ("save", save)),
            partial=result.partial,
        )

    def load(self, kernel: Any, rendering: Rendering) -> None:
        """Program the mock kernel with the node's complete ``iptables-save``.

        A save is the whole of each table (built-in chains and jump rules included), so it
        replaces what the kernel had, as ``iptables-restore`` without ``--noflush`` does.
        """
        kernel.load_iptables_save(rendering.section("save"), rendering.family, noflush=False)


backend = IPTablesBackend()
