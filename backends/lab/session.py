"""The lab as a Python object: build it from an in-memory Cluster, probe it, check it.

:class:`Lab` is what the conformance tests use (the CLI keeps its cluster in the state
file; tests build theirs in memory). Each node's rendering is kept, so a prediction is
always made from exactly the rules the real kernel was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs

from backends.lab import executor, rules
from backends.lab.executor import Executor, Progress, teardown
from backends.lab.plan import LabPlan, _strs, plan_lab, reconcile
from backends.lab.probe import (
    Expectation,
    Observation,
    disagreements,
    expectation,
    packet_for,
    parse_source,
    parse_target,
    probe,
)
from kservice.backend import Rendering
from kservice.cluster import Cluster
from kservice.errors import InvalidInput
from kservice.proxy.types import NodeProxyState
from kservice.trace import Packet, TraceResult

__all__ = ["Attempt", "Check", "Lab", "confirmed_rounds", "rule_counters", "running_lab"]


@attrs.frozen
class Check:
    """One probe held against the mock kernel."""

    lab: str
    mode: str
    source: str
    target: str
    node: str
    packet: Packet
    trace: TraceResult
    expected: Expectation
    observed: Observation
    problems: tuple[str, ...] = attrs.field(converter=_strs)
    #: Earlier rounds of this probe that disagreed (see :meth:`Lab.check`'s ``confirm``),
    #: each with the deciding node's rule counters at the time, oldest first.
    earlier: tuple[Attempt, ...] = ()

    @property
    def agree(self) -> bool:
        return not self.problems

    @property
    def confirmed(self) -> bool:
        """Agreement at the first round (no re-probe was needed)."""
        return self.agree and not self.earlier

    def report(self) -> str:
        lines = [f"lab {self.lab} ({self.mode}): "
                 f"probe {self.source} -> {self.target} (decided on node {self.node}, "
                 f"packet {self.packet.to_json()})",
                 f"  real kernel: {self.observed.to_json()}",
                 f"  order: {' '.join(self.observed.order)}",
                 f"  mock kernel: {self.expected.to_json()}",
                 f"  trace: {[o.to_json() for o in self.trace.outcomes]}",
                 "  disagreements:", *(f"    {p}" for p in self.problems)]
        for i, a in enumerate(self.earlier, 1):
            lines += [f"  round {i} (disagreed too): {a.observed.to_json()}",
                      f"    order: {' '.join(a.observed.order)}",
                      *(f"    {p}" for p in a.problems),
                      "    rule counters on the deciding node after that round:",
                      *(f"      {c}" for c in a.counters or ("(none read)",))]
        return "\n".join(lines)


@attrs.frozen
class Attempt:
    """A round of a probe that disagreed, with what the kernel counted meanwhile."""

    observed: Observation
    problems: tuple[str, ...] = attrs.field(converter=_strs)
    counters: tuple[str, ...] = attrs.field(converter=_strs, default=())


class Lab:
    def __init__(self, plan: LabPlan, mode: str) -> None:
        self.plan = plan
        self.mode = mode
        self.executor = Executor(plan.name)
        self.states: dict[str, NodeProxyState] = {}
        self.renderings: dict[str, Rendering] = {}

    @classmethod
    def up(cls, cluster: Cluster, name: str, mode: str = "iptables",
           progress: Progress | None = None) -> Lab:
        if mode == "userspace":
            raise InvalidInput("the userspace mode runs `kservice proxy`, which reads a state "
                               "file: use `kservice lab up --mode userspace`")
        lab = cls(plan_lab(cluster, name), mode)
        lab._render(cluster)
        executor.build(lab.plan, lab._payloads(), mode=mode, state_path=None,
                       progress=progress or Progress(False))
        return lab

    def _render(self, cluster: Cluster) -> None:
        for node in self.plan.nodes:
            state = rules.node_state(cluster, self.plan, node.name)
            self.states[node.name] = state
            self.renderings[node.name] = rules.render(state, self.mode)

    def _payloads(self) -> dict[str, tuple[str, str]]:
        return {n: (rules.MODES[self.mode][2], rules.load_payload(r, self.mode))
                for n, r in self.renderings.items()}

    def sync(self, cluster: Cluster) -> None:
        """Follow the cluster: add/remove pods, re-render and reload every node's rules."""
        changes = reconcile(self.plan, plan_lab(cluster, self.plan.name))
        if changes.added or changes.removed:
            meta = executor.load_meta(self.plan.name) or {}
            executor.apply_pod_changes(self.executor, meta, changes)
        self.plan = changes.plan
        self._render(cluster)
        executor.load_rules(self.executor, self.plan, self._payloads())

    def down(self) -> None:
        teardown(self.plan.name, executor.load_meta(self.plan.name))

    def probe(self, source: str, target: str, *, count: int = 10, timeout: float = 0.5,
              bind: str | None = None, via: str | None = None) -> Observation:
        dst, port, proto = parse_target(target)
        service_ips = sorted({sp.cluster_ip for st in self.states.values()
                              for sp in st.service_ports if sp.cluster_ip})
        return probe(self.executor, self.plan, parse_source(self.plan, source), dst, port,
                     proto, count=count, timeout=timeout, bind=bind, via=via,
                     service_ips=service_ips)

    def predict(self, source: str, target: str, *, bind: str | None = None,
                via: str | None = None) -> tuple[str, Packet, TraceResult]:
        dst, port, proto = parse_target(target)
        node, packet = packet_for(self.plan, parse_source(self.plan, source), dst, port,
                                  proto, bind=bind, via=via)
        trace = rules.predict_path(self.plan, self.mode, node, packet,
                                   lambda n: (self.states[n].node, self.renderings[n]))
        return node, packet, trace

    def check(self, source: str, target: str, *, count: int = 10, timeout: float = 0.5,
              bind: str | None = None, via: str | None = None, sticky: bool = False,
              confirm: int = 1) -> Check:
        """Probe ``target`` from ``source`` and hold the answers against the mock kernel.

        A disagreement is re-probed up to ``confirm`` more times and stands only if every
        round disagrees: real packets share the machine with everything else it runs, and
        a round can be disturbed by something neither model describes. A real divergence
        is systematic and repeats; the rounds that disagreed are kept in the report with
        the deciding node's rule counters, so a one-off can be diagnosed rather than lost.
        """
        node, packet, trace = self.predict(source, target, bind=bind, via=via)
        exp = expectation(self.plan, trace, parse_target(target)[2])
        if set(exp.shares) == {"timeout"}:
            # Every attempt would wait out its timeout: a few prove the DROP as well.
            count = min(count, 3)
        obs, problems, earlier = confirmed_rounds(
            lambda: self.probe(source, target, count=count, timeout=timeout, bind=bind,
                               via=via),
            exp, confirm=confirm, sticky=sticky, counters=lambda: self.counters(node, trace))
        return Check(self.plan.name, self.mode, source, target, node, packet, trace, exp, obs,
                     problems, earlier)

    def counters(self, node: str, trace: TraceResult) -> tuple[str, ...]:
        return rule_counters(self.executor, self.plan, self.mode, node, trace)


