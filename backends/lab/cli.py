"""``kservice lab``: the emulated cluster built in Linux network namespaces.

Subcommands: ``up`` (build it and load each node's rendered rules), ``probe`` (real packets;
``--check`` holds the answer against ``kservice trace``'s prediction; a disagreement is
re-probed ``--confirm`` more times and stands only if every round disagrees, as
:meth:`backends.lab.session.Lab.check` does), ``exec`` (a command
inside a pod, node or the external client), ``status``, ``sync`` (re-render after the
state changed) and ``down`` (remove everything; idempotent). See docs/lab.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from backends.lab import executor, rules, userspace
from backends.lab.executor import Executor, Progress, list_labs, load_meta, save_meta, teardown
from backends.lab.plan import (
    LabPlan,
    pin_transient_pods,
    plan_lab,
    reconcile,
    validate_lab_name,
)
from backends.lab.probe import (
    Observation,
    expectation,
    packet_for,
    parse_source,
    parse_target,
    probe,
    validate_probe_args,
)
from backends.lab.session import confirmed_rounds, rule_counters
from kservice.cluster import Cluster
from kservice.errors import BackendError, InvalidInput

__all__ = ["register"]

DEFAULT_LAB = "default"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lab", help="build the cluster in Linux network namespaces and probe it with packets",
        description="The emulated cluster built in Linux network namespaces: real netfilter "
                    "loaded with each node's rendered rules, a responder in every pod, real "
                    "packets, and --check against the mock kernel. Needs root. See docs/lab.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  kservice lab up -f docs/examples/myapp-deployment.yaml "
               "-f docs/examples/myapp-service.yaml\n"
               "  kservice lab probe --from pod/kube-system/coredns-... --to 10.99.99.99:8080 "
               "--count 30 --check\n"
               "  kservice lab probe --from node/kind-worker --to 10.99.99.99:8080 --check "
               "--confirm 2\n"
               "  kservice lab probe --from external --to 172.18.0.3:30080\n"
               "  kservice lab down",
    )
    sub = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND")
    sub.required = True

    up = sub.add_parser("up", help="create the lab and load each node's rules")
    up.add_argument("-f", "--filename", action="append", default=None, metavar="FILE",
                    help="manifests applied on top of the stored cluster (not stored)")
    up.add_argument("--mode", choices=tuple(rules.MODES), default="iptables")
    up.add_argument("--name", default=None, help=f"lab name (default {DEFAULT_LAB})")
    up.add_argument("--dry-run", action="store_true",
                    help="print the commands instead of running them (no root needed)")
    up.set_defaults(func=cmd_up)

    pr = sub.add_parser("probe", help="send real packets and report who answered")
    pr.add_argument("--from", dest="source", required=True,
                    metavar="pod/NS/NAME|node/NAME|external")
    pr.add_argument("--to", dest="target", required=True, metavar="IP:PORT[/tcp|udp]")
    pr.add_argument("--count", type=int, default=10)
    pr.add_argument("--timeout", type=float, default=0.5, help="seconds per attempt")
    pr.add_argument("--source", dest="bind", metavar="IP",
                    help="external client address to send from (added to the client)")
    pr.add_argument("--via", metavar="NODE",
                    help="external only: the node the balancer sends the address to")
    pr.add_argument("--check", action="store_true",
                    help="compare with the mock kernel's prediction; exit 1 on disagreement")
    pr.add_argument("--confirm", type=int, default=None, metavar="N",
                    help="with --check: re-probe a disagreement up to N more times (default "
                         "1; 0 = a single round); it stands (exit 1) only if every round "
                         "disagrees. The earlier disagreeing rounds are reported "
                         "(-o json: earlier_rounds, with the deciding node's rule counters)")
    pr.add_argument("-o", "--output", choices=("text", "json"), default="text")
    pr.add_argument("--name", default=None)
    pr.set_defaults(func=cmd_probe)

    ex = sub.add_parser("exec", help="run a command inside a pod, node or external namespace")
    ex.add_argument("--from", dest="source", required=True)
    ex.add_argument("--name", default=None)
    ex.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
    ex.set_defaults(func=cmd_exec)

    stt = sub.add_parser("status", help="the labs and what runs in them")
    stt.add_argument("--name", default=None)
    stt.add_argument("-o", "--output", choices=("text", "json"), default="text")
    stt.set_defaults(func=cmd_status)

    sy = sub.add_parser("sync", help="re-render every node's rules from the current state")
    sy.add_argument("--name", default=None)
    sy.set_defaults(func=cmd_sync)

    dn = sub.add_parser("down", help="remove everything the lab created (idempotent)")
    dn.add_argument("--name", default=None)
    dn.add_argument("--all", action="store_true", help="every lab")
    dn.set_defaults(func=cmd_down)


# --------------------------------------------------------------------------- helpers


def _lab_name(args: argparse.Namespace, *, creating: bool = False) -> str:
    if args.name:
        return validate_lab_name(args.name)
    labs = list_labs()
    if creating or not labs:
        return DEFAULT_LAB
    if len(labs) == 1:
        return labs[0]
    raise InvalidInput("several labs exist; pick one with --name", hint=", ".join(labs))


def _meta(name: str) -> dict[str, Any]:
    meta = load_meta(name)
    if meta is None:
        raise InvalidInput(f'no lab "{name}"', hint="create it with `kservice lab up`")
    return meta


def load_cluster(state: str | None, files: list[str] | None) -> Cluster:
    """The stored cluster (read-only) with ``files`` applied in memory, as ``trace -f``."""
    from kservice.cli.commands import apply_documents
    from kservice.cli.state import open_session
    from kservice.manifest import load_files

    with open_session(state, write=False) as cluster:
        if files:
            apply_documents(cluster, load_files(files), None, warn=lambda _m: None)
    return cluster


def render_nodes(cluster: Cluster, plan: LabPlan, mode: str) -> dict[str, tuple[Any, Any]]:
    """node -> (NodeInfo, Rendering) of the current cluster."""
    out = {}
    for node in plan.nodes:
        state = rules.node_state(cluster, plan, node.name)
        out[node.name] = (state.node, rules.render(state, mode))
    return out


def payloads(rendered: dict[str, tuple[Any, Any]], mode: str) -> dict[str, tuple[str, str]]:
    """node -> (loader, text) for the executor."""
    return {n: (rules.MODES[mode][2], rules.load_payload(r, mode))
            for n, (_info, r) in rendered.items()}


def save_renderings(lab: str, rendered: dict[str, tuple[Any, Any]]) -> None:
    """Kept in the lab's directory: ``probe --check`` predicts from exactly what each
    node's kernel was given, never from a re-rendering of a state that changed since."""
    for n, (info, r) in rendered.items():
        rules.save_rendering(_rendering_path(lab, n), info, r)


