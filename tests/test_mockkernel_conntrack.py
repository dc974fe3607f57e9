"""Conntrack, xt_recent affinity and the virtual clock of the mock kernel."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from backends.mockkernel import MockKernel
from backends.mockkernel.conntrack import CONNTRACK_TIMEOUTS
from kservice.proxy.types import NodeInfo
from kservice.trace import Packet

NODE = NodeInfo(name="n1", ips=("192.168.0.2",), pod_cidrs=("10.0.1.0/24",),
                interfaces=(("eth0", "192.168.0.2/24"),))
CLIENT = "10.0.1.5"
VIP = "172.30.0.10"


def service_rules(endpoints: list[str], *, affinity: int | None = None, proto: str = "tcp") -> str:
    """kube-proxy-shaped rules for one ClusterIP service (reference §3.4/§3.5)."""
    svc = "KUBE-SVC-TEST"
    lines = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", f":{svc} - [0:0]"]
    seps = [f"KUBE-SEP-E{i}" for i in range(len(endpoints))]
    lines += [f":{s} - [0:0]" for s in seps]
    lines.append("-A PREROUTING -j KUBE-SERVICES")
    lines.append(f"-A KUBE-SERVICES -m {proto} -p {proto} -d {VIP} --dport 80 -j {svc}")
    lines.append("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000")
    if affinity is not None:
        for ep, sep in zip(endpoints, seps, strict=True):
            lines.append(f'-A {svc} -m comment --comment "ns/s -> {ep}" -m recent --name {sep} '
                         f"--rcheck --seconds {affinity} --reap -j {sep}")
    n = len(endpoints)
    for i, sep in enumerate(seps):
        prob = f" -m statistic --mode random --probability {1.0 / (n - i):0.10f}" if i < n - 1 else ""
        lines.append(f"-A {svc}{prob} -j {sep}")
    for ep, sep in zip(endpoints, seps, strict=True):
        ip = ep.split(":")[0]
        lines.append(f"-A {sep} -s {ip} -j KUBE-MARK-MASQ")
        rec = f" -m recent --name {sep} --set" if affinity is not None else ""
        lines.append(f"-A {sep}{rec} -m {proto} -p {proto} -j DNAT --to-destination {ep}")
    lines.append("COMMIT")
    if not endpoints:
        lines = ["*nat", ":KUBE-SERVICES - [0:0]", "COMMIT", "*filter", ":KUBE-SERVICES - [0:0]",
                 "-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES",
                 f"-A KUBE-SERVICES -m {proto} -p {proto} -d {VIP} --dport 80 -j REJECT", "COMMIT"]
    return "\n".join(lines) + "\n"


EPS = ["10.0.2.1:80", "10.0.2.2:80", "10.0.2.3:80"]


def kernel(endpoints: list[str] = EPS, **kw: object) -> MockKernel:
    k = MockKernel(NODE)
    k.load_iptables_save(service_rules(endpoints, **kw))  # type: ignore[arg-type]
    return k


def test_sampling_follows_the_exact_distribution() -> None:
    k = kernel()
    assert k.trace(Packet(CLIENT, VIP, 80)).distribution() == {
        ("ACCEPT", ep, CLIENT): Fraction(1, 3) for ep in EPS}
    rng = random.Random(7)
    counts = {ep: 0 for ep in EPS}
    for i in range(3000):
        counts[k.send(Packet(CLIENT, VIP, 80, sport=1024 + i), rng).delivered_to] += 1  # type: ignore[index]
    assert all(900 < c < 1100 for c in counts.values()), counts


def test_same_seed_same_sequence() -> None:
    a = [kernel().send(Packet(CLIENT, VIP, 80, sport=2000 + i), random.Random(3)).delivered_to
         for i in range(5)]
    k1, k2 = kernel(), kernel()
    r1, r2 = random.Random(11), random.Random(11)
    s1 = [k1.send(Packet(CLIENT, VIP, 80, sport=2000 + i), r1).delivered_to for i in range(20)]
    s2 = [k2.send(Packet(CLIENT, VIP, 80, sport=2000 + i), r2).delivered_to for i in range(20)]
    assert s1 == s2 and len(a) == 5


def test_flow_keeps_its_endpoint_after_endpoint_leaves_the_rules() -> None:
    k = kernel()
    rng = random.Random(1)
    pkt = Packet(CLIENT, VIP, 80, sport=33333)
    first = k.send(pkt, rng).delivered_to
    assert first is not None
    entry = k.conntrack.lookup("tcp", CLIENT, 33333, VIP, 80)
    assert entry is not None and entry.seen_reply and entry.dnat == tuple(
        [first.split(":")[0], int(first.split(":")[1])])
    # The endpoint is removed from the rules (kube-proxy resync) ...
    k.load_iptables_save(service_rules([e for e in EPS if e != first]))
    # ... the established flow still goes to it (NAT is not re-evaluated) ...
    for _ in range(5):
        assert k.send(pkt, rng).delivered_to == first
    r = k.trace(pkt)
    assert r.distribution() == {("ACCEPT", first, CLIENT): 1}
    # ... its later packets are ESTABLISHED and skip the nat table.
    assert not any(line.startswith("nat ") for line in r.outcomes[0].rules)
    # ... while a new connection only sees the remaining endpoints.
    new = k.trace(Packet(CLIENT, VIP, 80, sport=44444)).distribution()
    assert first not in {key[1] for key in new} and sum(new.values()) == 1


def test_conntrack_timeout_on_virtual_clock() -> None:
    k = kernel()
    rng = random.Random(2)
    pkt = Packet(CLIENT, VIP, 80, sport=33333)
    k.send(pkt, rng)
    established = CONNTRACK_TIMEOUTS["tcp"][1]
    k.clock.advance(established - 1)
    assert k.conntrack.lookup("tcp", CLIENT, 33333, VIP, 80) is not None
    k.clock.advance(2)
    assert k.conntrack.lookup("tcp", CLIENT, 33333, VIP, 80) is None
    assert len(k.trace(pkt).outcomes) == 3  # a new connection again


def test_udp_timeout_is_shorter() -> None:
    k = kernel(proto="udp")
    pkt = Packet(CLIENT, VIP, 80, sport=5353, proto="udp")
    k.send(pkt, random.Random(0))
    k.clock.advance(CONNTRACK_TIMEOUTS["udp"][1] + 1)
    assert len(k.conntrack) == 0


def test_conntrack_flush_by_nat_destination() -> None:
    k = kernel(proto="udp")
    pkt = Packet(CLIENT, VIP, 80, sport=5353, proto="udp")
    ep = k.send(pkt, random.Random(0)).delivered_to
    assert ep is not None
    # kube-proxy deletes UDP entries of a removed endpoint (conntrack -D --orig-dst VIP
    # --reply-src ep), so the next datagram is balanced again.
    assert k.conntrack.flush(nat_dst=ep.split(":")[0]) == 1
    assert len(k.trace(pkt).outcomes) == 3


def test_reject_without_endpoints_creates_no_entry() -> None:
    k = kernel([])
    out = k.send(Packet(CLIENT, VIP, 80), random.Random(0))
    assert out.verdict == "REJECT" and out.delivered_to is None
    assert len(k.conntrack) == 0


def test_affinity_within_timeout_then_random_again() -> None:
    k = kernel(["10.0.2.1:80", "10.0.2.2:80"], affinity=10)
    rng = random.Random(5)
    first = k.send(Packet(CLIENT, VIP, 80, sport=1000), rng).delivered_to
    # New connections (new source ports) within the timeout: always the same endpoint.
    for i, dt in enumerate((3, 3, 3)):
        k.clock.advance(dt)
        assert k.trace(Packet(CLIENT, VIP, 80, sport=2000 + i)).distribution() == {
            ("ACCEPT", first, CLIENT): 1}
        assert k.send(Packet(CLIENT, VIP, 80, sport=2000 + i), rng).delivered_to == first
    # Each connection refreshed the recent entry (--set in the SEP chain): t=9 now.
    k.clock.advance(10)  # t=19: last --set at t=9, 10 s ago -> still matches (>=)
    assert k.trace(Packet(CLIENT, VIP, 80, sport=3000)).distribution() == {
        ("ACCEPT", first, CLIENT): 1}
    k.clock.advance(1)  # t=20: 11 s since the last use -> random again
    assert k.trace(Packet(CLIENT, VIP, 80, sport=3001)).distribution() == {
        ("ACCEPT", "10.0.2.1:80", CLIENT): Fraction(1, 2),
        ("ACCEPT", "10.0.2.2:80", CLIENT): Fraction(1, 2),
    }


def test_affinity_is_per_client_address() -> None:
    k = kernel(["10.0.2.1:80", "10.0.2.2:80"], affinity=100)
    k.send(Packet(CLIENT, VIP, 80, sport=1000), random.Random(5))
    other = k.trace(Packet("10.0.1.6", VIP, 80)).distribution()
    assert len(other) == 2


def test_affinity_reap_removes_stale_stamps_on_send() -> None:
    k = kernel(["10.0.2.1:80", "10.0.2.2:80"], affinity=10)
    rng = random.Random(5)
    k.send(Packet(CLIENT, VIP, 80, sport=1000), rng)
    assert k.recent.addresses("KUBE-SEP-E0") + k.recent.addresses("KUBE-SEP-E1") == [CLIENT]
    k.clock.advance(60)
    k.send(Packet(CLIENT, VIP, 80, sport=1001), rng)
    # The stale list was reaped by --rcheck --reap; the new choice re-set one list.
    lists = {n: k.recent.lists.get(n, {}) for n in ("KUBE-SEP-E0", "KUBE-SEP-E1")}
    assert sum(len(v) for v in lists.values()) == 1
    assert all(len(stamps) == 1 for v in lists.values() for stamps in v.values())


def test_clock_cannot_go_backwards() -> None:
    with pytest.raises(ValueError):
        kernel().clock.advance(-1)


def test_hairpin_entry_remembers_masquerade() -> None:
    node = NodeInfo(name="n1", ips=("192.168.0.2",), pod_cidrs=("10.0.2.0/24",),
                    interfaces=(("eth0", "192.168.0.2/24"), ("cni0", "10.0.2.254/24")))
    k = MockKernel(node)
    k.load_iptables_save(service_rules(["10.0.2.1:80"]) + (
        "*nat\n:KUBE-POSTROUTING - [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING\n"
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
        "-A KUBE-POSTROUTING -j MASQUERADE\nCOMMIT\n"))
    pkt = Packet("10.0.2.1", VIP, 80, sport=999)
    out = k.send(pkt, random.Random(0))
    assert (out.delivered_to, out.source_seen, out.masqueraded) == ("10.0.2.1:80", "10.0.2.254", True)
    # The second packet of the flow reuses both bindings.
    again = k.send(pkt, random.Random(0))
    assert (again.delivered_to, again.source_seen, again.masqueraded) == ("10.0.2.1:80", "10.0.2.254", True)


def test_affinity_memory_goes_with_the_last_rule_naming_its_list() -> None:
    """xt_recent frees a list with its last rule: an endpoint that leaves and comes back is
    chosen afresh (Linux pinned in test_iptables_kernel.py's recent-lifetime test)."""
    k = kernel(["10.0.2.1:80", "10.0.2.2:80"], affinity=100)
    first = k.send(Packet(CLIENT, VIP, 80, sport=1000), random.Random(5)).delivered_to
    assert first is not None
    # A re-render with both endpoints keeps the lists (and the client's memory).
    k.load_iptables_save(service_rules(["10.0.2.1:80", "10.0.2.2:80"], affinity=100),
                         noflush=False)
    assert k.trace(Packet(CLIENT, VIP, 80, sport=1001)).distribution() == {
        ("ACCEPT", first, CLIENT): 1}
    # Without affinity (no rule names the lists): freed.
    k.load_iptables_save(service_rules(["10.0.2.1:80", "10.0.2.2:80"]), noflush=False)
    assert k.recent.lists == {}
    # Affinity back: new empty lists, the next choice is random again.
    k.load_iptables_save(service_rules(["10.0.2.1:80", "10.0.2.2:80"], affinity=100),
                         noflush=False)
    assert k.recent.lists == {"KUBE-SEP-E0": {}, "KUBE-SEP-E1": {}}
    assert len(k.trace(Packet(CLIENT, VIP, 80, sport=1002)).distribution()) == 2
