"""The mock kernel's ipsets: commands, save/restore round trip, --match-set semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.mockkernel.engine import PacketState
from backends.mockkernel.ipset import IPSetError, IPSetStore
from kservice.errors import RuleParseError, UnsupportedRule

SAVE = """\
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.96.0.10,udp:53
add KUBE-CLUSTER-IP 10.96.100.10,tcp:80
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 198.51.100.20,tcp:80,203.0.113.0/25
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-IPVS-IPS 10.96.100.10
create NETS hash:net family inet hashsize 1024 maxelem 65536
add NETS 10.0.0.0/8
add NETS 192.0.2.7
"""


def pkt(src: str, dst: str, dport: int, proto: str = "tcp", sport: int = 40000) -> PacketState:
    return PacketState.new(src=src, dst=dst, sport=sport, dport=dport, proto=proto, kernel=None)


@pytest.fixture
def store() -> IPSetStore:
    s = IPSetStore()
    s.restore(SAVE)
    return s


def test_save_round_trip(store: IPSetStore) -> None:
    assert store.save() == SAVE
    again = IPSetStore()
    again.restore(store.save())
    assert again.save() == SAVE


def test_hash_ip_port_matches_proto_and_port(store: IPSetStore) -> None:
    assert store.test("KUBE-CLUSTER-IP", pkt("10.244.1.9", "10.96.100.10", 80), ("dst", "dst"))
    assert not store.test("KUBE-CLUSTER-IP", pkt("10.244.1.9", "10.96.100.10", 80, "udp"),
                          ("dst", "dst"))
    assert not store.test("KUBE-CLUSTER-IP", pkt("10.244.1.9", "10.96.100.10", 81), ("dst", "dst"))
    # src,dst: the *source* address with the destination port (kube-proxy's no-detector rule).
    assert store.test("KUBE-CLUSTER-IP", pkt("10.96.100.10", "10.1.1.1", 80), ("src", "dst"))


def test_fewer_flags_than_dimensions_never_match(store: IPSetStore) -> None:
    assert not store.test("KUBE-CLUSTER-IP", pkt("10.244.1.9", "10.96.100.10", 80), ("dst",))
    # More flags than dimensions are fine.
    assert store.test("KUBE-IPVS-IPS", pkt("1.1.1.1", "10.96.100.10", 1), ("dst", "dst"))


def test_hairpin_set(store: IPSetStore) -> None:
    hairpin = pkt("10.244.1.5", "10.244.1.5", 8080)
    assert store.test("KUBE-LOOP-BACK", hairpin, ("dst", "dst", "src"))
    assert not store.test("KUBE-LOOP-BACK", pkt("10.244.1.6", "10.244.1.5", 8080),
                          ("dst", "dst", "src"))


def test_hash_ip_port_net(store: IPSetStore) -> None:
    name = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
    assert store.test(name, pkt("203.0.113.127", "198.51.100.20", 80), ("dst", "dst", "src"))
    assert not store.test(name, pkt("203.0.113.128", "198.51.100.20", 80), ("dst", "dst", "src"))


def test_hash_net_and_host_printing(store: IPSetStore) -> None:
    assert store.test("NETS", pkt("10.200.0.1", "1.1.1.1", 1), ("src",))
    assert store.test("NETS", pkt("192.0.2.7", "1.1.1.1", 1), ("src",))
    assert not store.test("NETS", pkt("192.0.2.8", "1.1.1.1", 1), ("src",))
    assert "add NETS 192.0.2.7\n" in store.save()  # a /32 prints without prefix


def test_bitmap_port_matches_any_l4_protocol(store: IPSetStore) -> None:
    for proto in ("tcp", "udp", "sctp"):
        assert store.test("KUBE-NODE-PORT-TCP", pkt("1.1.1.1", "192.168.0.10", 30080, proto),
                          ("dst",))
    assert not store.test("KUBE-NODE-PORT-TCP", pkt("1.1.1.1", "192.168.0.10", 30081), ("dst",))
    assert store.test("KUBE-NODE-PORT-TCP", pkt("1.1.1.1", "192.168.0.10", 1, sport=30080),
                      ("src",))


def test_family_mismatch_never_matches(store: IPSetStore) -> None:
    assert not store.test("KUBE-IPVS-IPS", pkt("fd00::1", "fd00::2", 80), ("dst",))
    # ... except for bitmap:port, which has no family (kube-proxy's KUBE-6-NODE-PORT-TCP).
    assert store.test("KUBE-NODE-PORT-TCP", pkt("fd00::1", "fd00::2", 30080), ("dst",))


def test_commands_and_errors() -> None:
    s = IPSetStore()
    s.command("ipset create A hash:ip,port family inet hashsize 1024 maxelem 65536 -exist")
    s.command("ipset create A hash:ip,port family inet hashsize 1024 maxelem 65536 -exist")
    with pytest.raises(IPSetError, match="already exists"):
        s.command("ipset create A hash:ip,port family inet")
    s.command("ipset add A 10.0.0.1,tcp:80 -exist")
    s.command("ipset add A 10.0.0.1,tcp:80 -exist")
    with pytest.raises(IPSetError, match="already added"):
        s.command("ipset add A 10.0.0.1,tcp:80")
    s.command("ipset add A 10.0.0.2,udp:1000-1002")
    assert s.members("A") == {"10.0.0.1,tcp:80", "10.0.0.2,udp:1000", "10.0.0.2,udp:1001",
                              "10.0.0.2,udp:1002"}
    s.command("ipset del A 10.0.0.1,tcp:80")
    with pytest.raises(IPSetError, match="not added"):
        s.command("ipset del A 10.0.0.1,tcp:80")
    with pytest.raises(IPSetError, match="does not exist"):
        s.command("ipset add NOPE 1.2.3.4")
    with pytest.raises(IPSetError, match="needs 2"):
        s.command("ipset add A 10.0.0.1")
    with pytest.raises(IPSetError, match="family"):
        s.command("ipset add A fd00::1,tcp:80")
    with pytest.raises(UnsupportedRule, match="hash:mac"):
        s.command("ipset create M hash:mac")
    with pytest.raises(BaseException, match="does not exist"):
        s.test("NOPE", pkt("1.1.1.1", "2.2.2.2", 1), ("dst",))
    s.command("ipset flush A")
    assert s.members("A") == frozenset()
    s.command("ipset destroy A")
    assert "A" not in s.sets


def test_restore_error_names_the_line() -> None:
    s = IPSetStore()
    with pytest.raises(RuleParseError) as exc:
        s.restore("create A hash:ip family inet\nadd A 300.1.1.1\n", source="x.ipset")
    assert exc.value.line == 2
    assert "x.ipset:2" in str(exc.value)


@given(st.sets(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from(["tcp", "udp", "sctp"]),
                         st.integers(0, 65535)), max_size=20))
def test_save_restore_is_identity(entries: set[tuple[int, str, int]]) -> None:
    import ipaddress

    s = IPSetStore()
    s.command("create S hash:ip,port family inet hashsize 1024 maxelem 65536")
    for ip, proto, port in entries:
        s.command(f"add S {ipaddress.IPv4Address(ip)},{proto}:{port} -exist")
    t = IPSetStore()
    t.restore(s.save())
    assert t.save() == s.save()
    assert len(t.sets["S"].elements) == len(entries)