def _rendering_path(lab: str, node: str) -> Any:
    return executor.lab_dir() / lab / f"rendering.{node}.json"


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    name = _lab_name(args, creating=True)
    # SIGTERM (and SIGINT) anywhere in `up` unwind through the builders' clean-up; the
    # exit code is then the shell's 128+N, with one line saying what was removed.
    try:
        with executor.interrupts_as_exceptions():
            return _cmd_up(args, name)
    except KeyboardInterrupt as exc:
        code = executor.interrupt_exit_code(exc)
        sig = {130: "SIGINT", 143: "SIGTERM"}.get(code, f"signal {code - 128}")
        try:
            sys.stderr.write(f'kservice lab up: interrupted by {sig}; lab "{name}" cleaned up '
                             "(everything it had created was removed)\n")
        except (OSError, ValueError):
            pass
        return code


def _cmd_up(args: argparse.Namespace, name: str) -> int:
    # Absolute paths: sync, probe --check and the userspace proxies re-read them later,
    # maybe from another directory.
    state_path = os.path.abspath(args.state) if getattr(args, "state", None) else None
    if "-" in (args.filename or []):
        raise InvalidInput("lab up -f - (stdin) is not supported: sync and probe --check "
                           "read the files again; save the manifests to a file")
    args.filename = [os.path.abspath(f) for f in args.filename or []] or None
    cluster = load_cluster(state_path, args.filename)
    plan = plan_lab(cluster, name)
    if args.mode == "userspace":
        _require_userspace()
    rendered = render_nodes(cluster, plan, args.mode)
    loads = payloads(rendered, args.mode)
    if args.dry_run:
        for cmd in plan.build_commands() + plan.bridge_nf_commands():
            _out(str(cmd))
        for node in plan.nodes:
            loader, text = loads[node.name]
            if args.mode == "userspace":
                _out(f"ip netns exec {node.netns} "
                     + " ".join(userspace.proxy_argv("python3", state_path, args.filename,
                                                     node.name))
                     + "   # then its ports replace the rendered ones below")
            _out(f"ip netns exec {node.netns} {loader} "
                 f"{'-f - ' if loader == 'nft' else ''}<<'EOF'\n{text.rstrip()}\nEOF")
        return 0
    if args.mode == "userspace":
        # The portal rules need the proxy's real ports: loaded once the proxies run.
        loads = {n: ("", "") for n in loads}
    with executor.interrupts_as_exceptions():
        meta = executor.build(plan, loads, mode=args.mode, state_path=state_path,
                              extra_meta={"files": list(args.filename or [])})
        try:
            save_renderings(name, rendered)
            if args.mode == "userspace":
                _start_userspace(plan, meta, cluster, state_path, args.filename)
        except BaseException:
            teardown(name, load_meta(name) or meta)
            raise
    _out(f'lab "{name}" is up ({args.mode}): {len(plan.nodes)} nodes, '
         f"{sum(1 for p in plan.pods if not p.host_network)} pods, external client "
         f"{plan.external.ip}" + ("" if meta["bridge_nf"] else
                                  " (no br_netfilter: same-node pod replies bypass conntrack)"))
    return 0


