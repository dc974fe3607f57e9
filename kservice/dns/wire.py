"""The DNS wire format (RFC 1035, RFC 6891 EDNS0) as pure functions on bytes.

Theory of operation
-------------------
A server reads a datagram with :func:`parse_query`. It returns a :class:`Query`, or raises
:class:`WireError` carrying the rcode to answer with (``FORMERR`` for malformed input,
``NOTIMP`` for an opcode other than QUERY) and, when the 12-byte header was readable, the
message id and the question so :func:`error_response` can still answer. A message with the
QR bit set is a *response*; answering it could start a loop between two servers, so
:func:`parse_query` raises :class:`IgnoreMessage` and the server stays silent, as
miekg/dns (CoreDNS's library) and BIND do.

The acceptance rules follow miekg/dns's ``DefaultMsgAcceptFunc``: exactly one question, no
answer or authority records, at most one OPT record (two OPTs is FORMERR, RFC 6891 §6.1.1).

:func:`encode` writes a :class:`Message`, compressing owner names and the names inside the
RFC 1035 rdata types (CNAME, PTR, NS, SOA). SRV targets are never compressed (RFC 2782).
Given ``max_size`` it truncates as RFC 2181 §9 asks: as many whole answer records as fit
and TC set; authority or additional records that do not fit are left out without TC (the
OPT record is always kept, RFC 6891 §7).
"""

from __future__ import annotations

import functools
import ipaddress
import struct

import attrs

from kservice.dns._rr import (
    AAAA,
    CLASS_CODES,
    CNAME,
    NS,
    PTR,
    RCODES,
    SOA,
    SRV,
    TXT,
    TYPE_CODES,
    TYPE_NAMES,
    A,
    Record,
)

__all__ = [
    "DEFAULT_EDNS_SIZE",
    "MAX_UDP_SIZE",
    "Edns",
    "IgnoreMessage",
    "Message",
    "Query",
    "Question",
    "WireError",
    "encode",
    "error_response",
    "parse_query",
    "udp_limit",
]

#: RFC 1035 §4.2.1: UDP messages without EDNS are limited to 512 bytes.
PLAIN_UDP_SIZE = 512
#: The buffer size we advertise; 1232 is the DNS Flag Day 2020 recommendation.
DEFAULT_EDNS_SIZE = 1232
#: Largest UDP response we ever send, whatever the client advertises.
MAX_UDP_SIZE = 4096

_HEADER = struct.Struct("!HHHHHH")
_MAX_NAME = 255  # RFC 1035 §2.3.4, wire octets incl. the root label
_MAX_LABEL = 63
_OPT = TYPE_CODES["OPT"]


class WireError(ValueError):
    """A message we cannot process; answer with ``rcode`` when ``msg_id`` is known."""

    def __init__(self, message: str, *, rcode: str = "FORMERR", msg_id: int | None = None,
                 flags: int = 0, question: Question | None = None,
                 edns: Edns | None = None) -> None:
        super().__init__(message)
        self.rcode = rcode
        self.msg_id = msg_id
        self.flags = flags
        self.question = question
        self.edns = edns


class IgnoreMessage(WireError):
    """A message that deserves no answer at all (QR set, or no readable id)."""


@attrs.frozen
class Question:
    name: str
    qtype: int
    qclass: int = 1

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.qtype, f"TYPE{self.qtype}")


@attrs.frozen
class Edns:
    """An OPT pseudo-record (RFC 6891 §6.1)."""

    udp_size: int = DEFAULT_EDNS_SIZE
    version: int = 0
    do: bool = False
    #: The upper 8 bits of a 12-bit rcode (the OPT TTL's first octet).
    ext_rcode: int = 0
    options: tuple[tuple[int, bytes], ...] = ()


@attrs.frozen
class Query:
    """A parsed query: what a server needs to answer it."""

    id: int
    opcode: int
    rd: bool
    cd: bool
    question: Question
    edns: Edns | None = None


@attrs.frozen
class Message:
    """A response to encode."""

    id: int
    rcode: str = "NOERROR"
    question: Question | None = None
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    edns: Edns | None = None
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    cd: bool = False
    opcode: int = 0


