"""What ``kubectl get`` and ``kubectl describe`` print, reproduced.

* :class:`TabWriter` -- Go's ``text/tabwriter`` (column blocks, padding, the last cell of a
  line never padded), with kubectl's settings: tables use minwidth 6, padding 3
  (``printers.GetNewTabWriter``); describe uses minwidth 0, padding 2 (``tabbedString``).
* :func:`human_duration` -- apimachinery ``duration.HumanDuration`` (the AGE column).
* A per-kind column registry (:func:`register_columns`) holding kubectl's
  ``TableConvertor`` columns; Services are registered here (``printService``), other
  components register theirs. A kind with no provider gets kubectl's fallback
  ``NAME AGE``.
* :data:`RESOURCES` -- resource names, short names and groups (``svc``, ``deploy``,
  ``deployment.apps`` ...) as kubectl's discovery offers them.
* ``-o yaml|json|name`` in kubectl's shapes (sorted keys, a ``List`` for several objects,
  ``service/foo`` names).
* :func:`describe_service` -- ``kubectl describe service`` (``describeService``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import yaml

from kservice.errors import InvalidInput

__all__ = [
    "RESOURCES",
    "ColumnProvider",
    "PrintContext",
    "ResourceType",
    "TabWriter",
    "describe_service",
    "format_labels",
    "human_duration",
    "jsonpath",
    "parse_selector",
    "print_objects",
    "register_columns",
    "resolve_resource",
    "service_ports",
]


# --------------------------------------------------------------------------- tabwriter


class TabWriter:
    """Go's text/tabwriter with the space pad character and no flags.

    Cells are tab-terminated; the text after a line's last tab is not part of any column.
    A column's width is set per *block* of consecutive lines that have a cell in it.
    """

    def __init__(self, minwidth: int = 6, padding: int = 3) -> None:
        self.minwidth = minwidth
        self.padding = padding

    def format(self, text: str) -> str:
        trailing = text.endswith("\n")
        raw = text[:-1].split("\n") if trailing else text.split("\n")
        self._lines = [line.split("\t") for line in raw]
        self._out: list[str] = []
        self._widths: list[int] = []
        self._format(0, len(self._lines))
        return "\n".join(self._out) + ("\n" if trailing else "")

    def _write_lines(self, line0: int, line1: int) -> None:
        for cells in self._lines[line0:line1]:
            parts = []
            for j, c in enumerate(cells):
                if j < len(self._widths) and j < len(cells) - 1:
                    parts.append(c + " " * max(0, self._widths[j] - len(c)))
                else:
                    parts.append(c)
            self._out.append("".join(parts))

    def _format(self, line0: int, line1: int) -> None:
        column = len(self._widths)
        this = line0
        while this < line1:
            if column >= len(self._lines[this]) - 1:
                this += 1
                continue
            self._write_lines(line0, this)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(self._lines[this]) - 1:
                width = max(width, len(self._lines[this][column]) + self.padding)
                this += 1
            self._widths.append(width)
            self._format(line0, this)
            self._widths.pop()
            line0 = this
        self._write_lines(line0, line1)


def table(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's table: cells joined by tabs, aligned by the table tabwriter."""
    text = "".join("\t".join(r) + "\n" for r in rows)
    return TabWriter(minwidth=6, padding=3).format(text)


# --------------------------------------------------------------------------- durations


def human_duration(seconds: float) -> str:
    """apimachinery ``duration.HumanDuration`` (the AGE column of ``kubectl get``)."""
    s = int(seconds)  # Go's int(d.Seconds()) truncates toward zero
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_timestamp(ts: str | None) -> _dt.datetime | None:
    if not ts:
        return None
    try:
        return _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None


# --------------------------------------------------------------------------- context


@attrs.frozen
class PrintContext:
    """What a column provider may use besides the object itself."""

    now: _dt.datetime
    wide: bool = False
    #: The cluster (for columns that look at other objects, e.g. a Service's endpoints).
    cluster: Any = None

    def age(self, obj: Any) -> str:
        """kubectl's ``translateTimestampSince`` of the object's creationTimestamp."""
        created = parse_timestamp(obj.metadata.creation_timestamp)
        if created is None:
            return "<unknown>"
        return human_duration((self.now - created).total_seconds())