def _require_userspace() -> None:
    try:
        import backends.userspace.proxier  # noqa: F401
    except ImportError:
        raise InvalidInput("--mode userspace needs the userspace proxy (backends.userspace), "
                           "which is not installed here") from None


#: How long a started userspace proxy gets to report its ports.
PROXY_READY_TIMEOUT = 30.0


def _start_userspace(plan: LabPlan, meta: dict[str, Any], cluster: Cluster,
                     state: str | None, files: list[str] | None) -> None:
    """One real ``kservice proxy --mode userspace`` per node, inside the node's namespace;
    then the portal rules, pointing at the ports each proxy reported."""
    ex = Executor(plan.name)
    logs = {}
    for node in plan.nodes:
        log = executor.lab_dir() / plan.name / f"proxy.{node.name}.log"
        meta["pids"][f"proxy/{node.name}"] = ex.start_process(
            node.netns, userspace.proxy_argv(sys.executable, state, files, node.name), log)
        logs[node.name] = log
    save_meta(meta)
    _load_userspace_rules(ex, plan, cluster, logs)


def _load_userspace_rules(ex: Executor, plan: LabPlan, cluster: Cluster,
                          logs: dict[str, Any]) -> None:
    deadline = time.monotonic() + PROXY_READY_TIMEOUT
    for node in plan.nodes:
        listening = None
        for _ in range(int(PROXY_READY_TIMEOUT / 0.1) + 1):
            listening = userspace.listening_from_log(logs[node.name])
            if listening is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if listening is None:
            raise BackendError(f"the userspace proxy on {node.name} reported no ports within "
                               f"{PROXY_READY_TIMEOUT:.0f}s: "
                               f"{_tail(logs[node.name])}")
        text = userspace.rules_for(rules.node_state(cluster, plan, node.name), listening)
        ex.in_netns(node.netns, "iptables-restore", stdin=text,
                    why=f"the userspace proxier's portal rules on {node.name}")


