"""DNS resource records as frozen values: the types the cluster zone answers with.

Each rdata class knows its presentation form (what ``dig`` prints after ``IN <TYPE>``); the
wire form lives in :mod:`kservice.dns.wire`. Names are kept as given (case preserved, with
the trailing dot) because answers echo the query's spelling, as CoreDNS does.
"""

from __future__ import annotations

from typing import Union

import attrs

from kservice._frozen import to_tuple

__all__ = [
    "AAAA",
    "CLASS_CODES",
    "CNAME",
    "NS",
    "PTR",
    "RCODES",
    "SOA",
    "SRV",
    "TXT",
    "TYPE_CODES",
    "A",
    "RData",
    "Record",
    "fqdn",
]

# Type and class numbers (RFC 1035 §3.2.2, RFC 2782 SRV, RFC 3596 AAAA, RFC 6891 OPT).
TYPE_CODES: dict[str, int] = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
    "SRV": 33, "OPT": 41, "ANY": 255,
}
TYPE_NAMES: dict[int, str] = {v: k for k, v in TYPE_CODES.items()}
CLASS_CODES: dict[str, int] = {"IN": 1, "CH": 3, "HS": 4, "ANY": 255}

# Response codes by name (RFC 1035 §4.1.1, RFC 6891 §9 for the extended BADVERS).
RCODES: dict[str, int] = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
    "BADVERS": 16,
}
RCODE_NAMES: dict[int, str] = {v: k for k, v in RCODES.items()}


def fqdn(name: str) -> str:
    """``name`` with exactly one trailing dot (``""`` and ``"."`` are the root)."""
    name = name.rstrip(".")
    return name + "."


@attrs.frozen
class A:
    address: str

    def text(self) -> str:
        return self.address


@attrs.frozen
class AAAA:
    address: str

    def text(self) -> str:
        return self.address


@attrs.frozen
class CNAME:
    target: str

    def text(self) -> str:
        return self.target


@attrs.frozen
class PTR:
    target: str

    def text(self) -> str:
        return self.target


@attrs.frozen
class NS:
    target: str

    def text(self) -> str:
        return self.target


@attrs.frozen
class SRV:
    priority: int
    weight: int
    port: int
    target: str

    def text(self) -> str:
        return f"{self.priority} {self.weight} {self.port} {self.target}"


@attrs.frozen
class TXT:
    strings: tuple[str, ...] = attrs.field(converter=to_tuple)

    def text(self) -> str:
        return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
                        for s in self.strings)


@attrs.frozen
class SOA:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int

    def text(self) -> str:
        return (f"{self.mname} {self.rname} {self.serial} {self.refresh} {self.retry} "
                f"{self.expire} {self.minimum}")


RData = Union[A, AAAA, CNAME, PTR, NS, SRV, TXT, SOA]  # noqa: UP007 (used at runtime)

_RDATA_TYPE: dict[type, str] = {
    A: "A", AAAA: "AAAA", CNAME: "CNAME", PTR: "PTR", NS: "NS", SRV: "SRV", TXT: "TXT",
    SOA: "SOA",
}


@attrs.frozen
class Record:
    """One resource record: owner name, TTL and typed rdata (class is always IN)."""

    name: str
    ttl: int
    data: RData

    @property
    def type(self) -> str:
        return _RDATA_TYPE[type(self.data)]

    def text(self) -> str:
        """Presentation form, as ``dig`` prints it (tab separated)."""
        return f"{self.name}\t{self.ttl}\tIN\t{self.type}\t{self.data.text()}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ttl": self.ttl, "type": self.type, "data": self.data.text()}
