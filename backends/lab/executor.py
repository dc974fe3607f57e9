"""Runs a :class:`~backends.lab.plan.LabPlan` against the real kernel, and takes it down.

Theory of operation
-------------------
Every command goes through :meth:`Executor.run`, which refuses anything not confined to the
lab's namespaces (:func:`backends.lab.plan.confined`) and runs it with a timeout. ``up``
writes the lab's metadata file *before* creating anything, so a lab that failed half-way
(or was interrupted) is still found and removed by ``down``; on failure, SIGINT or SIGTERM
during ``up`` the partial lab is torn down before the error propagates.

Processes (the pods' responders, a userspace proxy) are started with ``ip netns exec`` in a
new session and their PIDs recorded; ``down`` ends exactly those PIDs (after checking that
the PID still runs our agent) and any process left inside the lab's own namespaces (``ip
netns pids``), then deletes the namespaces -- which removes every veth, bridge, address,
route and rule the lab made. Nothing is ever created in, or changed in, the host namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from backends.lab.plan import (
    Command,
    LabPlan,
    PodChanges,
    confined,
    netns_prefix,
    validate_lab_name,
)
from kservice.errors import BackendError, InvalidInput

__all__ = ["AGENT", "Executor", "LabMeta", "Progress", "apply_pod_changes", "build",
           "interrupts_as_exceptions", "lab_dir", "list_labs", "load_meta", "load_rules",
           "require_tools", "save_meta", "start_responders", "teardown"]

AGENT = str(Path(__file__).with_name("agent.py"))
LAB_DIR_ENV = "KSERVICE_LAB_DIR"
DEFAULT_LAB_DIR = "/run/kservice-lab"
COMMAND_TIMEOUT = 30.0
#: How long responders get to bind their sockets.
READY_TIMEOUT = 10.0


def lab_dir() -> Path:
    return Path(os.environ.get(LAB_DIR_ENV) or DEFAULT_LAB_DIR)


class Progress:
    """``step... done (1.3s)`` on stderr for steps over a second, only on a terminal."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        if self.enabled and took >= 1.0:
            sys.stderr.write(f"{what}: done ({took:.1f}s)\n")
            sys.stderr.flush()


LabMeta = dict[str, Any]


def meta_path(name: str) -> Path:
    return lab_dir() / f"{name}.json"


def load_meta(name: str) -> LabMeta | None:
    p = meta_path(name)
    try:
        return json.loads(p.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"lab metadata {p} is unreadable: {exc}") from None


def save_meta(meta: LabMeta) -> None:
    d = lab_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{meta['name']}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(meta_path(meta["name"]))


def list_labs() -> list[str]:
    d = lab_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.json") if not p.name.startswith("."))