def _tail(path: Any) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:])
    except OSError:
        return "(no output)"


def _service_ips(meta: dict[str, Any]) -> list[str]:
    """The cluster IPs of the lab's Services (``--source`` must not take one)."""
    try:
        cluster = load_cluster(meta.get("state"), meta.get("files"))
    except Exception:  # an unreadable state is reported by the commands that need it
        return []
    if "Service" not in cluster.kinds:
        return []
    return sorted({ip for svc in cluster.list("Service")
                   for ip in (svc.spec.cluster_ips or ()) if ip and ip != "None"})


#: ``--confirm`` default: one more round before a disagreement stands (``Lab.check``'s).
DEFAULT_CONFIRM = 1


def cmd_probe(args: argparse.Namespace) -> int:
    validate_probe_args(args.count, args.timeout)
    confirm = DEFAULT_CONFIRM if args.confirm is None else args.confirm
    if args.confirm is not None and not args.check:
        raise InvalidInput("--confirm applies to --check only")
    if confirm < 0:
        raise InvalidInput(f"--confirm {confirm}: must be 0 or more (extra rounds)")
    name = _lab_name(args)
    meta = _meta(name)
    plan = LabPlan.from_json(meta["plan"])
    source = parse_source(plan, args.source)
    dst, port, proto = parse_target(args.target)
    if args.via and source.kind != "external":
        raise InvalidInput("--via applies to --from external only")
    if args.via:
        plan.node(args.via)
    service_ips = _service_ips(meta) if args.bind else ()

    def one_round() -> Observation:
        return probe(Executor(name), plan, source, dst, port, proto, count=args.count,
                     timeout=args.timeout, bind=args.bind, via=args.via,
                     service_ips=service_ips)

    try:
        # SIGTERM unwinds like Ctrl-C, so an extra --source address is always removed.
        with executor.interrupts_as_exceptions():
            problems: list[str] = []
            result: dict[str, Any] = {"lab": name, "from": source.label,
                                      "to": f"{dst}:{port}/{proto}"}
            if not args.check:
                obs = one_round()
            else:
                node, packet = packet_for(plan, source, dst, port, proto, bind=args.bind,
                                          via=args.via)
                trace = rules.predict_path(
                    plan, meta["mode"], node, packet,
                    lambda n: rules.load_rendering(_rendering_path(name, n)))
                if _state_changed(meta, plan):
                    result["warning"] = (
                        "the cluster changed since the lab's rules were loaded; the "
                        "prediction is for the loaded rules (`kservice lab sync` loads the "
                        "current ones)")
                exp = expectation(plan, trace, proto)
                # As Lab.check: a disagreement is probed again and stands only if every
                # round disagrees; the rounds that disagreed are kept, with the deciding
                # node's rule counters, so a one-off can be diagnosed rather than lost.
                obs, problems, earlier = confirmed_rounds(
                    one_round, exp, confirm=confirm,
                    counters=lambda: rule_counters(Executor(name), plan, meta["mode"], node,
                                                   trace))
                result["predicted"] = {"node": node, "packet": packet.to_json(),
                                       **exp.to_json()}
                result["agree"] = not problems
                result["disagreements"] = problems
                result["earlier_rounds"] = [
                    {"observed": a.observed.to_json(), "disagreements": list(a.problems),
                     "counters": list(a.counters)} for a in earlier]
    except KeyboardInterrupt as exc:
        sys.stderr.write("kservice lab probe: interrupted\n")
        return executor.interrupt_exit_code(exc)
    result["observed"] = obs.to_json()
    if args.output == "json":
        _out(json.dumps(result, indent=2, sort_keys=True))
    else:
        _out(_format_probe(result))
    return 1 if problems else 0


