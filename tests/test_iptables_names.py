"""Chain-name hashing against the reference's worked examples and the goldens' cross-reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.iptables.names import (
    CHAIN_NAME_MAX,
    endpoint_chain,
    ext_chain,
    fw_chain,
    is_service_chain,
    port_chain_hash,
    svc_chain,
    svl_chain,
)
from kservice.proxy.types import ServicePortName, join_host_port

# (spn, protocol, endpoint or None, hash) -- kube-proxy-iptables.md §2.3 and the golden tables.
VECTORS = [
    ("ns1/svc1:p80", "tcp", None, "XPGD46QRK7WJZT7O"),
    ("ns1/svc1:p80", "tcp", "10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
    ("ns1/svc1", "tcp", None, "AQI2S6QIMU7PVVRP"),
    ("ns2/svc2:dns-udp", "udp", None, "56EGM3ZB4YILLRBZ"),
    ("ns1/svc1:p80", "tcp", "[fd00:10:180::1]:80", "OGYCNMB4EMRUSJ6N"),
    ("ns2/svc2:p80", "tcp", None, "GNZBNJ2PO5MGZ6GT"),
    ("ns3/svc3:p80", "tcp", None, "X27LE4BHSL4DOUIK"),
    ("ns4/svc4:p80", "tcp", None, "4SW47YFZTEDKD3PK"),
    ("ns5/svc5:p80", "tcp", None, "NUKIZ6OKUXPJNT4C"),
    ("ns2/svc2:p80", "tcp", "10.180.0.2:80", "RS4RBKLTHTF2IUXJ"),
    ("ns3/svc3:p80", "tcp", "10.180.0.3:80", "OYPFS5VJICHGATKP"),
    ("ns4/svc4:p80", "tcp", "10.180.0.4:80", "UKSFD7AGPMPPLUHC"),
    ("ns4/svc4:p80", "tcp", "10.180.0.5:80", "C6EBXVWJJZMIWKLZ"),
    ("ns5/svc5:p80", "tcp", "10.180.0.3:80", "I77PXRDZVX7PMWMN"),
    ("ns1/svc1:p80", "tcp", "10.180.2.1:80", "ZX7GRIZKSNUQ3LAJ"),
]


@pytest.mark.parametrize(("spn", "proto", "endpoint", "expected"), VECTORS)
def test_reference_vectors(spn: str, proto: str, endpoint: str | None, expected: str) -> None:
    if endpoint is None:
        assert port_chain_hash(spn, proto) == expected
        assert svc_chain(spn, proto) == f"KUBE-SVC-{expected}"
        assert svl_chain(spn, proto) == f"KUBE-SVL-{expected}"
        assert ext_chain(spn, proto) == f"KUBE-EXT-{expected}"
        assert fw_chain(spn, proto) == f"KUBE-FW-{expected}"
    else:
        assert endpoint_chain(spn, proto, endpoint) == f"KUBE-SEP-{expected}"


def test_protocol_is_part_of_the_hash_but_not_of_the_name_string() -> None:
    spn = str(ServicePortName("ns2", "svc2", "dns", "UDP"))
    assert spn == "ns2/svc2:dns"
    assert port_chain_hash(spn, "udp") != port_chain_hash(spn, "tcp")


def test_unnamed_port_has_no_colon() -> None:
    assert str(ServicePortName("ns1", "svc1", "", "TCP")) == "ns1/svc1"


def test_ipv6_endpoint_string_is_bracketed() -> None:
    assert join_host_port("fd00:10:180::1", 80) == "[fd00:10:180::1]:80"


@given(
    ns=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    name=st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    port=st.from_regex(r"([a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)?", fullmatch=True),
    proto=st.sampled_from(["tcp", "udp", "sctp"]),
    ip=st.ip_addresses(),
)
def test_names_fit_iptables_and_use_base32(ns: str, name: str, port: str, proto: str, ip: object) -> None:
    spn = f"{ns}/{name}" + (f":{port}" if port else "")
    names = [svc_chain(spn, proto), svl_chain(spn, proto), ext_chain(spn, proto),
             fw_chain(spn, proto), endpoint_chain(spn, proto, join_host_port(str(ip), 8080))]
    for chain in names:
        assert len(chain) <= CHAIN_NAME_MAX
        assert re.fullmatch(r"KUBE-(SVC|SVL|EXT|FW|SEP)-[A-Z2-7]{16}", chain)
        assert is_service_chain(chain)


@pytest.mark.parametrize(
    ("chain", "ours"),
    [("KUBE-SVC-X", True), ("KUBE-SEP-X", True), ("KUBE-FW-X", True), ("KUBE-EXT-X", True),
     ("KUBE-SVL-X", True), ("KUBE-XLB-X", False), ("KUBE-SERVICES", False),
     ("KUBE-MARK-MASQ", False), ("KUBE-NODEPORTS", False)],
)
def test_stale_cleanup_prefixes(chain: str, ours: bool) -> None:
    assert is_service_chain(chain) is ours


@given(st.text(max_size=80))
def test_fast_base32_equals_the_definition(text: str) -> None:
    from backends.iptables.names import _hash16, _hash16_reference

    assert _hash16(text) == _hash16_reference(text)
