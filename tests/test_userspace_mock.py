"""The userspace proxier in the mock kernel (backends/userspace/mock.py and
backends/mockkernel/localproxy.py): REDIRECT/DNAT to the proxy port, the proxy socket, the
proxy's own connection from the node, round robin, affinity, UDP sessions."""

from __future__ import annotations

import json
import random
from collections import Counter
from fractions import Fraction
from pathlib import Path

import attrs
import pytest

from backends.mockkernel import MockKernel, parse_iptables_save
from backends.mockkernel.localproxy import SOCKET_PRIORITY, local_sockets
from backends.userspace import UserspaceBackend, UserspaceOptions
from kservice.backend import get_backend
from kservice.proxy.categorize import categorize_endpoints
from kservice.proxy.types import (
    Endpoint,
    NodeInfo,
    NodeProxyState,
    ServicePortInfo,
    ServicePortName,
)
from kservice.trace import Packet

NODE = NodeInfo(name="node-a", ips=("192.168.0.10",), pod_cidrs=("10.244.1.0/24",),
                interfaces=(("eth0", "192.168.0.10/24"), ("lo", "127.0.0.1/8")))
GW = "10.244.1.1"  # the pod bridge's address (first address of the pod CIDR)
LOCAL_EP = Endpoint("10.244.1.5", 8080, is_local=True, node_name="node-a")
REMOTE_EP = Endpoint("10.244.2.7", 8080, node_name="node-b")


def _port(*, protocol: str = "TCP", cluster_ip: str = "10.96.100.10", port: int = 80,
          endpoints: tuple[Endpoint, ...] = (LOCAL_EP, REMOTE_EP), **kw: object) -> ServicePortInfo:
    sp = ServicePortInfo(name=ServicePortName("default", "web", "http", protocol),
                         cluster_ip=cluster_ip, port=port, protocol=protocol,
                         endpoints=endpoints, **kw)  # type: ignore[arg-type]
    return attrs.evolve(sp, categorized=categorize_endpoints(sp.endpoints, sp, "node-a", {}))


def _kernel(*ports: ServicePortInfo, options: UserspaceOptions | None = None,
            node: NodeInfo = NODE, family: str = "IPv4") -> MockKernel:
    state = NodeProxyState(node=node, family=family, service_ports=ports)
    backend = UserspaceBackend(options) if options else get_backend("userspace")
    k = MockKernel(node)
    backend.load(k, backend.render(state))
    return k


def _dist(k: MockKernel, p: Packet) -> dict[tuple[str, str | None, str | None], Fraction]:
    return k.trace(p).distribution()


def test_pod_to_cluster_ip_is_redirected_then_proxied_from_the_node() -> None:
    k = _kernel(_port())
    res = k.trace(Packet("10.244.1.9", "10.96.100.10", 80))
    assert res.distribution() == {
        # The proxy's connection leaves from the address routing picks: the bridge for a
        # pod of this node, the node IP toward another node's pod. Never the client.
        ("ACCEPT", "10.244.1.5:8080", GW): Fraction(1, 2),
        ("ACCEPT", "10.244.2.7:8080", "192.168.0.10"): Fraction(1, 2),
    }
    rules = res.outcomes[0].rules
    assert any("KUBE-PORTALS-CONTAINER" in r and "-j REDIRECT --to-ports 32768" in r
               for r in rules)
    # REDIRECT goes to the incoming interface's primary address: the bridge's.
    assert any(r.startswith(f"kube-proxy default/web:http TCP socket {GW}:32768") for r in rules)


def test_node_to_cluster_ip_is_dnated_to_the_host_ip() -> None:
    k = _kernel(_port())
    res = k.trace(Packet("192.168.0.10", "10.96.100.10", 80))
    assert set(res.distribution()) == {("ACCEPT", "10.244.1.5:8080", GW),
                                       ("ACCEPT", "10.244.2.7:8080", "192.168.0.10")}
    assert any("KUBE-PORTALS-HOST" in r and "--to-destination 192.168.0.10:32768" in r
               for r in res.outcomes[0].rules)


def test_external_to_node_port() -> None:
    k = _kernel(_port(node_port=30080))
    res = k.trace(Packet("192.0.2.7", "192.168.0.10", 30080))
    assert sum(res.distribution().values()) == 1
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    assert any("KUBE-NODEPORT-CONTAINER" in r for r in res.outcomes[0].rules)
    assert any("KUBE-NODEPORT-NON-LOCAL" in r and "--dport 32768" in r
               for r in res.outcomes[0].rules)
    # From the node itself, through OUTPUT -> KUBE-NODEPORT-HOST.
    res = k.trace(Packet("192.168.0.10", "192.168.0.10", 30080))
    assert any("KUBE-NODEPORT-HOST" in r for r in res.outcomes[0].rules)


