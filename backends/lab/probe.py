"""Probing the lab with real packets, and holding the answers against the mock kernel's.

:func:`probe` runs the agent's client inside the source's namespace and returns an
:class:`Observation` (pods that answered, how often, the source each saw; refused and timed
out attempts). :func:`packet_for` says which node's kernel decides the probe's fate and
which packet it sees there, so :func:`expectation` can turn the mock kernel's
:class:`~kservice.trace.TraceResult` for that packet into the same vocabulary, and
:func:`disagreements` compares the two: the set of pods, the shares (a chi-square test
with a generous threshold), REJECT as "refused", DROP as "timeout", and the source seen.
"""

from __future__ import annotations

import ipaddress
import json
import math
import sys
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import attrs

from backends.lab.executor import AGENT, Executor
from backends.lab.plan import Command, LabPlan
from kservice.errors import BackendError, InvalidInput
from kservice.trace import Packet, TraceResult

__all__ = ["Expectation", "Observation", "Source", "check_bind", "chi_square_p", "disagreements",
           "expectation", "lab_addresses", "packet_for", "parse_source", "parse_target", "probe",
           "validate_probe_args"]

REFUSED = "refused"
TIMEOUT = "timeout"
#: Connected, then EOF without an answer (the agent's "closed").
CLOSED = "closed"
#: A chi-square p-value below this fails, and a predicted class never seen fails when its
#: chance of being missed was below it. Generous: about fifty checks per kernel-suite run
#: keep a false alarm below 1e-3 per run, while a wrong set of pods or a lost endpoint is
#: far below it.
P_THRESHOLD = 1e-5


@attrs.frozen
class Source:
    kind: str  # pod | node | external
    netns: str
    ip: str
    #: The node whose kernel sees the packet first (None for external until routed).
    node: str | None
    label: str


def parse_source(plan: LabPlan, text: str) -> Source:
    kind, _, rest = text.partition("/")
    if kind == "pod" and rest:
        pod = plan.pod(rest)
        node = plan.node(pod.node)
        return Source("pod", pod.netns, node.ip if pod.host_network else pod.ip, pod.node,
                      f"pod/{pod.ref}")
    if kind == "node" and rest:
        node = plan.node(rest)
        return Source("node", node.netns, node.ip, node.name, f"node/{node.name}")
    if text == "external":
        return Source("external", plan.external.netns, plan.external.ip, None, "external")
    raise InvalidInput(f"--from {text!r}: expected pod/NAMESPACE/NAME, node/NAME or external")


def parse_target(text: str) -> tuple[str, int, str]:
    """``IP:PORT[/proto]`` -> (ip, port, proto)."""
    body, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise InvalidInput(f"--to {text!r}: protocol must be tcp or udp (the lab's client "
                           "speaks no SCTP)")
    host, sep, port = body.rpartition(":")
    try:
        ip = str(ipaddress.IPv4Address(host))
    except ValueError:
        raise InvalidInput(f"--to {text!r}: expected IPv4:PORT[/tcp|udp]") from None
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--to {text!r}: port must be 1-65535")
    return ip, int(port), proto


