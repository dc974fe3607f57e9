"""ipvsadm -Ln / -Sn, ipset save, kube-ipvs0 and the `all` container: exact layouts and quirks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backends.ipvs.formats import (
    LIST_HEADER,
    all_text,
    ipset_restore,
    ipset_save,
    ipvsadm_list,
    ipvsadm_save,
    kube_ipvs0_addr,
    sort_destinations,
    sort_services,
    split_all,
)
from backends.ipvs.model import FLAG_PERSISTENT, IPSet, RealServer, VirtualServer


def vs(addr: str, port: int, proto: str = "TCP", **kw: object) -> VirtualServer:
    return VirtualServer(addr, port, proto, **kw)  # type: ignore[arg-type]


def test_wrapping_address_compare_puts_192_before_10() -> None:
    # 192.168.0.10 - 10.96.100.10 = 0xB611 9C00 wraps negative as a signed int.
    order = sort_services([vs("10.96.100.10", 80), vs("192.168.0.10", 30080)])
    assert [v.address for v in order] == ["192.168.0.10", "10.96.100.10"]


def test_close_addresses_sort_numerically_not_as_text() -> None:
    order = sort_services([vs("10.96.0.10", 53), vs("10.96.0.9", 53), vs("10.96.0.100", 53)])
    assert [v.address for v in order] == ["10.96.0.9", "10.96.0.10", "10.96.0.100"]


def test_family_then_protocol_then_port() -> None:
    items = [vs("fd00::1", 80), vs("10.0.0.1", 80, "SCTP"), vs("10.0.0.1", 80, "UDP"),
             vs("10.0.0.1", 81), vs("10.0.0.1", 80)]
    order = sort_services(items)
    assert [(v.address, v.protocol, v.port) for v in order] == [
        ("10.0.0.1", "TCP", 80), ("10.0.0.1", "TCP", 81), ("10.0.0.1", "UDP", 80),
        ("10.0.0.1", "SCTP", 80), ("fd00::1", "TCP", 80)]


def test_destinations_sorted_by_address_then_port() -> None:
    order = sort_destinations([RealServer("10.244.2.7", 80), RealServer("10.244.1.5", 8080),
                               RealServer("10.244.1.5", 80)])
    assert [r.key for r in order] == ["10.244.1.5:80", "10.244.1.5:8080", "10.244.2.7:80"]


@given(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8, unique=True))
def test_within_half_space_order_is_numeric(ints: list[int]) -> None:
    # The wrapping compare agrees with numeric order while differences stay below 2^31.
    import ipaddress

    addrs = [str(ipaddress.IPv4Address(i)) for i in ints]
    order = sort_services([vs(a, 80) for a in addrs])
    assert [int(ipaddress.IPv4Address(v.address)) for v in order] == sorted(ints)


def test_destination_line_layout_and_trailing_spaces() -> None:
    text = ipvsadm_list({"k": vs("10.0.0.1", 80)}, {"10.0.0.1:80/TCP": [RealServer("10.1.2.3", 8080, 3)]})
    line = text.splitlines()[-1]
    assert line == "  -> 10.1.2.3:8080                Masq    3      0          0         "
    assert len(line) == len("  -> ") + 28 + 1 + 7 + 1 + 6 + 1 + 10 + 1 + 10


def test_counters_and_header() -> None:
    v = vs("10.0.0.1", 80, flags=FLAG_PERSISTENT, timeout=10800)
    text = ipvsadm_list({v.key: v}, {v.key: [RealServer("10.1.2.3", 8080)]},
                        counters={(v.key, "10.1.2.3:8080"): (12, 345)})
    assert text.startswith(LIST_HEADER)
    assert text.splitlines()[3] == "TCP  10.0.0.1:80 rr persistent 10800"
    assert text.splitlines()[4] == "  -> 10.1.2.3:8080                Masq    1      12         345       "


def test_save_udp_and_persistence() -> None:
    v = vs("10.96.0.10", 53, "UDP", flags=FLAG_PERSISTENT, timeout=10800)
    text = ipvsadm_save({v.key: v}, {v.key: [RealServer("10.244.0.3", 53)]})
    assert text == ("-A -u 10.96.0.10:53 -s rr -p 10800\n"
                    "-a -u 10.96.0.10:53 -r 10.244.0.3:53 -m -w 1\n")


def test_ipset_save_groups_members_after_their_create_line() -> None:
    sets = [IPSet("A", "bitmap:port", "c", entries={"30080", "9000", "30001"}),
            IPSet("B", "hash:ip,port", "c", entries={"10.0.0.2,tcp:80", "10.0.0.1,udp:53"}),
            IPSet("C", "hash:ip", "c", family="inet6")]
    assert ipset_save(sets) == (
        "create A bitmap:port range 0-65535\n"
        "add A 9000\nadd A 30001\nadd A 30080\n"
        "create B hash:ip,port family inet hashsize 1024 maxelem 65536\n"
        "add B 10.0.0.1,udp:53\nadd B 10.0.0.2,tcp:80\n"
        "create C hash:ip family inet6 hashsize 1024 maxelem 65536\n")
    restore = ipset_restore(sets)
    assert restore.index("create C") < restore.index("add A 9000")


def test_kube_ipvs0_addr() -> None:
    text = kube_ipvs0_addr(["10.96.0.1", "fd00::1"])
    assert text.splitlines() == [
        "kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default",
        "    inet 10.96.0.1/32 scope global kube-ipvs0",
        "       valid_lft forever preferred_lft forever",
        "    inet6 fd00::1/128 scope global ",
        "       valid_lft forever preferred_lft forever",
    ]


@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                          st.text(alphabet="ab \n-#", max_size=30)),
                min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_all_round_trips(sections: list[tuple[str, str]]) -> None:
    # A section's text never starts a line with '### ' in practice; keep the draw honest.
    sections = [(n, t.replace("#", "")) for n, t in sections]
    back = split_all(all_text(sections))
    assert list(back) == [n for n, _ in sections]
    for name, text in sections:
        assert back[name] == (text if text.endswith("\n") or not text else text + "\n")


def test_split_all_refuses_headerless_text() -> None:
    import pytest

    from kservice.errors import BackendError

    with pytest.raises(BackendError, match="line 1"):
        split_all("oops\n### a\n")
