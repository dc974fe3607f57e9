"""The iptables backend object: entry point, sections, partial renderings, and the shared
backend contract (determinism, loads into the mock kernel, agrees with the reference
semantics)."""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.iptables import IPTablesBackend, backend, render_restore
from kservice.backend import Backend, get_backend
from kservice.proxy.types import NodeProxyState
from kservice.testing.dataplane import node_proxy_states


def test_entry_point_and_protocol() -> None:
    assert get_backend("iptables") is backend or isinstance(get_backend("iptables"), IPTablesBackend)
    assert isinstance(backend, Backend)
    assert backend.formats[0] == "restore"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=st.lists(node_proxy_states(max_services=3), min_size=2, max_size=2))
def test_partial_rendering_has_the_full_save(states: list[NodeProxyState]) -> None:
    before = states[0]
    after = attrs.evolve(before, service_ports=states[1].service_ports)
    b = IPTablesBackend()
    b.render(before)
    partial = b.render(after, before)
    full = IPTablesBackend().render(after)
    assert partial.partial and not full.partial
    assert partial.section("save") == full.section("save")
    assert partial.section("restore") == render_restore(after, before).text
