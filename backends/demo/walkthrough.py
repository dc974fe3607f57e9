"""The walkthrough behind ``kservice demo``: the seed note's cluster, from manifests to packets.

It applies ``docs/examples/`` to a fresh in-memory cluster (kubeadm's defaults, three kind
nodes; nothing is read from or written to a state file), then shows, each step with a one-line
explanation: ``get svc``, ``get endpoints``, cluster DNS for a normal, a headless and an
ExternalName Service, the iptables and IPVS rules kube-proxy programs for one Service, and
packets traced through the mock kernel -- a pod to a ClusterIP, an outside client to
``NodeIP:30080``, the same client's connections before and after ``sessionAffinity: ClientIP``
(sampled with a seeded RNG), the LoadBalancer's source ranges -- and the Ingress routes.

Everything is deterministic: the cluster's clock is fixed, its allocators are seeded by the
cluster config, and the sampled connections use ``random.Random(seed)``.

The walkthrough drives the mock kernel, an adapter, which is why it lives here and not in
the core; :func:`run` returns the facts it showed (:class:`DemoFacts`) for tests and docs.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from backends.mockkernel import MockKernel
from kservice.backend import get_backend
from kservice.cli import printers
from kservice.cli.commands import apply_documents
from kservice.cluster import Cluster
from kservice.config import DEFAULT_CLUSTER_CONFIG
from kservice.dns import Answer, resolve
from kservice.errors import InvalidInput, KServiceError
from kservice.graph import parse_step
from kservice.manifest import load_files
from kservice.patch import apply_patch
from kservice.proxy.snapshot import build_node_state
from kservice.proxy.types import NodeProxyState
from kservice.trace import Outcome, Packet, TraceResult

__all__ = ["DEFAULT_EXAMPLES", "DemoFacts", "demo_cluster", "load_examples", "run"]

DEFAULT_EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
#: The demo cluster's clock: fixed, so AGE columns and timestamps never change.
DEMO_TIME = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
#: A client outside the cluster (TEST-NET-3, inside the LoadBalancer's source ranges).
OUTSIDE_CLIENT = "203.0.113.9"
#: A client outside the LoadBalancer's source ranges (TEST-NET-1).
BLOCKED_CLIENT = "192.0.2.50"
#: The node the packets arrive at (holds two of the three myapp pods).
NODE = "kind-worker"
CONNECTIONS = 5


@attrs.frozen
class DemoFacts:
    """What the walkthrough showed, for tests and generated docs."""

    cluster_ips: dict[str, str]
    node_ip: str
    dns: dict[str, Answer]
    iptables_rules: str
    ipvs_rules: str
    pod_to_clusterip: TraceResult
    nodeport: TraceResult
    lb_allowed: TraceResult
    lb_blocked: TraceResult
    #: Pods reached by the sampled connections, before and after the affinity patch.
    affinity_before: tuple[str, ...]
    affinity_after: tuple[str, ...]
    #: (host, path) -> service:port and endpoints, or the reason there is no route.
    ingress: dict[tuple[str, str], str]
    pods: dict[str, str]
    seconds: float


def demo_cluster() -> Cluster:
    """A fresh embedded cluster whose clock stands still at :data:`DEMO_TIME`."""
    from kservice.embedded import new_cluster

    return new_cluster(DEFAULT_CLUSTER_CONFIG, clock=lambda: DEMO_TIME)


def load_examples(cluster: Cluster, examples: Path | None = None) -> list[str]:
    """Apply the manifests (``kubectl apply -f DIR``) and play the cloud controller.

    Returns the transcript lines. Kinds the cluster does not have are skipped (and said so).
    A Service manifest carrying ``status.loadBalancer`` gets that status written after
    creation, as a cloud controller (or MetalLB) writes it -- the apiserver drops status on
    create.
    """
    docs = load_files([str(examples or DEFAULT_EXAMPLES)])
    skipped = sorted({d.kind for d in docs if d.kind not in cluster.kinds})
    usable = [d for d in docs if d.kind in cluster.kinds]
    lines = apply_documents(cluster, usable, None, warn=lambda _m: None)
    if skipped:
        lines.append("skipped (component not installed): " + ", ".join(skipped))
    for d in usable:
        status = d.data.get("status") if d.kind == "Service" else None
        if isinstance(status, dict) and status.get("loadBalancer"):
            meta = d.data.get("metadata") or {}
            live = cluster.get("Service", d.name, meta.get("namespace") or "default")
            decoded = cluster.strategy("Service").decode(
                {**live.to_manifest(), "status": status}, "")
            cluster.put_raw(attrs.evolve(live, status=decoded.status))
            ips = ", ".join(i.ip or i.hostname or "" for i in decoded.status.load_balancer_ingress)
            lines.append(f"(cloud controller) service/{d.name} status.loadBalancer.ingress: {ips}")
    return lines


# --------------------------------------------------------------------------- helpers


class _Out:
    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write
        self.step = 0

    def title(self, cmd: str, why: str) -> None:
        """A step: its one-line explanation, then the command it corresponds to."""
        self.step += 1
        self.write(f"\n## {self.step}. {why}\n$ {cmd}\n")

    def text(self, text: str) -> None:
        self.write(text if text.endswith("\n") else text + "\n")


def _get(cluster: Cluster, kind: str, namespace: str | None = "default", *,
         wide: bool = False) -> str:
    """``kubectl get KIND [-A -o wide]`` (``namespace=None``: all namespaces)."""
    ctx = printers.PrintContext(now=DEMO_TIME, wide=wide, cluster=cluster)
    objs = cluster.list(kind, namespace)
    return printers.print_objects(objs, output="wide" if wide else None, ctx=ctx,
                                  all_namespaces=namespace is None, cluster=cluster)


def _patch(cluster: Cluster, kind: str, name: str, patch: dict[str, Any]) -> None:
    """``kubectl patch`` (strategic merge) through the apiserver's update path."""
    live = cluster.get(kind, name, "default")
    patched = apply_patch(live.to_manifest(), json.dumps(patch), "strategic")
    cluster.update(cluster.strategy(kind).decode(patched, ""))