@attrs.frozen
class Observation:
    attempts: int
    answers: dict[str, int]
    sources: dict[str, dict[str, int]]
    refused: int
    timeout: int
    other: dict[str, int]
    order: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Outcome class -> count: ``pod:NS/NAME``, ``refused``, ``timeout``, others."""
        out = {f"pod:{k}": v for k, v in self.answers.items()}
        if self.refused:
            out[REFUSED] = self.refused
        if self.timeout:
            out[TIMEOUT] = self.timeout
        out.update(self.other)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "answers": self.answers, "sources": self.sources,
                "refused": self.refused, "timed_out": self.timeout, "other": self.other}


#: The agent clamps each attempt's timeout to this (``agent.MAX_TIMEOUT``); a larger value
#: would silently be shortened, so it is refused here instead.
MAX_TIMEOUT = 10.0
#: Below this an attempt cannot complete even a same-host handshake reliably; 0 or less
#: made every connect fail at once (reported as "refused": a false DISAGREE).
MIN_TIMEOUT = 0.05
MAX_COUNT = 10_000
#: count x timeout: one probe never waits longer than this in total.
MAX_TOTAL_WAIT = 3600.0


def validate_probe_args(count: int, timeout: float) -> None:
    """Refuse a ``--count``/``--timeout`` the client cannot honour (clear error, no traceback)."""
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"--count {count}: must be 1-{MAX_COUNT}")
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or \
            not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise InvalidInput(f"--timeout {timeout}: must be {MIN_TIMEOUT}-{MAX_TIMEOUT:g} seconds "
                           "per attempt")
    if count * timeout > MAX_TOTAL_WAIT:
        raise InvalidInput(f"--count {count} x --timeout {timeout:g}: the probe could wait "
                           f"{count * timeout:g}s; at most {MAX_TOTAL_WAIT:g}s")


def lab_addresses(plan: LabPlan, service_ips: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(address or CIDR, what it is) for every address the lab assigns or routes: an extra
    client address that collides with one shadows it in the external namespace (a local
    address wins over the route to it) and breaks later probes."""
    # Most specific first (a pod's address before its node's pod CIDR).
    out: list[tuple[str, str]] = [(plan.external.ip, "the external client's address")]
    for n in plan.nodes:
        out += [(n.ip, f"node {n.name}'s address"), (n.gateway, f"node {n.name}'s pod gateway")]
    out += [(p.ip, f"pod {p.ref}'s address") for p in plan.pods]
    out += [(v, "a Service's external/LoadBalancer IP") for v, _n in plan.external.vip_routes]
    out += [(ip, "a Service's cluster IP") for ip in service_ips]
    out += [(n.pod_cidr, f"node {n.name}'s pod CIDR") for n in plan.nodes]
    return out


def check_bind(plan: LabPlan, bind: str, service_ips: Iterable[str] = ()) -> str:
    """The validated ``--source`` address (IPv4, not one the lab uses)."""
    try:
        addr = ipaddress.IPv4Address(bind)
    except ValueError:
        raise InvalidInput(f"--source {bind!r}: expected an IPv4 address") from None
    if addr.is_loopback or addr.is_multicast or addr.is_unspecified or \
            addr == ipaddress.IPv4Address("255.255.255.255"):
        raise InvalidInput(f"--source {bind}: not a usable unicast client address")
    for net, what in lab_addresses(plan, service_ips):
        if addr in ipaddress.IPv4Network(net, strict=False) and str(addr) != plan.external.ip:
            raise InvalidInput(f"--source {bind} is {what} in lab \"{plan.name}\"",
                               hint="pick an address the lab does not use (e.g. from "
                                    "203.0.113.0/24)")
    return str(addr)


def probe(ex: Executor, plan: LabPlan, source: Source, dst: str, port: int, proto: str, *,
          count: int = 10, timeout: float = 0.5, bind: str | None = None,
          via: str | None = None, service_ips: Iterable[str] = ()) -> Observation:
    validate_probe_args(count, timeout)
    added: str | None = None
    if bind and source.kind != "external":
        raise InvalidInput("--source applies to --from external only")
    if bind:
        bind = check_bind(plan, bind, service_ips)
    try:
        if source.kind == "external":
            route_external(ex, plan, dst, via)
            if bind and bind != plan.external.ip:
                # An extra client address (e.g. inside / outside a
                # loadBalancerSourceRanges), removed again below whatever happens.
                ex.run(Command(("ip", "-n", plan.external.netns, "addr", "replace",
                                f"{bind}/32", "dev", "lo"), "an extra outside client address"))
                added = bind
        argv = [sys.executable, AGENT, "probe", "--dst", dst, "--port", str(port),
                "--proto", proto, "--count", str(count), "--timeout", str(timeout)]
        if bind:
            argv += ["--bind", bind]
        proc = ex.in_netns(source.netns, *argv, why="the probe client",
                           timeout=count * (timeout + 1.0) + 15)
    finally:
        if added is not None:
            ex.run(Command(("ip", "-n", plan.external.netns, "addr", "del", f"{added}/32",
                            "dev", "lo"), "remove the extra outside client address"),
                   check=False)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BackendError(f"the probe client printed no result: {proc.stdout!r} "
                           f"{proc.stderr!r}") from None
    failures = dict(data["failures"])
    return Observation(
        attempts=data["attempts"], answers=data["answers"], sources=data["sources"],
        refused=failures.pop(REFUSED, 0), timeout=failures.pop(TIMEOUT, 0), other=failures,
        order=tuple(data["order"]),
    )


