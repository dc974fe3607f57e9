"""Rendering of kube-proxy's nftables mode: names, per-service rules, formats, the contract."""

from __future__ import annotations

import attrs
import pytest

from backends.nftables import backend
from backends.nftables.model import list_rule, prio_text, time_text
from backends.nftables.names import endpoint_names, hash_and_truncate, service_port_names
from backends.nftables.sort import sort_nftables_transaction
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)

NODE = NodeInfo(name="node-a", ips=("192.168.0.10",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "192.168.0.10/24"), ("lo", "127.0.0.1/8")))


def port(name="web", ns="default", pname="http", cip="10.96.100.10", p=80, proto="TCP",
         eps=(("10.244.1.5", 8080, True), ("10.244.2.7", 8080, False)), node=NODE,
         **kw) -> ServicePortInfo:
    endpoints = tuple(sorted((Endpoint(ip, ep, is_local=loc, node_name=node.name if loc else "b")
                              for ip, ep, loc in eps), key=lambda e: e.string))
    sp = ServicePortInfo(name=ServicePortName(ns, name, pname, proto), cluster_ip=cip, port=p,
                         protocol=proto, endpoints=endpoints, **kw)
    return attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, node.name, {}))


def state(*ports, family="IPv4", node=NODE, **cfg) -> NodeProxyState:
    config = KubeProxyConfiguration(mode="nftables", cluster_cidr=cfg.pop("cluster_cidr", "10.244.0.0/16"),
                                    **cfg)
    return NodeProxyState(node=node, family=family, config=config,
                          service_ports=tuple(sorted(ports, key=lambda s: s.name)),
                          service_cidrs=("10.96.0.0/12",))


def lines(st: NodeProxyState, section: str = "dump") -> set[str]:
    return set(backend.render(st).section(section).splitlines())


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize(("base", "hashed"), [
    ("ns1/svc1/tcp/p80", "ULMVA6XW"),                      # golden
    ("ns1/svc1/tcp/p80__10.180.0.1/80", "5OJB2KTY"),       # golden
    ("ns5/svc5/tcp/p80__10.180.0.3/80", "GTK6MW7G"),       # golden
    ("ns4/svc4/tcp/p80__10.180.0.5/80", "5RFCDDV7"),       # golden
    ("default/web/tcp/http", "SUSTUHLJ"),                   # reference §3.7
    ("default/web/tcp/http__10.244.1.5/8080", "HGNPOIJ5"),
])
def test_hash_and_truncate_vectors(base: str, hashed: str) -> None:
    assert hash_and_truncate(base) == f"{hashed}-{base}"


def test_long_names_are_truncated_to_240() -> None:
    out = hash_and_truncate("x" * 300)
    assert out.endswith("...") and len(out) == 9 + 240


def test_ipv6_endpoint_names_replace_colons() -> None:
    sp = port(cip="fd00:10:96::10", eps=(("fd00:10:180::1", 80, False),))
    en = endpoint_names(sp, sp.endpoints[0])
    assert en.chain.endswith("default/web/tcp/http__fd00.10.180..1/80")
    assert service_port_names(sp).cluster_chain == "service-SUSTUHLJ-default/web/tcp/http"


# ----------------------------------------------------------------------------- worked example

def test_worked_example_reference_3_7() -> None:
    sp = port(node_port=30080)
    got = lines(state(sp))
    p = "add rule ip kube-proxy "
    for want in [
        p + "service-SUSTUHLJ-default/web/tcp/http ip daddr 10.96.100.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        p + "service-SUSTUHLJ-default/web/tcp/http numgen random mod 2 vmap { 0 : goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 , 1 : goto endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 }",
        p + "external-SUSTUHLJ-default/web/tcp/http jump mark-for-masquerade",
        p + "external-SUSTUHLJ-default/web/tcp/http goto service-SUSTUHLJ-default/web/tcp/http",
        p + "endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 ip saddr 10.244.1.5 jump mark-for-masquerade",
        p + "endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 meta l4proto tcp dnat to 10.244.2.7:8080",
        "add element ip kube-proxy cluster-ips { 10.96.100.10 }",
        "add element ip kube-proxy service-ips { 10.96.100.10 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http }",
        "add element ip kube-proxy service-nodeports { tcp . 30080 : goto external-SUSTUHLJ-default/web/tcp/http }",
        # default --nodeport-addresses in nftables mode is "primary"
        "add element ip kube-proxy nodeport-ips { 192.168.0.10 }",
        "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00004000",
    ]:
        assert want in got, want


