"""IPVS-mode rendering: the reference worked example (§2.9) exactly, every ipset, per case."""

from __future__ import annotations

import attrs
import pytest

from backends.ipvs import backend, render_node
from backends.ipvs.formats import ipset_restore, ipvsadm_list, ipvsadm_save
from backends.ipvs.render import IPSET_INFO, ipset_name
from kservice.backend import Backend
from kservice.proxy.config import (
    DetectLocalConfiguration,
    IPTablesConfiguration,
    IPVSConfiguration,
    KubeProxyConfiguration,
)
from kservice.testing.ipvs import endpoint, node_state, service_port

# --------------------------------------------------------------------------- §2.9 vectors

# "|" marks the end of lines whose trailing spaces are part of ipvsadm's output.
EXAMPLE_LIST = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.0.10:30080 rr
  -> 10.244.1.5:8080              Masq    1      0          0         |
  -> 10.244.2.7:8080              Masq    1      0          0         |
TCP  10.96.100.10:80 rr
  -> 10.244.1.5:8080              Masq    1      0          0         |
  -> 10.244.2.7:8080              Masq    1      0          0         |
""".replace("|\n", "\n")

EXAMPLE_SAVE = """\
-A -t 192.168.0.10:30080 -s rr
-a -t 192.168.0.10:30080 -r 10.244.1.5:8080 -m -w 1
-a -t 192.168.0.10:30080 -r 10.244.2.7:8080 -m -w 1
-A -t 10.96.100.10:80 -s rr
-a -t 10.96.100.10:80 -r 10.244.1.5:8080 -m -w 1
-a -t 10.96.100.10:80 -r 10.244.2.7:8080 -m -w 1
"""

EXAMPLE_IPSET = """\
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-EXTERNAL-IP-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER-FW hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER-SOURCE-IP hash:ip,port,ip family inet hashsize 1024 maxelem 65536
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
create KUBE-NODE-PORT-LOCAL-TCP bitmap:port range 0-65535
create KUBE-NODE-PORT-UDP bitmap:port range 0-65535
create KUBE-NODE-PORT-LOCAL-UDP bitmap:port range 0-65535
create KUBE-NODE-PORT-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-NODE-PORT-LOCAL-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536
create KUBE-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5
add KUBE-CLUSTER-IP 10.96.100.10,tcp:80
add KUBE-NODE-PORT-TCP 30080
add KUBE-IPVS-IPS 10.96.100.10
"""

EXAMPLE_IPTABLES = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
"""

WORKED_CFG = KubeProxyConfiguration(mode="ipvs", cluster_cidr="10.244.0.0/16")


def worked_example(**fields: object):
    web = service_port(
        "default", "web", "10.96.100.10", 80, port_name="http", node_port=30080,
        endpoints=[endpoint("10.244.1.5", 8080, local=True), endpoint("10.244.2.7", 8080)],
        **fields,
    )
    return node_state([web], config=WORKED_CFG)


def test_backend_satisfies_protocol() -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "ipvs"
    assert backend.formats[0] == "all"
    assert set(backend.formats) == {"all", "commands", "save", "list", "ipset", "iptables", "addr"}


def test_worked_example_exact() -> None:
    node = render_node(worked_example())
    assert ipvsadm_list(node.services, node.destinations) == EXAMPLE_LIST
    assert ipvsadm_save(node.services, node.destinations) == EXAMPLE_SAVE
    assert ipset_restore(node.ipsets) == EXAMPLE_IPSET
    assert node.iptables_restore == EXAMPLE_IPTABLES
    assert node.bound == ("10.96.100.10",)


def test_worked_example_sections() -> None:
    r = backend.render(worked_example())
    assert r.names == backend.formats
    assert r.section("list") == EXAMPLE_LIST
    assert r.section("save") == EXAMPLE_SAVE
    assert r.section("iptables") == EXAMPLE_IPTABLES
    assert "    inet 10.96.100.10/32 scope global kube-ipvs0\n" in r.section("addr")
    assert not r.partial