# --------------------------------------------------------------------------- parsing


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly-compressed name; return (presentation text, offset after it)."""
    labels: list[str] = []
    wire_len = 0
    end: int | None = None
    pos = offset
    hops = 0
    while True:
        if pos >= len(data):
            raise WireError("name runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise WireError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            # Pointers must point backwards (RFC 1035 §4.1.4 "prior occurrence"); that alone
            # rules out loops, the hop limit is belt and braces.
            if target >= pos:
                raise WireError("compression pointer does not point backwards")
            hops += 1
            if hops > 127:
                raise WireError("too many compression pointers")
            pos = target
            continue
        if kind != 0:
            raise WireError(f"unsupported label type 0x{kind:02x}")
        pos += 1
        if length == 0:
            break
        if pos + length > len(data):
            raise WireError("label runs past the end of the message")
        wire_len += length + 1
        if wire_len + 1 > _MAX_NAME:
            raise WireError("name longer than 255 octets")
        labels.append(_label_text(data[pos:pos + length]))
        pos += length
    return ("".join(lbl + "." for lbl in labels) or "."), (end if end is not None else pos)


def _label_text(raw: bytes) -> str:
    # Presentation escapes as dig prints them: \. \\ and \DDD for non-printables.
    out = []
    for b in raw:
        if b in (0x2E, 0x5C, 0x22, 0x28, 0x29, 0x3B, 0x40, 0x24):  # . \ " ( ) ; @ $
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _read_rr_header(data: bytes, offset: int) -> tuple[str, int, int, int, bytes, int]:
    name, pos = _read_name(data, offset)
    if pos + 10 > len(data):
        raise WireError("truncated resource record")
    rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
    pos += 10
    if pos + rdlen > len(data):
        raise WireError("rdata runs past the end of the message")
    return name, rtype, rclass, ttl, data[pos:pos + rdlen], pos + rdlen


def _parse_opt(rclass: int, ttl: int, rdata: bytes) -> Edns:
    opts = []
    pos = 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise WireError("truncated EDNS option")
        code, length = struct.unpack_from("!HH", rdata, pos)
        pos += 4
        if pos + length > len(rdata):
            raise WireError("EDNS option runs past the OPT record")
        opts.append((code, rdata[pos:pos + length]))
        pos += length
    return Edns(
        # RFC 6891 §6.2.3: values below 512 are treated as 512.
        udp_size=max(rclass, PLAIN_UDP_SIZE),
        version=(ttl >> 16) & 0xFF,
        do=bool(ttl & 0x8000),
        ext_rcode=(ttl >> 24) & 0xFF,
        options=tuple(opts),
    )


def parse_query(data: bytes) -> Query:
    """Parse a query datagram (without the TCP length prefix).

    Raises :class:`IgnoreMessage` for responses and unreadable headers, and
    :class:`WireError` with the rcode to answer for everything else we refuse.
    """
    if len(data) < 2:
        raise IgnoreMessage("shorter than a message id")
    msg_id = int.from_bytes(data[:2], "big")
    if len(data) < _HEADER.size:
        raise WireError("shorter than a DNS header", msg_id=msg_id)
    _, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        raise IgnoreMessage("QR bit set: a response, not a query", msg_id=msg_id)
    opcode = (flags >> 11) & 0xF
    err_kw = {"msg_id": msg_id, "flags": flags}
    if qd != 1:
        raise WireError(f"expected exactly one question, got {qd}", **err_kw)  # type: ignore[arg-type]
    try:
        qname, pos = _read_name(data, _HEADER.size)
    except WireError as e:
        raise WireError(str(e), **err_kw) from None  # type: ignore[arg-type]
    if pos + 4 > len(data):
        raise WireError("truncated question", **err_kw)  # type: ignore[arg-type]
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    question = Question(qname, qtype, qclass)
    if opcode != 0:
        # RFC 1035 §4.1.1: NOTIMP for kinds of query we do not implement (IQUERY, STATUS,
        # NOTIFY, UPDATE ...).
        raise WireError(f"opcode {opcode} not implemented", rcode="NOTIMP",
                        question=question, **err_kw)  # type: ignore[arg-type]
    if an or ns:
        raise WireError("a query must not carry answer or authority records",
                        question=question, **err_kw)  # type: ignore[arg-type]
    edns: Edns | None = None
    for _ in range(ar):
        try:
            name, rtype, rclass, ttl, rdata, pos = _read_rr_header(data, pos)
        except WireError as e:
            raise WireError(str(e), question=question, **err_kw) from None  # type: ignore[arg-type]
        if rtype != _OPT:
            continue  # TSIG/SIG(0) are not supported; the records are skipped unverified.
        if edns is not None:
            raise WireError("more than one OPT record", question=question, **err_kw)  # type: ignore[arg-type]
        if name != ".":
            raise WireError("OPT record owner must be the root", question=question, **err_kw)  # type: ignore[arg-type]
        try:
            edns = _parse_opt(rclass, ttl, rdata)
        except WireError as e:
            raise WireError(str(e), question=question, **err_kw) from None  # type: ignore[arg-type]
    if pos != len(data):
        raise WireError(f"{len(data) - pos} trailing bytes after the last record",
                        question=question, edns=edns, **err_kw)  # type: ignore[arg-type]
    return Query(id=msg_id, opcode=opcode, rd=bool(flags & 0x0100), cd=bool(flags & 0x0010),
                 question=question, edns=edns)


def error_response(err: WireError) -> Message | None:
    """The response to a refused query, or ``None`` when it deserves silence."""
    if isinstance(err, IgnoreMessage) or err.msg_id is None:
        return None
    opcode = (err.flags >> 11) & 0xF
    edns = None
    if err.edns is not None:
        edns = Edns(udp_size=DEFAULT_EDNS_SIZE, do=err.edns.do)
    return Message(
        id=err.msg_id, rcode=err.rcode, question=err.question, opcode=opcode,
        rd=bool(err.flags & 0x0100), cd=bool(err.flags & 0x0010), edns=edns,
    )


def udp_limit(query: Query) -> int:
    """Largest UDP response the client accepts: 512 without EDNS (RFC 1035 §4.2.1)."""
    if query.edns is None:
        return PLAIN_UDP_SIZE
    return min(query.edns.udp_size, MAX_UDP_SIZE)


# --------------------------------------------------------------------------- encoding


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.names: dict[bytes, int] = {}

    def name(self, name: str, compress: bool = True) -> None:
        labels, keys = _split_name(name)
        for i, label in enumerate(labels):
            key = keys[i]
            if compress and key in self.names:
                self.buf += struct.pack("!H", 0xC000 | self.names[key])
                return
            if len(self.buf) < 0x4000:
                self.names.setdefault(key, len(self.buf))
            self.buf.append(len(label))
            self.buf += label
        self.buf.append(0)


@functools.lru_cache(maxsize=8192)
def _split_name(name: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Presentation name -> (wire labels, lower-cased suffix keys for compression)."""
    if name in ("", "."):
        return (), ()
    if "\\" not in name and name.isascii():
        # The common case: no escapes.
        labels = [lbl.encode("ascii") for lbl in name.rstrip(".").split(".")]
    else:
        labels = _split_escaped(name)
    for lbl in labels:
        if not lbl or len(lbl) > _MAX_LABEL:
            raise ValueError(f"invalid label in name {name!r}")
    if sum(len(lbl) + 1 for lbl in labels) + 1 > _MAX_NAME:
        raise ValueError(f"name {name!r} is longer than 255 octets")
    lowered = [lbl.lower() for lbl in labels]
    keys = tuple(b".".join(lowered[i:]) for i in range(len(lowered)))
    return tuple(labels), keys


