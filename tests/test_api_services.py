"""Reference vectors 1-78 (k8s-service-api.md) through the Python API.

Every case goes through the full pipeline: ``Cluster`` + ``install_service_api`` +
``cluster.create(Service.from_manifest(...))``. Expected strings are copied from the
reference (upstream's messages), never from this implementation's output.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kservice import DEFAULT_CLUSTER_CONFIG, Cluster, ClusterConfig, Service
from kservice.api import (
    ServiceCIDR,
    allocator_state,
    create_kubernetes_service,
    install_service_api,
    ip_address_manifests,
    normalize_cluster_ips,
    validate_service,
)
from kservice.api.defaults import default_service
from kservice.api.services import APISERVER_PANIC_MESSAGE, ApiserverPanic
from kservice.errors import InternalError, InvalidObject

DUAL = ClusterConfig(service_subnets=("10.96.0.0/12", "fd00:10:96::/108"))


def svc(spec: dict[str, Any] | None = None, name: str = "foo", **meta: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "namespace": "default", **meta}
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": m}
    if spec is not None:
        out["spec"] = spec
    return out


def make_cluster(config: ClusterConfig = DEFAULT_CLUSTER_CONFIG) -> Cluster:
    c = Cluster(config)
    install_service_api(c)
    create_kubernetes_service(c)
    return c


@pytest.fixture
def cluster() -> Cluster:
    return make_cluster()


@pytest.fixture
def dual() -> Cluster:
    return make_cluster(DUAL)


def create(c: Cluster, manifest: dict[str, Any]) -> Service:
    return c.create(Service.from_manifest(manifest))


def update(c: Cluster, manifest: dict[str, Any]) -> Service:
    return c.update(Service.from_manifest(manifest))


def create_error(c: Cluster, manifest: dict[str, Any]) -> str:
    with pytest.raises((InvalidObject, InternalError)) as info:
        create(c, manifest)
    return str(info.value)


def in_range(ip: str, lo: str, hi: str) -> bool:
    return ipaddress.ip_address(lo) <= ipaddress.ip_address(ip) <= ipaddress.ip_address(hi)


P80 = [{"port": 80}]

# --------------------------------------------------------------------------- A. defaulting


def test_vector_01_clusterip_defaults(cluster: Cluster) -> None:
    s = create(cluster, svc({"selector": {"app": "a"}, "ports": P80}))
    sp = s.spec
    assert sp.type == "ClusterIP" and sp.session_affinity == "None"
    assert sp.ports[0].protocol == "TCP" and sp.ports[0].target_port == 80
    assert sp.internal_traffic_policy == "Cluster"
    assert sp.ip_family_policy == "SingleStack" and sp.ip_families == ("IPv4",)
    assert sp.cluster_ips == (sp.cluster_ip,)
    assert in_range(sp.cluster_ip, "10.96.1.1", "10.111.255.254")
    assert sp.external_traffic_policy is None


def test_vector_02_client_ip_default_timeout(cluster: Cluster) -> None:
    s = create(cluster, svc({"ports": P80, "sessionAffinity": "ClientIP"}))
    assert s.spec.session_affinity_config.client_ip.timeout_seconds == 10800


def test_vector_03_none_drops_config(cluster: Cluster) -> None:
    s = create(cluster, svc({"ports": P80, "sessionAffinity": "None",
                             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))
    assert s.spec.session_affinity_config is None


def test_vector_04_nodeport_defaults(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "NodePort", "ports": P80}))
    assert s.spec.external_traffic_policy == "Cluster"
    assert 30086 <= s.spec.ports[0].node_port <= 32767


def test_vector_05_loadbalancer_defaults(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "LoadBalancer", "ports": P80}))
    assert s.spec.allocate_load_balancer_node_ports is True
    assert s.spec.external_traffic_policy == "Cluster"
    assert 30000 <= s.spec.ports[0].node_port <= 32767


def test_vector_06_external_ips_make_etp_default(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "ClusterIP", "ports": P80, "externalIPs": ["203.0.113.10"]}))
    assert s.spec.external_traffic_policy == "Cluster"


def test_vector_07_named_target_port_kept(cluster: Cluster) -> None:
    s = create(cluster, svc({"ports": [{"port": 80, "targetPort": "http"}]}))
    assert s.spec.ports[0].target_port == "http"


# --------------------------------------------------------------------------- B. validation

DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
           "with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',"
           "  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
RANGE = "must be between 1 and 65535, inclusive"

CREATE_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("08", svc({"selector": {"app": "a"}}), 'Service "foo" is invalid: spec.ports: Required value'),
    ("09", svc({"ports": [{"port": 0}]}),
     f'Service "foo" is invalid: [spec.ports[0].port: Invalid value: 0: {RANGE}, '
     f"spec.ports[0].targetPort: Invalid value: 0: {RANGE}]"),
    ("10", svc({"ports": [{"port": 70000, "targetPort": 80}]}),
     f'Service "foo" is invalid: spec.ports[0].port: Invalid value: 70000: {RANGE}'),
    ("11", svc({"ports": [{"port": 80, "protocol": "ICMP"}]}),
     'Service "foo" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": '
     'supported values: "SCTP", "TCP", "UDP"'),
    ("12", svc({"ports": [{"name": "http", "port": 80}, {"port": 443}]}),
     'Service "foo" is invalid: spec.ports[1].name: Required value'),
    ("13", svc({"ports": [{"name": "web", "port": 80}, {"name": "web", "port": 81}]}),
     'Service "foo" is invalid: spec.ports[1].name: Duplicate value: "web"'),
    ("14", svc({"ports": [{"name": "HTTP", "port": 80}]}),
     'Service "foo" is invalid: spec.ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 '
     "label must consist of lower case alphanumeric characters or '-', and must start and end "
     "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation "
     "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
    ("15", svc({"ports": [{"port": 80, "targetPort": "http_web"}]}),
     'Service "foo" is invalid: spec.ports[0].targetPort: Invalid value: "http_web": must '
     "contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("16", svc({"ports": [{"port": 80, "targetPort": "averyveryverylongname"}]}),
     'Service "foo" is invalid: spec.ports[0].targetPort: Invalid value: '
     '"averyveryverylongname": must be no more than 15 characters'),
    ("17", svc({"ports": [{"port": 80, "targetPort": "8080"}]}),
     'Service "foo" is invalid: spec.ports[0].targetPort: Invalid value: "8080": must contain '
     "at least one letter (a-z)"),
    ("18", svc({"ports": P80}, name="My_Svc"),
     f'Service "My_Svc" is invalid: metadata.name: Invalid value: "My_Svc": {DNS1035}'),
    ("19", svc({"ports": P80}, name="1web"),
     f'Service "1web" is invalid: metadata.name: Invalid value: "1web": {DNS1035}'),
    ("20", svc({"type": "Foo", "ports": P80}),
     'Service "foo" is invalid: spec.type: Unsupported value: "Foo": supported values: '
     '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ("21", svc({"type": "ExternalName"}), 'Service "foo" is invalid: spec.externalName: Required value'),
    ("22", svc({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.0.50"}),
     'Service "foo" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services'),
    ("24", svc({"type": "NodePort", "clusterIP": "None", "ports": P80}),
     'Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to '
     "'None' for NodePort services"),
    ("25", svc({"type": "LoadBalancer", "clusterIP": "None", "ports": P80}),
     'Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to '
     "'None' for LoadBalancer services"),
    ("26", svc({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}),
     'Service "foo" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` '
     "is 'ClusterIP'"),
    ("27", svc({"ports": P80, "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
     'Service "foo" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid '
     "value: 0: must be greater than 0 and less than 86400"),
    ("27b", svc({"ports": P80, "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
     'Service "foo" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid '
     "value: 86401: must be greater than 0 and less than 86400"),
    ("28", svc({"type": "ClusterIP", "externalTrafficPolicy": "Local", "ports": P80}),
     'Service "foo" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be '
     "set for externally-accessible services"),
    ("29", svc({"type": "NodePort", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30001,
                "ports": P80}),
     'Service "foo" is invalid: spec.healthCheckNodePort: Invalid value: 30001: may only be set '
     "when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
    ("30", svc({"type": "NodePort", "externalTrafficPolicy": "Foo", "ports": P80}),
     'Service "foo" is invalid: spec.externalTrafficPolicy: Unsupported value: "Foo": supported '
     'values: "Cluster", "Local"'),
    ("31", svc({"ports": P80, "externalIPs": ["127.0.0.1"]}),
     'Service "foo" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in '
     "the loopback range (127.0.0.0/8, ::1/128)"),
    ("32", svc({"ports": P80, "externalIPs": ["1.2.3"]}),
     'Service "foo" is invalid: spec.externalIPs[0]: Invalid value: "1.2.3": must be a valid IP '
     "address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
    ("33", svc({"type": "ClusterIP", "ports": P80, "loadBalancerSourceRanges": ["10.0.0.0/8"]}),
     'Service "foo" is invalid: spec.LoadBalancerSourceRanges: Forbidden: may only be used when '
     "`type` is 'LoadBalancer'"),
    # v1.34: PreferSameTrafficDistribution is beta and on, so the list has three values in
    # upstream's (unsorted) order; the reference's single-value list is the pre-1.33 text.
    ("35", svc({"ports": P80, "trafficDistribution": "Random"}),
     'Service "foo" is invalid: spec.trafficDistribution: Unsupported value: "Random": '
     'supported values: "PreferClose", "PreferSameZone", "PreferSameNode"'),
    # C. dual-stack
    ("36", svc({"ports": P80, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.11"]}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.11"}: first '
     "value must match `clusterIP`"),
    ("37", svc({"ports": P80, "clusterIPs": ["10.96.0.10"]}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: must be '
     "empty when `clusterIP` is not specified"),
    ("38", svc({"ports": P80, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "10.96.0.11"],
                "ipFamilyPolicy": "RequireDualStack"}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10", '
     '"10.96.0.11"}: may specify no more than one IP for each IP family'),
    ("39", svc({"ports": P80, "ipFamilies": ["IPv4", "IPv4"], "ipFamilyPolicy": "PreferDualStack"}),
     'Service "foo" is invalid: spec.ipFamilies[1]: Duplicate value: "IPv4"'),
    ("40", svc({"ports": P80, "ipFamilyPolicy": "RequireDualStack"}),
     'Service "foo" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this '
     "cluster is not configured for dual-stack services"),
    ("42", svc({"ports": P80, "ipFamilies": ["IPv6"]}),
     'Service "foo" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on '
     "this cluster"),
    # E. ClusterIP allocation -- the fixture's /12: network and broadcast are refused.
    ("60a", svc({"ports": P80, "clusterIP": "10.96.0.0"}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.0"}: failed '
     "to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The "
     "range of valid IPs is 10.96.0.0/12"),
    ("63", svc({"ports": P80, "clusterIP": "10.96.0.1"}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.1"}: failed '
     "to allocate IP 10.96.0.1: provided IP is already allocated"),
    ("65", svc({"ports": P80, "clusterIP": "192.168.5.5"}),
     'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"192.168.5.5"}: failed '
     "to allocate IP 192.168.5.5: the provided network does not match the current range"),
    # F. NodePort allocation
    ("70", svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}),
     'Service "foo" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not '
     "in the valid range. The range of valid ports is 30000-32767"),
    ("73", svc({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "protocol": "UDP", "nodePort": 30080}]}),
     'Service "foo" is invalid: spec.ports[1].nodePort: Invalid value: 30080: provided port is '
     "already allocated"),
]


@pytest.mark.parametrize(("vector", "manifest", "expected"), CREATE_ERRORS,
                         ids=[f"vector-{v}" for v, _, _ in CREATE_ERRORS])
def test_create_error_vectors(cluster: Cluster, vector: str, manifest: dict[str, Any],
                              expected: str) -> None:
    before = (allocator_state(cluster).node_ports.used_count,
              allocator_state(cluster).ip["IPv4"].free_count)
    assert create_error(cluster, manifest) == expected
    # Vector 24 and friends: every allocation made before the failure is rolled back.
    assert (allocator_state(cluster).node_ports.used_count,
            allocator_state(cluster).ip["IPv4"].free_count) == before
    assert cluster.find("Service", manifest["metadata"]["name"]) is None


def test_vector_09_kubectl_prints_one_cause_per_line(cluster: Cluster) -> None:
    with pytest.raises(InvalidObject) as info:
        create(cluster, svc({"ports": [{"port": 0}]}))
    assert info.value.kubectl_message().splitlines() == [
        'The Service "foo" is invalid: ',
        f"* spec.ports[0].port: Invalid value: 0: {RANGE}",
        f"* spec.ports[0].targetPort: Invalid value: 0: {RANGE}",
    ]


def test_vector_23_external_name_trailing_dot(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "ExternalName", "externalName": "db.example.com."}))
    assert s.spec.cluster_ip is None and s.spec.cluster_ips == ()
    assert s.spec.ip_families == () and s.spec.ip_family_policy is None
    assert s.spec.ports == ()


def test_vector_27_upper_bound_accepted(cluster: Cluster) -> None:
    s = create(cluster, svc({"ports": P80, "sessionAffinity": "ClientIP",
                             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}))
    assert s.spec.session_affinity_config.client_ip.timeout_seconds == 86400


def test_vector_34_duplicate_unnamed_ports(cluster: Cluster) -> None:
    msg = create_error(cluster, svc({"ports": [{"port": 80}, {"port": 80}]}))
    assert "spec.ports[0].name: Required value" in msg
    assert "spec.ports[1].name: Required value" in msg
    assert ("spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", "
            "AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, "
            "IntVal:0, StrVal:\"\"}, NodePort:0}") in msg


def test_allocation_error_short_circuits_validation(cluster: Cluster) -> None:
    # §0.1: nodePort 80 *and* a bad port name -> only the nodePort allocation error.
    msg = create_error(cluster, svc({"type": "NodePort",
                                     "ports": [{"name": "BAD", "port": 80, "nodePort": 80}]}))
    assert msg == ('Service "foo" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided '
                   "port is not in the valid range. The range of valid ports is 30000-32767")


# --------------------------------------------------------------------------- C. dual-stack


def test_vector_41_prefer_dual_stack_on_single_stack(cluster: Cluster) -> None:
    s = create(cluster, svc({"ports": P80, "ipFamilyPolicy": "PreferDualStack"}))
    assert s.spec.ip_families == ("IPv4",) and len(s.spec.cluster_ips) == 1


def test_vector_43_single_stack_two_families(dual: Cluster) -> None:
    assert create_error(dual, svc({"ports": P80, "ipFamilyPolicy": "SingleStack",
                                   "ipFamilies": ["IPv4", "IPv6"]})) == (
        'Service "foo" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": must be '
        "'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified")


def test_vector_44_headless_selectorless(cluster: Cluster) -> None:
    s = create(cluster, svc({"clusterIP": "None", "ports": P80}))
    assert s.spec.ip_family_policy == "RequireDualStack"
    assert s.spec.ip_families == ("IPv4", "IPv6")
    assert s.spec.cluster_ips == ("None",)


def test_vector_45_headless_with_selector(cluster: Cluster) -> None:
    s = create(cluster, svc({"clusterIP": "None", "selector": {"app": "a"}, "ports": P80}))
    assert s.spec.ip_family_policy == "SingleStack" and s.spec.ip_families == ("IPv4",)


def test_dual_stack_require_allocates_both(dual: Cluster) -> None:
    s = create(dual, svc({"ports": P80, "ipFamilyPolicy": "RequireDualStack"}))
    assert s.spec.ip_families == ("IPv4", "IPv6")
    v4, v6 = s.spec.cluster_ips
    assert ipaddress.ip_address(v4) in ipaddress.ip_network("10.96.0.0/12")
    assert in_range(v6, "fd00:10:96::101", "fd00:10:96::f:ffff")


# --------------------------------------------------------------------------- D. updates


def test_vector_46_cluster_ip_immutable(cluster: Cluster) -> None:
    create(cluster, svc({"ports": P80, "clusterIP": "10.96.0.20"}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({"ports": P80, "clusterIP": "10.96.0.99"}))
    assert str(info.value) == ('Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: '
                               '[]string{"10.96.0.99"}: may not change once set')
    assert not allocator_state(cluster).ip["IPv4"].has("10.96.0.99")


def test_vector_47_to_headless_refused(cluster: Cluster) -> None:
    create(cluster, svc({"ports": P80, "selector": {"a": "b"}}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({"ports": P80, "selector": {"a": "b"}, "clusterIP": "None"}))
    assert str(info.value) == ('Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: '
                               '[]string{"None"}: may not change once set')


# Headful -> headless + selectorless with a dual policy on a single-stack cluster. Upstream
# never reaches validation: initIPFamilyFields gives headless + selectorless Services both
# families even on a single-stack cluster, updateClusterIPs (which bails out only when the
# *old* Service is headless) takes [IPv4] -> [IPv4, IPv6] for an upgrade, and allocIPs calls
# the IPv6 allocator, absent from serviceIPAllocatorsByFamily -> nil -> panic (HTTP 500 from
# WithPanicRecovery). Used to escape as KeyError('IPv6').
TO_HEADLESS_DUAL = [
    pytest.param({"type": "NodePort", "ports": P80},
                 {"ports": P80, "clusterIP": "None", "ipFamilyPolicy": "PreferDualStack"},
                 id="nodeport-to-headless-prefer"),
    pytest.param({"type": "NodePort", "ports": P80},
                 {"ports": P80, "clusterIP": "None", "ipFamilyPolicy": "RequireDualStack"},
                 id="nodeport-to-headless-require"),
    pytest.param({"ports": P80},
                 {"ports": P80, "clusterIP": "None", "clusterIPs": ["None"],
                  "ipFamilyPolicy": "PreferDualStack"},
                 id="clusterip-to-headless-prefer"),
    # The hypothesis reproducer: the policy is inherited from the stored object.
    pytest.param({"type": "NodePort", "ports": [{"port": 1, "protocol": "UDP"}],
                  "trafficDistribution": "PreferClose", "ipFamilyPolicy": "PreferDualStack"},
                 {"clusterIP": "None", "ports": [{"port": 1, "protocol": "UDP"}],
                  "trafficDistribution": "PreferClose"},
                 id="inherited-prefer"),
]


@pytest.mark.parametrize(("before", "after"), TO_HEADLESS_DUAL)
def test_to_headless_selectorless_dual_policy_single_stack_panics(
        cluster: Cluster, before: dict[str, Any], after: dict[str, Any]) -> None:
    stored = create(cluster, svc(before))
    held = _holdings(cluster)
    with pytest.raises(ApiserverPanic) as info:
        update(cluster, svc(after))
    err = info.value
    assert isinstance(err, InternalError) and err.http_status == 500
    assert str(err) == APISERVER_PANIC_MESSAGE == (
        "This request caused apiserver to panic. Look in the logs for details.")
    assert "nil pointer dereference" in err.cause
    # Nothing written, nothing allocated or released; the allocators still match the store.
    assert cluster.find("Service", "foo") == stored
    assert _holdings(cluster) == held
    cluster.rebuild()
    assert _holdings(cluster) == held


def test_to_headless_selectorless_single_stack_policy_is_refused(cluster: Cluster) -> None:
    # The inherited SingleStack policy keeps one family: no upgrade, validation answers.
    create(cluster, svc({"type": "NodePort", "ports": P80}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({"ports": P80, "clusterIP": "None"}))
    assert str(info.value) == ('Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: '
                               '[]string{"None"}: may not change once set')


def test_to_headless_selectorless_ipv6_service_cidr_still_panics(cluster: Cluster) -> None:
    # An IPv6 ServiceCIDR adds a pool, not an entry in serviceIPAllocatorsByFamily (built from
    # the --service-cluster-ip-range flags only): the lookup is still nil.
    cluster.create(cidr_obj("v6", "fd00:1::/112"))
    create(cluster, svc({"type": "NodePort", "ports": P80}))
    held = _holdings(cluster)
    with pytest.raises(ApiserverPanic):
        update(cluster, svc({"ports": P80, "clusterIP": "None",
                             "ipFamilyPolicy": "PreferDualStack"}))
    assert _holdings(cluster) == held and not allocator_state(cluster).ip["IPv6"].owner


def test_to_headless_selectorless_dual_stack_is_refused_and_rolled_back(dual: Cluster) -> None:
    # With an IPv6 allocator the upgrade allocates, then validation refuses and it is reverted.
    create(dual, svc({"type": "NodePort", "ports": P80}))
    held = _holdings(dual)
    with pytest.raises(InvalidObject) as info:
        update(dual, svc({"ports": P80, "clusterIP": "None", "ipFamilyPolicy": "PreferDualStack"}))
    msg = str(info.value)
    assert msg.startswith('Service "foo" is invalid: [spec.clusterIPs[0]: Invalid value: '
                          '[]string{"None", "fd00:10:96::')
    assert "may not change once set, spec.clusterIPs: Invalid value: " in msg
    assert msg.endswith("'None' must be the first and only value]")
    assert _holdings(dual) == held


def test_vector_48_reapply_creation_yaml(cluster: Cluster) -> None:
    manifest = svc({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]})
    first = create(cluster, manifest)
    rv = cluster.resource_version
    again = update(cluster, manifest)
    assert again.spec.cluster_ip == first.spec.cluster_ip
    assert [p.node_port for p in again.spec.ports] == [p.node_port for p in first.spec.ports]
    assert cluster.resource_version == rv  # nothing changed: no write


def test_vector_49_nodeport_to_clusterip_releases(cluster: Cluster) -> None:
    create(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
    s = update(cluster, svc({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}))
    assert s.spec.ports[0].node_port == 0
    assert s.spec.external_traffic_policy is None
    create(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="bar"))


def test_vector_50_nodeport_changed_on_type_change(cluster: Cluster) -> None:
    create(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30081}]}))
    assert str(info.value) == ('Service "foo" is invalid: spec.ports[0].nodePort: Forbidden: may '
                               "not be used when `type` is 'ClusterIP'")
    ports = allocator_state(cluster).node_ports
    assert ports.has(30080) and not ports.has(30081)  # failed update: nothing released or kept


LB_LOCAL = {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": P80}


def test_vector_51_etp_cluster_releases_hc(cluster: Cluster) -> None:
    create(cluster, svc({**LB_LOCAL, "healthCheckNodePort": 31000}))
    s = update(cluster, svc({**LB_LOCAL, "externalTrafficPolicy": "Cluster",
                             "healthCheckNodePort": 31000}))
    assert s.spec.health_check_node_port == 0
    assert not allocator_state(cluster).node_ports.has(31000)


def test_vector_52_hc_immutable(cluster: Cluster) -> None:
    create(cluster, svc({**LB_LOCAL, "healthCheckNodePort": 31000}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({**LB_LOCAL, "healthCheckNodePort": 31001}))
    assert str(info.value) == ('Service "foo" is invalid: spec.healthCheckNodePort: Forbidden: '
                               "field is immutable")


def test_vector_53_to_external_name(cluster: Cluster) -> None:
    create(cluster, svc({"ports": P80, "clusterIP": "10.96.0.20"}))
    s = update(cluster, svc({"type": "ExternalName", "externalName": "x.example.com",
                             "ports": P80, "clusterIP": "10.96.0.20"}))
    assert (s.spec.cluster_ip, s.spec.cluster_ips, s.spec.ip_families, s.spec.ip_family_policy) == (
        None, (), (), None)
    assert not allocator_state(cluster).ip["IPv4"].has("10.96.0.20")


def test_vector_54_external_name_to_clusterip(cluster: Cluster) -> None:
    create(cluster, svc({"type": "ExternalName", "externalName": "x.example.com"}))
    s = update(cluster, svc({"type": "ClusterIP", "ports": P80}))
    assert s.spec.cluster_ip and s.spec.ip_family_policy == "SingleStack"
    assert allocator_state(cluster).ip["IPv4"].has(s.spec.cluster_ip)


def test_vector_55_lb_class_immutable(cluster: Cluster) -> None:
    create(cluster, svc({"type": "LoadBalancer", "loadBalancerClass": "a.io/x", "ports": P80}))
    with pytest.raises(InvalidObject) as info:
        update(cluster, svc({"type": "LoadBalancer", "loadBalancerClass": "b.io/y", "ports": P80}))
    assert str(info.value) == ('Service "foo" is invalid: spec.loadBalancerClass: Invalid value: '
                               '"b.io/y": may not change once set')


DS = {"ports": P80, "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00:10:96::5"],
      "ipFamilyPolicy": "RequireDualStack"}


def test_vector_56_downgrade(dual: Cluster) -> None:
    create(dual, svc(DS))
    s = update(dual, svc({**DS, "ipFamilyPolicy": "SingleStack"}))
    assert s.spec.cluster_ips == ("10.96.0.5",) and s.spec.ip_families == ("IPv4",)
    assert not allocator_state(dual).ip["IPv6"].has("fd00:10:96::5")


def test_vector_57_downgrade_needs_single_stack(dual: Cluster) -> None:
    create(dual, svc(DS))
    with pytest.raises(InvalidObject) as info:
        update(dual, svc({**DS, "clusterIPs": ["10.96.0.5"]}))
    assert str(info.value) == ('Service "foo" is invalid: spec.ipFamilyPolicy: Invalid value: '
                               '"RequireDualStack": must be \'SingleStack\' to release the '
                               "secondary cluster IP")


# --------------------------------------------------------------------------- E. ClusterIP allocation


def small(cidr: str = "10.96.0.0/24", **kw: Any) -> Cluster:
    c = Cluster(ClusterConfig(service_subnets=(cidr,), **kw))
    install_service_api(c)
    return c


def test_vector_59_bands_through_api() -> None:
    c = small()
    got = [create(c, svc({"ports": P80}, name=f"s{i}")).spec.cluster_ip for i in range(254)]
    assert all(in_range(ip, "10.96.0.17", "10.96.0.254") for ip in got[:238])
    assert all(in_range(ip, "10.96.0.1", "10.96.0.16") for ip in got[238:])
    assert len(set(got)) == 254
    # Vector 62: one more is an HTTP 500.
    assert create_error(c, svc({"ports": P80}, name="full")) == (
        "Internal error occurred: failed to allocate a serviceIP: range is full")


@pytest.mark.parametrize("ip", ["10.96.0.0", "10.96.0.255"])
def test_vector_60_network_and_broadcast(ip: str) -> None:
    assert create_error(small(), svc({"ports": P80, "clusterIP": ip})) == (
        f'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: failed '
        f"to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of "
        "valid IPs is 10.96.0.0/24")


def test_vector_61_already_allocated(cluster: Cluster) -> None:
    create(cluster, svc({"ports": P80, "clusterIP": "10.96.0.10"}, name="dns"))
    assert create_error(cluster, svc({"ports": P80, "clusterIP": "10.96.0.10"})) == (
        'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: '
        "failed to allocate IP 10.96.0.10: provided IP is already allocated")


def test_vector_63_kubernetes_service_holds_first_ip(cluster: Cluster) -> None:
    k = cluster.get("Service", "kubernetes")
    assert k.spec.cluster_ip == "10.96.0.1"
    assert k.spec.ports[0].name == "https" and k.spec.ports[0].port == 443


def test_vector_64_ipv6_bitmap_cap_legacy() -> None:
    # Vector 64 is the bitmap allocator: a dual-write (pre-1.34) apiserver.
    c = Cluster(ClusterConfig(service_subnets=("fd00:10:96::/108",)))
    install_service_api(c, legacy_bitmap=True)
    state = allocator_state(c).ip["IPv6"].primary()
    assert (state.size, state.first, state.last, state.offset) == (
        65535, "fd00:10:96::1", "fd00:10:96::ffff", 256)
    s = create(c, svc({"ports": P80}))
    assert s.spec.ip_families == ("IPv6",)
    assert in_range(s.spec.cluster_ip, "fd00:10:96::101", "fd00:10:96::ffff")
    assert "is not in the valid range" in create_error(
        c, svc({"ports": P80, "clusterIP": "fd00:10:96::1:0"}, name="beyond"))


def test_ipv6_range_v134_ipaddress_allocator() -> None:
    # v1.34 (DisableAllocatorDualWrite GA, on): no bitmap, the whole /108 but its network
    # address is usable -- the last address too.
    c = small("fd00:10:96::/108")
    state = allocator_state(c).ip["IPv6"].primary()
    assert (state.size, state.first, state.last, state.offset) == (
        2**20 - 1, "fd00:10:96::1", "fd00:10:96::f:ffff", 256)
    assert create(c, svc({"ports": P80, "clusterIP": "fd00:10:96::1:0"})).spec.cluster_ip == (
        "fd00:10:96::1:0")
    assert create(c, svc({"ports": P80, "clusterIP": "fd00:10:96::f:ffff"}, name="last")
                  ).spec.cluster_ip == "fd00:10:96::f:ffff"
    assert "is not in the valid range" in create_error(
        c, svc({"ports": P80, "clusterIP": "fd00:10:96::"}, name="net"))


def cidr_obj(name: str, *cidrs: str) -> ServiceCIDR:
    return ServiceCIDR.from_manifest({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                                      "metadata": {"name": name}, "spec": {"cidrs": list(cidrs)}})


def test_vector_65_extra_service_cidr_extends_pool(cluster: Cluster) -> None:
    cluster.create(cidr_obj("extra", "192.168.5.0/24"))
    s = create(cluster, svc({"ports": P80, "clusterIP": "192.168.5.5"}))
    assert s.spec.cluster_ip == "192.168.5.5"


def test_vector_66_service_cidr_same_family(cluster: Cluster) -> None:
    with pytest.raises(InvalidObject) as info:
        cluster.create(cidr_obj("two", "10.0.0.0/24", "10.1.0.0/24"))
    assert str(info.value).startswith('ServiceCIDR "two" is invalid: spec.cidrs: Invalid value: ')
    assert str(info.value).endswith(
        "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64")


def test_vector_67_orphan_blocks_deletion(cluster: Cluster) -> None:
    cluster.create(cidr_obj("extra", "192.168.5.0/24"))
    create(cluster, svc({"ports": P80, "clusterIP": "192.168.5.5"}))
    cluster.delete("ServiceCIDR", "extra", "")
    held = cluster.get("ServiceCIDR", "extra", "")
    assert held.metadata.deletion_timestamp is not None
    assert "networking.k8s.io/service-cidr-finalizer" in held.metadata.finalizers
    ready = held.conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "False", "OrphanIPAddress")
    # A terminating CIDR hands out nothing new.
    assert "does not match the current range" in create_error(
        cluster, svc({"ports": P80, "clusterIP": "192.168.5.6"}, name="bar"))
    cluster.delete("Service", "foo")
    assert cluster.find("ServiceCIDR", "extra", "") is None


def test_vector_68_ip_address_object(cluster: Cluster) -> None:
    create(cluster, svc({"ports": P80, "clusterIP": "10.96.0.77"}))
    objs = {m["metadata"]["name"]: m for m in ip_address_manifests(allocator_state(cluster).ip)}
    assert set(objs) == {"10.96.0.1", "10.96.0.77"}
    assert objs["10.96.0.77"]["spec"]["parentRef"] == {
        "group": "", "resource": "services", "namespace": "default", "name": "foo"}
    assert objs["10.96.0.77"]["metadata"]["labels"] == {
        "ipaddress.kubernetes.io/ip-family": "IPv4",
        "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}
    cluster.delete("Service", "foo")
    assert [m["metadata"]["name"] for m in ip_address_manifests(allocator_state(cluster).ip)] == [
        "10.96.0.1"]


def test_normalize_cluster_ips_cases() -> None:
    base = Service.from_manifest(svc({"ports": P80}))
    old = base.evolve_spec(cluster_ip="10.96.0.20", cluster_ips=("10.96.0.20",))
    # create: singular only -> plural filled
    assert normalize_cluster_ips(base.evolve_spec(cluster_ip="10.96.0.9")).spec.cluster_ips == (
        "10.96.0.9",)
    # update: plural omitted, singular unchanged -> stored plural kept
    assert normalize_cluster_ips(base.evolve_spec(cluster_ip="10.96.0.20"), old).spec.cluster_ips == (
        "10.96.0.20",)
    # update: singular cleared, plural untouched -> both cleared
    cleared = base.evolve_spec(cluster_ip="", cluster_ips=("10.96.0.20",))
    assert normalize_cluster_ips(cleared, old).spec.cluster_ips == ()
    # update: singular changed, plural untouched -> plural follows singular
    changed = base.evolve_spec(cluster_ip="10.96.0.99", cluster_ips=("10.96.0.20",))
    assert normalize_cluster_ips(changed, old).spec.cluster_ips == ("10.96.0.99",)


def test_external_name_to_clusterip_with_explicit_ip(cluster: Cluster) -> None:
    create(cluster, svc({"type": "ExternalName", "externalName": "x.example.com"}))
    s = update(cluster, svc({"type": "ClusterIP", "clusterIP": "10.96.0.44", "ports": P80}))
    assert s.spec.cluster_ips == ("10.96.0.44",)
    assert allocator_state(cluster).ip["IPv4"].has("10.96.0.44")


# --------------------------------------------------------------------------- F. NodePort allocation


def test_vector_69_dynamic_nodeports_prefer_upper_band() -> None:
    c = small("10.96.0.0/16")
    got = [create(c, svc({"type": "NodePort", "ports": P80}, name=f"s{i}")).spec.ports[0].node_port
           for i in range(2682)]
    assert all(30086 <= p <= 32767 for p in got) and len(set(got)) == 2682
    s = create(c, svc({"type": "NodePort", "ports": P80}, name="low"))
    assert 30000 <= s.spec.ports[0].node_port <= 30085


def test_vector_71_nodeport_in_use(cluster: Cluster) -> None:
    create(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="a"))
    assert create_error(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})) == (
        'Service "foo" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is '
        "already allocated")


def test_vector_72_same_port_shares_nodeport(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}))
    assert s.spec.ports[0].node_port == s.spec.ports[1].node_port != 0


def test_vector_74_validate_service_duplicate_nodeport() -> None:
    s = default_service(Service.from_manifest(svc({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}]})))
    s = s.evolve_spec(ip_family_policy="SingleStack", ip_families=("IPv4",),
                      cluster_ip="10.96.0.5", cluster_ips=("10.96.0.5",))
    assert [str(e) for e in validate_service(s)] == ["spec.ports[1].nodePort: Duplicate value: 30080"]


def test_vector_75_lb_without_nodeports(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": P80}))
    assert s.spec.ports[0].node_port == 0
    assert allocator_state(cluster).node_ports.used_count == 0


def test_vector_76_health_check_node_port(cluster: Cluster) -> None:
    s = create(cluster, svc(LB_LOCAL, name="lb"))
    assert 30086 <= s.spec.health_check_node_port <= 32767
    create(cluster, svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="np"))
    assert create_error(cluster, svc({**LB_LOCAL, "healthCheckNodePort": 30080})) == (
        "Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: "
        "provided port is already allocated")


def test_vector_77_nodeport_range_full() -> None:
    c = small(node_port_range=(30000, 30003))
    for i in range(4):
        create(c, svc({"type": "NodePort", "ports": P80}, name=f"s{i}"))
    assert create_error(c, svc({"type": "NodePort", "ports": P80})) == (
        "Internal error occurred: failed to allocate a nodePort: range is full")


def test_update_duplicate_node_port_is_a_raw_500(cluster: Cluster) -> None:
    create(cluster, svc({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                                      {"name": "b", "port": 81}]}))
    with pytest.raises(InternalError) as info:
        update(cluster, svc({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30080},
            {"name": "b", "port": 81, "nodePort": 30080}]}))
    # Not an API status: the apiserver returns the Go error text alone (HTTP 500).
    assert str(info.value) == "duplicate nodePort: {TCP 30080}"


def test_update_nodeports_do_not_share_by_port_number(cluster: Cluster) -> None:
    create(cluster, svc({"type": "ClusterIP", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}))
    s = update(cluster, svc({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}))
    a, b = (p.node_port for p in s.spec.ports)
    assert a and b and a != b  # updateNodePorts allocates each port on its own


def test_health_check_dynamic_full() -> None:
    c = small(node_port_range=(30000, 30000))
    create(c, svc({"type": "NodePort", "ports": P80}, name="takes-the-only-port"))
    assert create_error(c, svc({**LB_LOCAL, "allocateLoadBalancerNodePorts": False})) == (
        "Internal error occurred: failed to allocate a HealthCheck NodePort 0: range is full")


def test_upgrade_to_dual_stack(dual: Cluster) -> None:
    s = create(dual, svc({"ports": P80}))
    assert s.spec.ip_families == ("IPv4",)
    up = update(dual, svc({"ports": P80, "ipFamilyPolicy": "RequireDualStack"}))
    assert up.spec.ip_families == ("IPv4", "IPv6")
    assert up.spec.cluster_ips[0] == s.spec.cluster_ip
    assert allocator_state(dual).ip["IPv6"].has(up.spec.cluster_ips[1])


def test_prefer_dual_stack_not_upgraded_by_reapply(dual: Cluster) -> None:
    # Created PreferDualStack: the dual cluster gives both families at creation ...
    s = create(dual, svc({"ports": P80, "ipFamilyPolicy": "PreferDualStack"}))
    assert len(s.spec.cluster_ips) == 2
    # ... and an unchanged re-apply keeps them as they are.
    again = update(dual, svc({"ports": P80, "ipFamilyPolicy": "PreferDualStack",
                              "clusterIP": s.spec.cluster_ip,
                              "clusterIPs": list(s.spec.cluster_ips),
                              "ipFamilies": list(s.spec.ip_families)}))
    assert again.spec.cluster_ips == s.spec.cluster_ips


def test_ipv6_primary_cluster() -> None:
    c = small("fd00:10:96::/108")
    assert create_error(c, svc({"ports": P80, "clusterIP": "10.96.0.5"})) == (
        'Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.5"}: '
        "IPv4 is not configured on this cluster")


# --------------------------------------------------------------------------- delete / rebuild


def test_delete_releases_everything(cluster: Cluster) -> None:
    s = create(cluster, svc({**LB_LOCAL, "clusterIP": "10.96.0.30"}))
    state = allocator_state(cluster)
    assert state.node_ports.used_count == 2
    cluster.delete("Service", "foo")
    assert state.node_ports.used_count == 0 and not state.ip["IPv4"].has(s.spec.cluster_ip)


def test_rebuild_rederives_allocators(cluster: Cluster) -> None:
    s = create(cluster, svc({"type": "NodePort", "ports": P80}))
    cluster.rebuild()
    state = allocator_state(cluster)
    assert state.ip["IPv4"].has(s.spec.cluster_ip) and state.ip["IPv4"].has("10.96.0.1")
    assert state.node_ports.has(s.spec.ports[0].node_port)


def test_transaction_rollback_restores_allocators(cluster: Cluster) -> None:
    with pytest.raises(RuntimeError), cluster.transaction():
        create(cluster, svc({"ports": P80, "clusterIP": "10.96.0.40"}))
        raise RuntimeError("abort")
    assert not allocator_state(cluster).ip["IPv4"].has("10.96.0.40")


def test_same_seed_same_addresses() -> None:
    a, b = make_cluster(), make_cluster()
    for c in (a, b):
        for i in range(5):
            create(c, svc({"type": "NodePort", "ports": P80}, name=f"s{i}"))
    assert [s.to_manifest()["spec"] for s in a.list("Service")] == [
        s.to_manifest()["spec"] for s in b.list("Service")]


# --------------------------------------------------------------------------- properties

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kservice.testing.services import invalid_service_manifests, service_manifests  # noqa: E402


def _counts(c: Cluster) -> tuple[int, ...]:
    state = allocator_state(c)
    return (state.node_ports.used_count,
            *(m.primary().used_count for _, m in sorted(state.ip.items())))


@pytest.mark.parametrize("config", [ClusterConfig(), DUAL], ids=["single", "dual"])
@given(data=st.data())
def test_valid_manifests_round_trip(config: ClusterConfig, data: st.DataObject) -> None:
    c = make_cluster(config)
    manifest = data.draw(service_manifests(dual_stack=config.dual_stack))
    before = _counts(c)
    s = create(c, manifest)
    # What is stored passes validation as is, and its allocations are in range.
    assert validate_service(s) == []
    state = allocator_state(c)
    for fam, ip in zip(s.spec.ip_families, s.spec.cluster_ips, strict=False):
        if ip != "None":
            assert state.ip[fam].has(ip)
    for p in s.spec.ports:
        assert p.node_port == 0 or 30000 <= p.node_port <= 32767
    # Re-applying the creation manifest changes nothing (patchAllocatedValues).
    rv = c.resource_version
    assert update(c, manifest) == s and c.resource_version == rv
    c.delete("Service", s.metadata.name)
    assert _counts(c) == before


@given(case=invalid_service_manifests())
def test_invalid_manifests_name_the_field(case: tuple[dict[str, Any], str, str]) -> None:
    manifest, field, _desc = case
    c = make_cluster()
    before = _counts(c)
    with pytest.raises(InvalidObject) as info:
        create(c, manifest)
    assert any(e.field == field for e in info.value.errors), (field, str(info.value))
    assert _counts(c) == before


def _holdings(c: Cluster) -> tuple[list[int], dict[str, list[str]]]:
    state = allocator_state(c)
    return (state.node_ports.used(),
            {fam: sorted(m.owner) for fam, m in sorted(state.ip.items())})


@pytest.mark.parametrize("config", [DEFAULT_CLUSTER_CONFIG, DUAL], ids=["single", "dual"])
@given(data=st.data())
def test_allocators_always_match_the_store(config: ClusterConfig, data: st.DataObject) -> None:
    """After any sequence of creates, re-applies, type edits and deletes -- failed ones
    included -- the live allocators hold exactly what a rebuild from the store derives."""
    c = make_cluster(config)
    names = st.sampled_from(["a", "b", "c"])
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["create", "update", "delete"]))
        manifest = data.draw(service_manifests(names=names, dual_stack=config.dual_stack))
        name = manifest["metadata"]["name"]
        try:
            if op == "create":
                create(c, manifest)
            elif op == "update" and c.find("Service", name) is not None:
                update(c, manifest)
            elif op == "delete" and c.find("Service", name) is not None:
                c.delete("Service", name)
        except (InvalidObject, InternalError):
            pass  # refused writes must leave no trace; checked below
        except Exception as e:  # AlreadyExists on create is fine too
            from kservice.errors import AlreadyExists
            assert isinstance(e, AlreadyExists), e
        live = _holdings(c)
        c.rebuild()
        assert _holdings(c) == live