def route_external(ex: Executor, plan: LabPlan, dst: str, via: str | None) -> None:
    """Send the external client's packets for ``dst`` to node ``via`` (a balancer's choice)."""
    if via is None:
        return
    node = plan.node(via)
    if any(n.ip == dst for n in plan.nodes):
        return  # a node's own address is on the underlay: no route needed
    ex.run(Command(("ip", "-n", plan.external.netns, "route", "replace", f"{dst}/32",
                    "via", node.ip), f"the balancer sends {dst} to {via}"))


def packet_for(plan: LabPlan, source: Source, dst: str, port: int, proto: str, *,
               bind: str | None = None, via: str | None = None) -> tuple[str, Packet]:
    """(node whose kernel decides, the packet as that node first sees it)."""
    if source.kind == "external":
        node = next((n.name for n in plan.nodes if n.ip == dst), None)
        if node is None:
            node = via or next((n.name for n in plan.nodes
                                for d, v in plan.external.vip_routes if d == dst and v == n.ip),
                               None)
        if node is None:
            raise InvalidInput(f"the external client has no route to {dst}",
                               hint="pass --via NODE to pick the node the balancer uses")
        return node, Packet(src=bind or source.ip, dst=dst, dport=port, proto=proto)
    assert source.node is not None
    src = source.ip
    if source.kind == "node" and dst.startswith("127."):
        src = "127.0.0.1"
    return source.node, Packet(src=src, dst=dst, dport=port, proto=proto)


@attrs.frozen
class Expectation:
    """The mock kernel's prediction in the lab's vocabulary."""

    shares: dict[str, Fraction]
    #: outcome class -> the source address the pod should see.
    sources: dict[str, str | None]
    #: Delivered outcomes whose reply cannot return through the NATing node.
    asymmetric: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shares": {k: str(v) for k, v in self.shares.items()},
                               "sources": self.sources}
        if self.asymmetric:
            out["asymmetric_replies"] = list(self.asymmetric)
        return out


def expectation(plan: LabPlan, result: TraceResult, proto: str) -> Expectation:
    """The trace's outcomes as the lab's client will see them.

    A trace follows the first packet forward. One thing it cannot show is a reply that
    never meets the node that NATed the request: when the endpoint is on another node
    and the source it sees does not route back through the DNATing node (a pod of a
    third node reaching a NodePort un-masqueraded, say), the reply goes straight to
    the client, which drops it (wrong source) -- the connection times out although the
    first packet was delivered. Such outcomes are expected as ``timeout`` and listed in
    :attr:`Expectation.asymmetric`.
    """
    shares: dict[str, Fraction] = {}
    sources: dict[str, str | None] = {}
    asymmetric: list[str] = []
    for o in result.outcomes:
        if o.verdict == "REJECT":
            key = REFUSED
        elif o.verdict == "DROP":
            key = TIMEOUT
        elif o.verdict == "ACCEPT" and o.delivered_to:
            ip, _, port = o.delivered_to.rpartition(":")
            ip = ip.strip("[]")
            pod = next((p for p in plan.pods if p.ip == ip and int(port) in
                        (p.udp_ports if proto == "udp" else p.tcp_ports)), None)
            if any(r.endswith("connection accepted, then closed") for r in o.rules):
                # The userspace proxier accepted the connection on its own socket and,
                # finding no endpoint, closed it: the client connects, then reads EOF.
                key = CLOSED
            elif pod is not None and _reply_bypasses_nat(plan, result.node, o, pod.node):
                key = TIMEOUT
                asymmetric.append(f"{o.delivered_to} (source {o.source_seen}, "
                                  f"{o.probability})")
            elif pod is not None:
                key = f"pod:{pod.ref}"
                sources[key] = o.source_seen
            elif plan.pod_by_ip(ip) is not None or any(n.ip == ip or n.gateway == ip
                                                      for n in plan.nodes) or \
                    ip.startswith("127."):
                # Delivered to a lab host where nothing listens on that port: the kernel
                # answers TCP with a RST and UDP with ICMP port unreachable -- unless a
                # userspace proxy sits in between: the client's connection ends at the
                # proxy, which closes it when its own dial fails (UDP: nothing comes back).
                if _proxied(o.rules):
                    key = CLOSED if proto == "tcp" else TIMEOUT
                else:
                    key = REFUSED
            else:
                key = TIMEOUT  # routed out of the cluster, where nobody answers
        else:
            key = f"unknown:{o.verdict}"
        shares[key] = shares.get(key, Fraction(0)) + o.probability
    return Expectation(shares, sources, tuple(asymmetric))


