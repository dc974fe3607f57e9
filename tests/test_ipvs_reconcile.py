"""Incremental IPVS syncs: applying reconcile's commands equals a fresh full render."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from backends.ipvs import reconcile, render_node
from backends.ipvs.formats import ipset_save, ipvsadm_save
from backends.ipvs.model import IPVSNode
from backends.mockkernel.ipset import IPSetStore
from backends.mockkernel.ipvs import IPVS
from kservice.testing.dataplane import node_proxy_states
from kservice.testing.ipvs import endpoint, node_state, service_port


class FakeNode:
    """Executes the plan's shell commands against the mock kernel's IPVS and ipsets."""

    def __init__(self, node: IPVSNode | None) -> None:
        self.ipvs = IPVS()
        self.ipsets = IPSetStore()
        self.bound: set[str] = set()
        self.link = False
        self.restores = 0
        self.sysctls: list[str] = []
        if node is not None:
            self.link = True
            self.ipvs.restore(ipvsadm_save(node.services, node.destinations))
            self.ipsets.restore(ipset_save(node.ipsets))
            self.bound = set(node.bound)

    def run(self, line: str) -> None:
        argv = shlex.split(line.split("  #")[0])
        if argv[0] == "sysctl":
            assert not self.link, "sysctls are set at proxier start, before the first sync"
            self.sysctls.append(argv[2])
        elif argv[0] == "ipvsadm":
            self.ipvs.command(line)
        elif argv[0] == "ipset":
            self.ipsets.command(line)
        elif argv[:3] == ["ip", "link", "add"]:
            assert not self.link, "kube-ipvs0 created twice"
            self.link = True
        elif argv[:2] == ["ip", "addr"]:
            assert self.link
            ip = argv[3].split("/")[0]
            if argv[2] == "add":
                assert ip not in self.bound, f"{ip} bound twice"
                self.bound.add(ip)
            else:
                self.bound.remove(ip)
        elif argv[0] in ("iptables-restore", "ip6tables-restore"):
            self.restores += 1
        elif argv[0] in ("iptables", "ip6tables"):
            pass
        else:
            raise AssertionError(f"unexpected command {line!r}")


def apply(prev: IPVSNode | None, new: IPVSNode, *, drain: bool = True) -> FakeNode:
    node = FakeNode(prev)
    plan = reconcile(prev, new)
    for line in plan.commands:
        node.run(line)
    if drain:
        for line in plan.deferred:
            node.run(line)
    return node


def assert_equals_fresh(node: FakeNode, new: IPVSNode) -> None:
    assert node.ipvs.save() == ipvsadm_save(new.services, new.destinations)
    assert node.ipsets.save() == ipset_save(new.ipsets)
    assert node.bound == set(new.bound)
    assert node.restores == 1


@given(node_proxy_states(max_services=3), node_proxy_states(max_services=3))
def test_increments_equal_fresh_render(a, b) -> None:
    old, new = render_node(a), render_node(b)
    assert_equals_fresh(apply(old, new), new)


@given(node_proxy_states(family=st.sampled_from(["IPv4", "IPv6"]), max_services=3))
def test_first_sync_from_empty_node(state) -> None:
    new = render_node(state)
    assert_equals_fresh(apply(None, new), new)


@given(node_proxy_states(max_services=3))
def test_no_change_is_only_the_restore(state) -> None:
    node = render_node(state)
    plan = reconcile(node, node)
    assert [c.split()[0] for c in plan.commands] == ["iptables-restore"]
    assert plan.deferred == ()


def two_states(**changes):
    base = dict(endpoints=[endpoint("10.244.2.1", 80), endpoint("10.244.2.2", 80)])
    a = service_port("ns", "s", "10.96.0.10", 80, **base)
    b = service_port("ns", "s", "10.96.0.10", 80, **{**base, **changes})
    return render_node(node_state([a])), render_node(node_state([b]))


def test_tcp_destination_is_retired_gracefully() -> None:
    old, new = two_states(endpoints=[endpoint("10.244.2.1", 80), endpoint("10.244.2.3", 80)])
    plan = reconcile(old, new)
    assert "ipvsadm -a -t 10.96.0.10:80 -r 10.244.2.3:80 -m -w 1" in plan.commands
    assert "ipvsadm -e -t 10.96.0.10:80 -r 10.244.2.2:80 -m -w 0" in plan.commands
    assert plan.deferred == ("ipvsadm -d -t 10.96.0.10:80 -r 10.244.2.2:80",)
    # Before the termination loop runs the old destination lingers at weight 0.
    node = apply(old, new, drain=False)
    assert "-a -t 10.96.0.10:80 -r 10.244.2.2:80 -m -w 0" in node.ipvs.save()
    # The next sync wanting it again deletes it for real and re-adds it at weight 1.
    lingering = IPVSNode(node=new.node, family=new.family, services=new.services,
                         destinations={k: tuple(sorted(
                             node.ipvs._snapshot()[1][k], key=lambda r: r.key))
                             for k in new.services},
                         bound=new.bound, ipsets=new.ipsets)
    plan2 = reconcile(lingering, old)
    i = plan2.commands.index("ipvsadm -d -t 10.96.0.10:80 -r 10.244.2.2:80")
    assert plan2.commands[i + 1] == "ipvsadm -a -t 10.96.0.10:80 -r 10.244.2.2:80 -m -w 1"


def test_udp_destination_is_deleted_at_once() -> None:
    a = service_port("ns", "dns", "10.96.0.10", 53, protocol="UDP",
                     endpoints=[endpoint("10.244.2.1", 53), endpoint("10.244.2.2", 53)])
    b = service_port("ns", "dns", "10.96.0.10", 53, protocol="UDP",
                     endpoints=[endpoint("10.244.2.1", 53)])
    plan = reconcile(render_node(node_state([a])), render_node(node_state([b])))
    assert "ipvsadm -d -u 10.96.0.10:53 -r 10.244.2.2:53" in plan.commands
    assert plan.deferred == ()


def test_changed_service_is_edited_not_recreated() -> None:
    old, new = two_states(session_affinity_timeout=10800)
    plan = reconcile(old, new)
    assert plan.commands[0] == "ipvsadm -E -t 10.96.0.10:80 -s rr -p 10800"
    assert not any(c.startswith("ipvsadm -D") for c in plan.commands)


def test_removed_service_unbinds_and_deletes_after_restore() -> None:
    a = service_port("ns", "s", "10.96.0.10", 80, external_ips=("203.0.113.9",),
                     endpoints=[endpoint("10.244.2.1", 80)])
    old = render_node(node_state([a]))
    new = render_node(node_state([]))
    plan = reconcile(old, new)
    restore = next(i for i, c in enumerate(plan.commands) if "-restore" in c)
    unbind = plan.commands.index("ip addr del 10.96.0.10/32 dev kube-ipvs0")
    delete = plan.commands.index("ipvsadm -D -t 10.96.0.10:80")
    assert restore < unbind < delete
    assert "ipset del KUBE-CLUSTER-IP 10.96.0.10,tcp:80" in plan.commands
    # --ipvs-exclude-cidrs protects virtual servers kube-proxy did not create.
    plan = reconcile(old, new, exclude_cidrs=("203.0.113.0/24",))
    assert "ipvsadm -D -t 203.0.113.9:80" not in plan.commands
    assert "ipvsadm -D -t 10.96.0.10:80" in plan.commands


def test_first_sync_starts_with_proxier_sysctls_and_timeouts() -> None:
    import attrs

    from kservice.proxy.config import IPVSConfiguration, KubeProxyConfiguration

    cfg = KubeProxyConfiguration(mode="ipvs", ipvs=IPVSConfiguration(
        strict_arp=True, tcp_timeout="15m", udp_timeout="300s"))
    sp = service_port("ns", "s", "10.96.0.10", 80, endpoints=[endpoint("10.244.2.1", 80)])
    node = render_node(attrs.evolve(node_state([sp]), config=cfg))
    plan = reconcile(None, node)
    assert list(plan.commands[:7]) == [
        "sysctl -w net.ipv4.vs.conntrack=1",
        "sysctl -w net.ipv4.vs.expire_nodest_conn=1",
        "sysctl -w net.ipv4.vs.expire_quiescent_template=1",
        "sysctl -w net.ipv4.ip_forward=1",
        "sysctl -w net.ipv4.conf.all.arp_ignore=1",
        "sysctl -w net.ipv4.conf.all.arp_announce=2",
        "ipvsadm --set 900 0 300",
    ]
    fake = FakeNode(None)
    for line in plan.commands:
        fake.run(line)
    assert fake.ipvs.timeouts["tcp"] == 900 and fake.ipvs.timeouts["tcpfin"] == 120
    # Later syncs do not repeat start-up work.
    assert not any(c.startswith(("sysctl", "ipvsadm --set", "ip link"))
                   for c in reconcile(node, node).commands)