def test_worked_example_without_endpoints() -> None:
    got = lines(state(port(node_port=30080, eps=())))
    assert 'add element ip kube-proxy no-endpoint-services { 10.96.100.10 . tcp . 80 comment "default/web:http" : goto reject-chain }' in got
    assert 'add element ip kube-proxy no-endpoint-nodeports { tcp . 30080 comment "default/web:http" : goto reject-chain }' in got
    assert not any("SUSTUHLJ" in ln for ln in got)


def test_affinity_sets_and_rules() -> None:
    got = backend.render(state(port(session_affinity_timeout=10800))).section("dump")
    aff = "affinity-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080"
    assert f"add set ip kube-proxy {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}" in got
    rules = [ln for ln in got.splitlines() if ln.startswith("add rule ip kube-proxy service-SUSTUHLJ")]
    assert rules[1] == f"add rule ip kube-proxy service-SUSTUHLJ-default/web/tcp/http ip saddr @{aff} goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080"
    assert rules[-1].startswith("add rule ip kube-proxy service-SUSTUHLJ-default/web/tcp/http numgen random mod 2")
    assert f"add rule ip kube-proxy endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 update @{aff} {{ ip saddr }}" in got


def test_internal_local_without_local_endpoints_drops_clusterip() -> None:
    sp = port(internal_policy_local=True, eps=(("10.244.2.7", 8080, False),))
    got = lines(state(sp))
    assert 'add element ip kube-proxy no-endpoint-services { 10.96.100.10 . tcp . 80 comment "default/web:http" : drop }' in got


def test_external_local_uses_local_chain() -> None:
    sp = port(node_port=30080, external_policy_local=True)
    got = lines(state(sp))
    p = "add rule ip kube-proxy external-SUSTUHLJ-default/web/tcp/http "
    assert p + 'ip saddr 10.244.0.0/16 goto service-SUSTUHLJ-default/web/tcp/http comment "short-circuit pod traffic"' in got
    assert p + "goto local-SUSTUHLJ-default/web/tcp/http" in got
    assert "add rule ip kube-proxy local-SUSTUHLJ-default/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 }" in got


def test_firewall_with_two_ranges_and_node_ip_inside() -> None:
    sp = port(load_balancer_vips=("5.6.7.8",),
              load_balancer_source_ranges=("192.168.0.0/24", "203.0.113.0/25"))
    got = lines(state(sp))
    assert ("add rule ip kube-proxy firewall-SUSTUHLJ-default/web/tcp/http "
            "ip saddr != { 192.168.0.0/24 , 203.0.113.0/25 , 5.6.7.8 } drop") in got
    assert "add element ip kube-proxy firewall-ips { 5.6.7.8 . tcp . 80 : goto firewall-SUSTUHLJ-default/web/tcp/http }" in got


def test_match_all_nodeport_addresses() -> None:
    st = state(port(node_port=30080), node_port_addresses=("0.0.0.0/0",))
    r = backend.render(st)
    tx = r.section("transaction").splitlines()
    assert "delete set ip kube-proxy nodeport-ips" in tx
    dump = r.section("dump")
    assert "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports" in dump
    assert "add rule ip kube-proxy nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports" in dump
    assert "nodeport-ips" not in dump