def test_worked_example_with_affinity() -> None:
    node = render_node(worked_example(session_affinity_timeout=10800))
    listing = ipvsadm_list(node.services, node.destinations)
    assert "TCP  10.96.100.10:80 rr persistent 10800\n" in listing
    assert "TCP  192.168.0.10:30080 rr persistent 10800\n" in listing
    assert "-A -t 10.96.100.10:80 -s rr -p 10800\n" in ipvsadm_save(node.services, node.destinations)


# --------------------------------------------------------------------------- every ipset

NODE_IP = "192.168.0.10"


def everything_state(family_ips=(NODE_IP,)):
    eps = [endpoint("10.244.1.5", 8080, local=True), endpoint("10.244.2.7", 8080)]
    ports = [
        # eTP=Cluster LB with source ranges that include the node IP.
        service_port("ns", "lb-open", "10.96.0.20", 80, node_port=30020,
                     load_balancer_vips=("198.51.100.20",),
                     load_balancer_source_ranges=("192.168.0.0/24", "203.0.113.0/25"),
                     endpoints=eps),
        # eTP=Local LB whose ranges exclude the node: OUT-FILTER rule, no SOURCE-IP entry.
        service_port("ns", "lb-local", "10.96.0.21", 443, node_port=30021,
                     load_balancer_vips=("198.51.100.21",),
                     load_balancer_source_ranges=("203.0.113.0/25",),
                     external_policy_local=True, health_check_node_port=32000,
                     endpoints=eps),
        service_port("ns", "ext", "10.96.0.22", 53, protocol="UDP", node_port=30022,
                     external_ips=("203.0.113.200",), endpoints=eps),
        service_port("ns", "ext-local", "10.96.0.23", 8443, external_ips=("203.0.113.201",),
                     external_policy_local=True, endpoints=eps),
        service_port("ns", "sctp", "10.96.0.24", 3868, protocol="SCTP", node_port=30024,
                     external_policy_local=True, endpoints=eps),
        service_port("ns", "udp-local", "10.96.0.25", 514, protocol="UDP", node_port=30025,
                     external_policy_local=True, endpoints=eps),
    ]
    return node_state(ports, ips=family_ips, config=WORKED_CFG)


def test_every_ipset_entries() -> None:
    node = render_node(everything_state())
    got = {s.name: s.entries for s in node.ipsets}
    assert [s.name for s in node.ipsets] == [n for n, _, _ in IPSET_INFO]
    assert got["KUBE-LOOP-BACK"] == {"10.244.1.5,tcp:8080,10.244.1.5",
                                     "10.244.1.5,udp:8080,10.244.1.5",
                                     "10.244.1.5,sctp:8080,10.244.1.5"}
    assert got["KUBE-CLUSTER-IP"] == {"10.96.0.20,tcp:80", "10.96.0.21,tcp:443",
                                      "10.96.0.22,udp:53", "10.96.0.23,tcp:8443",
                                      "10.96.0.24,sctp:3868", "10.96.0.25,udp:514"}
    assert got["KUBE-EXTERNAL-IP"] == {"203.0.113.200,udp:53"}
    assert got["KUBE-EXTERNAL-IP-LOCAL"] == {"203.0.113.201,tcp:8443"}
    assert got["KUBE-LOAD-BALANCER"] == {"198.51.100.20,tcp:80", "198.51.100.21,tcp:443"}
    assert got["KUBE-LOAD-BALANCER-FW"] == {"198.51.100.20,tcp:80", "198.51.100.21,tcp:443"}
    assert got["KUBE-LOAD-BALANCER-LOCAL"] == {"198.51.100.21,tcp:443"}
    assert got["KUBE-LOAD-BALANCER-SOURCE-IP"] == {"198.51.100.20,tcp:80,198.51.100.20"}
    assert got["KUBE-LOAD-BALANCER-SOURCE-CIDR"] == {
        "198.51.100.20,tcp:80,192.168.0.0/24", "198.51.100.20,tcp:80,203.0.113.0/25",
        "198.51.100.21,tcp:443,203.0.113.0/25"}
    assert got["KUBE-NODE-PORT-TCP"] == {"30020", "30021"}
    assert got["KUBE-NODE-PORT-LOCAL-TCP"] == {"30021"}
    assert got["KUBE-NODE-PORT-UDP"] == {"30022", "30025"}
    assert got["KUBE-NODE-PORT-LOCAL-UDP"] == {"30025"}
    assert got["KUBE-NODE-PORT-SCTP-HASH"] == {"192.168.0.10,sctp:30024"}
    assert got["KUBE-NODE-PORT-LOCAL-SCTP-HASH"] == {"192.168.0.10,sctp:30024"}
    assert got["KUBE-HEALTH-CHECK-NODE-PORT"] == {"32000"}
    assert got["KUBE-IPVS-IPS"] == {"10.96.0.20", "10.96.0.21", "10.96.0.22", "10.96.0.23",
                                    "10.96.0.24", "10.96.0.25", "198.51.100.20",
                                    "198.51.100.21", "203.0.113.200", "203.0.113.201"}


