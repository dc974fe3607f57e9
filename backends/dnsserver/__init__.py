"""``kservice dns``: a real DNS server (UDP+TCP) for the emulated cluster, and a resolver CLI.

The records and the wire format are the pure core's (:mod:`kservice.dns`); this package only
does the sockets (:mod:`backends.dnsserver.server`) and the command line
(:mod:`backends.dnsserver.cli`).
"""

from backends.dnsserver.server import DNSServer, StateFileProvider

__all__ = ["DNSServer", "StateFileProvider"]