ColumnFn = Callable[[Any, PrintContext], Sequence[str]]


@attrs.frozen
class ColumnProvider:
    headers: tuple[str, ...]
    #: Extra columns ``-o wide`` adds at the end.
    wide_headers: tuple[str, ...]
    #: Cells for ``headers`` (+ ``wide_headers`` when ``ctx.wide``).
    row: ColumnFn


_COLUMNS: dict[str, ColumnProvider] = {}


def register_columns(
    kind: str, fn: ColumnFn, *, headers: Sequence[str], wide_headers: Sequence[str] = (),
) -> None:
    """Register kubectl's table columns for ``kind`` (headers in upper case)."""
    _COLUMNS[kind] = ColumnProvider(tuple(headers), tuple(wide_headers), fn)


def columns_for(kind: str) -> ColumnProvider:
    return _COLUMNS.get(kind) or ColumnProvider(
        ("NAME", "AGE"), (), lambda o, ctx: (o.metadata.name, ctx.age(o))
    )


# --------------------------------------------------------------------------- resources


@attrs.frozen
class ResourceType:
    kind: str
    #: Plural resource name (``services``).
    resource: str
    #: API group; ``""`` for core.
    group: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """What ``-o name`` prints before the slash: ``service``, ``deployment.apps``."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    def names(self) -> tuple[str, ...]:
        out = [self.resource, self.singular, *self.short_names]
        if self.group:
            out += [f"{self.resource}.{self.group}", f"{self.singular}.{self.group}"]
        return tuple(out)


# kubectl api-resources (v1.34) for the kinds kservice models.
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("Service", "services", "", ("svc",)),
    ResourceType("Endpoints", "endpoints", "", ("ep",)),
    ResourceType("Node", "nodes", "", ("no",)),
    ResourceType("Pod", "pods", "", ("po",)),
    ResourceType("Namespace", "namespaces", "", ("ns",)),
    ResourceType("Deployment", "deployments", "apps", ("deploy",)),
    ResourceType("ReplicaSet", "replicasets", "apps", ("rs",)),
    ResourceType("StatefulSet", "statefulsets", "apps", ("sts",)),
    ResourceType("DaemonSet", "daemonsets", "apps", ("ds",)),
    ResourceType("EndpointSlice", "endpointslices", "discovery.k8s.io", ()),
    ResourceType("Ingress", "ingresses", "networking.k8s.io", ("ing",)),
    ResourceType("IngressClass", "ingressclasses", "networking.k8s.io", ()),
    ResourceType("ServiceCIDR", "servicecidrs", "networking.k8s.io", ()),
    ResourceType("IPAddress", "ipaddresses", "networking.k8s.io", ("ip",)),
)


def resource_for_kind(kind: str, cluster: Any = None) -> ResourceType:
    for rt in RESOURCES:
        if rt.kind == kind:
            return rt
    resource = kind.lower() + "s"
    group = ""
    if cluster is not None:
        st = cluster.strategy(kind)
        resource = st.resource
        api_version = st.api_version
        group = api_version.split("/")[0] if "/" in api_version else ""
    return ResourceType(kind, resource, group)


def resolve_resource(name: str, cluster: Any) -> ResourceType:
    """A resource argument (``svc``, ``services``, ``deployment.apps``...) to its type."""
    key = name.lower()
    for rt in RESOURCES:
        if key in rt.names():
            return rt
    for kind in cluster.kinds:
        rt = resource_for_kind(kind, cluster)
        if key in rt.names():
            return rt
    raise InvalidInput(f'the server doesn\'t have a resource type "{name}"')


# --------------------------------------------------------------------------- output


class _KubeDumper(yaml.SafeDumper):
    """YAML like sigs.k8s.io/yaml: double quotes where quoting is needed, block literals
    for multi-line strings, sequences not indented under their key."""

    def choose_scalar_style(self) -> Any:
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_KubeDumper.add_representer(str, _str_representer)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_KubeDumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=1 << 30)


def to_json(data: Any) -> str:
    # Go's encoding/json escapes <, > and & (HTML-safe) and indents by 4 in kubectl.
    text = json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def as_list(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": manifests, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def print_objects(
    objs: Sequence[Any], *, output: str | None, ctx: PrintContext, all_namespaces: bool = False,
    single: bool = False, cluster: Any = None, show_labels: bool = False,
    no_headers: bool = False,
) -> str:
    """Render ``objs`` as ``kubectl get`` does for ``-o output`` (None = table).

    ``no_headers`` drops the header row; the columns are then as wide as the cells alone
    need, as kubectl's tabwriter computes them without the header line.
    """
    if output in ("yaml", "json"):
        manifests = [o.to_manifest() for o in objs]
        data = manifests[0] if single and manifests else as_list(manifests)
        return to_yaml(data) if output == "yaml" else to_json(data)
    if output is not None and output.startswith("jsonpath="):
        manifests = [o.to_manifest() for o in objs]
        data = manifests[0] if single and manifests else as_list(manifests)
        return jsonpath(output[len("jsonpath="):], data)
    if output == "name":
        return "".join(
            f"{resource_for_kind(o.kind, cluster).qualified}/{o.metadata.name}\n" for o in objs
        )
    if output not in (None, "wide"):
        raise InvalidInput(
            f'unable to match a printer suitable for the output format "{output}", '
            "allowed formats are: json,jsonpath,name,wide,yaml"
        )
    if not objs:
        return ""
    wide = output == "wide"
    ctx = attrs.evolve(ctx, wide=wide)
    out: list[str] = []
    # kubectl prints one table per kind, separated by a blank line.
    kinds: list[str] = []
    for o in objs:
        if o.kind not in kinds:
            kinds.append(o.kind)
    for kind in kinds:
        cols = columns_for(kind)
        headers = list(cols.headers) + (list(cols.wide_headers) if wide else [])
        if all_namespaces:
            headers.insert(0, "NAMESPACE")
        if show_labels:
            headers.append("LABELS")
        rows: list[list[str]] = [headers]
        for o in objs:
            if o.kind != kind:
                continue
            width = len(headers) - (1 if all_namespaces else 0) - (1 if show_labels else 0)
            cells = list(cols.row(o, ctx))[:width]
            if all_namespaces:
                cells.insert(0, o.metadata.namespace)
            if show_labels:
                cells.append(format_labels(o.metadata.labels))
            rows.append(cells)
        if len(kinds) > 1:
            # Several kinds: names are qualified (`service/foo`) as kubectl does.
            rt = resource_for_kind(kind, cluster)
            idx = 1 if all_namespaces else 0
            for r in rows[1:]:
                r[idx] = f"{rt.qualified}/{r[idx]}"
        out.append(table(rows[1:] if no_headers else rows))
    return "\n".join(out)


# --------------------------------------------------------------------------- services


def format_labels(labels: Mapping[str, str] | None) -> str:
    """apimachinery ``labels.FormatLabels``: sorted ``k=v`` joined by commas, or <none>."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def service_ports(svc: Any) -> str:
    """``makePortString``: ``80:30080/TCP,443/TCP``."""
    pieces = []
    for p in svc.spec.ports:
        proto = p.protocol or "TCP"
        pieces.append(f"{p.port}:{p.node_port}/{proto}" if p.node_port > 0 else
                      f"{p.port}/{proto}")
    return ",".join(pieces)


