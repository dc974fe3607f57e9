"""The ``nftables`` backend object: render a node's state, load it into the mock kernel."""

from __future__ import annotations

import functools
import gc
from typing import Any

from backends.nftables import model, partial, render
from kservice.backend import Rendering, SectionText
from kservice.proxy.types import NodeProxyState

__all__ = ["NFTablesBackend"]


def _quiet_gc(fn: Any, arg: Any) -> str:
    """``fn(arg)`` with the cyclic collector paused (see :meth:`NFTablesBackend.render`)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(arg)  # type: ignore[no-any-return]
    finally:
        if was_enabled:
            gc.enable()


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

    def __init__(self) -> None:
        # Like kube-proxy's proxier, the backend remembers what it rendered last (the last
        # two node states: a partial sync needs the previous one and renders the new one);
        # unchanged port objects reuse their fragments.
        self._desired: list[tuple[NodeProxyState, render.Desired]] = []

    def desired(self, state: NodeProxyState) -> render.Desired:
        """The operations for ``state``, reusing fragments of unchanged ports."""
        for st, d in self._desired:
            if st is state:
                return d
        base = self._desired[-1] if self._desired else None
        d = render.render_desired(state, base)
        self._desired = [*self._desired[-1:], (state, d)]
        return d

    def sync(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> str:
        """Only the ``nft -f`` transaction -- what kube-proxy computes on each sync."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            if previous is None:
                return partial.full_transaction(self.desired(state))
            prev = self.desired(previous)
            return partial.partial_transaction(prev, self.desired(state))
        finally:
            if was_enabled:
                gc.enable()

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
        prev = self.desired(previous) if previous is not None else None
        desired = self.desired(state)
        # Only the transaction is what kube-proxy computes; the listings (and the table
        # model they print) are produced on demand (Rendering runs a section's function on
        # first use).
        table = functools.cache(lambda: model.build_table(desired))
        sections: list[tuple[str, SectionText]] = []
        if prev is None:
            sections.append(("transaction", partial.full_transaction(desired)))
        else:
            sections.append(("transaction", partial.partial_transaction(prev, desired)))
        sections.append(("ruleset", lambda: _quiet_gc(model.list_ruleset, table())))
        sections.append(("dump", lambda: _quiet_gc(model.dump, table())))
        if prev is not None:
            cleanup = partial.stale_chain_cleanup(prev, desired)
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
