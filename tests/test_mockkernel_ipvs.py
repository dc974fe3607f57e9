"""The mock kernel's IPVS: ipvsadm commands, -Sn/-Ln, schedulers, persistence, the hook."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import pytest

from backends.mockkernel import MockKernel
from backends.mockkernel.engine import PacketState
from backends.mockkernel.ipvs import IPVS, IPVSError, _hash_32, _sh_index, sh_buckets
from kservice.errors import RuleParseError, UnsupportedRule
from kservice.proxy.types import NodeInfo
from kservice.trace import Packet

VIP = "10.96.0.10"


def table(sched: str, *dests: tuple[str, int], persistent: int | None = None) -> IPVS:
    t = IPVS()
    p = f" -p {persistent}" if persistent else ""
    t.command(f"ipvsadm -A -t {VIP}:80 -s {sched}{p}")
    for ip, w in dests:
        t.command(f"ipvsadm -a -t {VIP}:80 -r {ip}:8080 -m -w {w}")
    return t


def pkt(src: str = "10.244.1.9", sport: int = 40000, dst: str = VIP) -> PacketState:
    return PacketState.new(src=src, dst=dst, sport=sport, dport=80, proto="tcp", kernel=None)


def picks(t: IPVS, n: int) -> list[str]:
    svc = t.services[f"{VIP}:80/TCP"]
    out = []
    for _ in range(n):
        d = t.schedule(svc, pkt())
        out.append(d.address if d else None)
    return out


# --------------------------------------------------------------------------- commands


def test_save_list_round_trip_and_kernel_list_order() -> None:
    t = table("rr", ("10.0.0.2", 1), ("10.0.0.1", 1))
    svc = t.services[f"{VIP}:80/TCP"]
    # ip_vs_add_dest links new destinations at the head of the list.
    assert [d.address for d in svc.dests] == ["10.0.0.1", "10.0.0.2"]
    saved = t.save()
    assert saved == ("-A -t 10.96.0.10:80 -s rr\n"
                     "-a -t 10.96.0.10:80 -r 10.0.0.1:8080 -m -w 1\n"
                     "-a -t 10.96.0.10:80 -r 10.0.0.2:8080 -m -w 1\n")
    again = IPVS()
    again.restore(saved)
    assert again.save() == saved
    assert again.list_text().splitlines()[3] == "TCP  10.96.0.10:80 rr"


def test_edit_delete_clear() -> None:
    t = table("rr", ("10.0.0.1", 1))
    t.command(f"ipvsadm -E -t {VIP}:80 -s wrr -p 10800")
    assert t.save().splitlines()[0] == "-A -t 10.96.0.10:80 -s wrr -p 10800"
    t.command(f"ipvsadm -e -t {VIP}:80 -r 10.0.0.1:8080 -m -w 0")
    assert t.save().splitlines()[1].endswith("-w 0")
    t.command(f"ipvsadm -d -t {VIP}:80 -r 10.0.0.1:8080")
    assert t.save().splitlines() == ["-A -t 10.96.0.10:80 -s wrr -p 10800"]
    t.command(f"ipvsadm -D -t {VIP}:80")
    assert t.save() == ""
    t.command("ipvsadm -A -u 10.96.0.10:53 -s rr")
    t.command("ipvsadm -C")
    assert t.services == {}


def test_command_errors() -> None:
    t = table("rr", ("10.0.0.1", 1))
    with pytest.raises(IPVSError, match="already exists"):
        t.command(f"ipvsadm -A -t {VIP}:80 -s rr")
    with pytest.raises(IPVSError, match="No such service"):
        t.command("ipvsadm -a -t 10.9.9.9:80 -r 10.0.0.1:80 -m")
    with pytest.raises(UnsupportedRule, match="mh"):
        t.command("ipvsadm -A -t 10.9.9.9:80 -s mh")
    with pytest.raises(RuleParseError, match="illegal weight"):
        t.command(f"ipvsadm -e -t {VIP}:80 -r 10.0.0.1:8080 -w 70000")
    with pytest.raises(UnsupportedRule, match="forwarding method"):
        t.command(f"ipvsadm -a -t {VIP}:80 -r 10.0.0.2:8080 -g")
    with pytest.raises(RuleParseError) as exc:
        IPVS().restore("-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n", source="x")
    assert exc.value.line == 2


# --------------------------------------------------------------------------- schedulers


def test_rr_cycles_in_list_order_and_skips_weight_zero() -> None:
    t = table("rr", ("10.0.0.3", 1), ("10.0.0.2", 0), ("10.0.0.1", 1))
    assert picks(t, 4) == ["10.0.0.1", "10.0.0.3", "10.0.0.1", "10.0.0.3"]


def test_wrr_classic_sequence() -> None:
    names = {"10.0.0.1": "A", "10.0.0.2": "B", "10.0.0.3": "C"}
    # Adding C=2, B=3, A=4 one by one: ip_vs_wrr_dest_changed keeps cw=2 from the first
    # destination (cw is only reset when above the new max), so the first pass is cw=2.
    t = table("wrr", ("10.0.0.3", 2), ("10.0.0.2", 3), ("10.0.0.1", 4))
    assert "".join(names[a] for a in picks(t, 9)) == "ABCAABABC"
    # Re-initialising the scheduler (init_svc: cw = mw) gives the LVS documentation's
    # example sequence for A=4, B=3, C=2.
    t.command(f"ipvsadm -E -t {VIP}:80 -s rr")
    t.command(f"ipvsadm -E -t {VIP}:80 -s wrr")
    assert "".join(names[a] for a in picks(t, 9)) == "AABABCABC"


@pytest.mark.parametrize("weights", [(1, 2, 3), (2, 4), (5, 0, 3), (7,)])
def test_wrr_exact_shares_over_a_cycle(weights: tuple[int, ...]) -> None:
    dests = [(f"10.0.0.{i + 1}", w) for i, w in enumerate(weights)]
    t = table("wrr", *dests)
    total = sum(weights)
    got = Counter(picks(t, total * 5))
    assert {ip: got[ip] for ip, w in dests if w} == {ip: 5 * w for ip, w in dests if w}
    svc = t.services[f"{VIP}:80/TCP"]
    assert t.long_run_shares(svc) == {f"{ip}:8080": Fraction(w, total)
                                      for ip, w in dests if w}


def test_lc_picks_least_connections_ties_first_in_list() -> None:
    t = table("lc", ("10.0.0.2", 1), ("10.0.0.1", 1))
    svc = t.services[f"{VIP}:80/TCP"]
    assert t.schedule(svc, pkt()).address == "10.0.0.1"
    svc.dests[0].active = 1
    assert t.schedule(svc, pkt()).address == "10.0.0.2"
    svc.dests[1].active = 1
    svc.dests[1].inactive = 5  # active connections weigh 256 inactive ones
    assert t.schedule(svc, pkt()).address == "10.0.0.1"
    assert set(t.long_run_shares(svc).values()) == {Fraction(1, 2)}


def test_wlc_sed_nq() -> None:
    t = table("wlc", ("10.0.0.2", 3), ("10.0.0.1", 1))
    svc = t.services[f"{VIP}:80/TCP"]
    svc.dests[0].active, svc.dests[1].active = 1, 2  # 1/1 vs 2/3 -> 10.0.0.2
    assert t.schedule(svc, pkt()).address == "10.0.0.2"
    assert t.long_run_shares(svc) == {"10.0.0.1:8080": Fraction(1, 4),
                                      "10.0.0.2:8080": Fraction(3, 4)}
    t.command(f"ipvsadm -E -t {VIP}:80 -s nq")
    svc.dests[0].active = 0
    assert t.schedule(svc, pkt()).address == "10.0.0.1"  # idle server first


def test_sh_hash_and_exact_bucket_shares() -> None:
    # hash_32 of include/linux/hash.h: (val * 0x61C88647) >> 24 on 32 bits.
    assert _hash_32(0) == 0
    assert _hash_32(1) == 0x61
    assert _sh_index("0.0.0.1", 1234, False) == 0x61
    t = table("sh", ("10.0.0.2", 3), ("10.0.0.1", 1))
    svc = t.services[f"{VIP}:80/TCP"]
    buckets = sh_buckets(svc.dests)
    # 10.0.0.1 (list head) owns bucket 0, then 10.0.0.2 three, and so on.
    assert [d.address for d in buckets[:5]] == ["10.0.0.1", "10.0.0.2", "10.0.0.2",
                                                "10.0.0.2", "10.0.0.1"]
    assert t.long_run_shares(svc) == {"10.0.0.1:8080": Fraction(1, 4),
                                      "10.0.0.2:8080": Fraction(3, 4)}
    # Same client, any port -> same destination; the trace reports it with probability 1.
    first = t.schedule(svc, pkt("192.0.2.1", 1))
    assert all(t.schedule(svc, pkt("192.0.2.1", p)) is first for p in range(2, 50))
    t3 = table("sh", ("10.0.0.3", 1), ("10.0.0.2", 1), ("10.0.0.1", 1))
    shares = t3.long_run_shares(t3.services[f"{VIP}:80/TCP"])
    assert shares == {"10.0.0.1:8080": Fraction(86, 256), "10.0.0.2:8080": Fraction(85, 256),
                      "10.0.0.3:8080": Fraction(85, 256)}


def test_sh_weight_zero_owner_means_no_destination() -> None:
    t = table("sh", ("10.0.0.2", 1), ("10.0.0.1", 0))
    svc = t.services[f"{VIP}:80/TCP"]
    # 10.0.0.1 still owns bucket 0 (d_count >= weight after one bucket).
    assert sh_buckets(svc.dests)[0].address == "10.0.0.1"
    assert t.schedule(svc, pkt("0.0.0.0")) is None


# --------------------------------------------------------------------------- the hook


def kernel_with(t: IPVS) -> MockKernel:
    k = MockKernel(NodeInfo("node-a", ips=("192.168.0.10",),
                            interfaces=(("lo", "127.0.0.1/8"), ("eth0", "192.168.0.10/24")),
                            pod_cidrs=("10.244.1.0/24",)),
                   routes=[("10.244.0.0/16", "flannel.1")])
    t.clock = k.clock
    k.ipvs = t
    k.register(t)
    k.add_local_address(VIP, "kube-ipvs0")
    return k


def test_trace_shares_rr_and_weight_zero() -> None:
    k = kernel_with(table("rr", ("10.244.2.3", 1), ("10.244.2.2", 0), ("10.244.2.1", 1)))
    res = k.trace(Packet("192.0.2.50", VIP, 80), mode="ipvs")
    assert res.distribution() == {
        ("ACCEPT", "10.244.2.1:8080", "192.0.2.50"): Fraction(1, 2),
        ("ACCEPT", "10.244.2.3:8080", "192.0.2.50"): Fraction(1, 2)}
    assert any(r.startswith("ipvs LOCAL_IN TCP  10.96.0.10:80 rr ->")
               for r in res.outcomes[0].rules)


def test_no_destination_rejects() -> None:
    k = kernel_with(table("rr"))
    res = k.trace(Packet("192.0.2.50", VIP, 80), mode="ipvs")
    assert res.distribution() == {("REJECT", None, None): Fraction(1)}


def test_non_service_port_passes_through() -> None:
    k = kernel_with(table("rr", ("10.244.2.1", 1)))
    res = k.trace(Packet("192.0.2.50", VIP, 81), mode="ipvs")
    assert res.distribution() == {("ACCEPT", "10.96.0.10:81", "192.0.2.50"): Fraction(1)}


def test_persistence_template_and_timeout() -> None:
    t = table("rr", ("10.244.2.2", 1), ("10.244.2.1", 1), persistent=100)
    k = kernel_with(t)
    first = k.send(Packet("192.0.2.50", VIP, 80, sport=1000), random.Random(1))
    # Another connection from the same client inside the timeout: same destination, p=1.
    k.clock.advance(60)
    res = k.trace(Packet("192.0.2.50", VIP, 80, sport=2000), mode="ipvs")
    assert [o.delivered_to for o in res.outcomes] == [first.delivered_to]
    assert res.outcomes[0].probability == 1
    # A new connection refreshes the template's timer ...
    k.send(Packet("192.0.2.50", VIP, 80, sport=3000), random.Random(1))
    k.clock.advance(60)
    res = k.trace(Packet("192.0.2.50", VIP, 80, sport=4000), mode="ipvs")
    assert [o.delivered_to for o in res.outcomes] == [first.delivered_to]
    # ... and once it expires the client is scheduled afresh.
    k.clock.advance(101)
    res = k.trace(Packet("192.0.2.50", VIP, 80, sport=5000), mode="ipvs")
    assert len(res.outcomes) == 2
    # Other clients are unaffected by the template.
    res = k.trace(Packet("192.0.2.51", VIP, 80, sport=1000), mode="ipvs")
    assert len(res.outcomes) == 2


def test_weight_zero_takes_no_new_connections_and_expires_template() -> None:
    t = table("rr", ("10.244.2.2", 1), ("10.244.2.1", 1), persistent=1000)
    k = kernel_with(t)
    first = k.send(Packet("192.0.2.50", VIP, 80, sport=1000), random.Random(1))
    ip = first.delivered_to.split(":")[0]
    t.command(f"ipvsadm -e -t {VIP}:80 -r {ip}:8080 -m -w 0")
    res = k.trace(Packet("192.0.2.50", VIP, 80, sport=2000), mode="ipvs")
    assert [o.delivered_to for o in res.outcomes] != [first.delivered_to]
    assert first.delivered_to not in {o.delivered_to for o in res.outcomes}


def test_rr_send_alternates() -> None:
    k = kernel_with(table("rr", ("10.244.2.2", 1), ("10.244.2.1", 1)))
    got = [k.send(Packet("192.0.2.50", VIP, 80, sport=1000 + i), random.Random(i)).delivered_to
           for i in range(4)]
    assert got == ["10.244.2.1:8080", "10.244.2.2:8080", "10.244.2.1:8080", "10.244.2.2:8080"]
    listing = k.ipvs.list_text()
    assert "  -> 10.244.2.1:8080              Masq    1      2          0         " in listing


def test_ipvs_match_for_the_out_filter() -> None:
    from backends.mockkernel.ipvs import ipvs_match

    t = table("rr", ("10.244.2.1", 1))
    st = pkt()
    assert not ipvs_match(st, vaddr=VIP, vproto="tcp", vport=80)
    assert not ipvs_match(st, ipvs=True)
    assert ipvs_match(st, ipvs=True, negate=frozenset({"ipvs"}))  # ! --ipvs
    [(_, after, verdict)] = t.evaluate("INPUT", st)
    assert verdict.kind == "REROUTE" and verdict.reinject == "OUTPUT"
    assert (after.dst, after.dport) == ("10.244.2.1", 8080)
    assert ipvs_match(after, vaddr=VIP, vproto="tcp", vport=80)
    assert ipvs_match(after, vaddr="10.96.0.0/16", vdir="ORIGINAL", vmethod="MASQ", ipvs=True)
    assert not ipvs_match(after, vport=81)
    assert ipvs_match(after, vport=81, negate=frozenset({"vport"}))
