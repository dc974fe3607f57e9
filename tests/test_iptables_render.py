"""Per-case rendering (reference ``kube-proxy-iptables.md`` §3.4-§3.8) and rule counts.

Expected lines are written out from the reference's templates, not from our output; chain
names come from :mod:`backends.iptables.names`, which ``test_iptables_names`` pins to the
reference's hash vectors.
"""

from __future__ import annotations

import re

import attrs
import pytest
import yaml

from backends.iptables import render_restore, sort_iptables_rules
from backends.iptables.names import endpoint_chain, port_chain_hash
from backends.iptables.render import probability
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    KubeProxyConfiguration,
)
from kservice.proxy.raw import state_from_objects
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ProxierOptions,
    ServicePortInfo,
    ServicePortName,
)

NODE = NodeInfo(
    name="test-node",
    ips=("192.168.0.2",),
    pod_cidrs=("10.0.1.0/24",),
    interfaces=(("lo", "127.0.0.1/8"), ("eth0", "192.168.0.2/24"), ("eth1", "10.1.0.7/16")),
)
NODE6 = NodeInfo(
    name="test-node",
    ips=("2001:db8::1",),
    pod_cidrs=("fd00:10:1::/64",),
    interfaces=(("lo", "::1/128"), ("eth0", "2001:db8::1/64")),
)
FAKE = ProxierOptions(masquerade_mark="0x4000", random_fully=False)
CFG = KubeProxyConfiguration(cluster_cidr="10.0.0.0/8")


def port(
    ns: str = "ns1", name: str = "svc1", pname: str = "p80", *, protocol: str = "TCP",
    cluster_ip: str = "172.30.0.41", port_: int = 80, endpoints: tuple[Endpoint, ...] = (),
    node: NodeInfo = NODE, **kw: object,
) -> ServicePortInfo:
    sp = ServicePortInfo(
        name=ServicePortName(ns, name, pname, protocol), cluster_ip=cluster_ip, port=port_,
        protocol=protocol, endpoints=tuple(sorted(endpoints, key=lambda e: e.string)), **kw,  # type: ignore[arg-type]
    )
    return attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, node.name, node.labels))


def state(*ports: ServicePortInfo, config: KubeProxyConfiguration = CFG,
          options: ProxierOptions = FAKE, node: NodeInfo = NODE, family: str = "IPv4") -> NodeProxyState:
    return NodeProxyState(node=node, family=family, config=config, options=options,
                          service_ports=tuple(sorted(ports, key=lambda p: p.name)))


def ep(ip: str, port_: int = 80, *, local: bool = False, **kw: object) -> Endpoint:
    return Endpoint(ip=ip, port=port_, is_local=local, node_name="test-node" if local else None, **kw)  # type: ignore[arg-type]


def lines(text: str, chain: str | None = None, table: str | None = None) -> list[str]:
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
        elif line.startswith("-A ") and (table is None or current == table):
            if chain is None or line.split(" ", 2)[1] == chain:
                out.append(line)
    return out


def decls(text: str, table: str) -> list[str]:
    block = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
    return re.findall(r"^:(\S+) ", block, re.M)


H = port_chain_hash("ns1/svc1:p80", "tcp")


def sep(e: str, spn: str = "ns1/svc1:p80", p: str = "tcp") -> str:
    return endpoint_chain(spn, p, e)


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize(("services", "endpoints"), [(1, 1), (3, 2), (7, 5), (20, 10)])
def test_clusterip_rule_counts(services: int, endpoints: int) -> None:
    ports = [
        port("ns", f"s{i}", cluster_ip=f"172.30.{i // 200}.{i % 200 + 1}",
             endpoints=tuple(ep(f"10.180.{i}.{j + 1}") for j in range(endpoints)))
        for i in range(services)
    ]
    result = render_restore(state(*ports))
    nat = lines(result.text, table="nat")
    # POSTROUTING x3 + MARK-MASQ + tail, and per service: capture + masquerade + E dispatch + 2E SEP.
    assert len(nat) == 5 + services * (2 + 3 * endpoints) == result.nat_rules
    assert len(decls(result.text, "nat")) == 4 + services * (1 + endpoints)
    # filter: KUBE-FIREWALL (IPv4, localhost NodePorts) + 3 KUBE-FORWARD; no per-service rules.
    assert len(lines(result.text, table="filter")) == 4 == result.filter_rules
    assert decls(result.text, "filter") == [
        "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"]


