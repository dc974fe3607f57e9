"""The lab's plan layer, without root: what would be built, and that it stays confined."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from backends.lab.plan import (
    IFNAMSIZ,
    Command,
    LabPlan,
    confined,
    netns_prefix,
    plan_lab,
    validate_lab_name,
)
from kservice.embedded import new_cluster
from kservice.errors import InvalidInput
from kservice.workloads import KIND_NODES

WEB = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "ports": [
                              {"name": "http", "containerPort": 9376},
                              {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}},
}
LB = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "default"},
      "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
               "externalIPs": ["198.51.100.50"], "ports": [{"port": 80}]}}


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    cluster = new_cluster()
    with cluster.transaction():
        cluster.apply(cluster.decode(WEB))
        cluster.apply(cluster.decode(LB))
    return plan_lab(cluster, "t1")


def _commands(plan: LabPlan) -> list[Command]:
    return plan.build_commands() + plan.bridge_nf_commands() + plan.teardown_commands()


def test_one_namespace_per_node_and_pod_plus_underlay_and_client(plan: LabPlan) -> None:
    cluster_pods = 3 + 2  # web replicas + kind's two CoreDNS pods
    assert len(plan.nodes) == len(KIND_NODES)
    assert len([p for p in plan.pods if not p.host_network]) == cluster_pods
    assert len(plan.namespaces) == len(set(plan.namespaces)) == 2 + len(KIND_NODES) + cluster_pods
    assert all(ns.startswith("ksl-t1-") for ns in plan.namespaces)


def test_nodes_carry_the_clusters_addresses(plan: LabPlan) -> None:
    assert sorted((n.name, n.ip) for n in plan.nodes) == sorted(
        (name, ip) for name, ip, _cp in KIND_NODES)
    for n in plan.nodes:
        net = ipaddress.ip_network(n.pod_cidr)
        # kservice.semantics: the bridge owns the first host of the pod CIDR.
        assert n.gateway == str(net.network_address + 1)
        assert ipaddress.ip_address(n.ip) in ipaddress.ip_network(plan.underlay_cidr)


def test_the_apiserver_endpoint_answers_from_the_control_plane(plan: LabPlan) -> None:
    # default/kubernetes -> 172.18.0.2:6443, the static pod kubeadm names like this.
    api = plan.pod("kube-system/kube-apiserver-kind-control-plane")
    cp = plan.node("kind-control-plane")
    assert (api.host_network, api.netns, api.ip, api.tcp_ports) == (True, cp.netns, cp.ip,
                                                                    (6443,))
    assert plan.namespaces.count(cp.netns) == 1  # no namespace of its own


def test_pods_get_their_ip_and_ports_inside_their_nodes_cidr(plan: LabPlan) -> None:
    for p in (p for p in plan.pods if not p.host_network):
        node = plan.node(p.node)
        assert ipaddress.ip_address(p.ip) in ipaddress.ip_network(node.pod_cidr)
    web = [p for p in plan.pods if p.name.startswith("web-")]
    assert web and all(p.tcp_ports == (9376,) and p.udp_ports == (5353,) for p in web)
    dns = [p for p in plan.pods if p.namespace == "kube-system" and not p.host_network]
    assert all(p.tcp_ports == (53, 9153) and p.udp_ports == (53,) for p in dns)


def test_interface_names_fit_ifnamsiz(plan: LabPlan) -> None:
    for cmd in plan.build_commands():
        a = cmd.argv
        for i, word in enumerate(a):
            if word in ("name", "dev", "master") or (word == "add" and i > 0 and a[i - 1] == "link"):
                assert len(a[i + 1]) <= IFNAMSIZ, cmd


def test_every_command_is_confined_to_the_labs_namespaces(plan: LabPlan) -> None:
    for cmd in _commands(plan):
        assert confined(cmd, netns_prefix("t1")), cmd
        assert not confined(cmd, netns_prefix("other")), cmd


@pytest.mark.parametrize("argv", [
    ("ip", "link", "add", "x", "type", "bridge"),          # the host namespace
    ("iptables-restore",),
    ("ip", "netns", "add", "cni-1234"),                    # somebody else's namespace
    ("ip", "netns", "del", "ksl-t2-ul"),                   # another lab's
    ("ip", "-n", "ksl-t10-ul", "link", "show"),            # a prefix of a longer name
    ("ip", "-n", "ksl-t1", "link", "show"),                # not even the full prefix
    ("ip", "netns", "exec", "h4big", "sh"),
    ("ip", "netns", "add", "ksl-t1-a", "extra"),
    ("sh", "-c", "ip netns exec ksl-t1-ul true"),
])
def test_confined_refuses(argv: tuple[str, ...]) -> None:
    assert not confined(Command(argv), netns_prefix("t1"))


def test_routes_reach_every_other_nodes_pods(plan: LabPlan) -> None:
    cmds = [c.argv for c in plan.build_commands()]
    for n in plan.nodes:
        for other in plan.nodes:
            route = ("ip", "-n", n.netns, "route", "replace", other.pod_cidr, "via", other.ip)
            assert (route in cmds) == (other is not n)


def test_hairpin_and_kube_proxy_sysctls(plan: LabPlan) -> None:
    text = "\n".join(str(c) for c in plan.build_commands())
    assert text.count("hairpin on") == len([p for p in plan.pods if not p.host_network])
    for n in plan.nodes:
        assert f"ip netns exec {n.netns} sysctl -q -w net.ipv4.ip_forward=1" in text
        assert f"ip netns exec {n.netns} sysctl -q -w net.ipv4.conf.all.route_localnet=1" in text
    assert all("bridge-nf-call-iptables=1" in str(c) for c in plan.bridge_nf_commands())


def test_vips_route_to_a_node_balancers_would_use(plan: LabPlan) -> None:
    routes = dict(plan.external.vip_routes)
    # kind's control plane is labelled exclude-from-external-load-balancers.
    assert routes == {"198.51.100.50": "172.18.0.3"}
    assert plan.external.ip not in {n.ip for n in plan.nodes}
    assert ipaddress.ip_address(plan.external.ip) in ipaddress.ip_network(plan.underlay_cidr)


def test_teardown_deletes_every_namespace_in_reverse(plan: LabPlan) -> None:
    dels = [c.argv[3] for c in plan.teardown_commands()]
    assert dels == list(reversed(plan.namespaces))


def test_plan_round_trips_through_json(plan: LabPlan) -> None:
    import json

    assert LabPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_lookup_errors_name_the_choices(plan: LabPlan) -> None:
    with pytest.raises(InvalidInput, match="kind-worker"):
        plan.node("nope")
    with pytest.raises(InvalidInput, match="pods:"):
        plan.pod("default/nope")


@pytest.mark.parametrize("name", ["", "A", "-x", "x-", "a-b", "a" * 13, "a_b", "a/b"])
def test_bad_lab_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_lab_name(name)


def test_ipv6_only_nodes_are_refused() -> None:
    from backends.lab.plan import plan_from_objects
    from kservice.cluster import Cluster  # noqa: F401
    from kservice.models.meta import ObjectMeta
    from kservice.models.workloads import Node, NodeAddress, NodeSpec, NodeStatus

    node = Node(metadata=ObjectMeta(name="v6"), spec=NodeSpec(pod_cidrs=("fd00::/64",)),
                status=NodeStatus(addresses=(NodeAddress("InternalIP", "fc00::2"),)))
    with pytest.raises(InvalidInput, match="IPv4"):
        plan_from_objects("t1", [node], [], [])


def test_unscheduled_pods_are_not_built() -> None:
    cluster = new_cluster()
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "pending", "namespace": "default"},
                           "spec": {"nodeName": "no-such-node",
                                    "containers": [{"name": "c"}]}}
    with cluster.transaction():
        cluster.apply(cluster.decode(pod))
    assert all(p.name != "pending" for p in plan_lab(cluster, "t1").pods)


def _scaled(replicas: int) -> LabPlan:
    from kservice.workloads import scale

    cluster = new_cluster()
    with cluster.transaction():
        cluster.apply(cluster.decode(WEB))
        cluster.apply(cluster.decode(LB))
    scale(cluster, "Deployment", "web", "default", replicas)
    return plan_lab(cluster, "t1")


def test_reconcile_keeps_built_pods_and_names_new_veths_freely() -> None:
    from backends.lab.plan import reconcile

    small, big = _scaled(2), _scaled(5)
    changes = reconcile(small, big)
    assert not changes.removed
    assert {p.ref for p in changes.plan.pods} == {p.ref for p in big.pods}
    assert len(changes.added) == len(big.pods) - len(small.pods)
    for p in small.pods:  # untouched as built
        assert p in changes.plan.pods
    for node in changes.plan.nodes:
        ports = [p.host_port for p in changes.plan.pods
                 if p.node == node.name and not p.host_network]
        assert len(ports) == len(set(ports)), ports


def test_reconcile_removes_gone_pods() -> None:
    from backends.lab.plan import reconcile

    big, small = _scaled(4), _scaled(1)
    changes = reconcile(big, small)
    assert not changes.added
    assert {p.ref for p in changes.removed} == {p.ref for p in big.pods} - {
        p.ref for p in small.pods}


def test_reconcile_refuses_node_changes(plan: LabPlan) -> None:
    import attrs

    from backends.lab.plan import reconcile

    moved = attrs.evolve(plan, nodes=[attrs.evolve(plan.nodes[0], ip="172.18.0.9"),
                                      *plan.nodes[1:]])
    with pytest.raises(InvalidInput, match="lab down"):
        reconcile(plan, moved)


def test_dry_run_prints_the_confined_commands_and_rules(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from kservice.cli import main

    code = main(["--state", str(tmp_path / "s.db"), "lab", "up", "--dry-run", "--name", "dry"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("ip netns add ksl-dry-ul\n")
    commands = [line for line in out.splitlines() if line.startswith("ip ")]
    assert commands and all(confined(Command(tuple(c.split()[:5])), "ksl-dry-")
                            for c in commands), commands
    assert "ip netns exec ksl-dry-n-kind-worker iptables-restore <<'EOF'" in out
    assert "-A KUBE-SERVICES" in out
    assert not (tmp_path / "labs").exists()


OTHER = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "other", "namespace": "default"},
         "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 81}]}}


def _from_files(stored_change: bool) -> tuple[LabPlan, set[tuple[str, str]]]:
    """The lab's cluster as `lab up -f web.yaml` reads it: the stored state (maybe changed
    since) with the file applied in memory; and the stored pods' (namespace, name)."""
    cluster = new_cluster()
    if stored_change:
        with cluster.transaction():
            cluster.apply(cluster.decode(OTHER))
    stored = {(p.metadata.namespace, p.metadata.name) for p in cluster.list("Pod")}
    with cluster.transaction():
        cluster.apply(cluster.decode(WEB))
    return plan_lab(cluster, "t1"), stored