LOAD_BALANCER_WIDTH = 16


def _lb_status(svc: Any, wide: bool) -> str:
    # loadBalancerStatusStringer: IPs else hostnames, as a sorted set.
    result = sorted({i.ip or i.hostname for i in svc.status.load_balancer_ingress
                     if i.ip or i.hostname})
    r = ",".join(result)
    if not wide and len(r) > LOAD_BALANCER_WIDTH:
        r = r[: LOAD_BALANCER_WIDTH - 3] + "..."
    return r


def service_external_ip(svc: Any, wide: bool) -> str:
    """``getServiceExternalIP``."""
    t = svc.spec.type or "ClusterIP"
    if t in ("ClusterIP", "NodePort"):
        return ",".join(svc.spec.external_ips) if svc.spec.external_ips else "<none>"
    if t == "LoadBalancer":
        lb = _lb_status(svc, wide)
        if svc.spec.external_ips:
            parts = (lb.split(",") if lb else []) + list(svc.spec.external_ips)
            return ",".join(parts)
        return lb or "<pending>"
    if t == "ExternalName":
        return svc.spec.external_name or ""
    return "<unknown>"


def _service_row(svc: Any, ctx: PrintContext) -> list[str]:
    internal = svc.spec.cluster_ips[0] if svc.spec.cluster_ips else "<none>"
    ports = service_ports(svc) or "<none>"
    row = [svc.metadata.name, svc.spec.type or "", internal,
           service_external_ip(svc, ctx.wide), ports, ctx.age(svc)]
    if ctx.wide:
        row.append(format_labels(svc.spec.selector))
    return row