def _state_changed(meta: dict[str, Any], plan: LabPlan) -> bool:
    """Would the current cluster render other rules than the ones loaded?"""
    try:
        cluster = load_cluster(meta.get("state"), meta.get("files"))
    except Exception:  # an unreadable state is reported by the commands that need it
        return False
    section = rules.MODES[meta["mode"]][1]
    for node in plan.nodes:
        now = rules.render(rules.node_state(cluster, plan, node.name), meta["mode"])
        _info, loaded = rules.load_rendering(_rendering_path(plan.name, node.name))
        if now.section(section) != loaded.section(section):
            return True
    return False


def _format_probe(r: dict[str, Any]) -> str:
    o = r["observed"]
    lines = [f"{r['from']} -> {r['to']}: {o['attempts']} attempts"]
    rows = [("ANSWERED BY", "COUNT", "SOURCE SEEN")]
    for pod, n in sorted(o["answers"].items()):
        seen = ", ".join(f"{s} ({c})" for s, c in sorted(o["sources"].get(pod, {}).items()))
        rows.append((pod, str(n), seen))
    if o["refused"]:
        rows.append(("(refused)", str(o["refused"]), ""))
    if o["timed_out"]:
        rows.append(("(timed out)", str(o["timed_out"]), ""))
    for k, n in sorted(o["other"].items()):
        rows.append((f"({k})", str(n), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    if "predicted" in r:
        pred = r["predicted"]
        lines.append(f"mock kernel on {pred['node']}: " + ", ".join(
            f"{k} {v}" + (f" (source {pred['sources'][k]})" if k in pred["sources"] else "")
            for k, v in sorted(pred["shares"].items())))
        if pred.get("asymmetric_replies"):
            lines.append("delivered, but the reply cannot return through the NATing node "
                         "(expected to time out): " + "; ".join(pred["asymmetric_replies"]))
        if r.get("warning"):
            lines.append("warning: " + r["warning"])
        lines.append("agree" if r["agree"] else "DISAGREE:\n  " + "\n  ".join(
            r["disagreements"]))
        earlier = r.get("earlier_rounds", [])
        if earlier:
            lines.append(f"{len(earlier)} earlier round{'s' if len(earlier) > 1 else ''} "
                         "disagreed (re-probed, --confirm):")
        for i, a in enumerate(earlier, 1):
            ao = a["observed"]
            got = [f"{pod} {n}" for pod, n in sorted(ao["answers"].items())]
            got += [f"({k}) {ao[k]}" for k in ("refused", "timed_out") if ao[k]]
            got += [f"({k}) {n}" for k, n in sorted(ao["other"].items())]
            lines += [f"  round {i}: {', '.join(got) or 'nothing'}",
                      *(f"    {p}" for p in a["disagreements"]),
                      "    rule counters on the deciding node after that round:",
                      *(f"      {c}" for c in a["counters"] or ("(none read)",))]
    return "\n".join(lines)


def cmd_exec(args: argparse.Namespace) -> int:
    name = _lab_name(args)
    plan = LabPlan.from_json(_meta(name)["plan"])
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InvalidInput("nothing to run: kservice lab exec --from SOURCE -- CMD [ARGS...]")
    source = parse_source(plan, args.source)
    # Interactive: the user's command, in the lab's namespace, with the terminal attached.
    return subprocess.run(["ip", "netns", "exec", source.netns, *argv]).returncode


def cmd_status(args: argparse.Namespace) -> int:
    names = [validate_lab_name(args.name)] if args.name else list_labs()
    report: list[dict[str, Any]] = []
    for name in names:
        meta = load_meta(name)
        if meta is None:
            report.append({"name": name, "status": "absent"})
            continue
        existing = set(Executor(name).existing_namespaces())
        plan = LabPlan.from_json(meta["plan"])
        alive = {k: executor._alive(int(p)) for k, p in meta.get("pids", {}).items()}
        report.append({
            "name": name, "status": meta.get("status"), "mode": meta.get("mode"),
            "state": meta.get("state"), "files": meta.get("files", []),
            "bridge_nf": meta.get("bridge_nf"),
            "namespaces": {ns: ns in existing for ns in meta.get("namespaces", [])},
            "nodes": [{"name": n.name, "ip": n.ip, "podCIDR": n.pod_cidr, "netns": n.netns}
                      for n in plan.nodes],
            "pods": [{"pod": p.ref, "node": p.node, "ip": p.ip, "netns": p.netns,
                      "responder": alive.get(p.ref)} for p in plan.pods],
            "external": {"netns": plan.external.netns, "ip": plan.external.ip},
        })
    # Asked about one lab that does not exist: an error (exit 1), not a status.
    missing = bool(args.name) and report[0]["status"] == "absent"
    if args.output == "json":
        _out(json.dumps(report, indent=2, sort_keys=True))
        if missing:
            sys.stderr.write(f'error: no lab "{names[0]}"\n')
        return 1 if missing else 0
    if missing:
        raise InvalidInput(f'no lab "{names[0]}"',
                           hint="`kservice lab status` lists the labs; `kservice lab up "
                                f"--name {names[0]}` creates it")
    if not report:
        _out("No labs.")
        return 0
    for r in report:
        if r["status"] == "absent":
            _out(f"lab {r['name']}: absent")
            continue
        up = sum(r["namespaces"].values())
        _out(f"lab {r['name']}: {r['status']} ({r['mode']}), {up}/{len(r['namespaces'])} "
             f"namespaces, external client {r['external']['ip']}")
        for n in r["nodes"]:
            _out(f"  node {n['name']}  {n['ip']}  pods {n['podCIDR']}  [{n['netns']}]")
        for p in r["pods"]:
            state = {True: "answering", False: "DEAD", None: "no ports"}[p["responder"]]
            _out(f"    pod {p['pod']}  {p['ip']} on {p['node']}  {state}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    name = _lab_name(args)
    meta = _meta(name)
    plan = LabPlan.from_json(meta["plan"])
    cluster = load_cluster(meta.get("state"), meta.get("files"))
    new_plan = plan_lab(cluster, name)
    if meta.get("files"):
        # Pods that exist only through the -f files get generated names that follow the
        # stored state's resourceVersion: keep the names they were built with.
        stored = load_cluster(meta.get("state"), None)
        refs = {(p.metadata.namespace, p.metadata.name)
                for p in (stored.list("Pod") if "Pod" in stored.kinds else [])}
        new_plan = pin_transient_pods(plan, new_plan, refs)
    changes = reconcile(plan, new_plan)
    ex = Executor(name)
    if changes.added or changes.removed:
        with Progress().step("updating the pods"):
            meta = executor.apply_pod_changes(ex, meta, changes)
    with Progress().step("re-loading kube-proxy's rules"):
        if meta["mode"] == "userspace":
            # The running proxies re-read the state file themselves (every second); their
            # newest port report is what the rules must point at.
            time.sleep(USERSPACE_RESYNC_WAIT)
            save_renderings(name, render_nodes(cluster, changes.plan, meta["mode"]))
            logs = {n.name: executor.lab_dir() / name / f"proxy.{n.name}.log"
                    for n in changes.plan.nodes}
            _load_userspace_rules(ex, changes.plan, cluster, logs)
        else:
            rendered = render_nodes(cluster, changes.plan, meta["mode"])
            executor.load_rules(ex, changes.plan, payloads(rendered, meta["mode"]))
            save_renderings(name, rendered)
    pods = "" if not (changes.added or changes.removed) else (
        f"; pods: {len(changes.added)} added, {len(changes.removed)} removed")
    _out(f'lab "{name}": rules re-rendered and loaded on {len(plan.nodes)} nodes{pods}')
    return 0


#: The userspace proxy's --sync-period (1 s) plus a margin.
USERSPACE_RESYNC_WAIT = 1.5


def cmd_down(args: argparse.Namespace) -> int:
    names = list_labs() if args.all else [_lab_name(args)]
    for name in names:
        removed = teardown(name, load_meta(name))
        _out(f'lab "{name}" removed ({len(removed)} namespaces)' if removed
             else f'lab "{name}": nothing to remove')
    return 0