def _state(cluster: Cluster, service: str | None = None) -> NodeProxyState:
    state = build_node_state(cluster, NODE, "IPv4")
    if service is None:
        return state
    ns, _, name = service.partition("/")
    ports = tuple(sp for sp in state.service_ports
                  if sp.name.namespace == ns and sp.name.name == name)
    return attrs.evolve(state, service_ports=ports)


def _kernel(cluster: Cluster, mode: str = "iptables") -> MockKernel:
    state = _state(cluster)
    backend = get_backend(mode)
    kernel = MockKernel(state.node)
    backend.load(kernel, backend.render(state))
    return kernel


def _chain_path(o: Outcome) -> str:
    """The chains an outcome walked, compressed: ``PREROUTING: A > B > C``."""
    parts: list[str] = []
    for rule in o.rules:
        step = parse_step(rule)
        name = f"IPVS({step.chain})" if step.kind == "ipvs" else step.chain
        if step.chain in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING") \
                and step.kind == "iptables":
            name = f"[{step.table} {step.chain}]"
        if not parts or parts[-1] != name:
            parts.append(name)
    return " > ".join(parts)


def _outcomes(result: TraceResult, pods: dict[str, str], *, paths: int = 1) -> str:
    lines = []
    for i, o in enumerate(result.outcomes):
        if o.delivered_to is None:
            lines.append(f"  {o.probability!s:>5}  {o.verdict}")
        else:
            host = o.delivered_to.rsplit(":", 1)[0]
            who = pods.get(host, "")
            lines.append(f"  {o.probability!s:>5}  {o.verdict} -> {o.delivered_to:<17} "
                         f"{who:<24} source seen {o.source_seen}"
                         + (" (masqueraded)" if o.masqueraded else ""))
        if i < paths:
            lines.append(f"         path: {_chain_path(o)}")
    return "\n".join(lines)


def _filter_rules(text: str, needles: Sequence[str]) -> str:
    keep: list[str] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line
        if any(n in line for n in needles):
            if table and (not keep or keep[-1] != table) and table not in keep:
                keep.append(table)
            keep.append(line)
    return "\n".join(keep)


def _route_text(cluster: Cluster, host: str, path: str) -> str:
    from kservice.ingress import route

    try:
        r = route(cluster, host, path)
    except KServiceError as exc:
        return f"no route: {exc}"
    target = f"{r.service_name}:{r.service_port}" if r.service_name else (r.resource or "?")
    eps = ", ".join(r.endpoints) if r.endpoints else r.note or "no ready endpoints"
    return f"-> {target} (rule {r.host or '*'} {r.path or '(any path)'}, {r.path_type}) -> {eps}"


