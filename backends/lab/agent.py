"""The two tiny programs the lab runs inside its network namespaces (stdlib only).

``responder`` -- what a lab pod "runs": one process listening on every container port of the
pod, TCP and/or UDP, answering each connection / datagram with one JSON line
``{"pod": "NS/NAME", "peer": "IP:PORT"}`` -- who answered and the source address it saw,
which is what tells masquerading from client-IP preservation. It prints ``READY`` once every
socket is bound, so the lab knows it can start probing.

``probe`` -- a client: ``count`` attempts, each a fresh socket (a fresh source port, hence a
fresh conntrack entry and a fresh load-balancing decision), to ``IP:PORT`` over TCP or UDP,
with a short timeout. It prints one JSON summary: which pod answered how often, the source
each saw, and how many attempts were refused (TCP RST / ICMP unreachable, i.e. a REJECT) or
timed out (no answer: a DROP, or nothing listening on UDP without an ICMP error).

The file is executed by path (``python agent.py ...``) under ``ip netns exec``, never
imported by the lab itself, so it must not import kservice: start-up stays fast and the
namespace process carries nothing it does not need. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import signal
import socket
import sys
import time

#: Upper bounds whatever the caller asks (the lab must never hang a terminal or CI).
MAX_ATTEMPTS = 10_000
MAX_TIMEOUT = 10.0


def _reply(pod: str, peer: tuple[str, int]) -> bytes:
    return (json.dumps({"pod": pod, "peer": f"{peer[0]}:{peer[1]}"}) + "\n").encode()


def run_responder(pod: str, tcp: list[int], udp: list[int], lifetime: float) -> int:
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    for port in tcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "tcp")
        socks.append(s)
    for port in udp:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "udp")
        socks.append(s)
    stop = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("READY", flush=True)
    # A lab left behind by a crashed run must not keep processes forever: the responder
    # exits after ``lifetime`` seconds (the lab's own "down" kills it much earlier).
    deadline = time.monotonic() + lifetime
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            ready = key.fileobj
            if not isinstance(ready, socket.socket):
                continue
            try:
                if key.data == "tcp":
                    conn, peer = ready.accept()
                    with conn:
                        conn.settimeout(1.0)
                        conn.sendall(_reply(pod, peer))
                else:
                    _data, peer = ready.recvfrom(2048)
                    ready.sendto(_reply(pod, peer), peer)
            except OSError:
                continue  # a client that went away must not take the pod down
    for s in socks:
        s.close()
    return 0


def _attempt(dst: str, port: int, proto: str, timeout: float, bind: str | None) -> tuple[str, dict[str, str] | None]:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.settimeout(timeout)
        if bind:
            s.bind((bind, 0))
        s.connect((dst, port))
        if proto == "udp":
            s.send(b"probe\n")
        data = b""
        # One JSON line is short; bounded reads until the newline or the peer closes.
        for _ in range(16):
            chunk = s.recv(4096)
            data += chunk
            if not chunk or b"\n" in data:
                break
        if not data:
            return "closed", None
        return "answered", json.loads(data.decode().splitlines()[0])
    except TimeoutError:
        return "timeout", None
    except ConnectionRefusedError:
        return "refused", None
    except ConnectionResetError:
        return "refused", None
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable", None
        return "error:" + (errno.errorcode.get(exc.errno or 0, str(exc))), None
    except (ValueError, UnicodeDecodeError):
        return "garbled", None
    finally:
        s.close()


def run_probe(dst: str, port: int, proto: str, count: int, timeout: float, bind: str | None) -> int:
    count = max(1, min(count, MAX_ATTEMPTS))
    timeout = max(0.05, min(timeout, MAX_TIMEOUT))
    answers: dict[str, int] = {}
    sources: dict[str, dict[str, int]] = {}
    order: list[str] = []
    failures: dict[str, int] = {}
    for _ in range(count):
        status, reply = _attempt(dst, port, proto, timeout, bind)
        if status == "answered" and reply is not None:
            pod = str(reply.get("pod"))
            answers[pod] = answers.get(pod, 0) + 1
            src = str(reply.get("peer", "")).rpartition(":")[0]
            per = sources.setdefault(pod, {})
            per[src] = per.get(src, 0) + 1
            order.append(pod)
        else:
            failures[status] = failures.get(status, 0) + 1
            order.append("!" + status)
    print(json.dumps({"attempts": count, "answers": answers, "sources": sources,
                      "failures": failures, "order": order}, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="agent")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("responder")
    r.add_argument("--pod", required=True)
    r.add_argument("--tcp", type=int, action="append", default=[])
    r.add_argument("--udp", type=int, action="append", default=[])
    r.add_argument("--lifetime", type=float, default=6 * 3600.0)
    q = sub.add_parser("probe")
    q.add_argument("--dst", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--timeout", type=float, default=0.5)
    q.add_argument("--bind")
    a = p.parse_args(argv)
    if a.what == "responder":
        return run_responder(a.pod, a.tcp, a.udp, a.lifetime)
    return run_probe(a.dst, a.port, a.proto, a.count, a.timeout, a.bind)


if __name__ == "__main__":
    sys.exit(main())