def test_every_ipset_iptables_rules_in_order() -> None:
    text = render_node(everything_state()).iptables_restore
    nat, flt = text.split("*filter\n")
    order = [
        "-A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE",
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER',
        '-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN',
        '-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN',
        '-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ',
        '-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN',
        '-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ',
        "-A KUBE-NODE-PORT -p sctp -m comment --comment \"Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'\" -m set --match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN",
        "-A KUBE-NODE-PORT -p sctp -m comment --comment \"Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'\" -m set --match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ",
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ',
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT',
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT',
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT',
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT',
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
        "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ",
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT",
    ]
    positions = [nat.index(line + "\n") for line in order]
    assert positions == sorted(positions)
    fw = [
        '-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL',
        '-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN',
        '-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source IP for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN',
        "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP",
        "-A KUBE-IPVS-OUT-FILTER -s 198.51.100.21 -m ipvs --vaddr 198.51.100.21 --vproto tcp --vport 443 -j DROP",
    ]
    positions = [flt.index(line + "\n") for line in fw]
    assert positions == sorted(positions)
    # Only the LB that excludes the node gets an OUT-FILTER rule.
    assert flt.count("KUBE-IPVS-OUT-FILTER -s") == 1


def test_virtual_servers_per_frontend() -> None:
    node = render_node(everything_state())
    keys = set(node.services)
    # ClusterIP, LB IP and one NodePort VS per node IP; externalIPs; SCTP/UDP too.
    for k in ("10.96.0.20:80/TCP", "198.51.100.20:80/TCP", "192.168.0.10:30020/TCP",
              "203.0.113.200:53/UDP", "192.168.0.10:30022/UDP", "203.0.113.201:8443/TCP",
              "192.168.0.10:30024/SCTP", "10.96.0.24:3868/SCTP"):
        assert k in keys
    assert all(vs.scheduler == "rr" and vs.flags == 0 for vs in node.services.values())
    # NodePort addresses are never bound on kube-ipvs0.
    assert NODE_IP not in node.bound


# --------------------------------------------------------------------------- endpoint choice


def local_policy_state(local_eps: bool, internal_local: bool = False):
    eps = [endpoint("10.244.2.7", 8080), endpoint("10.244.3.9", 8080)]
    if local_eps:
        eps.append(endpoint("10.244.1.5", 8080, local=True))
    sp = service_port("ns", "web", "10.96.0.30", 80, node_port=30030,
                      load_balancer_vips=("198.51.100.30",), external_ips=("203.0.113.30",),
                      external_policy_local=True, internal_policy_local=internal_local,
                      health_check_node_port=32001, endpoints=eps)
    return node_state([sp], config=WORKED_CFG)


def dests(node, key):
    return [rs.key for rs in node.destinations[key]]


def test_etp_local_uses_local_endpoints_for_external_frontends_only() -> None:
    node = render_node(local_policy_state(local_eps=True))
    for key in ("192.168.0.10:30030/TCP", "198.51.100.30:80/TCP", "203.0.113.30:80/TCP"):
        assert dests(node, key) == ["10.244.1.5:8080"]
    # The ClusterIP follows internalTrafficPolicy (Cluster): every ready endpoint.
    assert dests(node, "10.96.0.30:80/TCP") == ["10.244.1.5:8080", "10.244.2.7:8080",
                                                "10.244.3.9:8080"]