def test_filter_counts_without_firewall_and_invalid_rule() -> None:
    cfg = attrs.evolve(CFG, iptables=IPTablesConfiguration(localhost_node_ports=False),
                       conntrack_tcp_be_liberal=True)
    result = render_restore(state(port(endpoints=(ep("10.180.0.1"),)), config=cfg))
    assert lines(result.text, table="filter") == [
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]
    assert "KUBE-FIREWALL" not in decls(result.text, "filter")


# ----------------------------------------------------------------------------- §5 probability


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"), (10, "0.1000000000"),
     (100, "0.0100000000"), (1000, "0.0010000000"), (10000, "0.0001000000"),
     (100000, "0.0000100000"), (100001, "0.0000099999")],
)
def test_probability_format(n: int, text: str) -> None:
    assert probability(n) == text


# ----------------------------------------------------------------------------- §3.8 templates


def test_clusterip_template_three_endpoints_udp() -> None:
    eps = (ep("10.180.0.10", 53), ep("10.180.0.2", 53), ep("10.180.0.3", 53))
    sp = port("kube-system", "dns", "dns", protocol="UDP", cluster_ip="10.96.0.10", port_=53, endpoints=eps)
    text = render_restore(state(sp)).text
    spn, h = "kube-system/dns:dns", port_chain_hash("kube-system/dns:dns", "udp")
    # String order of ip:port, not numeric: 10.180.0.10 sorts first.
    s1, s2, s3 = (sep(e, spn, "udp") for e in ("10.180.0.10:53", "10.180.0.2:53", "10.180.0.3:53"))
    assert lines(text, "KUBE-SERVICES", "nat")[0] == (
        f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" -m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-SVC-{h}')
    assert lines(text, f"KUBE-SVC-{h}") == [
        f'-A KUBE-SVC-{h} -m comment --comment "{spn} cluster IP" -m udp -p udp -d 10.96.0.10 --dport 53 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
        f'-A KUBE-SVC-{h} -m comment --comment "{spn} -> 10.180.0.10:53" -m statistic --mode random --probability 0.3333333333 -j {s1}',
        f'-A KUBE-SVC-{h} -m comment --comment "{spn} -> 10.180.0.2:53" -m statistic --mode random --probability 0.5000000000 -j {s2}',
        f'-A KUBE-SVC-{h} -m comment --comment "{spn} -> 10.180.0.3:53" -j {s3}',
    ]
    assert lines(text, s2) == [
        f"-A {s2} -m comment --comment {spn} -s 10.180.0.2 -j KUBE-MARK-MASQ",
        f"-A {s2} -m comment --comment {spn} -m udp -p udp -j DNAT --to-destination 10.180.0.2:53",
    ]


def test_no_endpoints_rejects_everything_and_writes_no_nat() -> None:
    sp = port(node_port=30080, external_ips=("192.168.99.22",), load_balancer_vips=("1.2.3.4",),
              load_balancer_source_ranges=("203.0.113.0/25",))
    text = render_restore(state(sp)).text
    c = '"ns1/svc1:p80 has no endpoints"'
    assert lines(text, table="filter")[1:4] == [
        f"-A KUBE-SERVICES -m comment --comment {c} -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT",
        f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} -m tcp -p tcp -d 192.168.99.22 --dport 80 -j REJECT",
        f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT",
    ]
    assert lines(text, table="filter")[4] == (
        f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT")
    assert decls(text, "nat") == ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    assert not any("ns1/svc1" in line for line in lines(text, table="nat"))
    # No FW chain means no KUBE-PROXY-FIREWALL drop either.
    assert lines(text, "KUBE-PROXY-FIREWALL") == []


def test_nodeport_cluster_policy() -> None:
    sp = port(node_port=3001, endpoints=(ep("10.180.0.1"),))
    text = render_restore(state(sp)).text
    assert lines(text, "KUBE-NODEPORTS", "nat") == [
        f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-{H}",
        f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-{H}",
    ]
    assert lines(text, f"KUBE-EXT-{H}") == [
        f'-A KUBE-EXT-{H} -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ',
        f"-A KUBE-EXT-{H} -j KUBE-SVC-{H}",
    ]


def test_lb_without_source_ranges_goes_to_ext() -> None:
    sp = port(load_balancer_vips=("5.6.7.8",), endpoints=(ep("10.180.0.1"),))
    text = render_restore(state(sp)).text
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-EXT-{H}' in lines(text)
    assert f"KUBE-FW-{H}" not in text
    assert lines(text, "KUBE-PROXY-FIREWALL") == []


def test_lb_source_ranges_allow_from_node() -> None:
    # 192.168.0.0/16 contains the node IP 192.168.0.2, so the LB IPs themselves are allowed.
    sp = port(load_balancer_vips=("5.6.7.8", "5.6.7.9"),
              load_balancer_source_ranges=("203.0.113.0/25", "192.168.0.0/16"),
              endpoints=(ep("10.180.0.1"),))
    text = render_restore(state(sp)).text
    head = f'-A KUBE-FW-{H} -m comment --comment "ns1/svc1:p80 loadbalancer IP"'
    assert lines(text, f"KUBE-FW-{H}") == [
        f"{head} -s 203.0.113.0/25 -j KUBE-EXT-{H}",
        f"{head} -s 192.168.0.0/16 -j KUBE-EXT-{H}",
        f"{head} -s 5.6.7.8 -j KUBE-EXT-{H}",
        f"{head} -s 5.6.7.9 -j KUBE-EXT-{H}",
        f'-A KUBE-FW-{H} -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"',
    ]
    assert lines(text, "KUBE-PROXY-FIREWALL") == [
        f'-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-{H}" -m tcp -p tcp -d {ip} --dport 80 -j DROP'
        for ip in ("5.6.7.8", "5.6.7.9")
    ]


SECTION9 = """
apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: svc1}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  clusterIP: 172.30.0.41
  externalIPs: [192.168.99.11]
  healthCheckNodePort: 30000
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
---
apiVersion: v1
kind: Service
metadata: {namespace: ns3, name: svc3}
spec:
  type: ClusterIP
  internalTrafficPolicy: Local
  clusterIP: 172.30.0.43
  ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns1, name: svc1-1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}, {addresses: [10.180.2.1], nodeName: test-node}]
ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns3, name: svc3-1, labels: {kubernetes.io/service-name: svc3}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.3], nodeName: test-node}, {addresses: [10.180.1.3], nodeName: remote}]
ports: [{name: p80, port: 80, protocol: TCP}]
"""

# Reference §9 (derived illustration, validated by upstream's packet-flow tests), verbatim.
SECTION9_EXPECTED = """\
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVL-X27LE4BHSL4DOUIK
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
-A KUBE-SVL-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVL-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j KUBE-SEP-ZX7GRIZKSNUQ3LAJ
"""


def test_reference_section9_etp_local_with_local_endpoint_and_itp_local() -> None:
    st = state_from_objects(
        list(yaml.safe_load_all(SECTION9)), "test-node", "IPv4", CFG,
        node=NodeInfo(name="test-node", ips=("192.168.0.2",)), options=FAKE,
    )
    text = sort_iptables_rules(render_restore(st).text)
    nat = text.split("*nat\n", 1)[1]
    wanted = ("KUBE-SERVICES", "KUBE-EXT-", "KUBE-SVC-", "KUBE-SVL-")
    got = [
        line for line in nat.splitlines()
        if line.startswith("-A ") and line.split()[1].startswith(wanted)
        and "must be the last rule" not in line
    ]
    assert "\n".join(got) + "\n" == SECTION9_EXPECTED
    assert "KUBE-SVC-X27LE4BHSL4DOUIK" not in text  # svc3 uses local endpoints only
    assert "10.180.1.3" not in text
    filt = text.split("*nat\n", 1)[0]
    assert "DROP" not in "".join(lines(filt, "KUBE-SERVICES") + lines(filt, "KUBE-EXTERNAL-SERVICES"))
    assert lines(filt, "KUBE-NODEPORTS") == [
        '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT']


def test_itp_local_without_local_endpoints_drops_clusterip() -> None:
    sp = port(internal_policy_local=True, endpoints=(ep("10.180.1.3"),))
    text = render_restore(state(sp)).text
    assert lines(text, "KUBE-SERVICES", "filter") == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP']
    assert lines(text, "KUBE-SERVICES", "nat") == [lines(text, "KUBE-SERVICES", "nat")[-1]]  # only the tail
    assert decls(text, "nat") == ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]