class Executor:
    """Runs confined commands for one lab."""

    def __init__(self, lab: str, *, timeout: float = COMMAND_TIMEOUT,
                 log: Callable[[str], None] | None = None) -> None:
        self.lab = validate_lab_name(lab)
        self.prefix = netns_prefix(lab)
        self.timeout = timeout
        self.log = log

    def run(self, cmd: Command, *, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        if not confined(cmd, self.prefix):
            raise BackendError(f"refusing to run a command outside the lab's namespaces: {cmd}")
        if self.log:
            self.log(str(cmd))
        try:
            proc = subprocess.run(list(cmd.argv), input=cmd.stdin, capture_output=True,
                                  text=True, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise BackendError(f"`{cmd}` did not finish within "
                               f"{timeout or self.timeout:.0f}s") from None
        except FileNotFoundError:
            raise BackendError(f"`{cmd.argv[0]}` is not installed") from None
        if check and proc.returncode != 0:
            why = f" ({cmd.why})" if cmd.why else ""
            raise BackendError(f"`{cmd}`{why} failed with exit code {proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def in_netns(self, netns: str, *argv: str, stdin: str | None = None, why: str = "",
                 check: bool = True, timeout: float | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return self.run(Command(("ip", "netns", "exec", netns, *argv), why, stdin),
                        check=check, timeout=timeout)

    def existing_namespaces(self) -> list[str]:
        """The lab's namespaces that exist now (``ip netns list`` filtered by prefix)."""
        try:
            out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                 timeout=self.timeout).stdout
        except (subprocess.TimeoutExpired, FileNotFoundError):
            return []
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if n.startswith(self.prefix)]

    # ------------------------------------------------------------------ processes

    def start_process(self, netns: str, argv: list[str], log_file: Path) -> int:
        cmd = Command(("ip", "netns", "exec", netns, *argv), "a lab process")
        if not confined(cmd, self.prefix):
            raise BackendError(f"refusing to start a process outside the lab: {cmd}")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "wb") as out:
            # A new session: a Ctrl-C at the terminal reaches the CLI, not the pods; ``ip
            # netns exec`` execs the program, so the PID is the agent's own.
            proc = subprocess.Popen(list(cmd.argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return proc.pid

    def wait_ready(self, log_files: list[Path], pids: list[int]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(zip(log_files, pids, strict=True))
        for _ in range(int(READY_TIMEOUT / 0.05) + 1):
            pending = [(f, p) for f, p in pending if "READY" not in _read(f)]
            if not pending or time.monotonic() > deadline:
                break
            for f, pid in pending:
                if not _alive(pid):
                    raise BackendError(f"a lab process exited at start-up: {_read(f).strip()}")
            time.sleep(0.05)
        if pending:
            raise BackendError("lab processes not ready after "
                               f"{READY_TIMEOUT:.0f}s: " + ", ".join(str(f) for f, _ in pending))


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours counts as gone.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return False


def _ours(pid: int, marker: str) -> bool:
    """Does ``pid`` still run the lab's program (PIDs are reused)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _end(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, a bounded wait, then SIGKILL -- only the PIDs given."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _ in range(int(grace / 0.05) + 1):
        if not any(_alive(p) for p in pids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children so no zombie remains
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def teardown(lab: str, meta: LabMeta | None = None) -> list[str]:
    """Remove everything the lab made; idempotent. Returns what was removed."""
    ex = Executor(lab)
    removed: list[str] = []
    pids = [int(p) for p in (meta or {}).get("pids", {}).values()]
    _end([p for p in pids if _ours(p, AGENT) or _ours(p, "kservice")])
    namespaces = list((meta or {}).get("namespaces", []))
    for ns in ex.existing_namespaces():
        if ns not in namespaces:
            namespaces.append(ns)
    existing = set(ex.existing_namespaces())
    for ns in reversed(namespaces):
        if ns not in existing or not ns.startswith(ex.prefix):
            continue
        # Whatever still runs inside the lab's namespace was started by the lab (lab exec).
        out = ex.run(Command(("ip", "netns", "pids", ns)), check=False).stdout
        _end([int(x) for x in out.split() if x.isdigit()])
        ex.run(Command(("ip", "netns", "del", ns), "remove the lab's namespace"), check=False)
        removed.append(ns)
    with contextlib.suppress(FileNotFoundError):
        meta_path(lab).unlink()
    logs = lab_dir() / lab
    if logs.is_dir():
        for f in logs.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()
        with contextlib.suppress(OSError):
            logs.rmdir()
    return removed


class Interrupted(KeyboardInterrupt):
    """A signal turned into an exception; ``signum`` gives the shell's exit code 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal number, as a shell reports a process killed by it (SIGINT 130,
    SIGTERM 143)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM raises like SIGINT does, so ``finally`` clean-up runs for both."""
    def _raise(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    old = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def require_tools(mode: str) -> None:
    import shutil

    if os.geteuid() != 0:
        raise InvalidInput("the lab needs root (it creates network namespaces)")
    need = ["ip", "sysctl", *{"iptables": ["iptables-restore"], "nftables": ["nft"]}.get(mode, [])]
    missing = [t for t in need if shutil.which(t) is None]
    if missing:
        raise InvalidInput("the lab needs " + ", ".join(missing),
                           hint="apt-get install iproute2 iptables nftables procps")


def build(plan: LabPlan, payloads: dict[str, tuple[str, str]], *, mode: str,
          state_path: str | None, progress: Progress | None = None,
          extra_meta: dict[str, Any] | None = None) -> LabMeta:
    """Create the lab: topology, sysctls, rules, responders. Torn down again on any failure.

    ``payloads``: node name -> (loader, text) with loader ``iptables-restore``, ``nft`` or
    ``""`` (nothing to load).
    """
    progress = progress or Progress()
    require_tools(mode)
    if load_meta(plan.name) is not None or Executor(plan.name).existing_namespaces():
        raise InvalidInput(f'lab "{plan.name}" already exists',
                           hint=f"`kservice lab down --name {plan.name}` first, or pick "
                                "another --name")
    ex = Executor(plan.name)
    meta: LabMeta = {
        "name": plan.name, "mode": mode, "state": state_path, "created": time.time(),
        "namespaces": list(plan.namespaces), "pids": {}, "plan": plan.to_json(),
        "status": "creating", "bridge_nf": False, **(extra_meta or {}),
    }
    save_meta(meta)
    try:
        with interrupts_as_exceptions():
            with progress.step(f"creating {len(plan.namespaces)} namespaces and their links"):
                for cmd in plan.build_commands():
                    ex.run(cmd)
            # br_netfilter is per namespace since Linux 5.3; the sysctls appear once a
            # bridge exists in the namespace.
            node0 = plan.nodes[0].netns
            has_bnf = ex.in_netns(node0, "test", "-e",
                                  "/proc/sys/net/bridge/bridge-nf-call-iptables",
                                  check=False).returncode == 0
            if has_bnf:
                for cmd in plan.bridge_nf_commands():
                    ex.run(cmd)
            meta["bridge_nf"] = has_bnf
            with progress.step("loading kube-proxy's rules"):
                load_rules(ex, plan, payloads)
            with progress.step("starting the pods' responders"):
                meta["pids"] = start_responders(ex, plan)
            meta["status"] = "up"
            save_meta(meta)
    except BaseException:
        with contextlib.suppress(Exception):
            teardown(plan.name, load_meta(plan.name) or meta)
        raise
    return meta


def load_rules(ex: Executor, plan: LabPlan, payloads: dict[str, tuple[str, str]]) -> None:
    for node in plan.nodes:
        loader, text = payloads.get(node.name, ("", ""))
        if loader == "iptables-restore":
            ex.in_netns(node.netns, "iptables-restore", stdin=text,
                        why=f"kube-proxy's iptables rules of {node.name}")
        elif loader == "nft":
            # A re-sync starts from an empty table (kube-proxy's own transaction re-creates it).
            ex.in_netns(node.netns, "nft", "delete", "table", "ip", "kube-proxy", check=False)
            ex.in_netns(node.netns, "nft", "-f", "-", stdin=text,
                        why=f"kube-proxy's nftables transaction of {node.name}")


def apply_pod_changes(ex: Executor, meta: LabMeta, changes: PodChanges) -> LabMeta:
    """``lab sync`` for pods: remove the gone ones, build and start the new ones."""
    pids: dict[str, int] = dict(meta.get("pids", {}))
    for pod in changes.removed:
        pid = pids.pop(pod.ref, None)
        if pid is not None and _ours(int(pid), AGENT):
            _end([int(pid)])
        if not pod.host_network:
            ex.run(Command(("ip", "netns", "del", pod.netns), f"pod {pod.ref} is gone"),
                   check=False)
    meta["plan"] = changes.plan.to_json()
    meta["namespaces"] = list(changes.plan.namespaces)
    save_meta(meta)  # before building: a failure below still leaves the lab removable
    for pod in changes.added:
        if not pod.host_network:
            for cmd in changes.plan.pod_namespace_commands(pod) + \
                    changes.plan.pod_link_commands(pod):
                ex.run(cmd)
    pids.update(start_responders(ex, attrs.evolve(changes.plan, pods=changes.added)))
    meta["pids"] = pids
    save_meta(meta)
    return meta


def start_responders(ex: Executor, plan: LabPlan) -> dict[str, int]:
    logs = lab_dir() / plan.name
    pids: dict[str, int] = {}
    files: list[Path] = []
    for pod in plan.pods:
        if not pod.tcp_ports and not pod.udp_ports:
            continue
        argv = [sys.executable, AGENT, "responder", "--pod", pod.ref]
        for p in pod.tcp_ports:
            argv += ["--tcp", str(p)]
        for p in pod.udp_ports:
            argv += ["--udp", str(p)]
        f = logs / f"{pod.namespace}.{pod.name}.log"
        pids[pod.ref] = ex.start_process(pod.netns, argv, f)
        files.append(f)
    ex.wait_ready(files, list(pids.values()))
    return pids
