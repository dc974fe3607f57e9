"""The lab's comparison of real answers with the mock kernel's prediction (no root needed)."""

from __future__ import annotations

import ipaddress
from fractions import Fraction

import pytest

from backends.lab.plan import LabPlan, plan_lab
from backends.lab.probe import (
    Expectation,
    Observation,
    chi_square_p,
    disagreements,
    expectation,
    packet_for,
    parse_source,
    parse_target,
)
from kservice.embedded import new_cluster
from kservice.errors import InvalidInput
from kservice.trace import Outcome, Packet, TraceResult


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return plan_lab(new_cluster(), "tp")


# Reference values of the chi-square upper tail (any statistics table).
@pytest.mark.parametrize(("stat", "df", "p"), [
    (3.841, 1, 0.05), (6.635, 1, 0.01), (5.991, 2, 0.05), (13.816, 2, 0.001),
    (7.815, 3, 0.05), (0.0, 2, 1.0), (1.386, 2, 0.5),
])
def test_chi_square_tail_matches_tables(stat: float, df: int, p: float) -> None:
    from backends.lab.probe import _gamma_q

    assert _gamma_q(df / 2, stat / 2) == pytest.approx(p, rel=2e-3, abs=1e-6)


def test_chi_square_of_perfect_and_impossible_samples() -> None:
    assert chi_square_p([10, 10, 10], [10.0, 10.0, 10.0]) == pytest.approx(1.0)
    assert chi_square_p([30, 0, 0], [10.0, 10.0, 10.0]) < 1e-10


def obs(answers: dict[str, int], sources: dict[str, dict[str, int]] | None = None,
        refused: int = 0, timeout: int = 0) -> Observation:
    n = sum(answers.values()) + refused + timeout
    return Observation(n, answers, sources or {k: {"10.0.0.1": v} for k, v in answers.items()},
                       refused, timeout, {})


THIRDS = Expectation({"pod:a/x": Fraction(1, 3), "pod:a/y": Fraction(1, 3),
                      "pod:a/z": Fraction(1, 3)},
                     {"pod:a/x": "10.0.0.1", "pod:a/y": "10.0.0.1", "pod:a/z": "10.0.0.1"})


def test_a_fair_sample_agrees() -> None:
    assert disagreements(obs({"a/x": 9, "a/y": 11, "a/z": 10}), THIRDS) == []


def test_an_unpredicted_pod_is_reported() -> None:
    problems = disagreements(obs({"a/x": 10, "a/w": 1}), THIRDS)
    assert any("pod:a/w observed 1/11" in p for p in problems)


def test_a_predicted_pod_that_never_answers_is_reported() -> None:
    problems = disagreements(obs({"a/x": 30, "a/y": 30}), THIRDS)
    assert any("pod:a/z predicted with share 1/3 never observed" in p for p in problems)


def test_skewed_shares_fail_the_chi_square() -> None:
    problems = disagreements(obs({"a/x": 80, "a/y": 10, "a/z": 10}), THIRDS)
    assert any("chi-square" in p for p in problems)


def test_wrong_source_is_reported() -> None:
    o = obs({"a/x": 10, "a/y": 10, "a/z": 10},
            {"a/x": {"10.0.0.1": 10}, "a/y": {"10.0.0.1": 10}, "a/z": {"172.18.0.3": 10}})
    assert disagreements(o, THIRDS) == [
        "pod a/z saw source(s) ['172.18.0.3']; the mock kernel predicts 10.0.0.1"]


def test_reject_is_refused_and_drop_is_timeout() -> None:
    rej = Expectation({"refused": Fraction(1)}, {})
    assert disagreements(obs({}, refused=5), rej) == []
    assert disagreements(obs({}, timeout=5), rej)
    drop = Expectation({"timeout": Fraction(1)}, {})
    assert disagreements(obs({}, timeout=3), drop) == []
    assert disagreements(obs({}, refused=3), drop)


def test_affinity_must_stick() -> None:
    assert disagreements(obs({"a/x": 20}), THIRDS, sticky=True) == []
    assert disagreements(obs({"a/x": 19, "a/y": 1}), THIRDS, sticky=True)


def test_expectation_maps_trace_outcomes_to_pods(plan: LabPlan) -> None:
    dns = [p for p in plan.pods if p.namespace == "kube-system"]
    pkt = Packet(src="10.244.1.5", dst="10.96.0.10", dport=53, proto="udp")
    trace = TraceResult("kind-worker", "iptables", pkt, (
        Outcome(Fraction(1, 2), "ACCEPT", f"{dns[0].ip}:53", "10.244.1.5"),
        Outcome(Fraction(1, 2), "ACCEPT", f"{dns[1].ip}:53", "10.244.1.5"),
    ))
    exp = expectation(plan, trace, "udp")
    assert exp.shares == {f"pod:{dns[0].ref}": Fraction(1, 2), f"pod:{dns[1].ref}": Fraction(1, 2)}
    assert exp.sources[f"pod:{dns[0].ref}"] == "10.244.1.5"


