"""The userspace proxier's rules and proxy table (backends/userspace/render.py).

Reference vectors: kube-proxy-ipvs-nft-userspace.md §4.2 (jump rules, rule shapes) and §4.5
(the worked example, "as passed to iptables" and "as iptables-save would print").
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.mockkernel import MockKernel, parse_iptables_save
from backends.userspace import UserspaceBackend, UserspaceOptions, plan_node
from backends.userspace.render import entries_from_json, iptables_save
from kservice.backend import get_backend
from kservice.errors import InvalidInput
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.testing.dataplane import node_proxy_states

NODE = NodeInfo(name="node-a", ips=("192.168.0.10",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "192.168.0.10/24"), ("lo", "127.0.0.1/8")))


def _port(name: str = "web", port_name: str = "http", *, protocol: str = "TCP",
          cluster_ip: str = "10.96.100.10", port: int = 80, **kw: object) -> ServicePortInfo:
    sp = ServicePortInfo(name=ServicePortName("default", name, port_name, protocol),
                         cluster_ip=cluster_ip, port=port, protocol=protocol, **kw)  # type: ignore[arg-type]
    return attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, "node-a", {}))


WEB_EPS = (Endpoint("10.244.1.5", 8080, is_local=True, node_name="node-a"),
           Endpoint("10.244.2.7", 8080, node_name="node-b"))


def _state(*ports: ServicePortInfo, node: NodeInfo = NODE, family: str = "IPv4") -> NodeProxyState:
    return NodeProxyState(node=node, family=family,
                          service_ports=tuple(sorted(ports, key=lambda s: s.name)))


# ----------------------------------------------------------------- reference §4.5

WORKED_EXAMPLE_ARGS = """\
-A KUBE-PORTALS-CONTAINER -m comment --comment default/web:http -p tcp -m tcp --dport 80 -d 10.96.100.10/32 -j REDIRECT --to-ports 43521
-A KUBE-PORTALS-HOST -m comment --comment default/web:http -p tcp -m tcp --dport 80 -d 10.96.100.10/32 -j DNAT --to-destination 192.168.0.10:43521
-A KUBE-NODEPORT-CONTAINER -m comment --comment default/web:http -p tcp -m tcp --dport 30080 -j REDIRECT --to-ports 43521
-A KUBE-NODEPORT-HOST -m comment --comment default/web:http -p tcp -m tcp --dport 30080 -j DNAT --to-destination 192.168.0.10:43521
-A KUBE-NODEPORT-NON-LOCAL -m comment --comment default/web:http -p tcp -m tcp --dport 43521 -m state --state NEW -j ACCEPT
"""
WORKED_EXAMPLE_SAVED_FIRST = (
    '-A KUBE-PORTALS-CONTAINER -d 10.96.100.10/32 -p tcp -m comment --comment '
    '"default/web:http" -m tcp --dport 80 -j REDIRECT --to-ports 43521')


def _web_state() -> NodeProxyState:
    return _state(_port(node_port=30080, endpoints=WEB_EPS))


def test_worked_example_rules_as_passed_to_iptables() -> None:
    plan = plan_node(_web_state(), UserspaceOptions(proxy_port_base=43521))
    got = "".join(f"-A {r.chain} {' '.join(r.args())}\n" for r in plan.rules)
    assert got == WORKED_EXAMPLE_ARGS
    assert [r.table for r in plan.rules] == ["nat"] * 4 + ["filter"]


def test_commands_follow_pkg_util_iptables_argument_order() -> None:
    text = UserspaceBackend(UserspaceOptions(proxy_port_base=43521)).render(
        _web_state()).section("commands")
    calls = [line.split(" ", 5) for line in text.splitlines()[1:]]
    # [binary, -w, 5, -W, 100000, "op chain -t table args"]
    assert {tuple(c[:5]) for c in calls} == {("iptables", "-w", "5", "-W", "100000")}
    ops = [c[5].split(" ", 1)[0] for c in calls]
    # iptablesInit: (-N, -C, -I/-A) x 5; iptablesFlush: -F x 5; then (-C, -A) per rule.
    assert ops == ["-N", "-C", "-I", "-N", "-C", "-I", "-N", "-C", "-A", "-N", "-C", "-A",
                   "-N", "-C", "-I"] + ["-F"] * 5 + ["-C", "-A"] * 5
    added = [c[5] for c in calls if c[5].startswith("-A KUBE-")]
    want = []
    for line in WORKED_EXAMPLE_ARGS.splitlines():
        _a, chain, rest = line.split(" ", 2)
        table = "filter" if chain == "KUBE-NODEPORT-NON-LOCAL" else "nat"
        want.append(f"-A {chain} -t {table} {rest}")
    assert added == want


def test_worked_example_as_iptables_save_prints_it() -> None:
    plan = plan_node(_web_state(), UserspaceOptions(proxy_port_base=43521))
    assert plan.rules[0].saved() == WORKED_EXAMPLE_SAVED_FIRST
    assert WORKED_EXAMPLE_SAVED_FIRST in iptables_save(plan).splitlines()


def test_worked_example_proxy_table_and_reservations() -> None:
    plan = plan_node(_web_state(), UserspaceOptions(proxy_port_base=43521))
    (entry,) = plan.entries
    assert entry.proxy_port == 43521
    assert entry.endpoints == ("10.244.1.5:8080", "10.244.2.7:8080")
    assert entry.reserved == (":30080",)
    assert plan.listen_ip == "0.0.0.0" and plan.host_ip == "192.168.0.10"
    text = UserspaceBackend(UserspaceOptions(proxy_port_base=43521)).render(
        _web_state()).section("proxy")
    row = next(line for line in text.splitlines() if line.startswith("default/web:http"))
    assert row.split() == ["default/web:http", "TCP", "0.0.0.0:43521", "10.96.100.10:80",
                           "30080", "None", "10.244.1.5:8080,10.244.2.7:8080"]


# ----------------------------------------------------------------- reference §4.2

JUMPS_AS_SAVED = {
    "filter": ['-A INPUT -m comment --comment "Ensure that non-local NodePort traffic can '
               'flow" -j KUBE-NODEPORT-NON-LOCAL'],
    "nat": [
        '-A PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the '
        'NodePort rules" -j KUBE-PORTALS-CONTAINER',
        '-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "handle service '
        'NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-CONTAINER',
        '-A OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the '
        'NodePort rules" -j KUBE-PORTALS-HOST',
        '-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "handle service '
        'NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-HOST',
    ],
}


def test_jump_rules_are_upstreams_in_chain_order() -> None:
    text = iptables_save(plan_node(_state()))
    tables = {t.name: t for t in parse_iptables_save(text)}
    for table, want in JUMPS_AS_SAVED.items():
        got = [line for line in text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0].splitlines()
               if line.startswith(("-A PREROUTING", "-A OUTPUT", "-A INPUT"))]
        assert got == want
        assert table in tables
    # The five kube chains exist even with no services (iptablesInit ensures them).
    assert set(tables["nat"].chains) >= {"KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST",
                                         "KUBE-NODEPORT-CONTAINER", "KUBE-NODEPORT-HOST"}
    assert "KUBE-NODEPORT-NON-LOCAL" in tables["filter"].chains


def test_external_ip_gets_three_rules_lb_ip_two() -> None:
    plan = plan_node(_state(_port(external_ips=("203.0.113.5",),
                                  load_balancer_vips=("198.51.100.7",), endpoints=WEB_EPS)),
                     UserspaceOptions(proxy_port_base=40000))
    lines = [f"{r.chain} {' '.join(r.args())}" for r in plan.rules]
    common = "-m comment --comment default/web:http -p tcp -m tcp --dport 80"
    assert lines == [
        f"KUBE-PORTALS-CONTAINER {common} -d 10.96.100.10/32 -j REDIRECT --to-ports 40000",
        f"KUBE-PORTALS-HOST {common} -d 10.96.100.10/32 -j DNAT --to-destination 192.168.0.10:40000",
        f"KUBE-PORTALS-CONTAINER {common} -d 203.0.113.5/32 -m physdev ! --physdev-is-in -j REDIRECT --to-ports 40000",
        f"KUBE-PORTALS-CONTAINER {common} -d 203.0.113.5/32 -m addrtype --dst-type LOCAL -j REDIRECT --to-ports 40000",
        f"KUBE-PORTALS-HOST {common} -d 203.0.113.5/32 -m addrtype --dst-type LOCAL -j DNAT --to-destination 192.168.0.10:40000",
        f"KUBE-PORTALS-CONTAINER {common} -d 198.51.100.7/32 -j REDIRECT --to-ports 40000",
        f"KUBE-PORTALS-HOST {common} -d 198.51.100.7/32 -j DNAT --to-destination 192.168.0.10:40000",
    ]


def test_specific_bind_address_uses_dnat_for_containers() -> None:
    plan = plan_node(_web_state(), UserspaceOptions(listen_ip="192.168.0.10",
                                                    proxy_port_base=43521))
    container = [r for r in plan.rules if r.chain.endswith("-CONTAINER")]
    assert {(r.target, r.to) for r in container} == {("DNAT", "192.168.0.10:43521")}
    assert plan.host_ip == "192.168.0.10"


def test_portal_on_a_local_address_is_reserved() -> None:
    plan = plan_node(_state(_port(external_ips=("192.168.0.10",), node_port=30080)))
    assert plan.entries[0].reserved == ("192.168.0.10:80", ":30080")


def test_ipv6_uses_128_and_bracketed_dnat() -> None:
    node = NodeInfo(name="n6", ips=("fd00::10",), pod_cidrs=("fd00:10:244:1::/64",),
                    interfaces=(("eth0", "fd00::10/64"),))
    plan = plan_node(_state(_port(cluster_ip="fd00:96::10", node_port=30080), node=node,
                            family="IPv6"), UserspaceOptions(proxy_port_base=43521))
    assert plan.listen_ip == "::"
    host = next(r for r in plan.rules if r.chain == "KUBE-PORTALS-HOST")
    assert host.saved().endswith("-d fd00:96::10/128 -p tcp -m comment --comment "
                                 '"default/web:http" -m tcp --dport 80 -j DNAT '
                                 "--to-destination [fd00::10]:43521")
    assert "ip6tables -w 5 -W 100000 -A KUBE-PORTALS-HOST -t nat " in get_backend(
        "userspace").render(_state(_port(cluster_ip="fd00:96::10"), node=node,
                                   family="IPv6")).section("commands")


def test_sctp_is_skipped_as_upstream_refused_it() -> None:
    plan = plan_node(_state(_port(protocol="SCTP"), _port("dns", "dns", protocol="UDP",
                                                          cluster_ip="10.96.0.10", port=53)))
    assert [e.name for e in plan.entries] == ["default/dns:dns"]
    assert plan.skipped == (("default/web:http",
                             "SCTP is not supported for user space proxy"),)
    assert all(r.comment != "default/web:http" for r in plan.rules)
    text = get_backend("userspace").render(_state(_port(protocol="SCTP"))).section("proxy")
    assert "# default/web:http: not proxied: SCTP is not supported" in text


def test_ports_follow_service_port_order_from_the_base() -> None:
    ports = [_port("b", "x", cluster_ip="10.96.0.2"), _port("a", "y", cluster_ip="10.96.0.1"),
             _port("a", "", protocol="UDP", cluster_ip="10.96.0.1", port=53)]
    plan = plan_node(_state(*ports), UserspaceOptions(proxy_port_base=50000))
    assert [(e.name, e.proxy_port) for e in plan.entries] == [
        ("default/a", 50000), ("default/a:y", 50001), ("default/b:x", 50002)]
    with pytest.raises(InvalidInput):
        UserspaceOptions(proxy_port_base=70000)
    full = plan_node(_state(*ports), UserspaceOptions(proxy_port_base=65535))
    assert [e.proxy_port for e in full.entries] == [65535]
    assert [why for _, why in full.skipped] == ["no free proxy port"] * 2


def test_only_ready_endpoints_and_affinity_default() -> None:
    eps = (Endpoint("10.244.1.5", 80, ready=True),
           Endpoint("10.244.1.6", 80, ready=False, serving=True, terminating=True),
           Endpoint("10.244.1.7", 80, ready=False, serving=False))
    plan = plan_node(_state(_port(endpoints=eps, session_affinity_timeout=0)))
    assert plan.entries[0].endpoints == ("10.244.1.5:80",)
    assert plan.entries[0].affinity_timeout == 10800
    plan = plan_node(_state(_port(session_affinity_timeout=30)))
    assert plan.entries[0].affinity_timeout == 30


def test_json_section_round_trips() -> None:
    r = get_backend("userspace").render(_state(_port(endpoints=WEB_EPS, node_port=30080,
                                                     external_ips=("203.0.113.5",))))
    family, listen, host, entries = entries_from_json(r.section("json"))
    assert (family, listen, host) == ("IPv4", "0.0.0.0", "192.168.0.10")
    assert entries == plan_node(_state(_port(endpoints=WEB_EPS, node_port=30080,
                                             external_ips=("203.0.113.5",)))).entries
    assert json.loads(r.section("json"))["proxies"][0]["proxy_port"] == 32768
    with pytest.raises(InvalidInput):
        entries_from_json("{}")


@settings(max_examples=25, deadline=None)
@given(state=node_proxy_states(family=st.sampled_from(["IPv4", "IPv6"])))
def test_every_rendering_parses_and_loads(state: NodeProxyState) -> None:
    backend = get_backend("userspace")
    r = backend.render(state)
    assert r.names == backend.formats
    parse_iptables_save(r.section("iptables"))
    backend.load(MockKernel(state.node), r)
    plan = plan_node(state)
    # One proxy per TCP/UDP port, none for SCTP; ports unique.
    assert len(plan.entries) == sum(sp.protocol != "SCTP" for sp in state.service_ports)
    assert len({e.proxy_port for e in plan.entries}) == len(plan.entries)


def test_kservice_render_mode_userspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kservice.cli import main

    examples = Path(__file__).resolve().parents[1] / "docs" / "examples" / "myapp-service.yaml"
    state = str(tmp_path / "state.db")
    assert main(["--state", state, "render", "--mode", "userspace", "--format", "iptables",
                 "-f", str(examples)]) == 0
    out = capsys.readouterr().out
    assert "-j KUBE-PORTALS-CONTAINER" in out
    assert '-m comment --comment "default/myapp:http"' in out
    assert main(["--state", state, "render", "--mode", "userspace", "--format", "nope"]) == 1