def test_pods_from_files_keep_their_names_when_the_stored_state_changes() -> None:
    from backends.lab.plan import pin_transient_pods, reconcile

    built, _ = _from_files(False)
    now, stored = _from_files(True)
    web_built = sorted(p.ref for p in built.pods if p.name.startswith("web-"))
    web_now = sorted(p.ref for p in now.pods if p.name.startswith("web-"))
    # The premise: generated names follow the stored resourceVersion.
    assert len(web_built) == 3 and set(web_built).isdisjoint(web_now)
    naive = reconcile(built, now)
    assert len(naive.added) == len(naive.removed) == 3
    pinned = pin_transient_pods(built, now, stored)
    changes = reconcile(built, pinned)
    assert changes.added == () and changes.removed == ()
    assert changes.plan.pods == built.pods
    # Idempotent: nothing changed, nothing to do.
    again = reconcile(changes.plan, pin_transient_pods(changes.plan, now, stored))
    assert again.added == () and again.removed == ()


def test_a_renamed_stored_pod_is_still_a_change() -> None:
    import attrs

    from backends.lab.plan import pin_transient_pods, reconcile

    built, stored = _from_files(False)
    dns = next(p for p in built.pods if p.name.startswith("coredns-"))
    renamed = attrs.evolve(dns, name="coredns-new")
    now = attrs.evolve(built, pods=[renamed if p is dns else p for p in built.pods])
    stored = stored | {(dns.namespace, "coredns-new")}
    changes = reconcile(built, pin_transient_pods(built, now, stored))
    assert [p.ref for p in changes.removed] == [dns.ref]
    assert [p.name for p in changes.added] == ["coredns-new"]
