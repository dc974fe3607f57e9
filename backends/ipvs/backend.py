"""The IPVS-mode :class:`~kservice.backend.Backend`: render sections, load the mock kernel."""

from __future__ import annotations

import gc
import re
from typing import Any

from backends.ipvs.formats import lazy_node_sections, split_all
from backends.ipvs.reconcile import reconcile
from backends.ipvs.render import DUMMY_DEVICE, JUMP_RULES, render_node
from kservice.backend import Rendering
from kservice.errors import BackendError
from kservice.proxy.types import NodeProxyState

__all__ = ["IPVSBackend", "full_iptables_save"]

#: Built-in chains per table, with the ACCEPT policy of a fresh node.
_BUILTINS = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


def _jump_rules(table: str) -> list[str]:
    """The jump rules as they end up after kube-proxy's ``-I`` (prepend) calls: for each
    built-in chain, the last ensured rule is first."""
    per_chain: dict[str, list[str]] = {}
    for t, chain, comment, to, _why in JUMP_RULES:
        if t == table:
            per_chain.setdefault(chain, []).insert(
                0, f'-A {chain} -m comment --comment "{comment}" -j {to}')
    return [rule for chain in _BUILTINS[table] for rule in per_chain.get(chain, [])]


def full_iptables_save(restore: str) -> str:
    """kube-proxy's restore payload plus the built-in chains and their jump rules: the
    whole ``nat`` and ``filter`` tables of a node that runs only kube-proxy."""
    out: list[str] = []
    table = ""
    for line in restore.splitlines():
        if line.startswith("*"):
            table = line[1:]
            out.append(line)
            out.extend(f":{c} ACCEPT [0:0]" for c in _BUILTINS.get(table, ()))
            continue
        if line.startswith("-A") and out and out[-1].startswith(":"):
            out.extend(_jump_rules(table))
        if line == "COMMIT" and out and out[-1].startswith(":"):
            out.extend(_jump_rules(table))
        out.append(line)
    return "\n".join(out) + "\n"


_INET = re.compile(r"^\s+inet6?\s+([0-9a-fA-F:.]+)/\d+")


class IPVSBackend:
    """kube-proxy ``--proxy-mode=ipvs``."""

    name = "ipvs"
    formats = ("all", "commands", "save", "list", "ipset", "iptables", "addr")

    def render(self, state: NodeProxyState, previous: NodeProxyState | None = None) -> Rendering:
        # A 10k-service node allocates ~10^6 small acyclic objects: the cyclic collector
        # would walk them again and again for nothing, so it is paused while rendering
        # (this is what made the full render flaky under load). The listings are lazy
        # (:func:`~backends.ipvs.formats.lazy_node_sections`).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            node = render_node(state)
            prev = render_node(previous) if previous is not None else None
            plan = reconcile(prev, node, state.config.ipvs.exclude_cidrs)
            commands = plan.text()
        finally:
            if was_enabled:
                gc.enable()
        return Rendering(
            backend=self.name, node=state.node.name, family=state.family,
            sections=lazy_node_sections(node, commands), partial=previous is not None,
        )

    def load(self, kernel: Any, rendering: Rendering) -> None:
        """Program ``kernel``: iptables tables, ipsets, the IPVS table, kube-ipvs0 addresses."""
        from backends.mockkernel.ipset import IPSetStore
        from backends.mockkernel.ipvs import IPVS

        names = rendering.names
        sections: dict[str, str] = dict(rendering.texts())
        if "save" not in names and "all" in names:
            sections = split_all(rendering.section("all"))
        for needed in ("iptables", "ipset", "save", "addr"):
            if needed not in sections:
                raise BackendError(f"ipvs rendering lacks the {needed!r} section")

        store = getattr(kernel, "ipsets", None)
        if not isinstance(store, IPSetStore):
            store = IPSetStore()
        for line in sections["ipset"].splitlines():
            if line.startswith("create "):
                store.sets.pop(line.split()[1], None)
        store.restore(sections["ipset"], source="ipset section")
        kernel.ipsets = store

        ipvs = getattr(kernel, "ipvs", None)
        if isinstance(ipvs, IPVS):
            # A later sync on the same kernel: change only what differs, as kube-proxy's
            # reconciliation does, so persistence templates and connections survive.
            ipvs.sync_to(sections["save"], source="ipvsadm -Sn section")
        else:
            ipvs = IPVS(getattr(kernel, "clock", None))
            ipvs.restore(sections["save"], source="ipvsadm -Sn section")
        kernel.ipvs = ipvs
        try:
            kernel.unregister(ipvs.name)
        except Exception:  # not registered yet
            pass
        kernel.register(ipvs)

        for line in sections["addr"].splitlines():
            m = _INET.match(line)
            if m:
                kernel.add_local_address(m.group(1), DUMMY_DEVICE)

        kernel.load_iptables_save(full_iptables_save(sections["iptables"]), rendering.family)
