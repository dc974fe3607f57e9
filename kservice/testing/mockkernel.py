"""Strategies and generators for testing iptables tracers (the mock kernel's fast path).

* :func:`nat_service_tables` -- a random ``*nat`` table shaped like kube-proxy's
  KUBE-SERVICES dispatch (exact ``-d ip -p proto --dport port`` rules mixed with rules the
  index cannot key: CIDRs, negations, port ranges, no destination), plus probe packets that
  hit, nearly hit and miss them. A tracer with an index must agree with a linear walk.
* :func:`synthetic_kube_proxy_dump` -- a large kube-proxy-like restore payload (N services x
  M endpoints) for benchmarks when no renderer is at hand.

Text only: nothing here imports a backend.
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from kservice.trace import Packet

__all__ = ["nat_service_tables", "synthetic_kube_proxy_dump"]

_PROTOS = ("tcp", "udp", "sctp")


def _ip(i: int) -> str:
    return str(ipaddress.IPv4Address(0x0A600000 + i))  # 10.96.0.0 + i


@st.composite
def _rule(draw: st.DrawFn, *, n_ips: int, n_chains: int) -> str:
    """One rule of KUBE-SERVICES-like shape; roughly half are exactly keyable."""
    parts: list[str] = []
    kind = draw(st.sampled_from(("exact", "exact", "exact", "cidr", "negated", "range",
                                 "nodst", "noproto")))
    proto = draw(st.sampled_from(_PROTOS))
    ip = _ip(draw(st.integers(0, n_ips - 1)))
    port = draw(st.sampled_from((53, 80, 443, 8080)))
    if kind == "exact":
        parts += [f"-m {proto} -p {proto} -d {ip} --dport {port}"]
    elif kind == "cidr":
        plen = draw(st.sampled_from((24, 28, 30)))
        net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
        parts += [f"-m {proto} -p {proto} -d {net} --dport {port}"]
    elif kind == "negated":
        parts += [f"-m {proto} -p {proto} ! -d {ip} --dport {port}"]
    elif kind == "range":
        parts += [f"-m {proto} -p {proto} -d {ip} --dport {port - 1}:{port + 1}"]
    elif kind == "nodst":
        parts += [f"-m {proto} -p {proto} --dport {port}"]
    else:
        parts += [f"-d {ip}"]
    if draw(st.booleans()):
        parts.append(f"-m statistic --mode random --probability {draw(st.sampled_from(('0.5000000000', '0.3333333333', '0.2500000000')))}")
    target = draw(st.one_of(
        # Only what iptables-restore accepts in the nat table: no DROP (refused by
        # iptables >= 1.8) or REJECT (xt_REJECT is filter-only), and no DNAT port without
        # -p tcp|udp|sctp (the "noproto" rules have none).
        st.sampled_from(("-j MARK --or-mark 0x8000", "-j RETURN", "-j ACCEPT",
                         f"-j DNAT --to-destination 10.244.9.{draw(st.integers(1, 9))}"
                         + (":80" if kind != "noproto" else ""))),
        st.integers(0, n_chains - 1).map(lambda i: f"-j KUBE-SUB-{i}"),
    ))
    return " ".join([*parts, target])


@st.composite
def nat_service_tables(draw: st.DrawFn, *, max_rules: int = 60, n_ips: int = 6
                       ) -> tuple[str, list[Packet]]:
    """(nat table text, probe packets). Sub-chains make jumps and returns matter."""
    n_chains = 3
    rules = draw(st.lists(_rule(n_ips=n_ips, n_chains=n_chains), min_size=1, max_size=max_rules))
    lines = ["*nat", ":KUBE-SERVICES - [0:0]"]
    lines += [f":KUBE-SUB-{i} - [0:0]" for i in range(n_chains)]
    lines.append("-A PREROUTING -j KUBE-SERVICES")
    lines += [f"-A KUBE-SERVICES {r}" for r in rules]
    for i in range(n_chains):
        # Sub-chains never jump back (no loops): a mark, then maybe a verdict or DNAT.
        lines.append(f"-A KUBE-SUB-{i} -j MARK --or-mark 0x{1 << i:x}")
        lines.append(f"-A KUBE-SUB-{i} -m mark --mark 0x1/0x1 -j DNAT --to-destination 10.244.8.{i + 1}")
    lines.append("COMMIT")
    packets = draw(st.lists(
        st.builds(lambda i, p, port: Packet("203.0.113.7", _ip(i), port, proto=p),
                  st.integers(0, n_ips + 1), st.sampled_from(_PROTOS),
                  st.sampled_from((53, 79, 80, 81, 443, 8080))),
        min_size=1, max_size=8))
    return "\n".join(lines) + "\n", packets


def synthetic_kube_proxy_dump(n_services: int, endpoints: int = 10, *, mark: str = "0x4000",
                              cluster_cidr: str = "10.0.0.0/8") -> str:
    """A kube-proxy-shaped ``iptables-restore`` payload (reference §3.4-§3.6), one
    ClusterIP port per service, ``endpoints`` endpoints each; chain names are synthetic."""
    nat_decl = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
                ":KUBE-MARK-MASQ - [0:0]"]
    nat_rules = [
        f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
    ]
    svc_rules: list[str] = []
    for s in range(n_services):
        ip = str(ipaddress.IPv4Address(0xAC100000 + s))  # 172.16.0.0 + s
        spn = f"ns{s}/svc{s}:p80"
        svc = f"KUBE-SVC-S{s:014d}"
        nat_decl.append(f":{svc} - [0:0]")
        svc_rules.append(f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" -m tcp -p tcp '
                         f"-d {ip} --dport 80 -j {svc}")
        nat_rules.append(f'-A {svc} -m comment --comment "{spn} cluster IP" -m tcp -p tcp -d {ip} '
                         f"--dport 80 ! -s {cluster_cidr} -j KUBE-MARK-MASQ")
        for e in range(endpoints):
            sep = f"KUBE-SEP-S{s:08d}E{e:05d}"
            ep_ip = str(ipaddress.IPv4Address(0x0AB40000 + s * endpoints + e))  # 10.180.0.0 + ...
            nat_decl.append(f":{sep} - [0:0]")
            prob = (f" -m statistic --mode random --probability {1.0 / (endpoints - e):0.10f}"
                    if e < endpoints - 1 else "")
            nat_rules.append(f'-A {svc} -m comment --comment "{spn} -> {ep_ip}:80"{prob} -j {sep}')
            nat_rules.append(f"-A {sep} -m comment --comment {spn} -s {ep_ip} -j KUBE-MARK-MASQ")
            nat_rules.append(f"-A {sep} -m comment --comment {spn} -m tcp -p tcp -j DNAT "
                             f"--to-destination {ep_ip}:80")
    svc_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this '
                     'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    filter_part = [
        "*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", ":KUBE-FORWARD - [0:0]",
        ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT",
    ]
    return "\n".join([*filter_part, "*nat", *nat_decl, *svc_rules, *nat_rules, "COMMIT"]) + "\n"