def confirmed_rounds(probe_once: Callable[[], Observation], exp: Expectation, *, confirm: int,
                     sticky: bool = False, counters: Callable[[], tuple[str, ...]] = tuple,
                     ) -> tuple[Observation, list[str], tuple[Attempt, ...]]:
    """Probe until a round agrees or ``confirm`` extra rounds have disagreed too: the last
    observation, its disagreements (empty = agreement) and the earlier disagreeing rounds,
    each with ``counters()`` read right after it."""
    earlier: list[Attempt] = []
    while True:
        obs = probe_once()
        problems = disagreements(obs, exp, sticky=sticky)
        if not problems or len(earlier) >= confirm:
            return obs, problems, tuple(earlier)
        earlier.append(Attempt(obs, problems, counters()))


def rule_counters(ex: Executor, plan: LabPlan, mode: str, node: str,
                  trace: TraceResult) -> tuple[str, ...]:
    """The packet counters of the iptables rules ``trace`` went through on ``node``'s real
    kernel (``iptables-save -c``): which rule the kernel's packets actually took. Empty in
    nftables mode (kube-proxy's rules carry no counters) or if unreadable."""
    if mode != "iptables":
        return ()
    chains = {r.split()[1] for o in trace.outcomes for r in o.rules
              if r.startswith("nat ") and len(r.split()) > 1}
    proc = ex.in_netns(plan.node(node).netns, "iptables-save", "-c", "-t", "nat",
                       why="diagnose a disagreement", check=False)
    return tuple(line for line in proc.stdout.splitlines()
                 if line.startswith("[") and len(line.split()) > 2
                 and line.split()[2] in chains and not line.startswith("[0:0]"))


@contextmanager
def running_lab(cluster: Cluster, name: str, mode: str = "iptables") -> Iterator[Lab]:
    """A lab for the duration of a ``with`` block; always removed afterwards."""
    teardown(name, executor.load_meta(name))  # a leftover of a crashed run
    lab = Lab.up(cluster, name, mode)
    try:
        yield lab
    finally:
        lab.down()
