"""kservice.cli.printers: kubectl's tables, durations, -o yaml/json/name, describe."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from kservice.cli.printers import (
    PrintContext,
    TabWriter,
    describe_service,
    human_duration,
    print_objects,
    register_columns,
    service_external_ip,
    service_ports,
)
from kservice.models import Service

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def svc(name: str, spec: dict, *, ns: str = "default", age_s: int = 300, status=None) -> Service:
    created = (NOW - dt.timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    m = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
         "spec": spec}
    if status:
        m["status"] = status
    return Service.from_manifest(m)


KUBERNETES = svc("kubernetes", {"type": "ClusterIP", "clusterIP": "10.96.0.1",
                                "clusterIPs": ["10.96.0.1"],
                                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
                 age_s=5 * 86400 + 3 * 3600)
KUBE_DNS = svc("kube-dns", {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                            "clusterIPs": ["10.96.0.10"], "selector": {"k8s-app": "kube-dns"},
                            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                      {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                      {"name": "metrics", "port": 9153, "protocol": "TCP"}]},
               ns="kube-system", age_s=5 * 86400 + 3 * 3600)
MYAPP = svc("myapp", {"type": "NodePort", "clusterIP": "10.99.99.99",
                      "clusterIPs": ["10.99.99.99"], "selector": {"role": "canary", "app": "myapp"},
                      "ports": [{"name": "http", "port": 8080, "nodePort": 30080,
                                 "protocol": "TCP"}]}, age_s=182)


# apimachinery duration_test.go TestHumanDuration cases.
@pytest.mark.parametrize(("seconds", "want"), [
    (1, "1s"), (70, "70s"), (190, "3m10s"), (70 * 60, "70m"), (47 * 3600, "47h"),
    (49 * 3600, "2d1h"), ((8 * 24 + 2) * 3600, "8d"), ((367 * 24 + 2) * 3600, "367d"),
    ((365 * 2 * 24 + 25) * 3600, "2y1d"), ((365 * 8 * 24 + 2) * 3600, "8y"),
    (-1, "0s"), (-2, "<invalid>"), (0, "0s"), (119, "119s"), (120, "2m"), (600, "10m"),
    (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (8 * 3600 + 59 * 60, "8h"),
])
def test_human_duration(seconds: int, want: str) -> None:
    assert human_duration(seconds) == want


def test_tabwriter_blocks_like_go() -> None:
    # Go: a column block ends at a line without that column; the last cell is unpadded.
    text = "a:\tx\tlong-value\nbbbb:\ty\nc:\tzz\tq\n"
    assert TabWriter(minwidth=0, padding=2).format(text) == (
        "a:     x  long-value\n"
        "bbbb:  y\n"
        "c:     zz  q\n"
    )


def test_get_svc_all_namespaces_wide_exact_layout() -> None:
    out = print_objects([KUBERNETES, MYAPP, KUBE_DNS], output="wide",
                        ctx=PrintContext(now=NOW), all_namespaces=True)
    assert out == (
        "NAMESPACE     NAME         TYPE        CLUSTER-IP    EXTERNAL-IP   PORT(S)                  AGE    SELECTOR\n"
        "default       kubernetes   ClusterIP   10.96.0.1     <none>        443/TCP                  5d3h   <none>\n"
        "default       myapp        NodePort    10.99.99.99   <none>        8080:30080/TCP           3m2s   app=myapp,role=canary\n"
        "kube-system   kube-dns     ClusterIP   10.96.0.10    <none>        53/UDP,53/TCP,9153/TCP   5d3h   k8s-app=kube-dns\n"
    )


def test_get_svc_plain_table_has_no_selector() -> None:
    out = print_objects([KUBERNETES], output=None, ctx=PrintContext(now=NOW))
    assert out.splitlines()[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP",
                                           "PORT(S)", "AGE"]
    assert out == ("NAME         TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\n"
                   "kubernetes   ClusterIP   10.96.0.1    <none>        443/TCP   5d3h\n")


def test_external_ip_column() -> None:
    lb = svc("lb", {"type": "LoadBalancer", "ports": [{"port": 80}]})
    assert service_external_ip(lb, False) == "<pending>"
    lb2 = svc("lb", {"type": "LoadBalancer", "ports": [{"port": 80}], "externalIPs": ["192.0.2.7"]},
              status={"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}, {"hostname": "a.example"}]}})
    assert service_external_ip(lb2, True) == "172.18.255.200,a.example,192.0.2.7"
    many = svc("lb", {"type": "LoadBalancer", "ports": [{"port": 80}]},
               status={"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}, {"ip": "172.18.255.201"}]}})
    assert service_external_ip(many, False) == "172.18.255.20..."  # loadBalancerWidth 16: 13 + "..."
    ext = svc("db", {"type": "ExternalName", "externalName": "db.example.com"})
    assert service_external_ip(ext, False) == "db.example.com"
    cip = svc("c", {"type": "ClusterIP", "externalIPs": ["192.0.2.1", "192.0.2.2"]})
    assert service_external_ip(cip, False) == "192.0.2.1,192.0.2.2"


def test_ports_and_headless_and_externalname_rows() -> None:
    headless = svc("h", {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                         "ports": [{"port": 80, "protocol": "TCP"}]}, age_s=10)
    ext = svc("db", {"type": "ExternalName", "externalName": "db.example.com"}, age_s=10)
    out = print_objects([headless, ext], output=None, ctx=PrintContext(now=NOW))
    assert out.splitlines()[1].split() == ["h", "ClusterIP", "None", "<none>", "80/TCP", "10s"]
    assert out.splitlines()[2].split() == ["db", "ExternalName", "<none>", "db.example.com",
                                           "<none>", "10s"]
    assert service_ports(MYAPP) == "8080:30080/TCP"


def test_output_name_yaml_json() -> None:
    ctx = PrintContext(now=NOW)
    assert print_objects([KUBERNETES, MYAPP], output="name", ctx=ctx) == (
        "service/kubernetes\nservice/myapp\n")
    one = yaml.safe_load(print_objects([MYAPP], output="yaml", ctx=ctx, single=True))
    assert one["kind"] == "Service" and one["spec"]["ports"][0]["nodePort"] == 30080
    lst = json.loads(print_objects([KUBERNETES, MYAPP], output="json", ctx=ctx))
    assert lst["kind"] == "List" and lst["metadata"] == {"resourceVersion": ""}
    assert [i["metadata"]["name"] for i in lst["items"]] == ["kubernetes", "myapp"]
    text = print_objects([MYAPP], output="json", ctx=ctx, single=True)
    assert text.startswith('{\n    "apiVersion": "v1",')  # kubectl indents JSON by 4


def test_yaml_quotes_like_go() -> None:
    s = svc("q", {"ports": [{"port": 80}]})
    s = Service.from_manifest({**s.to_manifest(), "metadata": {
        "name": "q", "annotations": {"prometheus.io/port": "9153", "x": "true"}}})
    text = print_objects([s], output="yaml", ctx=PrintContext(now=NOW), single=True)
    assert 'prometheus.io/port: "9153"' in text and 'x: "true"' in text


def test_registered_columns_and_fallback() -> None:
    class Thing:
        kind = "Widget"

        def __init__(self, name: str) -> None:
            self.metadata = KUBERNETES.metadata.__class__(
                name=name, namespace="default",
                creation_timestamp=KUBERNETES.metadata.creation_timestamp)

    out = print_objects([Thing("w")], output=None, ctx=PrintContext(now=NOW))
    assert out.split() == ["NAME", "AGE", "w", "5d3h"]
    register_columns("Widget", lambda o, ctx: [o.metadata.name, "7"], headers=("NAME", "SIZE"))
    out = print_objects([Thing("w")], output=None, ctx=PrintContext(now=NOW))
    assert out.split() == ["NAME", "SIZE", "w", "7"]


def test_describe_service_layout() -> None:
    s = svc("myapp", {"type": "NodePort", "clusterIP": "10.99.99.99", "clusterIPs": ["10.99.99.99"],
                      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                      "selector": {"app": "myapp"}, "sessionAffinity": "None",
                      "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                      "ports": [{"name": "http", "port": 8080, "targetPort": "http",
                                 "nodePort": 30080, "protocol": "TCP"}]})
    slices = [{"ports": [{"name": "http", "port": 9376}],
               "endpoints": [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": i != 2}}
                             for i in range(1, 7)]}]
    out = describe_service(s, slices)
    assert out == (
        "Name:                     myapp\n"
        "Namespace:                default\n"
        "Labels:                   <none>\n"
        "Annotations:              <none>\n"
        "Selector:                 app=myapp\n"
        "Type:                     NodePort\n"
        "IP Family Policy:         SingleStack\n"
        "IP Families:              IPv4\n"
        "IP:                       10.99.99.99\n"
        "IPs:                      10.99.99.99\n"
        "Port:                     http  8080/TCP\n"
        "TargetPort:               http/TCP\n"
        "NodePort:                 http  30080/TCP\n"
        "Endpoints:                10.244.1.1:9376,10.244.1.3:9376,10.244.1.4:9376 + 2 more...\n"
        "Session Affinity:         None\n"
        "External Traffic Policy:  Cluster\n"
        "Internal Traffic Policy:  Cluster\n"
        "Events:                   <none>\n"
    )


@pytest.mark.parametrize(("selector", "labels", "want"), [
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app!=web", {}, True),  # != matches objects without the key, as upstream
    ("app=web,tier=fe", {"app": "web"}, False),
    ("env in (a, b)", {"env": "b"}, True),
    ("env notin (a,b)", {"env": "c"}, True),
    ("env notin (a,b)", {}, True),
    ("env", {"env": ""}, True),
    ("!env", {"env": "x"}, False),
    ("app.kubernetes.io/name=x", {"app.kubernetes.io/name": "x"}, True),
])
def test_label_selector(selector: str, labels: dict, want: bool) -> None:
    from kservice.cli.printers import parse_selector

    assert parse_selector(selector)(labels) is want


def test_label_selector_errors() -> None:
    from kservice.cli.printers import parse_selector
    from kservice.errors import InvalidInput

    with pytest.raises(InvalidInput):
        parse_selector("a=b,,c")
    with pytest.raises(InvalidInput):
        parse_selector("a ~ b")


def test_jsonpath_subset() -> None:
    from kservice.cli.printers import jsonpath

    data = MYAPP.to_manifest()
    assert jsonpath("{.spec.clusterIP}", data) == "10.99.99.99"
    assert jsonpath("{.spec.ports[0].nodePort}/{.spec.ports[*].name}", data) == "30080/http"
    assert jsonpath("{.spec.selector}", data) == '{"app":"myapp","role":"canary"}'
    assert jsonpath("ip={.spec.clusterIPs[-1]}", data) == "ip=10.99.99.99"


def test_show_labels_column() -> None:
    labelled = Service.from_manifest({**KUBERNETES.to_manifest(), "metadata": {
        **KUBERNETES.to_manifest()["metadata"], "labels": {"provider": "kubernetes",
                                                          "component": "apiserver"}}})
    out = print_objects([labelled], output=None, ctx=PrintContext(now=NOW), show_labels=True)
    assert out.splitlines()[0].split()[-1] == "LABELS"
    assert out.splitlines()[1].split()[-1] == "component=apiserver,provider=kubernetes"
