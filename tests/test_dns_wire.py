"""The DNS wire codec (kservice.dns.wire), cross-checked against dnspython."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kservice.dns import AAAA, CNAME, PTR, SOA, SRV, TXT, A, Record
from kservice.dns.wire import (
    Edns,
    IgnoreMessage,
    Message,
    Question,
    WireError,
    encode,
    error_response,
    parse_query,
    udp_limit,
)


def q(name: str = "web.default.svc.cluster.local.", qtype: str = "A", **kw):  # type: ignore[no-untyped-def]
    return dns.message.make_query(name, qtype, **kw)


# ------------------------------------------------------------------ parsing


def test_parse_plain_query() -> None:
    m = q()
    query = parse_query(m.to_wire())
    assert query.id == m.id
    assert query.question == Question("web.default.svc.cluster.local.", 1, 1)
    assert query.rd and query.edns is None
    assert udp_limit(query) == 512


def test_parse_edns_query() -> None:
    m = q(qtype="SRV", use_edns=0, payload=4096, want_dnssec=True,
          options=[dns.edns.GenericOption(10, b"12345678")])
    query = parse_query(m.to_wire())
    assert query.question.qtype == 33
    assert query.edns is not None
    assert (query.edns.udp_size, query.edns.version, query.edns.do) == (4096, 0, True)
    assert query.edns.options == ((10, b"12345678"),)
    assert udp_limit(query) == 4096


def test_small_edns_buffer_counts_as_512() -> None:
    query = parse_query(q(use_edns=0, payload=100).to_wire())
    assert udp_limit(query) == 512


def test_case_of_question_is_kept() -> None:
    query = parse_query(q("WeB.Default.SVC.cluster.LOCAL.").to_wire())
    assert query.question.name == "WeB.Default.SVC.cluster.LOCAL."


def test_compressed_question_name_is_followed() -> None:
    # A hand-made query whose additional OPT owner is root and question is plain, plus a
    # pointer-compressed name in an additional non-OPT record.
    header = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 1)
    qname = b"\x03web\x07default\x00"
    question = qname + struct.pack("!HH", 1, 1)
    extra = b"\x01x\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x01\x02\x03\x04"
    query = parse_query(header + question + extra)
    assert query.question.name == "web.default."


@pytest.mark.parametrize("raw,why", [
    (struct.pack("!HHHHHH", 9, 0x0100, 0, 0, 0, 0), "no question"),
    (struct.pack("!HHHHHH", 9, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2, "two questions"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x03we", "truncated label"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x00\x00", "truncated qtype"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x41abc\x00\x00\x01\x00\x01", "label type 01"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", "pointer loop"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\xc0\x20\x00\x01\x00\x01", "forward pointer"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01junk", "trailing bytes"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 1, 0, 0) + b"\x00\x00\x01\x00\x01", "answer in query"),
    (struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + (b"\x3fa" + b"a" * 62) * 5 + b"\x00\x00\x01\x00\x01",
     "name > 255"),
    (b"\x00\x09\x01\x00\x00", "short header"),
])
def test_malformed_is_formerr(raw: bytes, why: str) -> None:
    with pytest.raises(WireError) as info:
        parse_query(raw)
    err = info.value
    assert not isinstance(err, IgnoreMessage), why
    assert err.rcode == "FORMERR"
    reply = error_response(err)
    assert reply is not None
    parsed = dns.message.from_wire(encode(reply))
    assert parsed.id == 9
    assert parsed.rcode() == dns.rcode.FORMERR
    assert parsed.flags & dns.flags.QR


def test_two_opt_records_is_formerr() -> None:
    m = q(use_edns=0)
    wire = bytearray(m.to_wire())
    opt = wire[-11:]
    assert opt[0] == 0 and opt[1:3] == b"\x00\x29"
    wire += opt
    struct.pack_into("!H", wire, 10, 2)
    with pytest.raises(WireError, match="more than one OPT"):
        parse_query(bytes(wire))


def test_responses_and_crumbs_are_ignored() -> None:
    resp = dns.message.make_response(q())
    with pytest.raises(IgnoreMessage):
        parse_query(resp.to_wire())
    with pytest.raises(IgnoreMessage):
        parse_query(b"\x01")
    assert error_response(IgnoreMessage("x", msg_id=3)) is None


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY,
                                    dns.opcode.UPDATE])
def test_other_opcodes_are_notimp(opcode: int) -> None:
    m = q()
    m.set_opcode(opcode)
    with pytest.raises(WireError) as info:
        parse_query(m.to_wire())
    assert info.value.rcode == "NOTIMP"
    reply = error_response(info.value)
    assert reply is not None
    # Read the header by hand: dnspython's UPDATE parser insists on an SOA zone section.
    msg_id, flags, qd, *_ = struct.unpack("!HHHHHH", encode(reply)[:12])
    assert msg_id == m.id
    assert flags & 0x8000 and flags & 0xF == dns.rcode.NOTIMP
    assert (flags >> 11) & 0xF == opcode
    assert qd == 1  # the question is echoed


# ------------------------------------------------------------------ encoding


RRS = (
    Record("web.default.svc.cluster.local.", 30, A("10.96.5.5")),
    Record("web.default.svc.cluster.local.", 30, AAAA("fd00::5")),
    Record("ext.default.svc.cluster.local.", 30, CNAME("db.example.com.")),
    Record("5.5.96.10.in-addr.arpa.", 30, PTR("web.default.svc.cluster.local.")),
    Record("_http._tcp.web.default.svc.cluster.local.", 30,
           SRV(0, 100, 80, "web.default.svc.cluster.local.")),
    Record("dns-version.cluster.local.", 28800, TXT(("1.0.1",))),
    Record("cluster.local.", 30, SOA("ns.dns.cluster.local.", "hostmaster.cluster.local.",
                                     42, 7200, 1800, 86400, 30)),
)


@pytest.mark.parametrize("rr", RRS, ids=lambda r: r.type)
def test_records_decode_in_dnspython(rr: Record) -> None:
    msg = Message(id=1, question=Question(rr.name, 1), answer=(rr,), aa=True)
    parsed = dns.message.from_wire(encode(msg))
    (rrset,) = parsed.answer
    assert rrset.name.to_text() == rr.name
    assert rrset.ttl == rr.ttl
    assert dns.rdatatype.to_text(rrset.rdtype) == rr.type
    assert rrset[0].to_text() == rr.data.text()
    assert parsed.flags & dns.flags.AA


def test_long_txt_is_split_into_character_strings() -> None:
    rr = Record("t.cluster.local.", 5, TXT(("x" * 300,)))
    parsed = dns.message.from_wire(encode(Message(id=1, answer=(rr,))))
    assert [len(s) for s in parsed.answer[0][0].strings] == [255, 45]


def test_names_are_compressed_but_not_srv_targets() -> None:
    rrs = tuple(Record("web.default.svc.cluster.local.", 30, A(f"10.0.0.{i}"))
                for i in range(10))
    q1 = Question("web.default.svc.cluster.local.", 1)
    wire = encode(Message(id=1, question=q1, answer=rrs))
    # Each answer's owner is a 2-byte pointer: 12 + 35 (question) + 10 * (2+10+4).
    assert len(wire) == 12 + 31 + 4 + 10 * 16
    srv = Record("_a._tcp.web.default.svc.cluster.local.", 30,
                 SRV(0, 100, 80, "web.default.svc.cluster.local."))
    wire = encode(Message(id=1, question=Question(srv.name, 33), answer=(srv,)))
    assert wire.count(b"\x03web\x07default\x03svc\x07cluster\x05local\x00") == 2


def test_truncation_without_edns() -> None:
    rrs = tuple(Record("big.default.svc.cluster.local.", 30, A(f"10.244.{i // 250}.{i % 250}"))
                for i in range(100))
    msg = Message(id=5, question=Question("big.default.svc.cluster.local.", 1), answer=rrs)
    wire = encode(msg, 512)
    assert len(wire) <= 512
    parsed = dns.message.from_wire(wire)
    assert parsed.flags & dns.flags.TC
    n = len(parsed.answer[0]) if parsed.answer else 0
    assert 0 < n < 100
    full = dns.message.from_wire(encode(msg, 4096))
    assert not full.flags & dns.flags.TC
    assert len(full.answer[0]) == 100


def test_additional_overflow_does_not_set_tc() -> None:
    ans = (Record("a.cluster.local.", 30, A("10.0.0.1")),)
    extra = tuple(Record(f"x{i}.cluster.local.", 30, A("10.0.0.2")) for i in range(60))
    wire = encode(Message(id=5, question=Question("a.cluster.local.", 1), answer=ans,
                          additional=extra), 512)
    parsed = dns.message.from_wire(wire)
    assert not parsed.flags & dns.flags.TC
    assert len(parsed.answer) == 1 and 0 < len(parsed.additional) < 60


def test_edns_reply_and_badvers() -> None:
    msg = Message(id=3, question=Question("a.cluster.local.", 1), rcode="BADVERS",
                  edns=Edns(udp_size=1232, do=True))
    parsed = dns.message.from_wire(encode(msg))
    assert parsed.rcode() == dns.rcode.BADVERS
    assert parsed.edns == 0 and parsed.payload == 1232
    assert parsed.ednsflags & dns.flags.DO
    with pytest.raises(ValueError):
        encode(Message(id=3, rcode="BADVERS"))


# ------------------------------------------------------------------ properties


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        query = parse_query(raw)
    except WireError as err:
        reply = error_response(err)
        if reply is not None:
            dns.message.from_wire(encode(reply))
        return
    assert query.question.name.endswith(".")


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


@given(st.lists(_label, min_size=1, max_size=6), st.sampled_from(["A", "AAAA", "SRV", "PTR"]))
def test_query_roundtrip_names(labels: list[str], qtype: str) -> None:
    name = ".".join(labels) + "."
    query = parse_query(dns.message.make_query(name, qtype).to_wire())
    assert query.question.name == name
    msg = Message(id=query.id, question=query.question,
                  answer=(Record(name, 1, A("10.1.2.3")),))
    parsed = dns.message.from_wire(encode(msg))
    assert parsed.question[0].name.to_text() == name