def _proxied(rules: tuple[str, ...]) -> bool:
    """Did a userspace proxy's socket take the connection (its rule-path entry)?"""
    return any(r.startswith("kube-proxy ") and " socket " in r for r in rules)


def _last_node(first: str, rules: tuple[str, ...]) -> str:
    """The node that handled the packet last (``[node X]`` markers of a multi-node path)."""
    last = first
    for r in rules:
        if r.startswith("[node ") and r.endswith("]"):
            last = r[len("[node "):-1]
    return last


def _reply_bypasses_nat(plan: LabPlan, first: str, o: Any, endpoint_node: str) -> bool:
    nat_node = plan.node(_last_node(first, o.rules))
    if endpoint_node == nat_node.name or not o.source_seen:
        return False
    src = o.source_seen
    if src in (nat_node.ip, nat_node.gateway) or src.startswith("127."):
        return False
    import netaddr

    if netaddr.IPAddress(src) in netaddr.IPNetwork(nat_node.pod_cidr):
        return False  # the DNATing node's own pod: the reply is routed back through it
    return True


def chi_square_p(observed: list[int], expected: list[float]) -> float:
    """Upper-tail p-value of Pearson's chi-square (df = categories - 1)."""
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    df = len(observed) - 1
    if df <= 0:
        return 1.0
    return _gamma_q(df / 2.0, stat / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (Numerical Recipes' gser/gcf), bounded."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-12:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    b = x + 1 - a
    c = 1e300
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return math.exp(-x + a * math.log(x) - lg) * h


def disagreements(obs: Observation, exp: Expectation, *, sticky: bool = False,
                  oracle: str = "the mock kernel") -> list[str]:
    """What the real kernel did that ``oracle`` (the mock kernel, or the reference semantics)
    did not predict (empty = agreement).

    ``sticky`` (ClientIP affinity from one client): every attempt must reach the same pod,
    one the mock kernel gives a non-zero share.
    """
    problems: list[str] = []
    counts = obs.counts()
    n = obs.attempts
    support = {k for k, p in exp.shares.items() if p > 0}
    for k in counts:
        if k not in support:
            problems.append(f"{k} observed {counts[k]}/{n} times; {oracle} gives it "
                            "no chance")
    if sticky and any(k.startswith("pod:") for k in support):
        answered = [k for k in counts if k.startswith("pod:")]
        if len(answered) != 1 or counts[answered[0]] != n:
            problems.append(f"affinity did not stick: {counts}")
    else:
        for k in support:
            p = float(exp.shares[k])
            # A class the mock kernel predicts must show up unless missing it is plausible.
            if counts.get(k, 0) == 0 and (1 - p) ** n < P_THRESHOLD:
                problems.append(f"{k} predicted with share {exp.shares[k]} never observed "
                                f"in {n} attempts")
        keys = sorted(support)
        if len(keys) > 1 and not problems:
            pval = chi_square_p([counts.get(k, 0) for k in keys],
                                [float(exp.shares[k]) * n for k in keys])
            if pval < P_THRESHOLD:
                problems.append(f"shares differ (chi-square p={pval:.2e}): observed "
                                f"{ {k: counts.get(k, 0) for k in keys} }, predicted "
                                f"{ {k: str(exp.shares[k]) for k in keys} }")
    for pod, seen in obs.sources.items():
        want = exp.sources.get(f"pod:{pod}")
        if f"pod:{pod}" in support and set(seen) != {want}:
            problems.append(f"pod {pod} saw source(s) {sorted(seen)}; {oracle} "
                            f"predicts {want}")
    return problems