def test_itp_local_external_traffic_still_uses_cluster_chain() -> None:
    sp = port(internal_policy_local=True, node_port=3001, endpoints=(ep("10.180.1.3"),))
    text = render_restore(state(sp)).text
    assert lines(text, f"KUBE-EXT-{H}")[-1] == f"-A KUBE-EXT-{H} -j KUBE-SVC-{H}"
    assert "has no local endpoints" in text  # the ClusterIP DROP
    assert "KUBE-EXTERNAL-SERVICES -m" not in text


def test_terminating_fallback_uses_categorized_endpoints() -> None:
    eps = (ep("10.180.0.1", ready=False, serving=True, terminating=True),
           ep("10.180.0.2", ready=False, serving=False, terminating=True))
    sp = port(endpoints=eps)
    assert sp.categorized.cluster == (eps[0],)
    text = render_restore(state(sp)).text
    assert lines(text, f"KUBE-SVC-{H}")[1:] == [
        f'-A KUBE-SVC-{H} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j {sep("10.180.0.1:80")}']
    assert sep("10.180.0.2:80") not in text


def test_etp_local_only_remote_terminating_drops_external() -> None:
    eps = (ep("10.180.0.1", ready=False, serving=True, terminating=True),)
    sp = port(external_policy_local=True, node_port=3001, endpoints=eps)
    text = render_restore(state(sp)).text
    assert lines(text, "KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP']
    assert f"-j KUBE-SVC-{H}" in lines(text, "KUBE-SERVICES", "nat")[0]
    assert f"KUBE-SVL-{H}" not in text
    # EXT exists but has no final jump.
    assert [line.rsplit(" ", 1)[1] for line in lines(text, f"KUBE-EXT-{H}")] == [
        f"KUBE-SVC-{H}", "KUBE-MARK-MASQ", f"KUBE-SVC-{H}"]


def test_client_ip_affinity_in_svc_and_svl() -> None:
    eps = (ep("10.180.0.1"), ep("10.180.0.2", local=True))
    sp = port(session_affinity_timeout=10800, external_policy_local=True, node_port=3001, endpoints=eps)
    text = render_restore(state(sp)).text
    s1, s2 = sep("10.180.0.1:80"), sep("10.180.0.2:80")
    c1, c2 = '"ns1/svc1:p80 -> 10.180.0.1:80"', '"ns1/svc1:p80 -> 10.180.0.2:80"'
    assert lines(text, f"KUBE-SVC-{H}")[1:] == [
        f"-A KUBE-SVC-{H} -m comment --comment {c1} -m recent --name {s1} --rcheck --seconds 10800 --reap -j {s1}",
        f"-A KUBE-SVC-{H} -m comment --comment {c2} -m recent --name {s2} --rcheck --seconds 10800 --reap -j {s2}",
        f"-A KUBE-SVC-{H} -m comment --comment {c1} -m statistic --mode random --probability 0.5000000000 -j {s1}",
        f"-A KUBE-SVC-{H} -m comment --comment {c2} -j {s2}",
    ]
    assert lines(text, f"KUBE-SVL-{H}") == [
        f"-A KUBE-SVL-{H} -m comment --comment {c2} -m recent --name {s2} --rcheck --seconds 10800 --reap -j {s2}",
        f"-A KUBE-SVL-{H} -m comment --comment {c2} -j {s2}",
    ]
    assert lines(text, s1)[1] == (
        f"-A {s1} -m comment --comment ns1/svc1:p80 -m recent --name {s1} --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80")


def test_masquerade_all() -> None:
    cfg = attrs.evolve(CFG, iptables=IPTablesConfiguration(masquerade_all=True))
    text = render_restore(state(port(endpoints=(ep("10.180.0.1"),)), config=cfg)).text
    assert lines(text, f"KUBE-SVC-{H}")[0] == (
        f'-A KUBE-SVC-{H} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ')


@pytest.mark.parametrize(
    ("config", "if_local", "if_not_local"),
    [
        (KubeProxyConfiguration(cluster_cidr="10.0.0.0/8"), "-s 10.0.0.0/8", "! -s 10.0.0.0/8"),
        (KubeProxyConfiguration(cluster_cidr="fd00::/48,10.0.0.0/8"), "-s 10.0.0.0/8", "! -s 10.0.0.0/8"),
        (KubeProxyConfiguration(detect_local_mode="NodeCIDR"), "-s 10.0.1.0/24", "! -s 10.0.1.0/24"),
        (KubeProxyConfiguration(detect_local_mode="BridgeInterface",
                                detect_local=DetectLocalConfiguration(bridge_interface="cbr0")),
         "-i cbr0", "! -i cbr0"),
        (KubeProxyConfiguration(detect_local_mode="InterfaceNamePrefix",
                                detect_local=DetectLocalConfiguration(interface_name_prefix="veth")),
         "-i veth+", "! -i veth+"),
    ],
)
def test_detect_local_modes(config: KubeProxyConfiguration, if_local: str, if_not_local: str) -> None:
    sp = port(external_policy_local=True, node_port=3001, endpoints=(ep("10.180.0.1", local=True),))
    text = render_restore(state(sp, config=config)).text
    assert lines(text, f"KUBE-SVC-{H}")[0].endswith(f"--dport 80 {if_not_local} -j KUBE-MARK-MASQ")
    assert lines(text, f"KUBE-EXT-{H}")[0] == (
        f'-A KUBE-EXT-{H} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" {if_local} -j KUBE-SVC-{H}')


@pytest.mark.parametrize("config", [KubeProxyConfiguration(),  # ClusterCIDR mode, no CIDR
                                    KubeProxyConfiguration(cluster_cidr="10.0.0.0/8", detect_local_mode="None")])
def test_no_local_detector(config: KubeProxyConfiguration) -> None:
    sp = port(external_policy_local=True, node_port=3001, endpoints=(ep("10.180.0.1", local=True),))
    text = render_restore(state(sp, config=config)).text
    assert "cluster IP" not in "".join(lines(text, f"KUBE-SVC-{H}"))
    assert "pod traffic" not in text
    assert lines(text, f"KUBE-EXT-{H}")[0].startswith(f'-A KUBE-EXT-{H} -m comment --comment "masquerade LOCAL')


def test_large_cluster_mode_drops_only_endpoint_comments() -> None:
    eps = tuple(ep(f"10.{i // 250}.{i % 250}.1") for i in range(1001))
    sp = port(endpoints=eps, node_port=3001)
    text = render_restore(state(sp)).text
    svc = lines(text, f"KUBE-SVC-{H}")
    assert svc[0].startswith(f'-A KUBE-SVC-{H} -m comment --comment "ns1/svc1:p80 cluster IP"')
    assert all("--comment" not in line for line in svc[1:])
    assert svc[1].split(" -j ")[0].endswith("--probability 0.0009990010")
    first = sorted(e.string for e in eps)[0]
    assert first == "10.0.0.1:80"
    s = sep(first)
    assert lines(text, s) == [
        f"-A {s} -s 10.0.0.1 -j KUBE-MARK-MASQ",
        f"-A {s} -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
    ]
    assert "--comment ns1/svc1:p80 -m tcp -p tcp --dport 3001" in text  # NodePort keeps its comment
    # 1000 endpoints is not "more than 1000".
    text2 = render_restore(state(port(endpoints=eps[:1000]))).text
    assert '"ns1/svc1:p80 -> ' in text2


def test_ipv6() -> None:
    cfg = KubeProxyConfiguration(cluster_cidr="fd00:10::/48")
    sp = port(cluster_ip="fd00:172:30::41", node_port=3001,
              endpoints=(ep("fd00:10:180::1"),), node=NODE6)
    text = render_restore(state(sp, config=cfg, node=NODE6, family="IPv6")).text
    s = sep("[fd00:10:180::1]:80")
    assert "KUBE-FIREWALL" not in text
    assert "127.0.0.0/8" not in text
    assert lines(text, s) == [
        f"-A {s} -m comment --comment ns1/svc1:p80 -s fd00:10:180::1 -j KUBE-MARK-MASQ",
        f"-A {s} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:10:180::1]:80",
    ]
    assert lines(text, "KUBE-SERVICES", "nat")[-1] == (
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS')
    assert lines(text, f"KUBE-SVC-{H}")[0].endswith("--dport 80 ! -s fd00:10::/48 -j KUBE-MARK-MASQ")
    assert lines(text, "KUBE-NODEPORTS", "nat") == [
        f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-{H}"]


TAIL = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


@pytest.mark.parametrize(
    ("addresses", "localhost", "tail", "firewall"),
    [
        ((), True, [f"{TAIL} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"], True),
        ((), False, [f"{TAIL} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"], False),
        (("0.0.0.0/0",), True, [f"{TAIL} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"], True),
        # No loopback in the list: localhostNodePorts is forced off.
        (("192.168.0.0/24",), True, [f"{TAIL} -d 192.168.0.2 -j KUBE-NODEPORTS"], False),
        (("192.168.0.0/16", "10.1.0.0/16", "127.0.0.0/8"), True,
         [f"{TAIL} -d {ip} -j KUBE-NODEPORTS" for ip in ("127.0.0.1", "192.168.0.2", "10.1.0.7")], True),
        # Only IPv6 CIDRs: none of this family, so match-all.
        (("2001:db8::/64",), True, [f"{TAIL} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"], True),
        (("primary",), True, [f"{TAIL} -d 192.168.0.2 -j KUBE-NODEPORTS"], False),
    ],
)
def test_nodeport_addresses(addresses: tuple[str, ...], localhost: bool, tail: list[str], firewall: bool) -> None:
    cfg = attrs.evolve(CFG, node_port_addresses=addresses,
                       iptables=IPTablesConfiguration(localhost_node_ports=localhost))
    text = render_restore(state(port(node_port=3001, endpoints=(ep("10.180.0.1"),)), config=cfg)).text
    assert [line for line in lines(text, "KUBE-SERVICES", "nat") if "nodeports;" in line] == tail
    assert ("KUBE-FIREWALL" in text) is firewall
    assert ("127.0.0.0/8 --dport 3001" in text) is firewall


def test_real_node_defaults_mark_random_fully_nfacct() -> None:
    text = render_restore(state(port(endpoints=(ep("10.180.0.1"),)), options=ProxierOptions())).text
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in text
    assert '-j MASQUERADE --random-fully\n' in text
    assert "-m mark ! --mark 0x00004000/0x00004000 -j RETURN" in text
    text = render_restore(state(port(endpoints=(ep("10.180.0.1"),), node_port=3001),
                                options=ProxierOptions(nfacct_counters=()))).text
    assert "nfacct" not in text
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in text


def test_multi_port_service_keeps_port_order_under_normalisation() -> None:
    a = port(pname="a", port_=81, endpoints=(ep("10.180.0.1", 81),))
    b = port(pname="b", port_=80, endpoints=(ep("10.180.0.1", 80),))
    text = sort_iptables_rules(render_restore(state(a, b)).text)
    caps = [line for line in lines(text, "KUBE-SERVICES", "nat") if "cluster IP" in line]
    assert [c.split('"')[1] for c in caps] == ["ns1/svc1:a cluster IP", "ns1/svc1:b cluster IP"]


def test_unknown_family_is_a_clear_error() -> None:
    from kservice.errors import BackendError

    with pytest.raises(BackendError, match="unknown IP family"):
        render_restore(attrs.evolve(state(), family="IPv5"))
