"""apimachinery's string validators, with their exact messages.

Each ``is_*`` function returns the list of messages upstream's
``k8s.io/apimachinery/pkg/util/validation`` returns (empty = valid); callers wrap each
message into a :class:`~kservice.errors.FieldError` as upstream's ``Validate*`` helpers do.
IP parsing follows Go's ``netutils.ParseIPSloppy`` (leading zeros in IPv4 octets are read
as decimal), which is what ``IsValidIPForLegacyField`` uses when
``StrictIPCIDRValidation`` is off (its default through v1.34).
"""

from __future__ import annotations

import functools
import ipaddress
import re

__all__ = [
    "DNS1035_FMT",
    "DNS1123_LABEL_FMT",
    "DNS1123_SUBDOMAIN_FMT",
    "family_of",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_cidr",
    "is_valid_ip",
    "is_valid_label_value",
    "is_valid_port_name",
    "is_valid_port_num",
    "max_len_error",
    "parse_cidr_sloppy",
    "parse_ip_sloppy",
    "regex_error",
]

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character"
)
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)

_DNS1123_LABEL = re.compile(f"^{DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_DNS1035 = re.compile(f"^{DNS1035_FMT}$")
_QUALIFIED = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE = re.compile(f"^{LABEL_VALUE_FMT}$")
_PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Upstream's RegexError joins examples with "', " + " or " -- hence the double space
    # before "or" in every two-example message. Kept verbatim.
    out = msg
    if examples:
        out += " (e.g. "
        for i, ex in enumerate(examples):
            if i > 0:
                out += " or "
            out += f"'{ex}', "
        out += f"regex used for validation is '{fmt}')"
    else:
        out += f" (regex used for validation is '{fmt}')"
    return out


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL.match(value):
        if _DNS1123_SUBDOMAIN.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035.match(value):
        errs.append(regex_error(DNS1035_ERR, DNS1035_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED.match(name):
        errs.append(
            "name part "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE.match(value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: int) -> list[str]:
    if 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: one message per failed rule, in upstream's order."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)
def parse_ip_sloppy(text: str) -> IP | None:
    """Go's ``netutils.ParseIPSloppy``: IPv4 octets may carry leading zeros (read as decimal)."""
    if not text or text.strip() != text:
        return None
    try:
        if ":" in text:
            if "%" in text:  # Go's net.ParseIP refuses zones
                return None
            v6 = ipaddress.IPv6Address(text)
            # Go's net.IP is 16 bytes either way: an IPv4-mapped address *is* IPv4 (To4).
            return v6.ipv4_mapped or v6
        octets = text.split(".")
        if len(octets) != 4 or not all(o.isdigit() and o.isascii() and len(o) <= 3 for o in octets):
            return None
        vals = [int(o) for o in octets]
        if any(v > 255 for v in vals):
            return None
        return ipaddress.IPv4Address(".".join(str(v) for v in vals))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def parse_cidr_sloppy(
    text: str,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Go's ``netutils.ParseCIDRSloppy``: host bits may be set (the network is masked)."""
    addr, sep, bits = text.partition("/")
    if not sep or not bits.isdigit() or not bits.isascii():
        return None
    ip = parse_ip_sloppy(addr)
    if ip is None:
        return None
    plen = int(bits)
    if plen > ip.max_prefixlen or (len(bits) > 1 and bits[0] == "0"):
        return None
    return ipaddress.ip_network(f"{ip}/{plen}", strict=False)


def is_valid_ip(value: str) -> list[str]:
    if parse_ip_sloppy(value) is None:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_valid_cidr(value: str) -> list[str]:
    if parse_cidr_sloppy(value) is None:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


def family_of(ip: str) -> str:
    """``IPv6`` if the text parses as IPv6 (Go's ``IsIPv6String``), else ``IPv4``."""
    parsed = parse_ip_sloppy(ip)
    return "IPv6" if parsed is not None and parsed.version == 6 else "IPv4"