def test_ipv6_rendering() -> None:
    node = NodeInfo(name="node-a", ips=("fd00::a",), interfaces=(("eth0", "fd00::a/64"),))
    sp = port(cip="fd00:10:96::10", eps=(("fd00:10:244:1::5", 8080, True),), node=node)
    got = backend.render(state(sp, family="IPv6", node=node, cluster_cidr="fd00:10:244::/56")).section("dump")
    assert "add table ip6 kube-proxy" in got
    assert "type ipv6_addr . inet_proto . inet_service : verdict" in got
    assert "meta l4proto tcp dnat to [fd00:10:244:1::5]:8080" in got
    assert "ip6 daddr fd00:10:96::10 ip6 saddr != fd00:10:244::/56 jump mark-for-masquerade" in got
    assert "ip6 daddr @cluster-ips reject" in got


def test_masquerade_all_and_no_detector() -> None:
    got = lines(state(port(), cluster_cidr=""))
    assert not any("jump mark-for-masquerade" in ln and "service-SUSTUHLJ" in ln.split()[4]
                   for ln in got if ln.startswith("add rule"))


def test_first_sync_transaction_shape() -> None:
    tx = backend.render(state(port())).section("transaction").splitlines()
    assert tx[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    # add+delete of every base chain before they are created with their hooks
    assert tx[1:3] == ["add chain ip kube-proxy filter-prerouting-pre-dnat",
                       "delete chain ip kube-proxy filter-prerouting-pre-dnat"]
    assert "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }" in tx
    for m in ("cluster-ips", "service-ips", "firewall-ips", "no-endpoint-services",
              "no-endpoint-nodeports", "service-nodeports"):
        kind = "set" if m == "cluster-ips" else "map"
        assert f"flush {kind} ip kube-proxy {m}" in tx


# ----------------------------------------------------------------------------- list format

@pytest.mark.parametrize(("prio", "hook", "text"), [
    # observed with nftables 1.0.6 (`nft list ruleset`)
    (-110, "prerouting", "dstnat - 10"), (-110, "output", "-110"), (-100, "output", "-100"),
    (0, "input", "filter"), (100, "postrouting", "srcnat"), (-100, "prerouting", "dstnat"),
])
def test_priority_text(prio: int, hook: str, text: str) -> None:
    assert prio_text(prio, hook) == text


@pytest.mark.parametrize(("secs", "text"), [(10800, "3h"), (90, "1m30s"), (86400, "1d"),
                                            (3601, "1h1s"), (10, "10s")])
def test_time_text(secs: int, text: str) -> None:
    assert time_text(secs) == text


@pytest.mark.parametrize(("rule", "listed"), [
    ("mark set mark or 0x4000", "meta mark set meta mark | 0x00004000"),
    ("mark and 0x4000 == 0 return", "meta mark & 0x00004000 == 0x00000000 return"),
    ("ip daddr { 172.30.0.0/16 } drop", "ip daddr 172.30.0.0/16 drop"),
    ("ip6 saddr != { fd00::/64 , 2001:db8::/64 } drop", "ip6 saddr != { 2001:db8::/64, fd00::/64 } drop"),
    ("numgen random mod 2 vmap { 0 : goto a , 1 : goto b }", "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }"),
])
def test_list_rule_forms(rule: str, listed: str) -> None:
    assert list_rule(rule) == listed


# ----------------------------------------------------------------------------- sort helper

def test_sort_keeps_rule_order_and_sorts_the_rest() -> None:
    tx = "\n".join([
        "# comment", "",
        "add element ip kube-proxy b { 2 }",
        "add rule ip kube-proxy c second",
        "add chain ip kube-proxy c",
        "add rule ip kube-proxy a x",
        "add rule ip kube-proxy c first",
        "add element ip kube-proxy b { 1 }",
        "add table ip kube-proxy { comment \"x\" ; }",
    ])
    assert sort_nftables_transaction(tx).splitlines() == [
        "add table ip kube-proxy { comment \"x\" ; }",
        "add chain ip kube-proxy c",
        "add rule ip kube-proxy a x",
        "add rule ip kube-proxy c second",
        "add rule ip kube-proxy c first",
        "add element ip kube-proxy b { 1 }",
        "add element ip kube-proxy b { 2 }",
    ]


# The BackendContract for nftables is tests/test_contract_nftables.py (one class, every
# documented mode difference).