def test_external_ip_physdev_rule_excludes_pod_traffic() -> None:
    k = _kernel(_port(external_ips=("203.0.113.5",)))
    # From outside: "-m physdev ! --physdev-is-in" matches (not bridged) -> proxied.
    res = k.trace(Packet("192.0.2.7", "203.0.113.5", 80))
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    # From a pod (entered through the bridge) to a non-local external IP: no rule matches,
    # the packet is routed out unchanged -- the userspace proxier did not serve it.
    res = k.trace(Packet("10.244.1.9", "203.0.113.5", 80))
    assert res.distribution() == {("ACCEPT", "203.0.113.5:80", "10.244.1.9"): Fraction(1)}
    # From the node: only with "--dst-type LOCAL" (not local here) -> not proxied either.
    res = k.trace(Packet("192.168.0.10", "203.0.113.5", 80))
    assert res.distribution() == {("ACCEPT", "203.0.113.5:80", "192.168.0.10"): Fraction(1)}


def test_load_balancer_ip_is_a_plain_portal() -> None:
    k = _kernel(_port(load_balancer_vips=("198.51.100.7",),
                      load_balancer_source_ranges=("10.0.0.0/8",)))
    # Source ranges are not enforced by the userspace proxier.
    res = k.trace(Packet("192.0.2.7", "198.51.100.7", 80))
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}


def test_no_endpoints_tcp_accepted_then_closed_udp_dropped() -> None:
    k = _kernel(_port(endpoints=()), _port(protocol="UDP", port=53, endpoints=()))
    res = k.trace(Packet("10.244.1.9", "10.96.100.10", 80))
    assert res.distribution() == {("ACCEPT", f"{GW}:32768", "10.244.1.9"): Fraction(1)}
    assert "connection accepted, then closed" in res.outcomes[0].rules[-1]
    res = k.trace(Packet("10.244.1.9", "10.96.100.10", 53, proto="udp"))
    assert res.distribution() == {("DROP", None, None): Fraction(1)}


def test_not_ready_endpoints_are_not_used() -> None:
    k = _kernel(_port(endpoints=(LOCAL_EP, attrs.evolve(REMOTE_EP, ready=False,
                                                        terminating=True))))
    assert _dist(k, Packet("10.244.1.9", "10.96.100.10", 80)) == {
        ("ACCEPT", "10.244.1.5:8080", GW): Fraction(1)}


def test_send_round_robin_is_exactly_fair() -> None:
    eps = tuple(Endpoint(f"10.244.2.{i}", 80) for i in range(2, 5))
    k = _kernel(_port(endpoints=eps))
    rng = random.Random(7)
    seen = [k.send(Packet(f"192.0.2.{i % 50 + 1}", "10.96.100.10", 80, sport=40000 + i), rng
                   ).delivered_to for i in range(30)]
    assert Counter(seen) == {f"10.244.2.{i}:80": 10 for i in range(2, 5)}
    # Strict rotation: every window of 3 consecutive new connections covers all endpoints.
    assert all(len(set(seen[i:i + 3])) == 3 for i in range(0, 30, 3))


def test_send_keeps_an_established_flow_on_its_endpoint() -> None:
    k = _kernel(_port())
    rng = random.Random(1)
    p = Packet("192.0.2.7", "10.96.100.10", 80, sport=41000)
    first = k.send(p, rng).delivered_to
    for _ in range(5):
        assert k.send(p, rng).delivered_to == first
    other = k.send(attrs.evolve(p, sport=41001), rng).delivered_to
    assert other != first  # a new connection moves the rotation on


def test_client_ip_affinity_sticks_then_expires_on_the_virtual_clock() -> None:
    k = _kernel(_port(session_affinity_timeout=60))
    rng = random.Random(3)
    client = "192.0.2.7"
    first = k.send(Packet(client, "10.96.100.10", 80, sport=42000), rng).delivered_to
    # Any new connection of this client (other source ports) goes to the same endpoint ...
    for i in range(1, 6):
        k.clock.advance(10)
        assert k.send(Packet(client, "10.96.100.10", 80, sport=42000 + i), rng
                      ).delivered_to == first
    # ... and trace shows the stickiness as certainty.
    sticky = k.trace(Packet(client, "10.96.100.10", 80, sport=43000)).distribution()
    assert [key[1] for key in sticky] == [first] and list(sticky.values()) == [1]
    # Another client still sees round robin as equal shares.
    other = k.trace(Packet("192.0.2.8", "10.96.100.10", 80, sport=43000)).distribution()
    assert sorted(other.values()) == [Fraction(1, 2), Fraction(1, 2)]
    # Idle for the timeout: the record is stale, the client is balanced again.
    k.clock.advance(60)
    again = k.trace(Packet(client, "10.96.100.10", 80, sport=43001)).distribution()
    assert sorted(again.values()) == [Fraction(1, 2), Fraction(1, 2)]