def test_delivery_where_nothing_listens_is_refused(plan: LabPlan) -> None:
    node = plan.nodes[1]
    pkt = Packet(src="172.18.0.254", dst=node.ip, dport=8080)
    trace = TraceResult(node.name, "iptables", pkt,
                        (Outcome(Fraction(1), "ACCEPT", f"{node.ip}:8080", "172.18.0.254"),))
    assert expectation(plan, trace, "tcp").shares == {"refused": Fraction(1)}
    pod = plan.pods[0]
    trace = TraceResult(node.name, "iptables", pkt,
                        (Outcome(Fraction(1), "ACCEPT", f"{pod.ip}:1", "172.18.0.254"),))
    assert expectation(plan, trace, "tcp").shares == {"refused": Fraction(1)}


def test_sources_and_targets(plan: LabPlan) -> None:
    pod = plan.pods[0]
    s = parse_source(plan, f"pod/{pod.ref}")
    assert (s.netns, s.ip, s.node) == (pod.netns, pod.ip, pod.node)
    n = parse_source(plan, "node/kind-worker")
    assert (n.ip, n.node) == ("172.18.0.3", "kind-worker")
    assert parse_source(plan, "external").ip == plan.external.ip
    assert parse_target("10.96.0.10:53/udp") == ("10.96.0.10", 53, "udp")
    assert parse_target("10.96.0.10:80") == ("10.96.0.10", 80, "tcp")
    for bad in ("10.96.0.10", "10.96.0.10:0", "x:80", "10.96.0.10:80/sctp", "[::1]:80"):
        with pytest.raises(InvalidInput):
            parse_target(bad)
    with pytest.raises(InvalidInput):
        parse_source(plan, "pods/x")


def test_packet_for_names_the_deciding_node(plan: LabPlan) -> None:
    ext = parse_source(plan, "external")
    assert packet_for(plan, ext, "172.18.0.4", 30080, "tcp")[0] == "kind-worker2"
    node, pkt = packet_for(plan, ext, "198.51.100.9", 80, "tcp", bind="203.0.113.7",
                           via="kind-worker")
    assert node == "kind-worker" and pkt.src == "203.0.113.7"
    with pytest.raises(InvalidInput, match="--via"):
        packet_for(plan, ext, "198.51.100.9", 80, "tcp")
    node_src = parse_source(plan, "node/kind-worker")
    assert packet_for(plan, node_src, "127.0.0.1", 30080, "tcp")[1].src == "127.0.0.1"


def test_affinity_is_not_judged_when_nothing_can_answer() -> None:
    drop = Expectation({"timeout": Fraction(1)}, {})
    assert disagreements(obs({}, timeout=3), drop, sticky=True) == []


# ------------------------------------------------- probe arguments and --source


@pytest.mark.parametrize(("count", "timeout", "option"), [
    (10, 0.0, "--timeout"), (10, -1.0, "--timeout"), (10, 1e9, "--timeout"),
    (10, float("nan"), "--timeout"), (10, float("inf"), "--timeout"), (10, 0.01, "--timeout"),
    (0, 0.5, "--count"), (-3, 0.5, "--count"), (10_001, 0.5, "--count"),
    (10_000, 1.0, "--count 10000 x --timeout 1"),
])
def test_probe_arguments_are_bounded(count: int, timeout: float, option: str) -> None:
    from backends.lab.probe import validate_probe_args

    with pytest.raises(InvalidInput) as e:
        validate_probe_args(count, timeout)
    assert str(e.value).startswith(option)


@pytest.mark.parametrize(("count", "timeout"), [(1, 0.05), (10, 0.5), (360, 10.0), (10_000, 0.3)])
def test_probe_arguments_within_bounds(count: int, timeout: float) -> None:
    from backends.lab.probe import validate_probe_args

    validate_probe_args(count, timeout)


def test_source_refuses_the_labs_own_addresses(plan: LabPlan) -> None:
    from backends.lab.probe import check_bind

    node = plan.nodes[1]
    pod = next(p for p in plan.pods if not p.host_network)
    taken = {node.ip: f"node {node.name}'s address",
             node.gateway: f"node {node.name}'s pod gateway",
             pod.ip: "'s address",
             # Any address of a pod CIDR: the node routes it to its bridge.
             str(ipaddress.IPv4Network(node.pod_cidr)[200]): f"node {node.name}'s pod CIDR",
             "10.96.0.10": "a Service's cluster IP"}
    for ip, what in taken.items():
        with pytest.raises(InvalidInput) as e:
            check_bind(plan, ip, service_ips=["10.96.0.10"])
        assert what in str(e.value) and f'lab "{plan.name}"' in str(e.value), ip
    for bad in ("not-an-ip", "fd00::1", "127.0.0.5", "0.0.0.0", "224.0.0.1"):
        with pytest.raises(InvalidInput):
            check_bind(plan, bad)
    assert check_bind(plan, "203.0.113.7") == "203.0.113.7"
    assert check_bind(plan, plan.external.ip) == plan.external.ip


