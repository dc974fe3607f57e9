"""The contract every dataplane backend passes (built-in and third-party alike).

A backend's test module subclasses :class:`BackendContract`, names the backend and the mock
kernel to load it into, and inherits the checks::

    from backends.mockkernel import MockKernel
    from kservice.testing.contract import BackendContract

    class TestMyBackend(BackendContract):
        backend_name = "mybackend"
        kernel_factory = MockKernel

The checks: rendering is deterministic (same state, same bytes); every rendering loads into
the mock kernel; and for generated node states and probe packets the traced outcome
distribution equals the reference semantics (:mod:`kservice.semantics`) -- same outcome set,
same exact shares, same masquerade decision -- except where :meth:`allowed_divergence` says the
upstream mode really differs. A failure prints a reproducer: the state as YAML-ish text and the
packet, plus the manifests (:mod:`kservice.testing.repro`) and the ``kservice trace`` command
line that replay it.

Hooks a subclass may override: :meth:`states` / :meth:`probes` (what is drawn),
:meth:`same` (how results compare), :meth:`allowed_divergence`.

What is drawn by default is the richer pair :func:`kservice.testing.strategies.node_states` /
:func:`~kservice.testing.strategies.probe_packets` (dual-stack nodes, nodePortAddresses,
localhost NodePorts, every detect-local mode, multi-port Services, LB source ranges), so every
backend -- built-in or third-party -- is held to the same, widest set of situations.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import given, note
from hypothesis import strategies as st

from kservice.backend import Backend, get_backend
from kservice.proxy.types import NodeProxyState
from kservice.semantics import expected_trace
from kservice.testing.repro import repro_yaml
from kservice.testing.strategies import node_states, probe_packets
from kservice.trace import Packet, TraceResult

__all__ = ["BackendContract", "describe_state"]


def describe_state(state: NodeProxyState) -> str:
    """A compact, readable dump of a node state for failure reports."""
    lines = [f"node {state.node.name} {state.family} ips={list(state.node.ips)} "
             f"podCIDRs={list(state.node.pod_cidrs)} clusterCIDR={state.config.cluster_cidr!r} "
             f"detectLocal={state.config.detect_local_mode} "
             f"masqueradeAll={state.config.iptables.masquerade_all} "
             f"nodePortAddresses={list(state.config.node_port_addresses)} "
             f"localhostNodePorts={state.config.iptables.localhost_node_ports}"]
    for sp in state.service_ports:
        lines.append(
            f"- {sp.name} {sp.protocol} {sp.cluster_ip}:{sp.port} nodePort={sp.node_port} "
            f"externalIPs={list(sp.external_ips)} lb={list(sp.load_balancer_vips)} "
            f"sourceRanges={list(sp.load_balancer_source_ranges)} "
            f"affinity={sp.session_affinity_timeout} etpLocal={sp.external_policy_local} "
            f"itpLocal={sp.internal_policy_local}"
        )
        for ep in sp.endpoints:
            lines.append(
                f"    {ep.string} local={ep.is_local} ready={ep.ready} serving={ep.serving} "
                f"terminating={ep.terminating}"
            )
    return "\n".join(lines)


class BackendContract:
    """Subclass with ``backend_name`` and ``kernel_factory`` set."""

    backend_name: ClassVar[str] = ""
    #: ``Callable[[NodeInfo], kernel]``: usually ``backends.mockkernel.MockKernel``.
    kernel_factory: ClassVar[Any] = None
    #: Families the backend supports.
    families: ClassVar[tuple[str, ...]] = ("IPv4", "IPv6")

    # ----------------------------------------------------------------- hooks
    def get(self) -> Backend:
        return get_backend(self.backend_name)

    def trace(self, state: NodeProxyState, packet: Packet) -> TraceResult:
        assert self.kernel_factory is not None, "set kernel_factory on the contract subclass"
        backend = self.get()
        kernel = self.kernel_factory(state.node)
        backend.load(kernel, backend.render(state))
        result: TraceResult = kernel.trace(packet)
        return result

    def allowed_divergence(
        self, state: NodeProxyState, packet: Packet, expected: TraceResult, actual: TraceResult
    ) -> str | None:
        """Name the documented upstream divergence that explains a mismatch, or ``None``."""
        return None

    def states(self) -> st.SearchStrategy[NodeProxyState]:
        """The node states the checks draw (default: :func:`.strategies.node_states`)."""
        return node_states(families=st.sampled_from(self.families))

    def probes(self, state: NodeProxyState) -> st.SearchStrategy[Packet]:
        """The packets the agreement check draws for ``state`` (default: every frontend from
        every origin, :func:`~kservice.testing.strategies.probe_packets`)."""
        return probe_packets(state)

    def same(self, expected: TraceResult, actual: TraceResult) -> bool:
        """Agreement: the same outcome distribution (exact by default)."""
        return actual.distribution() == expected.distribution()

    def failure_message(self, state: NodeProxyState, packet: Packet, expected: TraceResult,
                        actual: TraceResult) -> str:
        """What a disagreement prints: both distributions, the state and a reproducer."""
        return (
            f"{self.backend_name} disagrees with the reference for {packet}:\n"
            f"expected {expected.distribution()}\nactual   {actual.distribution()}\n"
            + describe_state(state) + "\n--- reproducer (save as repro.yaml) ---\n"
            + repro_yaml(state, packet, self.backend_name)
        )

    # ----------------------------------------------------------------- checks
    @given(data=st.data())
    def test_render_is_deterministic(self, data: st.DataObject) -> None:
        state = data.draw(self.states())
        backend = self.get()
        assert backend.render(state) == backend.render(state)

    @given(data=st.data())
    def test_rendering_loads_into_the_mock_kernel(self, data: st.DataObject) -> None:
        state = data.draw(self.states())
        assert self.kernel_factory is not None
        kernel = self.kernel_factory(state.node)
        self.get().load(kernel, self.get().render(state))

    @given(data=st.data())
    def test_agrees_with_the_reference_semantics(self, data: st.DataObject) -> None:
        state = data.draw(self.states())
        packet = data.draw(self.probes(state))
        expected = expected_trace(state, packet)
        actual = self.trace(state, packet)
        if self.same(expected, actual):
            return
        if self.allowed_divergence(state, packet, expected, actual):
            return
        note(f"packet: {packet}")
        note("expected: " + expected.dumps())
        note("actual:   " + actual.dumps())
        raise AssertionError(self.failure_message(state, packet, expected, actual))