def _split_escaped(name: str) -> list[bytes]:
    """Undo ``\\.`` and ``\\DDD`` escapes while splitting on unescaped dots."""
    labels: list[bytes] = []
    cur = bytearray()
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c == "\\" and i + 1 < n:
            if i + 4 <= n and name[i + 1:i + 4].isdigit():
                cur.append(int(name[i + 1:i + 4]) & 0xFF)
                i += 4
                continue
            cur += name[i + 1].encode("utf-8")
            i += 2
            continue
        if c == ".":
            labels.append(bytes(cur))
            cur = bytearray()
        else:
            cur += c.encode("utf-8")
        i += 1
    if cur:
        labels.append(bytes(cur))
    return labels


def _write_rr(w: _Writer, rr: Record) -> None:
    w.name(rr.name)
    rtype = TYPE_CODES[rr.type]
    w.buf += struct.pack("!HHI", rtype, CLASS_CODES["IN"], rr.ttl & 0xFFFFFFFF)
    len_at = len(w.buf)
    w.buf += b"\x00\x00"
    d = rr.data
    if isinstance(d, A):
        w.buf += ipaddress.IPv4Address(d.address).packed
    elif isinstance(d, AAAA):
        w.buf += ipaddress.IPv6Address(d.address).packed
    elif isinstance(d, CNAME | PTR | NS):
        w.name(d.target)
    elif isinstance(d, SRV):
        w.buf += struct.pack("!HHH", d.priority, d.weight, d.port)
        w.name(d.target, compress=False)
    elif isinstance(d, TXT):
        for s in d.strings:
            raw = s.encode("utf-8")
            # A character-string holds at most 255 octets; longer text is split.
            for i in range(0, max(len(raw), 1), 255):
                chunk = raw[i:i + 255]
                w.buf.append(len(chunk))
                w.buf += chunk
    elif isinstance(d, SOA):
        w.name(d.mname)
        w.name(d.rname)
        w.buf += struct.pack("!IIIII", d.serial & 0xFFFFFFFF, d.refresh, d.retry, d.expire,
                             d.minimum)
    else:  # pragma: no cover - the RData union is closed
        raise TypeError(f"cannot encode {type(d).__name__}")
    struct.pack_into("!H", w.buf, len_at, len(w.buf) - len_at - 2)


