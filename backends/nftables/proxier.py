"""The ``nftables`` backend object: render a node's state, load it into the mock kernel."""

from __future__ import annotations

import gc
from typing import Any

from backends.nftables import model, partial, render
from kservice.backend import Rendering
from kservice.proxy.types import NodeProxyState

__all__ = ["NFTablesBackend"]


class NFTablesBackend:
    """kube-proxy's nftables mode (v1.34 shape).

    Sections of a rendering:

    * ``transaction`` -- the ``nft -f`` input kube-proxy sends for this sync (a full sync,
      or with ``previous`` a partial one);
    * ``ruleset`` -- ``nft list ruleset`` after the sync;
    * ``dump`` -- knftables' fake ``Dump()`` of the table (what upstream's golden tests hold);
    * ``cleanup`` (partial syncs that leave stale chains) -- the later transaction deleting
      the chains this sync flushed.
    """

    name = "nftables"
    formats = ("transaction", "ruleset", "dump")

    def render(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> Rendering:
        # A large sync allocates ~10^6 small acyclic objects; the cyclic collector would
        # repeatedly walk them for nothing, so it is paused while rendering.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._render(state, previous)
        finally:
            if was_enabled:
                gc.enable()

    def _render(self, state: NodeProxyState, previous: NodeProxyState | None) -> Rendering:
        desired = render.render_desired(state)
        table = model.build_table(desired)
        sections: list[tuple[str, str]] = []
        if previous is None:
            sections.append(("transaction", partial.full_transaction(desired)))
        else:
            prev = render.render_desired(previous)
            sections.append(("transaction", partial.partial_transaction(prev, desired)))
        sections.append(("ruleset", model.list_ruleset(table)))
        sections.append(("dump", model.dump(table)))
        if previous is not None:
            cleanup = partial.stale_chain_cleanup(render.render_desired(previous), desired)
            if cleanup:
                sections.append(("cleanup", cleanup))
        return Rendering(
            backend=self.name, node=state.node.name, family=state.family,
            sections=tuple(sections), partial=previous is not None,
        )

    def load(self, kernel: Any, rendering: Rendering) -> None:
        """Run the transaction (and any cleanup) through the mock kernel's ``nft -f``."""
        from backends.mockkernel.nft import nft_apply

        nft_apply(kernel, rendering.section("transaction"), source="transaction")
        if "cleanup" in rendering.names:
            nft_apply(kernel, rendering.section("cleanup"), source="cleanup")