def test_udp_session_lives_until_idle_timeout() -> None:
    k = _kernel(_port(protocol="UDP", port=53, endpoints=(LOCAL_EP, REMOTE_EP)))
    rng = random.Random(5)
    p = Packet("10.244.1.9", "10.96.100.10", 53, sport=5353, proto="udp")
    first = k.send(p, rng).delivered_to
    k.clock.advance(0.2)
    assert k.send(p, rng).delivered_to == first  # within 250ms: same session
    k.clock.advance(0.3)
    # Idle > 250ms: the session is gone; the next datagram is balanced again (and the
    # conntrack entry of the client's flow still exists, so only the proxy decides).
    assert k.send(p, rng).delivered_to != first


def test_specific_listen_address_uses_dnat() -> None:
    k = _kernel(_port(), options=UserspaceOptions(listen_ip="192.168.0.10"))
    res = k.trace(Packet("10.244.1.9", "10.96.100.10", 80))
    assert any("-j DNAT --to-destination 192.168.0.10:32768" in r for r in res.outcomes[0].rules)
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}


def test_ipv6() -> None:
    node = NodeInfo(name="n6", ips=("fd00::10",), pod_cidrs=("fd00:10:244:1::/64",),
                    interfaces=(("eth0", "fd00::10/64"),))
    ep = Endpoint("fd00:10:244:2::7", 8080)
    k = _kernel(_port(cluster_ip="fd00:96::10", endpoints=(ep,)), node=node, family="IPv6")
    res = k.trace(Packet("fd00:10:244:1::9", "fd00:96::10", 80))
    assert res.distribution() == {("ACCEPT", "[fd00:10:244:2::7]:8080", "fd00::10"): Fraction(1)}


def test_local_sockets_program_is_last_at_input_and_unbinds() -> None:
    k = _kernel(_port())
    prog = local_sockets(k)
    assert prog.hooks == {"INPUT": SOCKET_PRIORITY}
    assert prog.lookup("tcp", "192.168.0.10", 32768) is not None
    assert prog.lookup("udp", "192.168.0.10", 32768) is None
    # Reloading replaces the sockets (no duplicate owner).
    backend = get_backend("userspace")
    state = NodeProxyState(node=NODE, family="IPv4", service_ports=())
    backend.load(k, backend.render(state))
    assert prog.lookup("tcp", "192.168.0.10", 32768) is None


def test_physdev_rule_parses_in_the_mock_kernel() -> None:
    # The externalIP container rule's "-m physdev ! --physdev-is-in" is understood, not
    # skipped: a pod's packet (in through the bridge) must not match it.
    (nat,) = [t for t in parse_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -m physdev ! --physdev-is-in -j ACCEPT\nCOMMIT\n") if t.name == "nat"]
    assert nat.chains["PREROUTING"].rules


def test_kservice_trace_mode_userspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kservice.cli import main

    state = str(tmp_path / "state.db")
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n"
                        "  clusterIP: 10.96.50.50\n  ports:\n  - name: http\n    port: 80\n")
    rc = main(["--state", state, "trace", "--mode", "userspace", "--node", "kind-worker",
               "-f", str(manifest), "--src", "172.18.0.9", "--dst", "10.96.50.50:80",
               "-o", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # No endpoints: the proxy accepts the connection and closes it. Proxy ports go in
    # service-port order: default/kubernetes:https 32768, default/web:http 32769. From
    # outside, REDIRECT goes to eth0's address (kind-worker's node IP).
    (outcome,) = out["outcomes"]
    assert (outcome["verdict"], outcome["delivered_to"], outcome["source_seen"]) == (
        "ACCEPT", "172.18.0.3:32769", "172.18.0.9")
    assert any("REDIRECT --to-ports 32769" in r for r in outcome["rules"])


def test_localhost_node_port_from_the_node() -> None:
    # "-m addrtype --dst-type LOCAL" includes 127.0.0.1: the node reaches NodePorts on
    # localhost too (DNAT to the host IP, then the proxy).
    k = _kernel(_port(node_port=30080))
    res = k.trace(Packet("127.0.0.1", "127.0.0.1", 30080))
    assert {o.delivered_to for o in res.outcomes} == {"10.244.1.5:8080", "10.244.2.7:8080"}
    assert any("KUBE-NODEPORT-HOST" in r and "192.168.0.10:32768" in r
               for r in res.outcomes[0].rules)