def _opt_bytes(edns: Edns, rcode: int) -> bytes:
    ttl = ((rcode >> 4) & 0xFF) << 24 | (edns.version & 0xFF) << 16 | (0x8000 if edns.do else 0)
    rdata = b"".join(struct.pack("!HH", c, len(v)) + v for c, v in edns.options)
    return b"\x00" + struct.pack("!HHIH", _OPT, edns.udp_size, ttl, len(rdata)) + rdata


def _flags(msg: Message, rcode: int, tc: bool) -> int:
    return (0x8000 | (msg.opcode & 0xF) << 11 | (0x0400 if msg.aa else 0)
            | (0x0200 if tc else 0) | (0x0100 if msg.rd else 0) | (0x0080 if msg.ra else 0)
            | (0x0010 if msg.cd else 0) | (rcode & 0xF))


def encode(msg: Message, max_size: int = 65535) -> bytes:
    """Encode a response; truncate (TC=1) when it would exceed ``max_size`` octets."""
    rcode = RCODES[msg.rcode]
    if rcode > 0xF and msg.edns is None:
        raise ValueError(f"rcode {msg.rcode} needs an OPT record")
    opt = _opt_bytes(msg.edns, rcode) if msg.edns is not None else b""
    w = _Writer()
    w.buf += b"\x00" * _HEADER.size
    if msg.question is not None:
        w.name(msg.question.name)
        w.buf += struct.pack("!HH", msg.question.qtype, msg.question.qclass)
    sections: list[int] = []
    tc = msg.tc
    for index, rrs in enumerate((msg.answer, msg.authority, msg.additional)):
        count = 0
        full = False
        for rr in rrs:
            mark = len(w.buf)
            names = dict(w.names)
            _write_rr(w, rr)
            if len(w.buf) + len(opt) > max_size:
                # Roll back the record that did not fit.
                del w.buf[mark:]
                w.names = names
                full = True
                break
            count += 1
        sections.append(count)
        if full:
            # RFC 2181 §9: TC only when the answer itself is incomplete; authority and
            # additional records that do not fit are simply left out.
            tc = tc or index == 0
            sections += [0] * (3 - len(sections))
            break
    ar = sections[2] + (1 if opt else 0)
    w.buf += opt
    qd = 1 if msg.question is not None else 0
    _HEADER.pack_into(w.buf, 0, msg.id, _flags(msg, rcode, tc), qd, sections[0], sections[1],
                      ar)
    return bytes(w.buf)