class _Recorder:
    """An Executor stand-in: records commands; the probe client fails."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def run(self, cmd: object, *, check: bool = True, timeout: float | None = None) -> object:
        self.commands.append(tuple(cmd.argv))  # type: ignore[attr-defined]
        return None

    def in_netns(self, netns: str, *argv: str, **_kw: object) -> object:
        self.commands.append(("ip", "netns", "exec", netns, *argv))
        from kservice.errors import BackendError

        raise BackendError("the probe client crashed")


def test_an_extra_source_address_is_removed_even_when_the_probe_fails(plan: LabPlan) -> None:
    from backends.lab.probe import probe
    from kservice.errors import BackendError

    ex = _Recorder()
    src = parse_source(plan, "external")
    with pytest.raises(BackendError, match="crashed"):
        probe(ex, plan, src, plan.nodes[1].ip, 30080, "tcp",  # type: ignore[arg-type]
              bind="203.0.113.7")
    ns = plan.external.netns
    added = ("ip", "-n", ns, "addr", "replace", "203.0.113.7/32", "dev", "lo")
    removed = ("ip", "-n", ns, "addr", "del", "203.0.113.7/32", "dev", "lo")
    assert ex.commands[0] == added and ex.commands[-1] == removed


def test_a_refused_source_changes_nothing(plan: LabPlan) -> None:
    from backends.lab.probe import probe

    ex = _Recorder()
    with pytest.raises(InvalidInput):
        probe(ex, plan, parse_source(plan, "external"), plan.nodes[1].ip, 30080,  # type: ignore[arg-type]
              "tcp", bind=plan.nodes[0].ip)
    assert ex.commands == []


class _ScriptedLab:
    """Builds a :class:`~backends.lab.session.Lab` whose probes answer from a script (the
    ``scripted`` fixture fixes the prediction to THIRDS): ``check``'s rounds without root."""

    @staticmethod
    def make(plan: LabPlan, answers: list[dict[str, int]],
             counters: tuple[str, ...] = ("[7:420] -A KUBE-SVC-X -j KUBE-SEP-Z",)) -> object:
        from backends.lab.session import Lab

        lab = Lab(plan, "iptables")
        script = iter(answers)
        packet = Packet(src="10.244.1.2", dst="10.96.0.10", dport=80, sport=40000)
        trace = TraceResult(node="n", mode="iptables", packet=packet, outcomes=(
            Outcome(probability=Fraction(1), verdict="ACCEPT", delivered_to="10.244.1.3:80",
                    source_seen="10.0.0.1"),))
        lab.predict = lambda *a, **k: ("n", packet, trace)  # type: ignore[method-assign]
        lab.probe = lambda *a, **k: obs(next(script))  # type: ignore[method-assign]
        lab.counters = lambda *a, **k: counters  # type: ignore[method-assign]
        return lab


@pytest.fixture
def scripted(plan: LabPlan, monkeypatch: pytest.MonkeyPatch) -> object:
    import backends.lab.session as session

    monkeypatch.setattr(session, "expectation", lambda *a, **k: THIRDS)
    return lambda answers: _ScriptedLab.make(plan, answers)


def test_a_one_off_disagreement_is_re_probed_and_kept_in_the_report(scripted: object) -> None:
    lab = scripted([{"a/x": 14, "a/y": 16}, {"a/x": 9, "a/y": 11, "a/z": 10}])  # type: ignore[operator]
    check = lab.check("pod/a/c", "10.96.0.10:80", count=30)
    assert check.agree and not check.confirmed
    assert len(check.earlier) == 1
    assert "pod:a/z predicted with share 1/3 never observed" in check.earlier[0].problems[0]
    assert "[7:420] -A KUBE-SVC-X" in check.report()


def test_a_repeated_disagreement_fails_with_every_round(scripted: object) -> None:
    lab = scripted([{"a/x": 14, "a/y": 16}, {"a/x": 15, "a/y": 15}])  # type: ignore[operator]
    check = lab.check("pod/a/c", "10.96.0.10:80", count=30)
    assert not check.agree
    assert len(check.earlier) == 1 and check.problems
    assert "round 1 (disagreed too)" in check.report()


def test_agreement_at_once_needs_no_second_round(scripted: object) -> None:
    lab = scripted([{"a/x": 9, "a/y": 11, "a/z": 10}])  # type: ignore[operator]
    check = lab.check("pod/a/c", "10.96.0.10:80", count=30, confirm=3)
    assert check.confirmed and check.earlier == ()
