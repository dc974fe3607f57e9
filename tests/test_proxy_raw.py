"""kservice.proxy.raw: raw manifests -> the proxier's ServicePortInfo/endpoint lists.

The golden inputs of upstream's ``TestOverallIPTablesRules`` and ``TestBadIPs`` are loaded
and the resulting per-port data is checked against facts read out of the *expected rule
dumps* of those goldens (not against this implementation's own output).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kservice.errors import InvalidInput
from kservice.proxy.raw import (
    ip_family,
    parse_cidr_sloppy,
    parse_ip_sloppy,
    state_from_objects,
)
from kservice.proxy.types import NodeProxyState, ServicePortName

GOLDEN = Path("/work/shared/reference/golden")
if not GOLDEN.exists():  # the repo copy, when the shared tree is not mounted
    GOLDEN = Path(__file__).resolve().parents[1] / "docs" / "reference" / "golden"


def _golden(name: str) -> tuple[list[dict], str]:
    text = (GOLDEN / f"{name}.md").read_text()
    inputs = re.search(r"## Input objects.*?```yaml\n(.*?)```", text, re.S)
    dump = re.search(r"## Expected dump.*?```\n(.*?)```", text, re.S)
    assert inputs and dump
    return [d for d in yaml.safe_load_all(inputs.group(1)) if d], dump.group(1)


def _facts(dump: str) -> dict[str, dict[str, object]]:
    """What the expected iptables dump says about each service port."""
    facts: dict[str, dict[str, object]] = {}

    def f(spn: str) -> dict[str, object]:
        return facts.setdefault(spn, {"endpoints": [], "external": [], "lb": [],
                                      "ranges": [], "no_endpoints": False,
                                      "no_local": False, "hc": 0, "nodeport": 0})

    for line in dump.splitlines():
        m = re.search(r'--comment "(\S+) -> (\S+)"', line)
        if m and "KUBE-SVC-" in line.split()[1] and "--rcheck" not in line:
            f(m.group(1))["endpoints"].append(m.group(2))  # type: ignore[union-attr]
        m = re.search(r'--comment "(\S+) cluster IP" .* -d (\S+) --dport (\d+) -j KUBE-SVC', line)
        if m and line.startswith("-A KUBE-SERVICES"):
            f(m.group(1))["cluster"] = (m.group(2), int(m.group(3)))
        m = re.search(r'--comment "(\S+) external IP" .* -d (\S+) ', line)
        if m:
            f(m.group(1))["external"].append(m.group(2))  # type: ignore[union-attr]
        m = re.search(r'--comment "(\S+) loadbalancer IP" .* -d (\S+) ', line)
        if m and line.startswith("-A KUBE-SERVICES"):
            f(m.group(1))["lb"].append(m.group(2))  # type: ignore[union-attr]
        m = re.search(r'--comment "(\S+) loadbalancer IP" -s (\S+) ', line)
        if m and line.startswith("-A KUBE-FW-"):
            f(m.group(1))["ranges"].append(m.group(2))  # type: ignore[union-attr]
        m = re.search(r'--comment "(\S+) has no endpoints"', line)
        if m:
            f(m.group(1))["no_endpoints"] = True
        m = re.search(r'--comment "(\S+) has no local endpoints"', line)
        if m:
            f(m.group(1))["no_local"] = True
        m = re.search(r'--comment "(\S+) health check node port" .* --dport (\d+)', line)
        if m:
            f(m.group(1))["hc"] = int(m.group(2))
        m = re.search(r"-A KUBE-NODEPORTS -m comment --comment (\S+) -m \w+ -p \w+ --dport (\d+)",
                      line)
        if m:
            f(m.group(1))["nodeport"] = int(m.group(2))
    return facts


@pytest.mark.parametrize("golden", ["iptables-overall", "iptables-badips"])
def test_golden_inputs_give_the_ports_the_expected_dump_implies(golden: str) -> None:
    objs, dump = _golden(golden)
    state = state_from_objects(objs, "test-node", "IPv4")
    facts = _facts(dump)
    ports = {str(p.name): p for p in state.service_ports}
    assert set(ports) == set(facts)
    for spn, fact in facts.items():
        p = ports[spn]
        if fact["no_endpoints"]:
            assert not p.categorized.has_any and not p.endpoints
            continue
        assert (p.cluster_ip, p.port) == fact["cluster"]
        assert p.categorized.has_any
        # SVC chain endpoints appear in the dump in the proxier's (ip:port string) order.
        if fact["endpoints"]:
            assert [e.string for e in p.categorized.cluster] == fact["endpoints"]
        assert list(p.external_ips) == fact["external"]
        assert list(p.load_balancer_vips) == fact["lb"]
        assert list(p.load_balancer_source_ranges) == fact["ranges"]
        assert p.health_check_node_port == fact["hc"]
        assert p.node_port == fact["nodeport"]
        if fact["no_local"]:
            assert p.external_policy_local and not p.categorized.local


def test_overall_golden_specific_cases() -> None:
    objs, _ = _golden("iptables-overall")
    state = state_from_objects(objs, "test-node", "IPv4")
    by = {str(p.name): p for p in state.service_ports}
    svc4 = by["ns4/svc4:p80"]
    assert [(e.string, e.is_local) for e in svc4.endpoints] == [
        ("10.180.0.4:80", False), ("10.180.0.5:80", True)]
    # svc4 has type NodePort but no nodePort value: not a NodePort for the proxier.
    assert svc4.node_port == 0 and svc4.externally_accessible
    svc5 = by["ns5/svc5:p80"]
    assert svc5.session_affinity_timeout == 10800
    assert svc5.health_check_node_port == 0  # eTP Cluster: no health check
    # the order the golden's proxier iterates is by ServicePortName
    assert [str(p.name) for p in state.service_ports] == sorted(by)
    assert isinstance(state, NodeProxyState) and state.node.name == "test-node"


def test_badips_are_parsed_sloppily() -> None:
    objs, _ = _golden("iptables-badips")
    (p,) = state_from_objects(objs, "test-node", "IPv4").service_ports
    assert p.cluster_ip == "172.30.0.41"
    assert p.external_ips == ("192.168.99.22",)
    assert p.load_balancer_vips == ("1.2.3.4",)
    assert p.load_balancer_source_ranges == ("203.0.113.0/25",)
    assert [e.string for e in p.endpoints] == ["10.180.0.1:80"]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("010.000.000.001", "10.0.0.1"),  # decimal, not octal
        ("1.2.3.256", None),
        ("2001:DB8::0001", "2001:db8::1"),
        ("::ffff:1.2.3.004", "1.2.3.4"),  # IPv4-mapped prints as IPv4, like Go
        ("fe80::1%eth0", None),
        ("", None),
        ("1.2.3", None),
    ],
)
def test_parse_ip_sloppy(text: str, want: str | None) -> None:
    assert parse_ip_sloppy(text) == want


def test_ip_family_of_mapped_address_is_ipv4() -> None:
    assert ip_family("::ffff:10.1.2.3") == "IPv4"
    assert ip_family("2001:db8::1") == "IPv6"
    assert ip_family("nonsense") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("203.0.113.000/025", ("203.0.113.0/25", "IPv4")),
        ("10.0.0.5/24", ("10.0.0.0/24", "IPv4")),
        ("2001:db8::1/64", ("2001:db8::/64", "IPv6")),
        ("10.0.0.0/33", None),
        ("10.0.0.0", None),
    ],
)
def test_parse_cidr_sloppy_masks(text: str, want: tuple[str, str] | None) -> None:
    assert parse_cidr_sloppy(text) == want


def _svc(**spec: object) -> dict:
    base = {"clusterIP": "10.96.0.10", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "ns", "name": "s"}, "spec": base}


def _slice(endpoints: list[dict], *, name: str = "s-1", address_type: str = "IPv4",
           ports: list[dict] | None = None, svc: str = "s") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "ns", "name": name,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "p", "port": 8080,
                                                        "protocol": "TCP"}]}


def test_endpoint_order_is_string_order_not_numeric() -> None:
    eps = [{"addresses": [f"10.0.0.{i}"]} for i in (2, 10, 1)]
    (p,) = state_from_objects([_svc(), _slice(eps)], "n", "IPv4").service_ports
    # '1' < '1:' ... ':' (0x3a) sorts after '0' (0x30): "10.0.0.10:" precedes "10.0.0.1:".
    assert [e.string for e in p.endpoints] == ["10.0.0.10:8080", "10.0.0.1:8080",
                                               "10.0.0.2:8080"]


def test_lb_ingress_ipmode_proxy_and_family_filtering() -> None:
    svc = _svc(type="LoadBalancer", externalIPs=["2001:db8::5", "192.0.2.9", "bogus"],
               loadBalancerSourceRanges=["2001:db8::/32", " 198.51.100.0/24 ", "x"])
    svc["status"] = {"loadBalancer": {"ingress": [
        {"ip": "203.0.113.1", "ipMode": "Proxy"}, {"ip": "203.0.113.2", "ipMode": "VIP"},
        {"ip": "203.0.113.3"}, {"hostname": "lb.example.com"}, {"ip": "2001:db8::9"}]}}
    (p,) = state_from_objects([svc], "n", "IPv4").service_ports
    assert p.load_balancer_vips == ("203.0.113.2", "203.0.113.3")
    assert p.external_ips == ("192.0.2.9",)
    assert p.load_balancer_source_ranges == ("198.51.100.0/24",)


def test_skipped_services() -> None:
    objs = [
        _svc(clusterIP="None"),
        {**_svc(), "metadata": {"namespace": "ns", "name": "x"},
         "spec": {"type": "ExternalName", "externalName": "a.b", "clusterIP": "10.96.0.11",
                  "ports": [{"port": 80, "protocol": "TCP"}]}},
        {**_svc(), "metadata": {"namespace": "ns", "name": "v6"},
         "spec": {"clusterIP": "fd00::1", "ports": [{"port": 80, "protocol": "TCP"}]}},
    ]
    assert state_from_objects(objs, "n", "IPv4").service_ports == ()
    (p,) = state_from_objects(objs, "n", "IPv6").service_ports
    assert p.cluster_ip == "fd00::1"


def test_dual_stack_service_uses_cluster_ips_by_family() -> None:
    svc = _svc(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10", "fd00::a"],
               ipFamilies=["IPv4", "IPv6"])
    assert state_from_objects([svc], "n", "IPv6").service_ports[0].cluster_ip == "fd00::a"


def test_external_policy_local_needs_a_literal_external_type() -> None:
    # type "" renders like ClusterIP but is not "externally accessible by API type".
    objs = [_svc(externalIPs=["192.0.2.1"], externalTrafficPolicy="Local")]
    (p,) = state_from_objects(objs, "n", "IPv4").service_ports
    assert not p.external_policy_local
    objs = [_svc(type="ClusterIP", externalIPs=["192.0.2.1"], externalTrafficPolicy="Local")]
    (p,) = state_from_objects(objs, "n", "IPv4").service_ports
    assert p.external_policy_local and p.health_check_node_port == 0


def test_slice_filters_and_conditions() -> None:
    eps = [
        {"addresses": ["10.0.0.1"], "nodeName": "n",
         "conditions": {"ready": False, "serving": True, "terminating": True}},
        {"addresses": ["fd00::1"]},  # wrong family inside an IPv4 slice: dropped
        {"addresses": ["10.0.0.2", "10.0.0.3"]},  # only addresses[0] is used
    ]
    objs = [_svc(), _slice(eps),
            _slice([{"addresses": ["10.0.0.9"]}], name="s-6", address_type="IPv6"),
            _slice([{"addresses": ["10.0.0.8"]}], name="s-x",
                   ports=[{"port": 8080, "protocol": "TCP"}]),  # nil name: ignored
            _slice([{"addresses": ["10.0.0.7"]}], name="s-y", svc="other")]
    (p,) = state_from_objects(objs, "n", "IPv4").service_ports
    assert [(e.string, e.ready, e.serving, e.terminating, e.is_local) for e in p.endpoints] == [
        ("10.0.0.1:8080", False, True, True, True), ("10.0.0.2:8080", True, True, False, False)]


def test_dedup_prefers_the_non_terminating_duplicate() -> None:
    a = _slice([{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}], name="s-a")
    b = _slice([{"addresses": ["10.0.0.1"], "conditions": {"ready": False, "serving": True,
                                                          "terminating": True}}], name="s-b")
    (p,) = state_from_objects([_svc(), a, b], "n", "IPv4").service_ports
    assert [(e.string, e.terminating) for e in p.endpoints] == [("10.0.0.1:8080", False)]
    (p,) = state_from_objects([_svc(), b, a], "n", "IPv4").service_ports
    assert p.endpoints[0].terminating is False


def test_kind_list_and_node_object() -> None:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z1"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
                     "providerID": "kind://x"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"},
                                     {"type": "Hostname", "address": "n"}],
                       "nodeInfo": {"kubeletVersion": "v1.34.0"}}}
    lst = {"apiVersion": "v1", "kind": "List", "items": [_svc(), node, _slice([])],
           "metadata": {"resourceVersion": ""}}
    st = state_from_objects([lst], "n", "IPv4")
    assert st.node.ips == ("172.18.0.3",) and st.node.zone == "z1"
    assert st.node.pod_cidrs == ("10.244.1.0/24",)
    assert ServicePortName("ns", "s", "p", "TCP") == st.service_ports[0].name


def test_bad_manifest_names_the_path() -> None:
    bad = _svc()
    bad["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(InvalidInput) as ei:
        state_from_objects([{"kind": "List", "items": [bad]}], "n", "IPv4")
    assert "[0].items[0].spec.ports[0].port" in str(ei.value)
    with pytest.raises(InvalidInput):
        state_from_objects([], "n", "IPv5")


def test_kube_proxy_configuration_document_is_used() -> None:
    cfg = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
           "mode": "nftables", "clusterCIDR": "10.244.0.0/16"}
    st = state_from_objects([cfg, _svc()], "n", "IPv4")
    assert st.config.mode == "nftables" and st.config.cluster_cidr == "10.244.0.0/16"


def test_nftables_golden_inputs_match_its_maps() -> None:
    text = (GOLDEN / "nftables-overall.md").read_text()
    inputs = re.search(r"## Inputs as Kubernetes YAML.*?```yaml\n(.*?)```", text, re.S)
    dump = re.search(r"## Expected output \(verbatim\).*?```\n(.*?)```", text, re.S)
    assert inputs and dump
    state = state_from_objects([d for d in yaml.safe_load_all(inputs.group(1)) if d],
                               "test-node", "IPv4")
    by = {(p.name.namespace, p.name.name): p for p in state.service_ports}
    frontends: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for m in re.finditer(r"service-ips \{ (\S+) \. tcp \. (\d+) : goto (\w+)-\w+-(\w+)/(\w+)/",
                         dump.group(1)):
        ip, _port, kind, ns, svc = m.groups()
        frontends.setdefault((ns, svc), set()).add((kind, ip))
    for m in re.finditer(r"service-nodeports \{ tcp \. (\d+) : goto \w+-\w+-(\w+)/(\w+)/",
                         dump.group(1)):
        assert by[(m.group(2), m.group(3))].node_port == int(m.group(1))
    assert len(frontends) == 5  # svc1..svc5 (svc6 has no endpoints: no service-ips entry)
    for key, fes in frontends.items():
        p = by[key]
        assert {ip for kind, ip in fes if kind == "service"} == {p.cluster_ip}
        assert {ip for kind, ip in fes if kind == "external"} == \
            set(p.external_ips) | set(p.load_balancer_vips)
    for m in re.finditer(r'no-endpoint-services \{ \S+ \. tcp \. \d+ comment "(\w+)/(\w+):\w+" '
                         r": (drop|goto reject-chain)", dump.group(1)):
        p = by[(m.group(1), m.group(2))]
        if m.group(3) == "drop":  # endpoints exist, none local for eTP=Local
            assert p.categorized.has_any and not p.categorized.local
        else:
            assert not p.categorized.has_any
