"""ValidateService / ValidateServiceUpdate / ClusterIPs-related fields as pure functions.

Expected strings come from the reference (§1.2-§1.4) and upstream's validators; the cases
here cover rules the API vectors cannot reach (defaulting or allocation runs first there).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from kservice import Service
from kservice.api import (
    default_service,
    validate_service,
    validate_service_cidr,
    validate_service_cluster_ips_related_fields,
    validate_service_update,
)
from kservice.api._names import (
    is_dns1123_label,
    is_qualified_name,
    is_valid_port_name,
    parse_ip_sloppy,
)
from kservice.api.servicecidr import ServiceCIDR


def model(spec: dict[str, Any], name: str = "foo", **meta: Any) -> Service:
    """A defaulted Service as the registry would hand it to validation (IPs allocated)."""
    s = default_service(Service.from_manifest({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", **meta}, "spec": spec}))
    if s.spec.type != "ExternalName":
        changes: dict[str, Any] = {}
        if s.spec.ip_family_policy is None:
            changes["ip_family_policy"] = "SingleStack"
        if not s.spec.ip_families:
            changes["ip_families"] = ("IPv4",)
        if not s.spec.cluster_ip:
            changes["cluster_ip"] = "10.96.0.5"
            changes["cluster_ips"] = ("10.96.0.5",)
        s = s.evolve_spec(**changes)
    return s


def errors(svc: Service) -> list[str]:
    return [str(e) for e in validate_service(svc)]


P80 = [{"port": 80}]


def test_valid_services_have_no_errors() -> None:
    assert errors(model({"ports": P80, "selector": {"app": "a"}})) == []
    assert errors(model({"type": "ExternalName", "externalName": "db.example.com"})) == []
    lb = model({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": P80})
    assert errors(lb.evolve_spec(health_check_node_port=31000)) == []


def test_missing_name_and_namespace() -> None:
    s = model({"ports": P80}, name="")
    s = attrs.evolve(s, metadata=attrs.evolve(s.metadata, namespace=""))
    assert errors(s)[:2] == ["metadata.name: Required value: name or generateName is required",
                             "metadata.namespace: Required value"]


def test_name_too_long() -> None:
    assert errors(model({"ports": P80}, name="a" * 64))[0] == (
        f'metadata.name: Invalid value: "{"a" * 64}": must be no more than 63 characters')


def test_topology_annotations_must_agree() -> None:
    s = model({"ports": P80}, annotations={"service.kubernetes.io/topology-mode": "Auto",
                                           "service.kubernetes.io/topology-aware-hints": "auto"})
    assert errors(s) == [
        'metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Auto": must '
        "match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"]


def test_headless_needs_no_ports() -> None:
    s = model({"clusterIP": "None", "clusterIPs": ["None"]})
    assert errors(s) == []


def test_external_name_rules() -> None:
    s = model({"type": "ExternalName", "externalName": "Bad_Name"})
    assert errors(s) == [
        'spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must '
        "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    s = model({"type": "ExternalName", "externalName": "."})
    assert errors(s) == ["spec.externalName: Required value"]
    s = model({"type": "ExternalName", "externalName": "x.example.com"}).evolve_spec(
        ip_families=("IPv4",), ip_family_policy="SingleStack")
    assert errors(s) == ["spec.ipFamilies: Forbidden: may not be set for ExternalName services",
                         "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]
    # An IPv4 literal passes the subdomain regex, as upstream.
    assert errors(model({"type": "ExternalName", "externalName": "10.0.0.1"})) == []


def test_port_name_with_dots() -> None:
    assert errors(model({"ports": [{"name": "a.b", "port": 80}]})) == [
        'spec.ports[0].name: Invalid value: "a.b": must not contain dots']


def test_target_port_rules_in_order() -> None:
    assert is_valid_port_name("-a--b_") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must not contain consecutive hyphens",
        "must not begin or end with a hyphen",
    ]
    assert is_valid_port_name("http") == []


def test_app_protocol_is_a_qualified_name() -> None:
    assert errors(model({"ports": [{"port": 80, "appProtocol": "kubernetes.io/h2c"}]})) == []
    errs = errors(model({"ports": [{"port": 80, "appProtocol": "a/b/c"}]}))
    assert errs[0].startswith('spec.ports[0].appProtocol: Invalid value: "a/b/c": a qualified name must consist of')


def test_selector_labels() -> None:
    errs = errors(model({"ports": P80, "selector": {"app": "bad value"}}))
    assert errs == [
        'spec.selector: Invalid value: "bad value": a valid label must be an empty string or '
        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]


def test_qualified_name_prefix() -> None:
    assert is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert is_qualified_name("example.com/") == ["name part must be non-empty",
                                                 is_qualified_name("example.com/")[1]]


def test_session_affinity_rules() -> None:
    s = model({"ports": P80}).evolve_spec(session_affinity="Sticky")
    assert errors(s) == ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
                         '"ClientIP", "None"']
    s = model({"ports": P80}).evolve_spec(session_affinity="ClientIP", session_affinity_config=None)
    assert errors(s) == ["spec.sessionAffinityConfig: Required value: when session affinity "
                         "type is ClientIP"]
    cfg = default_service(Service.from_manifest({"spec": {"sessionAffinity": "ClientIP"}})).spec
    s = model({"ports": P80}).evolve_spec(session_affinity_config=cfg.session_affinity_config)
    assert errors(s) == ["spec.sessionAffinityConfig: Forbidden: must not be set when session "
                         "affinity is None"]


@pytest.mark.parametrize(("ip", "detail"), [
    ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
    ("::", "may not be unspecified (::)"),
    ("::1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("169.254.1.1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    ("fe80::1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    ("224.0.0.5", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
    ("ff02::1", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
    ("::ffff:127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
])
def test_external_ips_non_special(ip: str, detail: str) -> None:
    assert errors(model({"ports": P80, "externalIPs": [ip]})) == [
        f'spec.externalIPs[0]: Invalid value: "{ip}": {detail}']


def test_external_ip_sloppy_leading_zeros_accepted() -> None:
    assert parse_ip_sloppy("010.001.002.003") is not None
    assert errors(model({"ports": P80, "externalIPs": ["203.000.113.010"]})) == []


def test_load_balancer_source_ranges() -> None:
    s = model({"type": "LoadBalancer", "ports": P80,
               "loadBalancerSourceRanges": [" 10.0.0.0/8 ", "10.0.0.0/33"]})
    assert errors(s) == ['spec.LoadBalancerSourceRanges[1]: Invalid value: "10.0.0.0/33": must '
                         "be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    key = "service.beta.kubernetes.io/load-balancer-source-ranges"
    s = model({"ports": P80}, annotations={key: "10.0.0.0/8, bogus"})
    assert errors(s) == [
        f"metadata.annotations[{key}]: Forbidden: may only be used when `type` is 'LoadBalancer'",
        f'metadata.annotations[{key}]: Invalid value: "bogus": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]


def test_load_balancer_only_fields() -> None:
    s = model({"ports": P80}).evolve_spec(allocate_load_balancer_node_ports=True,
                                          load_balancer_class="a.io/x")
    assert errors(s) == [
        "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
        "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"]
    lb = model({"type": "LoadBalancer", "ports": P80}).evolve_spec(
        allocate_load_balancer_node_ports=None)
    # Upstream's path lacks "spec." -- kept verbatim.
    assert errors(lb) == ["allocateLoadBalancerNodePorts: Required value"]


def test_traffic_policy_requirements() -> None:
    s = model({"type": "NodePort", "ports": P80}).evolve_spec(
        external_traffic_policy=None, internal_traffic_policy=None)
    assert errors(s) == ["spec.externalTrafficPolicy: Required value",
                         "spec.internalTrafficPolicy: Required value"]
    s = model({"ports": P80}).evolve_spec(internal_traffic_policy="Nearby")
    assert errors(s) == ['spec.internalTrafficPolicy: Unsupported value: "Nearby": supported '
                         'values: "Cluster", "Local"']
    lb = model({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": P80})
    assert errors(lb) == ["spec.healthCheckNodePort: Required value"]
    assert errors(lb.evolve_spec(health_check_node_port=70000)) == [
        "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"]


def test_traffic_distribution_values_v134() -> None:
    for td in ("PreferClose", "PreferSameZone", "PreferSameNode"):
        assert errors(model({"ports": P80, "trafficDistribution": td})) == []


def test_duplicate_node_port_keyed_on_protocol() -> None:
    s = model({"type": "NodePort", "ports": [
        {"name": "a", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "b", "port": 53, "protocol": "TCP", "nodePort": 30053}]})
    assert errors(s) == []


# --------------------------------------------------------------------------- clusterIPs fields


def fields(**spec: Any) -> list[str]:
    s = Service().evolve_spec(type="ClusterIP", **spec)
    return [str(e) for e in validate_service_cluster_ips_related_fields(s)]


def test_cluster_ips_required_when_cluster_ip_set() -> None:
    assert fields(cluster_ip="10.96.0.1") == ["spec.clusterIPs: Required value"]


def test_none_must_be_alone() -> None:
    assert fields(cluster_ip="None", cluster_ips=("None", "10.96.0.1")) == [
        'spec.clusterIPs: Invalid value: []string{"None", "10.96.0.1"}: \'None\' must be the '
        "first and only value"]


def test_invalid_ip_stops_checks() -> None:
    assert fields(cluster_ip="10.96.0.1", cluster_ips=("10.96.0.1", "nope", "10.96.0.2")) == [
        'spec.clusterIPs[1]: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 '
        "or 2001:db8::ffff)",
        'spec.clusterIPs: Invalid value: []string{"10.96.0.1", "nope", "10.96.0.2"}: may only '
        "hold up to 2 values"]


def test_family_mismatch() -> None:
    assert fields(cluster_ip="fd00::5", cluster_ips=("fd00::5",), ip_families=("IPv4",)) == [
        'spec.clusterIPs[0]: Invalid value: "fd00::5": expected an IPv4 value as indicated by '
        "`ipFamilies[0]`"]
    assert fields(cluster_ip="10.0.0.1", cluster_ips=("10.0.0.1", "10.0.0.2"),
                  ip_families=("IPv4", "IPv6")) == [
        'spec.clusterIPs: Invalid value: []string{"10.0.0.1", "10.0.0.2"}: may specify no more '
        "than one IP for each IP family",
        'spec.clusterIPs[1]: Invalid value: "10.0.0.2": expected an IPv6 value as indicated by '
        "`ipFamilies[1]`"]


def test_bad_family_and_policy() -> None:
    assert fields(ip_families=("IPv5",), ip_family_policy="Dual") == [
        'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
        'spec.ipFamilyPolicy: Unsupported value: "Dual": supported values: "PreferDualStack", '
        '"RequireDualStack", "SingleStack"']


def test_external_name_skips_cluster_ip_fields() -> None:
    s = Service().evolve_spec(type="ExternalName", cluster_ips=("x",))
    assert validate_service_cluster_ips_related_fields(s) == []


# --------------------------------------------------------------------------- update


def test_update_primary_unset_and_downgrade_policy() -> None:
    old = model({"ports": P80}).evolve_spec(
        cluster_ip="10.96.0.5", cluster_ips=("10.96.0.5", "fd00::5"),
        ip_families=("IPv4", "IPv6"), ip_family_policy="RequireDualStack")
    new = old.evolve_spec(cluster_ips=("10.96.0.5",), ip_families=("IPv4",))
    errs = [str(e) for e in validate_service_update(new, old)]
    assert errs == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be set to \'SingleStack\' '
        "when releasing the secondary clusterIP",
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be set to \'SingleStack\' '
        "when releasing the secondary ipFamily"]
    unset = old.evolve_spec(cluster_ip=None, cluster_ips=(), ip_families=("IPv4",),
                            ip_family_policy="SingleStack")
    errs = [str(e) for e in validate_service_update(unset, old)]
    assert errs[0] == ("spec.clusterIPs[0]: Invalid value: []string(nil): primary clusterIP "
                       "can not be unset")
    assert 'spec.ipFamilies[0]: Invalid value: []core.IPFamily{"IPv4"}: primary ipFamily can not be unset' in errs


def test_update_family_change() -> None:
    old = model({"ports": P80})
    new = old.evolve_spec(ip_families=("IPv6",))
    errs = [str(e) for e in validate_service_update(new, old)]
    assert errs[0] == ('spec.ipFamilies[0]: Invalid value: []core.IPFamily{"IPv6"}: may not '
                       "change once set")


def test_update_headless_families_free() -> None:
    old = model({"clusterIP": "None", "clusterIPs": ["None"], "ports": P80})
    new = old.evolve_spec(ip_families=("IPv6",))
    assert validate_service_update(new, old) == []


# --------------------------------------------------------------------------- ServiceCIDR


def cidr(*cidrs: str, name: str = "extra") -> ServiceCIDR:
    return ServiceCIDR.from_manifest({"metadata": {"name": name}, "spec": {"cidrs": list(cidrs)}})


def test_service_cidr_validation() -> None:
    assert validate_service_cidr(cidr("10.0.0.0/24", "fd00::/64")) == []
    assert [str(e) for e in validate_service_cidr(cidr())] == [
        "spec.cidrs: Required value: at least one CIDR required"]
    assert [str(e) for e in validate_service_cidr(cidr("10.0.0.0/24", "fd00::/64", "10.1.0.0/24"))] == [
        'spec.cidrs: Invalid value: networking.ServiceCIDRSpec{CIDRs:[]string{"10.0.0.0/24", '
        '"fd00::/64", "10.1.0.0/24"}}: may only hold up to 2 values']
    assert [str(e) for e in validate_service_cidr(cidr("10.0.0.0/33"))] == [
        'spec.cidrs[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. '
        "10.9.8.0/24 or 2001:db8::/64)"]
    assert is_dns1123_label("x") == []


def test_service_cidr_update_only_single_to_dual() -> None:
    from kservice.api.servicecidr import validate_service_cidr_update

    old = cidr("10.0.0.0/24")
    assert validate_service_cidr_update(cidr("10.0.0.0/24", "fd00::/64"), old) == []
    assert [str(e) for e in validate_service_cidr_update(cidr("10.0.1.0/24"), old)] == [
        'spec.cidrs[0]: Invalid value: "10.0.1.0/24": field is immutable']
    two = cidr("10.0.0.0/24", "fd00::/64")
    assert [str(e) for e in validate_service_cidr_update(cidr("10.0.0.0/24"), two)] == [
        'spec.cidrs: Invalid value: []string{"10.0.0.0/24"}: field is immutable']


def test_service_warnings() -> None:
    from kservice.api import service_warnings

    s = model({"type": "LoadBalancer", "externalName": "x", "ports": P80,
                "externalIPs": ["010.1.2.3", "::ffff:1.2.3.4", "2001:DB8::1"],
                "loadBalancerSourceRanges": ["10.0.0.1/8"]},
               annotations={"service.kubernetes.io/topology-aware-hints": "auto"})
    assert service_warnings(s) == [
        "annotation service.kubernetes.io/topology-aware-hints is deprecated, please use "
        "service.kubernetes.io/topology-mode instead",
        'spec.externalIPs[0]: non-standard IP address "010.1.2.3" will be considered invalid '
        'in a future Kubernetes release: use "10.1.2.3"',
        'spec.externalIPs[1]: non-standard IP address "::ffff:1.2.3.4" will be considered '
        'invalid in a future Kubernetes release: use "1.2.3.4"',
        'spec.externalIPs[2]: IPv6 address "2001:DB8::1" should be in RFC 5952 canonical '
        'format ("2001:db8::1")',
        'spec.loadBalancerSourceRanges[0]: CIDR value "10.0.0.1/8" is ambiguous in this '
        'context (should be "10.0.0.0/8" or "10.0.0.1/32"?)',
        'spec.externalName is ignored when spec.type is not "ExternalName"',
    ]
    assert service_warnings(model({"ports": P80})) == []