def test_etp_local_without_local_endpoints_falls_back_to_cluster() -> None:
    # PR #97081: IPVS mode keeps cluster endpoints when a Local policy has no local ones
    # (iptables/nftables would drop instead).
    node = render_node(local_policy_state(local_eps=False))
    for key in ("192.168.0.10:30030/TCP", "198.51.100.30:80/TCP", "203.0.113.30:80/TCP"):
        assert dests(node, key) == ["10.244.2.7:8080", "10.244.3.9:8080"]


def test_itp_local_cluster_ip_only_local() -> None:
    node = render_node(local_policy_state(local_eps=True, internal_local=True))
    assert dests(node, "10.96.0.30:80/TCP") == ["10.244.1.5:8080"]


def test_itp_local_internal_only_service_without_local_endpoints_has_no_destinations() -> None:
    # Not externally accessible: CategorizeEndpoints computes no cluster set, so the
    # fallback has nothing to fall back to.
    sp = service_port("ns", "itl", "10.96.0.31", 80, internal_policy_local=True,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    node = render_node(node_state([sp]))
    assert node.destinations["10.96.0.31:80/TCP"] == ()
    assert "10.96.0.31:80/TCP" in node.services


def test_not_ready_endpoints_follow_categorization() -> None:
    sp = service_port("ns", "web", "10.96.0.32", 80, endpoints=[
        endpoint("10.244.2.7", 8080), endpoint("10.244.2.8", 8080, ready=False),
        endpoint("10.244.1.9", 8080, local=True, ready=False)])
    node = render_node(node_state([sp]))
    assert dests(node, "10.96.0.32:80/TCP") == ["10.244.2.7:8080"]
    # KUBE-LOOP-BACK lists every local endpoint, ready or not (upstream reads endpointsMap).
    assert node.ipset("KUBE-LOOP-BACK").entries == {"10.244.1.9,tcp:8080,10.244.1.9"}


def test_terminating_fallback() -> None:
    sp = service_port("ns", "web", "10.96.0.33", 80, endpoints=[
        endpoint("10.244.2.7", 8080, ready=False, serving=True, terminating=True),
        endpoint("10.244.2.8", 8080, ready=False, serving=False, terminating=True)])
    node = render_node(node_state([sp]))
    assert dests(node, "10.96.0.33:80/TCP") == ["10.244.2.7:8080"]


# --------------------------------------------------------------------------- binding / node IPs


def test_external_ip_on_node_interface_is_not_bound() -> None:
    sp = service_port("ns", "ext", "10.96.0.40", 80, external_ips=(NODE_IP, "203.0.113.40"),
                      endpoints=[endpoint("10.244.2.7", 8080)])
    node = render_node(node_state([sp]))
    assert NODE_IP not in node.bound
    assert "203.0.113.40" in node.bound
    assert f"{NODE_IP}:80/TCP" in node.services
    assert node.ipset("KUBE-IPVS-IPS").entries == {"10.96.0.40", "203.0.113.40"}


def test_nodeport_addresses_filter_and_no_node_ips_skips_health_check() -> None:
    sp = service_port("ns", "np", "10.96.0.41", 80, node_port=30041, external_policy_local=True,
                      health_check_node_port=32041, endpoints=[endpoint("10.244.2.7", 8080)])
    ifaces = (("lo", "127.0.0.1/8"), ("eth0", "192.168.0.10/24"), ("eth1", "10.0.0.5/8"),
              ("cni0", "10.244.1.1/24"))
    cfg = attrs.evolve(WORKED_CFG, node_port_addresses=("10.0.0.0/24",))
    node = render_node(node_state([sp], interfaces=ifaces, config=cfg))
    assert [k for k in node.services if k.endswith(":30041/TCP")] == ["10.0.0.5:30041/TCP"]
    node = render_node(node_state([sp], interfaces=ifaces))
    assert sorted(k for k in node.services if k.endswith(":30041/TCP")) == [
        "10.0.0.5:30041/TCP", "10.244.1.1:30041/TCP", "192.168.0.10:30041/TCP"]
    cfg = attrs.evolve(WORKED_CFG, node_port_addresses=("172.16.0.0/12",))
    node = render_node(node_state([sp], interfaces=ifaces, config=cfg))
    assert not [k for k in node.services if k.endswith(":30041/TCP")]
    # Upstream `continue`s before the health-check entry when there are no node IPs.
    assert not node.ipset("KUBE-NODE-PORT-TCP").entries
    assert not node.ipset("KUBE-HEALTH-CHECK-NODE-PORT").entries


def test_primary_nodeport_address() -> None:
    sp = service_port("ns", "np", "10.96.0.42", 80, node_port=30042,
                      endpoints=[endpoint("10.244.2.7", 8080)])
    ifaces = (("lo", "127.0.0.1/8"), ("eth0", "192.168.0.10/24"), ("eth1", "10.0.0.5/8"))
    cfg = attrs.evolve(WORKED_CFG, node_port_addresses=("primary",))
    node = render_node(node_state([sp], interfaces=ifaces, config=cfg))
    assert [k for k in node.services if k.endswith(":30042/TCP")] == ["192.168.0.10:30042/TCP"]


# --------------------------------------------------------------------------- config variants


@pytest.mark.parametrize(
    ("cfg", "pod_cidrs", "expected"),
    [
        (KubeProxyConfiguration(mode="ipvs", cluster_cidr="10.244.0.0/16",
                                iptables=IPTablesConfiguration(masquerade_all=True)), (),
         "KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"),
        (KubeProxyConfiguration(mode="ipvs"), (), "KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"),
        (KubeProxyConfiguration(mode="ipvs", detect_local_mode="NodeCIDR"), ("10.244.1.0/24",),
         "KUBE-CLUSTER-IP dst,dst ! -s 10.244.1.0/24 -j KUBE-MARK-MASQ"),
        (KubeProxyConfiguration(mode="ipvs", detect_local_mode="BridgeInterface",
                                detect_local=DetectLocalConfiguration(bridge_interface="cbr0")),
         (), "KUBE-CLUSTER-IP dst,dst ! -i cbr0 -j KUBE-MARK-MASQ"),
        (KubeProxyConfiguration(mode="ipvs", detect_local_mode="InterfaceNamePrefix",
                                detect_local=DetectLocalConfiguration(
                                    interface_name_prefix="veth")),
         (), "KUBE-CLUSTER-IP dst,dst ! -i veth+ -j KUBE-MARK-MASQ"),
    ],
)
def test_cluster_ip_masquerade_variants(cfg, pod_cidrs, expected) -> None:
    sp = service_port("ns", "a", "10.96.0.50", 80, endpoints=[endpoint("10.244.2.7", 8080)])
    text = render_node(node_state([sp], config=cfg, pod_cidrs=pod_cidrs)).iptables_restore
    lines = [ln for ln in text.splitlines() if "KUBE-MARK-MASQ" in ln and "CLUSTER-IP" in ln]
    assert len(lines) == 1
    assert lines[0].endswith(expected)


def test_scheduler_and_mh_flag() -> None:
    sp = service_port("ns", "a", "10.96.0.51", 80, endpoints=[endpoint("10.244.2.7", 8080)],
                      session_affinity_timeout=60)
    cfg = KubeProxyConfiguration(mode="ipvs", ipvs=IPVSConfiguration(scheduler="mh"))
    node = render_node(node_state([sp], config=cfg))
    vs = node.services["10.96.0.51:80/TCP"]
    assert (vs.scheduler, vs.flags, vs.timeout) == ("mh", 0x11, 60)
    assert "-A -t 10.96.0.51:80 -s mh -b mh-port -p 60\n" in ipvsadm_save(
        node.services, node.destinations)


def test_ipv6_names_and_addresses() -> None:
    sp = service_port("ns", "v6", "fd00:10:96::10", 80, node_port=30060, protocol="SCTP",
                      load_balancer_vips=("2001:db8:1b::5",),
                      load_balancer_source_ranges=("2001:db8:c::/64",),
                      endpoints=[endpoint("fd00:10:244:1::5", 8080, local=True)])
    state = node_state([sp], family="IPv6", ips=("fc00::2",),
                       config=KubeProxyConfiguration(mode="ipvs",
                                                     cluster_cidr="fd00:10:244::/56"))
    node = render_node(state)
    names = [s.name for s in node.ipsets]
    assert names == [ipset_name(n, "IPv6") for n, _, _ in IPSET_INFO]
    assert "KUBE-6-LOAD-BALANCER-SOURCE-CID" in names
    assert "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS" in names
    assert all(len(n) <= 31 for n in names)
    assert all(s.family == "inet6" for s in node.ipsets)
    assert node.ipset("KUBE-6-LOOP-BACK").entries == {
        "fd00:10:244:1::5,sctp:8080,fd00:10:244:1::5"}
    assert node.ipset("KUBE-6-NODE-PORT-SCTP-HASH").entries == {"fc00::2,sctp:30060"}
    assert "-A KUBE-SERVICES -s ::1/128 -j RETURN\n" in node.iptables_restore
    assert "! -s fd00:10:244::/56 -j KUBE-MARK-MASQ" in node.iptables_restore
    save = ipvsadm_save(node.services, node.destinations)
    assert "-A --sctp-service [fd00:10:96::10]:80 -s rr\n" in save
    assert "-a --sctp-service [fd00:10:96::10]:80 -r [fd00:10:244:1::5]:8080 -m -w 1\n" in save
    listing = ipvsadm_list(node.services, node.destinations)
    assert "SCTP  [fd00:10:96::10]:80 rr\n" in listing
    r = backend.render(state)
    assert "    inet6 fd00:10:96::10/128 scope global \n" in r.section("addr")
    assert "ip6tables -w -t nat -N KUBE-SERVICES\n" in r.section("commands")


def test_bad_family_is_a_clear_error() -> None:
    from kservice.errors import BackendError

    state = attrs.evolve(worked_example(), family="IPv5")
    with pytest.raises(BackendError, match="unknown IP family"):
        render_node(state)


def test_partial_render_commands_are_the_increment() -> None:
    before = worked_example()
    after = worked_example(session_affinity_timeout=60)
    r = backend.render(after, previous=before)
    assert r.partial
    assert r.section("commands").splitlines()[:2] == [
        "ipvsadm -E -t 10.96.100.10:80 -s rr -p 60",
        "ipvsadm -E -t 192.168.0.10:30080 -s rr -p 60",
    ]
    # The other sections always show the whole resulting state.
    assert r.section("save") == backend.render(after).section("save")


def test_load_from_the_all_section_alone() -> None:
    from backends.mockkernel import MockKernel
    from kservice.backend import Rendering
    from kservice.trace import Packet

    state = worked_example()
    full = backend.render(state)
    only_all = Rendering(full.backend, full.node, full.family, (("all", full.section("all")),))
    kernel = MockKernel(state.node)
    backend.load(kernel, only_all)
    assert kernel.ipvs.save() == EXAMPLE_SAVE
    assert kernel.is_local("10.96.100.10")
    res = kernel.trace(Packet("192.0.2.9", "192.168.0.10", 30080), mode="ipvs")
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    assert all(o.masqueraded for o in res.outcomes)


@pytest.mark.parametrize(("text", "seconds"), [("0s", 0), ("900s", 900), ("15m", 900),
                                                ("1h30m", 5400), ("0", 0), ("1500ms", 1)])
def test_go_durations(text: str, seconds: int) -> None:
    from backends.ipvs.render import go_duration_seconds

    assert go_duration_seconds(text) == seconds


def test_bad_duration_is_a_clear_error() -> None:
    from backends.ipvs.render import go_duration_seconds
    from kservice.errors import BackendError

    with pytest.raises(BackendError, match="invalid duration '15 minutes'"):
        go_duration_seconds("15 minutes")