# --------------------------------------------------------------------------- the walkthrough


def run(write: Callable[[str], object], *, examples: Path | None = None, seed: int = 1
        ) -> DemoFacts:
    """Run the walkthrough, writing its transcript through ``write``; return the facts."""
    start = time.perf_counter()
    examples = examples or DEFAULT_EXAMPLES
    if not examples.is_dir():
        raise InvalidInput(f"examples directory {examples} not found; pass --examples DIR")
    out = _Out(write)
    cluster = demo_cluster()
    out.write("kservice demo: the seed note's Services on a throwaway kind-shaped cluster; "
              "rules as kube-proxy v1.34 writes them, packets traced in the mock kernel.\n")
    shown = "docs/examples/" if examples == DEFAULT_EXAMPLES else f"{examples}/"
    out.title(f"kservice apply -f {shown}",
              "Apply the note's manifests to a fresh cluster (3 kind nodes; no state file "
              "is touched).")
    out.text("\n".join(load_examples(cluster, examples)))

    out.title("kservice get svc -A -o wide", "Every Service got a cluster IP from "
              "10.96.0.0/12 (redis and myapp asked for theirs; the headless one has none).")
    out.text(_get(cluster, "Service", None, wide=True))

    out.title("kservice get endpoints", "The endpoints controllers matched the selectors to the "
              "pods (app=redis,role=logstor; app=myapp,role=canary) on their named ports.")
    out.text(_get(cluster, "Endpoints"))
    pods = {p.status.pod_ip: f"pod {p.metadata.name}@{p.spec.node_name}"
            for p in cluster.list("Pod") if p.status.pod_ip}

    dns: dict[str, Answer] = {}
    for name, why in (
        ("redis", "A normal Service resolves to its cluster IP (from a pod in default, "
                  "through the search path)."),
        ("myapp-headless", "A headless Service resolves to its ready pods' IPs: no virtual "
                           "IP, no kube-proxy rules."),
        ("my-db", "An ExternalName Service is a CNAME; the name outside the cluster is the "
                  "upstream resolver's business."),
    ):
        out.title(f"kservice dns resolve {name} -n default", why)
        ans = resolve(cluster, name, "A", "default")
        dns[name] = ans
        out.text("\n".join(ln for ln in ans.text().splitlines() if not ln.startswith(";; tried")))

    node = cluster.get("Node", NODE, "")
    node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    svc_state = _state(cluster, "default/myapp")
    ipt = get_backend("iptables").render(svc_state).section("restore")
    chains = sorted({tok for line in ipt.splitlines() for tok in line.split()
                     if tok.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-"))})
    ipt_rules = _filter_rules(ipt, ["default/myapp:http", *chains])
    out.title(f"kservice render --mode iptables --node {NODE} --service default/myapp",
              "iptables mode: the NodePort jumps to the same KUBE-SVC chain as the cluster "
              "IP; a random choice picks one KUBE-SEP, which DNATs to the pod.")
    out.text(ipt_rules)
    ipvs = get_backend("ipvs").render(svc_state).section("list")
    out.title(f"kservice render --mode ipvs --node {NODE} --service default/myapp "
              "--format list",
              "IPVS mode: one virtual server per cluster IP and per node IP:nodePort, "
              "round robin over the pods (ipvsadm -Ln).")
    out.text(ipvs)

    kernel = _kernel(cluster)
    client = next(ip for ip, who in sorted(pods.items()) if "myapp" in who and NODE in who)
    pod_trace = kernel.trace(Packet(src=client, dst="10.97.97.97", dport=6379))
    out.title(f"kservice trace --node {NODE} --src {client} --dst 10.97.97.97:6379",
              "A myapp pod calls redis's ClusterIP: DNAT to one of the two redis pods, 1/2 "
              "each; pod traffic is not masqueraded.")
    out.text(_outcomes(pod_trace, pods))

    np_trace = kernel.trace(Packet(src=OUTSIDE_CLIENT, dst=node_ip, dport=30080))
    out.title(f"kservice trace --node {NODE} --src {OUTSIDE_CLIENT} --dst {node_ip}:30080",
              "client -> NodeIP:NodePort -> ClusterIP:ServicePort -> PodIP:containerPort is one "
              "DNAT: the NodePort jumps to the ClusterIP's chain; masqueraded so replies return.")
    out.text(_outcomes(np_trace, pods))

    # Session affinity: 5 new connections (new source ports) from the same client.
    rng = random.Random(seed)
    before = tuple(_send(kernel, node_ip, rng, i) for i in range(CONNECTIONS))
    out.title(f"MockKernel.send(Packet({OUTSIDE_CLIENT} -> {node_ip}:30080), "
              f"random.Random({seed}))  x{CONNECTIONS}, new source port each",
              "Without affinity every new connection picks a pod at random.")
    out.text("\n".join(f"  connection {i + 1}: -> {ep}  {pods.get(ep.rsplit(':', 1)[0], '')}"
                       for i, ep in enumerate(before)))
    patch = {"spec": {"sessionAffinity": "ClientIP"}}
    _patch(cluster, "Service", "myapp", patch)
    kernel_after = _kernel(cluster)
    after = tuple(_send(kernel_after, node_ip, rng, i + CONNECTIONS) for i in range(CONNECTIONS))
    out.title(f"kservice patch svc myapp -p '{json.dumps(patch, separators=(',', ':'))}'; "
              f"then the same {CONNECTIONS} sends",
              "With ClientIP affinity the first pick is remembered (xt_recent, 10800 s) and "
              "the client sticks to that pod.")
    out.text("service/myapp patched\n" + "\n".join(
        f"  connection {i + 1}: -> {ep}  {pods.get(ep.rsplit(':', 1)[0], '')}"
        for i, ep in enumerate(after)))

    lb = cluster.get("Service", "myapp-lb", "default")
    lb_ip = lb.status.load_balancer_ingress[0].ip
    lb_port = lb.spec.ports[0].port
    lb_allowed = kernel_after.trace(Packet(src=OUTSIDE_CLIENT, dst=lb_ip, dport=lb_port))
    lb_blocked = kernel_after.trace(Packet(src=BLOCKED_CLIENT, dst=lb_ip, dport=lb_port))
    out.title(f"kservice trace --node {NODE} --dst {lb_ip}:{lb_port} --src "
              f"{OUTSIDE_CLIENT} / --src {BLOCKED_CLIENT}",
              "The LoadBalancer IP admits only loadBalancerSourceRanges "
              "(203.0.113.0/24, 198.51.100.0/24); other clients are dropped.")
    out.text(f"from {OUTSIDE_CLIENT}:\n{_outcomes(lb_allowed, pods, paths=0)}\n"
             f"from {BLOCKED_CLIENT}:\n{_outcomes(lb_blocked, pods)}")

    ingress: dict[tuple[str, str], str] = {}
    out.title("kservice ingress route --host HOST --path PATH",
              "The Ingress: foo.mydomain.com goes to myapp:8080, mydomain.com/bar/* to bar:80 "
              "(no such Service: 503); /bar itself and other hosts match no rule (404).")
    requests = (("foo.mydomain.com", "/"), ("mydomain.com", "/bar/baz"),
                ("mydomain.com", "/bar"), ("example.org", "/"))
    width = max(len(f"http://{h}{p}") for h, p in requests)
    for host, path in requests:
        ingress[(host, path)] = _route_text(cluster, host, path)
        out.text(f"  {'http://' + host + path:<{width}}  {ingress[(host, path)]}")

    out.write(f"\nDone: deterministic (seed {seed}, clock {DEMO_TIME:%Y-%m-%dT%H:%M:%SZ}); "
              "nothing was stored.\n")
    seconds = time.perf_counter() - start
    cluster_ips = {s.metadata.name: s.spec.cluster_ip or ""
                   for s in cluster.list("Service", "default")}
    return DemoFacts(cluster_ips=cluster_ips, node_ip=node_ip, dns=dns, iptables_rules=ipt_rules,
                     ipvs_rules=ipvs, pod_to_clusterip=pod_trace, nodeport=np_trace,
                     lb_allowed=lb_allowed, lb_blocked=lb_blocked, affinity_before=before,
                     affinity_after=after, ingress=ingress, pods=pods, seconds=seconds)


def _send(kernel: MockKernel, node_ip: str, rng: random.Random, i: int) -> str:
    """One new connection (its own source port) from the outside client; where it went."""
    o = kernel.send(Packet(src=OUTSIDE_CLIENT, dst=node_ip, dport=30080, sport=41000 + i), rng)
    return o.delivered_to or o.verdict