register_columns(
    "Service", _service_row,
    headers=("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
    wide_headers=("SELECTOR",),
)


# --------------------------------------------------------------------------- networking.k8s.io

#: formatHosts lists at most this many hosts, then "+ N more...".
_MAX_HOSTS = 3


def ingress_hosts(rules: Sequence[Any]) -> str:
    """kubectl's ``formatHosts``: the first three non-empty hosts; ``*`` when none."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == _MAX_HOSTS:
            more = True
        if not more and rule.host:
            hosts.append(rule.host)
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - _MAX_HOSTS} more..." if more else text


def _ingress_row(ing: Any, ctx: PrintContext) -> list[str]:
    # printIngress: the class name, hosts, the load balancer's IPs/hostnames (a sorted set,
    # cut at 16 characters unless -o wide), and "80" or "80, 443" when TLS is configured.
    address = ",".join(sorted({i.ip or i.hostname for i in ing.load_balancer
                               if i.ip or i.hostname}))
    if not ctx.wide and len(address) > LOAD_BALANCER_WIDTH:
        address = address[: LOAD_BALANCER_WIDTH - 3] + "..."
    return [ing.metadata.name, ing.spec.ingress_class_name or "<none>",
            ingress_hosts(ing.spec.rules), address, "80, 443" if ing.spec.tls else "80",
            ctx.age(ing)]


def _ingress_class_row(ic: Any, ctx: PrintContext) -> list[str]:
    parameters = "<none>"
    if ic.parameters is not None:
        parameters = ic.parameters.kind
        if ic.parameters.api_group is not None:
            parameters += "." + ic.parameters.api_group
        parameters += "/" + ic.parameters.name
    return [ic.metadata.name, ic.controller, parameters, ctx.age(ic)]


def _service_cidr_row(sc: Any, ctx: PrintContext) -> list[str]:
    return [sc.metadata.name, ",".join(sc.cidrs), ctx.age(sc)]


register_columns("Ingress", _ingress_row,
                 headers=("NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"))
register_columns("IngressClass", _ingress_class_row,
                 headers=("NAME", "CONTROLLER", "PARAMETERS", "AGE"))
register_columns("ServiceCIDR", _service_cidr_row, headers=("NAME", "CIDRS", "AGE"))


# --------------------------------------------------------------------------- describe


def _multiline(title: str, items: Mapping[str, str], sep: str) -> list[str]:
    if not items:
        return [f"{title}:\t<none>"]
    out = []
    for i, k in enumerate(sorted(items)):
        line = f"{k}{sep}{items[k]}"
        out.append((f"{title}:\t" if i == 0 else "\t") + line)
    return out


MAX_ANNOTATION_LEN = 140
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _annotations(annotations: Mapping[str, str]) -> list[str]:
    # printAnnotationsMultiline: last-applied is skipped; long values are cut at 140.
    shown = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    lines = _multiline("Annotations", shown, ": ")
    out = []
    for line in lines:
        head, _, body = line.partition("\t")
        if len(body) > MAX_ANNOTATION_LEN and body != "<none>":
            body = body[:MAX_ANNOTATION_LEN] + "..."
        out.append(f"{head}\t{body}")
    return out


def _endpoint_text(slices: Sequence[Mapping[str, Any]], port_name: str) -> str:
    """kubectl's ``formatEndpointSlices`` for one service port (ready endpoints only)."""
    if not slices:
        return "<none>"
    listed: list[str] = []
    more = False
    count = 0
    limit = 3
    for s in slices:
        endpoints = s.get("endpoints") or []
        ports = s.get("ports") or []
        pairs: list[tuple[Mapping[str, Any], int | None]] = []
        if not ports:
            pairs = [(e, None) for e in endpoints]
        else:
            for p in ports:
                if (p.get("name") or "") == port_name:
                    pairs += [(e, p.get("port")) for e in endpoints]
        for e, port in pairs:
            if len(listed) == limit:
                more = True
            ready = (e.get("conditions") or {}).get("ready")
            if ready is False:
                continue
            if not more:
                addr = (e.get("addresses") or [""])[0]
                if port is None:
                    listed.append(addr)
                else:
                    listed.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
            count += 1
    ret = ",".join(listed)
    return f"{ret} + {count - limit} more..." if more else ret


def describe_service(svc: Any, endpoint_slices: Sequence[Mapping[str, Any]] = ()) -> str:
    """``kubectl describe service`` (kubectl v1.34 ``describeService``)."""
    spec = svc.spec
    meta = svc.metadata
    lines = [f"Name:\t{meta.name}", f"Namespace:\t{meta.namespace}"]
    lines += _multiline("Labels", meta.labels, "=")
    lines += _annotations(meta.annotations)
    lines.append(f"Selector:\t{format_labels(spec.selector)}")
    lines.append(f"Type:\t{spec.type or ''}")
    if spec.ip_family_policy:
        lines.append(f"IP Family Policy:\t{spec.ip_family_policy}")
    lines.append(f"IP Families:\t{','.join(spec.ip_families) if spec.ip_families else '<none>'}")
    lines.append(f"IP:\t{spec.cluster_ip or ''}")
    lines.append(f"IPs:\t{','.join(spec.cluster_ips) if spec.cluster_ips else '<none>'}")
    if spec.external_ips:
        lines.append(f"External IPs:\t{','.join(spec.external_ips)}")
    if spec.load_balancer_ip:
        lines.append(f"IP:\t{spec.load_balancer_ip}")
    if spec.external_name:
        lines.append(f"External Name:\t{spec.external_name}")
    if svc.status.load_balancer_ingress:
        parts = []
        for ing in svc.status.load_balancer_ingress:
            text = ing.ip or ing.hostname
            if ing.ip_mode:
                text += f" ({ing.ip_mode})"
            parts.append(text)
        lines.append(f"LoadBalancer Ingress:\t{', '.join(parts)}")
    for p in spec.ports:
        name = p.name or "<unset>"
        proto = p.protocol or "TCP"
        lines.append(f"Port:\t{name}\t{p.port}/{proto}")
        tp = p.target_port if p.target_port not in (0, "") else p.port
        lines.append(f"TargetPort:\t{tp}/{proto}")
        if p.node_port:
            lines.append(f"NodePort:\t{name}\t{p.node_port}/{proto}")
        lines.append(f"Endpoints:\t{_endpoint_text(endpoint_slices, p.name)}")
    lines.append(f"Session Affinity:\t{spec.session_affinity or ''}")
    if spec.external_traffic_policy:
        lines.append(f"External Traffic Policy:\t{spec.external_traffic_policy}")
    if spec.internal_traffic_policy:
        lines.append(f"Internal Traffic Policy:\t{spec.internal_traffic_policy}")
    if spec.health_check_node_port:
        lines.append(f"HealthCheck NodePort:\t{spec.health_check_node_port}")
    if spec.load_balancer_source_ranges:
        lines.append(f"LoadBalancer Source Ranges:\t{','.join(spec.load_balancer_source_ranges)}")
    if spec.traffic_distribution:
        lines.append(f"Traffic Distribution:\t{spec.traffic_distribution}")
    lines.append("Events:\t<none>")
    return TabWriter(minwidth=0, padding=2).format("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- selectors


@attrs.frozen
class Requirement:
    """One clause of a label selector."""

    key: str
    #: ``=``, ``!=``, ``in``, ``notin``, ``exists`` or ``!`` (does not exist).
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # != and notin also match objects without the key, as apimachinery's do
        return labels.get(self.key) not in self.values


def parse_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A ``-l`` label selector (apimachinery ``labels.Parse`` grammar): ``a=b``, ``a==b``,
    ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, comma-separated (AND)."""
    import re

    parts: list[str] = []
    depth, cur = 0, ""
    for ch in text:  # split on the commas outside parentheses
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    reqs: list[Requirement] = []
    for raw in parts:
        part = raw.strip()
        if not part:
            raise InvalidInput(f'unable to parse requirement: found "" in selector "{text}"')
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part)
        if m:
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), values))
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", part)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, frozenset({m.group(3)})))
            continue
        m = re.fullmatch(r"(!?)\s*([\w./-]+)", part)
        if m:
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
            continue
        raise InvalidInput(f'unable to parse requirement "{part}" in selector "{text}"')
    return lambda labels: all(r.matches(labels) for r in reqs)


# --------------------------------------------------------------------------- jsonpath


def jsonpath(template: str, data: Any) -> str:
    """``-o jsonpath=...``, the subset scripts use: ``{.a.b}``, ``{.a[0]}``, ``{.items[*].x}``
    and literal text around them. Several results print space-separated, as kubectl does."""
    import re

    # kubectl's parser: an opening brace needs its closing one ("unclosed action").
    depth = 0
    for ch in template:
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth < 0 or depth > 1:
            break
    if depth != 0:
        raise InvalidInput(f"error parsing jsonpath {template}, unclosed action"
                           if depth > 0 else
                           f"error parsing jsonpath {template}, unexpected right delimiter")
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\{([^{}]*)\}", template):
        out.append(template[pos:m.start()])
        pos = m.end()
        expr = m.group(1).strip()
        if len(expr) >= 2 and expr[0] == expr[-1] == '"':
            # A quoted literal, {"\n"} or {"\t"}: JSON string escapes, as kubectl reads it.
            try:
                out.append(json.loads(expr))
            except ValueError:
                raise InvalidInput(f"error parsing jsonpath {template}, invalid string "
                                   f"{expr}") from None
            continue
        if not expr.startswith(".") and not expr.startswith("$"):
            raise InvalidInput(f'jsonpath "{expr}": only field paths such as {{.spec.clusterIP}} '
                               "are supported")
        if expr.count("[") != expr.count("]"):
            raise InvalidInput(f"error parsing jsonpath {template}, unterminated array")
        tokens = re.findall(r"\.([^.\[\]]+)|\[(\*|-?\d+)\]", expr.lstrip("$"))
        values = [data]
        for field, index in tokens:
            nxt: list[Any] = []
            for v in values:
                if field:
                    if isinstance(v, Mapping) and field in v:
                        nxt.append(v[field])
                elif index == "*":
                    nxt.extend(v if isinstance(v, list) else [])
                elif isinstance(v, list) and -len(v) <= int(index) < len(v):
                    nxt.append(v[int(index)])
            values = nxt
        if not values and tokens:
            raise InvalidInput(f"error executing jsonpath \"{template}\": {expr} is not found")
        out.append(" ".join(
            v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True)
            for v in values))
    out.append(template[pos:])
    return "".join(out)
