"""The built-in ``kservice`` subcommands (kubectl's verbs against the embedded cluster).

Each handler is ``func(args) -> int``; each opens one :func:`open_session` (one SQLite
transaction), so a failing command stores nothing. Output strings follow kubectl
v1.34's (``service/foo created``, ``service "foo" deleted from default namespace``,
``No resources found in default namespace.``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kservice.cli import printers
from kservice.cli.printers import LAST_APPLIED, PrintContext, resolve_resource
from kservice.cli.state import open_session
from kservice.cluster import Cluster
from kservice.errors import AlreadyExists, Conflict, InternalError, InvalidInput, NotFound
from kservice.manifest import (
    Document,
    decode_document,
    decode_documents,
    load_files,
    strategy_for,
)
from kservice.patch import apply_patch, three_way_merge

__all__ = ["apply_documents", "register"]

Handler = Callable[[argparse.Namespace], int]
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _out(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# --------------------------------------------------------------------------- helpers


def _add_ns(p: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace of the request (default: default)")
    if all_namespaces:
        p.add_argument("-A", "--all-namespaces", action="store_true",
                       help="list across all namespaces (adds a NAMESPACE column)")


def _add_files(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-f", "--filename", action="append", required=required, default=None,
                   metavar="FILE",
                   help="manifest file, directory (its *.yaml/*.yml/*.json, sorted) or - "
                        "for stdin; repeatable")


def _namespaced(cluster: Cluster, kind: str) -> bool:
    return bool(cluster.strategy(kind).namespaced)


def _with_namespace(cluster: Cluster, doc: Document, namespace: str | None) -> dict[str, Any]:
    """The document's manifest with the request namespace filled in, as kubectl does."""
    namespaced = bool(strategy_for(cluster, doc).namespaced)
    try:
        data: dict[str, Any] = json.loads(json.dumps(doc.data))  # a deep, JSON-only copy
    except (TypeError, ValueError) as exc:
        raise doc.error(f"the manifest holds a value JSON cannot represent ({exc})",
                        None) from None
    if not namespaced:
        return data
    meta = data.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return data  # the decoder reports the wrong type with its position
    given = meta.get("namespace")
    if given and namespace and given != namespace:
        raise doc.error(
            f'the namespace from the provided object "{given}" does not match the namespace '
            f'"{namespace}". You must pass \'--namespace={given}\' to perform this operation.',
            "metadata.namespace",
        )
    if not given:
        meta["namespace"] = namespace or "default"
    return data


def _ref(cluster: Cluster, obj: Any) -> str:
    return f"{printers.resource_for_kind(obj.kind, cluster).qualified}/{obj.metadata.name}"


def _decode_located(cluster: Cluster, doc: Document, data: dict[str, Any]) -> Any:
    """Decode ``data`` (derived from ``doc``) with ``doc``'s positions for errors."""
    return decode_document(cluster, Document(data, doc.source, doc.positions, doc.prefix))


@contextlib.contextmanager
def _server_errors(verb: str, doc: Document) -> Iterator[None]:
    """kubectl's ``AddSourceToErr``: server errors name the file (``error when creating
    "web.yaml": ...``). Invalid objects print as ``The Service "x" is invalid`` instead."""
    try:
        yield
    except (AlreadyExists, NotFound, InternalError, Conflict) as exc:
        source = "STDIN" if doc.source == "<stdin>" else doc.source
        exc.args = (f'error when {verb} "{source}": {exc}',)
        raise


def _load_docs(args: argparse.Namespace) -> list[Document]:
    docs = load_files(args.filename)
    if not docs:
        raise InvalidInput("no objects passed to " + args.command)
    return convert_legacy(docs)


#: Removed API versions kservice still accepts, converted as upstream converted them, with
#: the apiserver's deprecation warning (``k8s.io/apiserver/pkg/endpoints/deprecation``:
#: "<gv> <kind> is deprecated in vX.Y+, unavailable in vX.Y+; use <gv> <kind>").
#: A DELIBERATE DIVERGENCE: a real v1.34 apiserver answers `no matches for kind "Ingress"
#: in version ...` (they were removed in v1.22); kservice accepts them because the seed
#: note's manifests are written that way (docs/divergences.md).
LEGACY_VERSIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("extensions/v1beta1", "Ingress"): ("1.14", "1.22"),
    ("networking.k8s.io/v1beta1", "Ingress"): ("1.19", "1.22"),
}


def convert_legacy(docs: Sequence[Document], warn: Callable[[str], None] | None = _err
                   ) -> list[Document]:
    """Legacy Ingress documents converted to ``networking.k8s.io/v1`` (one warning each)."""
    out: list[Document] = []
    for doc in docs:
        data = doc.data
        key = (data.get("apiVersion"), data.get("kind")) if isinstance(data, dict) else None
        if key not in LEGACY_VERSIONS:
            out.append(doc)
            continue
        from kservice.ingress import ingress_from_legacy

        try:
            ing = ingress_from_legacy(data, "")
        except InvalidInput as exc:
            raise doc.error(exc.message, exc.path, exc.hint,
                            prefer_key=exc.message.startswith("unknown field")) from None
        deprecated, removed = LEGACY_VERSIONS[key]  # type: ignore[index]
        if warn is not None:
            warn(f"Warning: {key[0]} {key[1]} is deprecated in v{deprecated}+, unavailable in "
                 f"v{removed}+; use networking.k8s.io/v1 Ingress")
        converted = ing.to_manifest()
        converted.pop("status", None)
        out.append(Document(converted, doc.source, doc.positions, doc.prefix))
    return out


# --------------------------------------------------------------------------- apply & co


def with_last_applied(data: dict[str, Any]) -> dict[str, Any]:
    """The manifest plus kubectl's last-applied-configuration annotation: the manifest
    itself (without that annotation) as compact JSON with sorted keys and a newline."""
    applied: dict[str, Any] = json.loads(json.dumps(data))
    meta = applied.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    record = json.loads(json.dumps(applied))
    # kubectl's GetModifiedConfiguration empties (never drops) the annotations map before
    # marshalling, which is why real annotations read {"metadata":{"annotations":{},...}.
    record["metadata"]["annotations"] = dict(annotations)
    annotations[LAST_APPLIED] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    meta["annotations"] = annotations
    return applied


def apply_documents(cluster: Cluster, docs: Sequence[Document], namespace: str | None,
                    warn: Callable[[str], None] = _err) -> list[str]:
    """``kubectl apply``: create, or three-way-merge into the live object. Atomic."""
    docs = convert_legacy(docs, warn)
    prepared = [(doc, _with_namespace(cluster, doc, namespace)) for doc in docs]
    # Decode everything first: a bad document anywhere aborts before any write.
    decode_documents(cluster, [Document(d, doc.source, doc.positions, doc.prefix)
                               for doc, d in prepared])
    lines = []
    with cluster.transaction():
        for doc, data in prepared:
            default_name = getattr(cluster.strategy(str(data.get("kind"))), "default_name", None)
            if default_name and not (data.get("metadata") or {}).get("name"):
                # Kinds whose files carry no metadata (a KubeProxyConfiguration) have a
                # well-known name, as kubeadm's ConfigMap does.
                data = {**data, "metadata": {**(data.get("metadata") or {}),
                                             "name": default_name}}
            applied = with_last_applied(data)
            meta = applied["metadata"]
            if not meta.get("name"):
                # apply needs the name to find the live object; generateName is for create.
                raise doc.error("resource name may not be empty", "metadata", prefer_key=True,
                                hint="apply needs metadata.name; use `kservice create` for "
                                     "objects named by generateName")
            obj = _decode_located(cluster, doc, applied)
            ns = obj.metadata.namespace if _namespaced(cluster, obj.kind) else ""
            live = cluster.find(obj.kind, obj.metadata.name, ns)
            if live is None:
                with _server_errors("creating", doc):
                    stored = cluster.create(obj)
                lines.append(f"{_ref(cluster, stored)} created")
                continue
            live_manifest = live.to_manifest()
            last_text = (live.metadata.annotations or {}).get(LAST_APPLIED)
            if last_text is None:
                rt = printers.resource_for_kind(obj.kind, cluster)
                warn(f"Warning: resource {rt.resource}/{obj.metadata.name} is missing the "
                     f"{LAST_APPLIED} annotation which is required by kservice apply. "
                     "kservice apply should only be used on resources created declaratively "
                     "by either kservice create --save-config or kservice apply. The missing "
                     "annotation will be patched automatically.")
            try:
                last = json.loads(last_text) if last_text else None
            except json.JSONDecodeError:
                last = None
            merged = three_way_merge(last, applied, live_manifest, obj.kind)
            before = cluster.resource_version
            with _server_errors("patching", doc):
                stored = cluster.update(_decode_located(cluster, doc, merged))
            verb = "unchanged" if cluster.resource_version == before else "configured"
            lines.append(f"{_ref(cluster, stored)} {verb}")
    return lines


def cmd_apply(args: argparse.Namespace) -> int:
    docs = _load_docs(args)
    with open_session(args.state) as cluster:
        lines = apply_documents(cluster, docs, args.namespace)
    _out("".join(line + "\n" for line in lines))
    return 0


def _write_each(args: argparse.Namespace, doing: str, done: str,
                write: Callable[[Any, Any], Any], save_config: bool = False) -> int:
    """create/replace: decode every document first, then write them in one transaction."""
    docs = _load_docs(args)
    lines = []
    with open_session(args.state) as cluster:
        prepared = [(doc, _with_namespace(cluster, doc, args.namespace)) for doc in docs]
        if save_config:
            prepared = [(doc, with_last_applied(d)) for doc, d in prepared]
        objs = [(doc, _decode_located(cluster, doc, d)) for doc, d in prepared]
        with cluster.transaction():
            for doc, obj in objs:
                with _server_errors(doing, doc):
                    lines.append(f"{_ref(cluster, write(cluster, obj))} {done}")
    _out("".join(line + "\n" for line in lines))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    return _write_each(args, "creating", "created", lambda c, o: c.create(o),
                       save_config=args.save_config)


def cmd_replace(args: argparse.Namespace) -> int:
    return _write_each(args, "replacing", "replaced", lambda c, o: c.update(o))


# --------------------------------------------------------------------------- get


def _split_targets(cluster: Cluster, resource: str, names: Sequence[str]
                   ) -> list[tuple[printers.ResourceType, str | None]]:
    """kubectl's argument forms: ``svc``, ``svc,po``, ``svc foo bar``, ``svc/foo po/bar``."""
    if "/" in resource:
        out: list[tuple[printers.ResourceType, str | None]] = []
        for arg in (resource, *names):
            if "/" not in arg:
                raise InvalidInput("there is no need to specify a resource type as a separate "
                                   "argument when passing arguments in resource/name form")
            r, _, n = arg.partition("/")
            out.append((resolve_resource(r, cluster), n))
        return out
    types = [resolve_resource(r, cluster) for r in resource.split(",") if r]
    if names:
        if len(types) > 1:
            raise InvalidInput("names cannot be given with several resource types")
        return [(types[0], n) for n in names]
    return [(t, None) for t in types]


def _output_format(value: str) -> str:
    if value in ("wide", "yaml", "json", "name") or value.startswith("jsonpath="):
        return value
    raise argparse.ArgumentTypeError(
        f'unable to match a printer suitable for the output format "{value}", allowed '
        "formats are: json,jsonpath,name,wide,yaml")


def _registered(cluster: Cluster, rt: printers.ResourceType) -> None:
    if rt.kind not in cluster.kinds:
        raise InvalidInput(f'the server doesn\'t have a resource type "{rt.resource}" '
                           "(its component is not installed)")


def _with_implicit(cluster: Cluster, kind: str, found: list[Any]) -> list[Any]:
    """Objects a real cluster has that kservice keeps implicit: the ``kubernetes``
    ServiceCIDR (the flag range), listed first by name as the apiserver lists."""
    if kind != "ServiceCIDR":
        return found
    from kservice.api.servicecidr import DEFAULT_SERVICE_CIDR, default_service_cidr

    if any(o.metadata.name == DEFAULT_SERVICE_CIDR for o in found):
        return found
    return sorted([default_service_cidr(cluster), *found], key=lambda o: o.metadata.name)


def cmd_get(args: argparse.Namespace) -> int:
    with open_session(args.state, write=False) as cluster:
        targets = _split_targets(cluster, args.resource, args.names)
        if args.all_namespaces and any(name is not None for _, name in targets):
            raise InvalidInput("a resource cannot be retrieved by name across all namespaces")
        ns = None if args.all_namespaces else (args.namespace or "default")
        selector = printers.parse_selector(args.selector) if args.selector else None
        objs: list[Any] = []
        missing: list[NotFound] = []
        for rt, name in targets:
            _registered(cluster, rt)
            namespaced = _namespaced(cluster, rt.kind)
            if name is None:
                found = _with_implicit(cluster, rt.kind,
                                       cluster.list(rt.kind, ns if namespaced else None))
                if selector is not None:
                    found = [o for o in found if selector(o.metadata.labels)]
                objs.extend(found)
            else:
                implicit = [o for o in _with_implicit(cluster, rt.kind, [])
                            if o.metadata.name == name]
                try:
                    objs.append(cluster.get(rt.kind, name, (ns or "default") if namespaced
                                            else ""))
                except NotFound as exc:
                    if implicit:
                        objs.append(implicit[0])
                    else:
                        missing.append(exc)
        if any(rt.kind == "Endpoints" for rt, _ in targets):
            # The apiserver's deprecation warning (KEP-4974), which kubectl prints.
            _err("Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 "
                 "EndpointSlice")
        single = len(targets) == 1 and targets[0][1] is not None
        ctx = PrintContext(now=_now(), cluster=cluster)
        all_ns = bool(args.all_namespaces) and args.output not in ("yaml", "json", "name")
        text = printers.print_objects(objs, output=args.output, ctx=ctx, all_namespaces=all_ns,
                                      single=single, cluster=cluster,
                                      show_labels=args.show_labels,
                                      no_headers=args.no_headers)
    _out(text)
    for nf in missing:
        _err(f"Error from server (NotFound): {nf}")
    if missing:
        return 1
    if not objs and args.output in (None, "wide"):
        namespaced = all(_namespaced(cluster, rt.kind) for rt, _ in targets)
        if ns is not None and namespaced:
            _err(f"No resources found in {ns} namespace.")
        else:
            _err("No resources found")
    return 0


# --------------------------------------------------------------------------- describe


def cmd_describe(args: argparse.Namespace) -> int:
    with open_session(args.state, write=False) as cluster:
        rt = resolve_resource(args.resource, cluster)
        _registered(cluster, rt)
        ns = args.namespace or "default"
        if rt.kind != "Service":
            raise InvalidInput(f"describe is implemented for services; use "
                               f"`kservice get {rt.resource} NAME -o yaml` for {rt.resource}")
        names = args.names or [s.metadata.name for s in cluster.list("Service", ns)]
        blocks = []
        for name in names:
            svc = cluster.get("Service", name, ns)
            slices = []
            if "EndpointSlice" in cluster.kinds:
                slices = [
                    s.to_manifest() for s in cluster.list("EndpointSlice", ns)
                    if s.metadata.labels.get("kubernetes.io/service-name") == name
                ]
            blocks.append(printers.describe_service(svc, slices))
    # kubectl prints the first description, then "\n\n" before each further one.
    _out("".join(b if i == 0 else "\n\n" + b for i, b in enumerate(blocks)))
    return 0


# --------------------------------------------------------------------------- patch


def cmd_patch(args: argparse.Namespace) -> int:
    with open_session(args.state) as cluster:
        line = _patch(cluster, args)
    _out(line + "\n")
    return 0


def _patch(cluster: Cluster, args: argparse.Namespace) -> str:
    """Patch one object; returns kubectl's ``service/foo patched`` line."""
    targets = _split_targets(cluster, args.resource, [args.name] if args.name else [])
    if len(targets) != 1 or targets[0][1] is None:
        raise InvalidInput("patch needs exactly one object: TYPE NAME or TYPE/NAME")
    rt, name = targets[0]
    _registered(cluster, rt)
    namespaced = _namespaced(cluster, rt.kind)
    live = cluster.get(rt.kind, name or "", (args.namespace or "default") if namespaced
                       else "")
    manifest = live.to_manifest()
    patched = apply_patch(manifest, args.patch, args.type)
    if not isinstance(patched, dict):
        raise InvalidInput("the patch did not produce an object")
    for key in ("apiVersion", "kind"):
        if patched.get(key) != manifest.get(key):
            raise InvalidInput(f"a patch may not change {key}")
    meta = patched.get("metadata")
    if not isinstance(meta, dict) or meta.get("name") != live.metadata.name:
        raise InvalidInput("a patch may not change metadata.name")
    before = cluster.resource_version
    obj = cluster.strategy(rt.kind).decode(patched, "")
    if args.subresource == "status":
        # The status subresource (what controllers write): only status changes; the
        # spec pipeline does not run, as PUT .../status does not run it either.
        import attrs

        if not hasattr(live, "status"):
            raise InvalidInput(f"{rt.resource} have no status subresource")
        strategy = cluster.strategy(rt.kind)
        # The kind's status strategy defaults and validates the new status
        # (ValidateServiceStatusUpdate for Services), as PUT .../status does.
        updated = (strategy.update_status(cluster, live, obj)
                   if hasattr(strategy, "update_status")
                   else attrs.evolve(live, status=obj.status))
        stored = cluster.put_raw(updated)
    else:
        stored = cluster.update(obj)
    changed = cluster.resource_version != before
    return f"{_ref(cluster, stored)} patched{'' if changed else ' (no change)'}"


# --------------------------------------------------------------------------- delete


def cmd_delete(args: argparse.Namespace) -> int:
    lines: list[str] = []
    with open_session(args.state) as cluster:
        # kind, namespace, name, and the document it came from (for error messages)
        targets: list[tuple[str, str, str, Document | None]] = []
        if args.filename:
            if args.resource:
                raise InvalidInput("give either -f FILE or TYPE NAME, not both")
            for doc in convert_legacy(load_files(args.filename), None):
                data = _with_namespace(cluster, doc, args.namespace)
                obj = _decode_located(cluster, doc, data)
                targets.append((obj.kind, obj.metadata.namespace, obj.metadata.name, doc))
        else:
            if not args.resource:
                raise InvalidInput("you must provide one or more resources by argument or "
                                   "filename (-f)")
            for rt, name in _split_targets(cluster, args.resource, args.names):
                _registered(cluster, rt)
                if name is None:
                    raise InvalidInput(f'resource(s) were provided, but no name was specified '
                                       f'for "{rt.resource}"')
                ns = (args.namespace or "default") if _namespaced(cluster, rt.kind) else ""
                targets.append((rt.kind, ns, name, None))
        with cluster.transaction():
            for kind, ns, name, src in targets:
                singular = printers.resource_for_kind(kind, cluster).qualified
                if kind == "Pod" and args.graceful:
                    workloads = _workloads("delete pod --graceful")
                    workloads.delete_pod(cluster, name, ns, True)
                elif kind == "Pod" and _has_workloads():
                    import kservice.workloads as workloads_mod  # type: ignore[import-not-found]

                    workloads_mod.delete_pod(cluster, name, ns, False)
                elif src is not None:
                    with _server_errors("deleting", src):
                        cluster.delete(kind, name, ns)
                else:
                    cluster.delete(kind, name, ns)
                # kubectl >= 1.33 names the namespace of namespaced objects.
                where = f" from {ns} namespace" if ns else ""
                lines.append(f'{singular} "{name}" deleted{where}')
    _out("".join(line + "\n" for line in lines))
    return 0


# --------------------------------------------------------------------------- workloads


def _has_workloads() -> bool:
    try:
        import kservice.workloads  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def _workloads(what: str) -> Any:
    try:
        import kservice.workloads as mod  # type: ignore[import-not-found]
    except ImportError:
        raise InvalidInput(f"{what} needs the workloads component (kservice.workloads), "
                           "which is not installed") from None
    return mod


def _kind_name(cluster: Cluster, arg: str, name: str | None, default_kind: str) -> tuple[str, str]:
    if "/" in arg:
        r, _, n = arg.partition("/")
        return resolve_resource(r, cluster).kind, n
    if name is None:
        raise InvalidInput(f"expected TYPE/NAME (e.g. {default_kind.lower()}/web) or TYPE NAME")
    return resolve_resource(arg, cluster).kind, name


def cmd_scale(args: argparse.Namespace) -> int:
    workloads = _workloads("scale")
    if args.replicas < 0:
        raise InvalidInput("The --replicas=COUNT flag is required, and COUNT must be >= 0")
    with open_session(args.state) as cluster:
        kind, name = _kind_name(cluster, args.target, args.name, "Deployment")
        ns = args.namespace or "default"
        workloads.scale(cluster, kind, name, ns, args.replicas)
        ref = f"{printers.resource_for_kind(kind, cluster).qualified}/{name}"
    _out(f"{ref} scaled\n")
    return 0


def cmd_set_ready(args: argparse.Namespace) -> int:
    workloads = _workloads("set-ready")
    ready = {"true": True, "false": False}.get(args.ready.lower())
    if ready is None:
        raise InvalidInput(f'readiness must be true or false, not "{args.ready}"')
    with open_session(args.state) as cluster:
        kind, name = _kind_name(cluster, args.target, None, "Pod")
        if kind != "Pod":
            raise InvalidInput("set-ready applies to pods: pod/NAME")
        workloads.set_pod_ready(cluster, name, args.namespace or "default", ready)
    _out(f"pod/{name} ready={'true' if ready else 'false'}\n")
    return 0


# --------------------------------------------------------------------------- render


def _filter_service(state: Any, service: str | None) -> Any:
    if not service:
        return state
    import attrs

    ns, _, name = service.rpartition("/")
    ns = ns or "default"
    ports = tuple(sp for sp in state.service_ports
                  if sp.name.namespace == ns and sp.name.name == name)
    if not ports:
        raise InvalidInput(f'service "{ns}/{name}" has no ports on this node for '
                           f"{state.family}")
    return attrs.evolve(state, service_ports=ports)


def _locate(exc: InvalidInput, docs: Sequence[Document]) -> InvalidInput:
    """Turn a raw-mode error path ``[i].spec...`` into docs[i]'s file, line and column."""
    import re

    m = re.match(r"^\[(\d+)\]\.?(.*)$", exc.path or "")
    if exc.source or m is None or int(m.group(1)) >= len(docs):
        return exc
    doc = docs[int(m.group(1))]
    path = m.group(2) or None
    # The reader names the field in its message too ("... into field [0].spec.x"): the
    # document-relative path reads the same as everywhere else.
    message = exc.message.replace(f"field {exc.path}", f"field {path or '<root>'}")
    return doc.error(message, path, exc.hint, prefer_key=message.startswith("unknown field"))


def _pick_node(names: Sequence[str], wanted: str | None) -> str:
    if wanted:
        if names and wanted not in names:
            raise InvalidInput(f'node "{wanted}" not found; nodes: {", ".join(names)}')
        return wanted
    if not names:
        raise InvalidInput("the cluster has no nodes; pass --node NAME")
    return names[0]


#: The kinds kube-proxy reads that live in a namespace (raw files get ``default`` filled
#: in when they name none, as kubectl does when it reads files).
_RAW_NAMESPACED = ("Service", "EndpointSlice")


def raw_node_states(filenames: Sequence[str], node: str | None,
                    family: str | None, *, namespace: str | None = None,
                    node_ips: Sequence[str] = (), pod_cidrs: Sequence[str] = (),
                    ip_flag: str = "--node-ip") -> list[Any]:
    """``--raw``: node states straight from manifests, as kube-proxy sees stored objects.

    No defaulting, validation or allocation: the files are what ``kubectl get
    svc,endpointslices,nodes -A -o yaml`` printed (plus, optionally, a
    KubeProxyConfiguration). Only the namespace is filled in where a manifest names none
    (``namespace``, else ``default``), as kubectl does when it reads files. Without
    ``family`` both families are built when any Service has an IPv6 ClusterIP.

    The node is a Node in the files (``node`` must name one of them), or -- when the files
    hold no Node -- described by ``node_ips``/``pod_cidrs`` (the ``ip_flag`` option).
    """
    from kservice.proxy.raw import state_from_objects
    from kservice.proxy.types import NodeInfo

    docs = load_files(list(filenames))
    dicts = []
    for d in docs:
        data = d.data
        if isinstance(data, dict) and data.get("kind") in _RAW_NAMESPACED:
            meta = data.get("metadata")
            if isinstance(meta, dict) and not meta.get("namespace"):
                data = {**data, "metadata": {**meta, "namespace": namespace or "default"}}
        dicts.append(data)
    nodes = [d.name for d in docs if d.kind == "Node"]
    node_info = None
    if nodes:
        if node and node not in nodes:
            raise InvalidInput(f'node "{node}" not found in the files; their nodes: '
                               f'{", ".join(nodes)}')
        picked = node or nodes[0]
        if node_ips or pod_cidrs:
            raise InvalidInput(f"{ip_flag} describes a node the files do not hold; the files "
                               f"hold Node objects ({', '.join(nodes)}): pick one with --node")
    else:
        if not node_ips:
            raise InvalidInput(
                "the files contain no Node object, so the node's addresses are unknown; add "
                "the Node (kubectl get node NAME -o yaml) to the files, or give its address "
                f"with {ip_flag} IP (and --node NAME)")
        for ip in node_ips:
            if parse_ip(ip) is None:
                raise InvalidInput(f"{ip_flag} {ip!r} is not an IP address")
        picked = node or node_ips[0]
        node_info = NodeInfo(name=picked, ips=tuple(node_ips), pod_cidrs=tuple(pod_cidrs))
    if family:
        families = [family]
    else:
        v6 = any(":" in str((d.data.get("spec") or {}).get("clusterIP") or "")
                 for d in docs if d.kind == "Service" and isinstance(d.data, dict)
                 and isinstance(d.data.get("spec") or {}, dict))
        families = ["IPv4", "IPv6"] if v6 else ["IPv4"]
    states = []
    for fam in families:
        try:
            state = state_from_objects(dicts, picked, fam, kube_proxy_config=None,
                                       node=node_info)
        except InvalidInput as exc:
            raise _locate(exc, docs) from None
        if family and not state.service_ports and not _node_has_family(state.node, fam):
            raise InvalidInput(
                f"--family {fam}: nothing to render -- no Service in the files has an {fam} "
                f"cluster IP and node {picked} has no {fam} address")
        states.append(state)
    return states


def parse_ip(text: str) -> Any:
    import ipaddress

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _node_has_family(node: Any, family: str) -> bool:
    want = 6 if family == "IPv6" else 4
    return any((ip := parse_ip(a)) is not None and ip.version == want for a in node.ips)


def check_cluster_family(cluster: Cluster, family: str, node: str) -> None:
    """Refuse a family the cluster does not serve: kube-proxy programs no rules for it."""
    if family in cluster.config.families:
        return
    other = cluster.config.families[0]
    raise InvalidInput(
        f"--family {family}: the cluster is single-stack {other} (service CIDR "
        f"{','.join(cluster.config.service_subnets)}): it has no {family} service range, "
        f"so kube-proxy on {node} programs no {family} rules",
        hint=f"use --family {other}, or a dual-stack cluster (kservice init --service-cidr "
             "V4CIDR,V6CIDR)")


def cmd_render(args: argparse.Namespace) -> int:
    from kservice.backend import get_backend

    backend = get_backend(args.mode)
    fmt = args.format or backend.formats[0]
    if fmt not in backend.formats:
        raise InvalidInput(f'backend "{backend.name}" has no format "{fmt}"; it has: '
                           + ", ".join(backend.formats))
    states: list[Any] = []
    if args.raw:
        if not args.filename:
            raise InvalidInput("--raw needs -f FILE (the stored objects to render)")
        states = raw_node_states(args.filename, args.node, args.family,
                                 namespace=args.namespace, node_ips=args.node_ip or ())
    elif args.node_ip:
        raise InvalidInput("--node-ip describes the node of --raw files; without --raw the "
                           "node is a Node of the stored cluster (--node NAME)")
    else:
        try:
            from kservice.proxy.snapshot import (  # type: ignore[import-not-found]
                build_node_state,
            )
        except ImportError as exc:
            raise InvalidInput(f"rendering the stored cluster needs kservice.proxy.snapshot, "
                               f"which is not installed ({exc}); try --raw") from None

        with open_session(args.state, write=False) as cluster:
            if args.filename:
                apply_documents(cluster, load_files(args.filename), args.namespace)
            nodes = ([n.metadata.name for n in cluster.list("Node")]
                     if "Node" in cluster.kinds else [])
            node = _pick_node(nodes, args.node)
            families = [args.family] if args.family else list(cluster.config.families)
            if args.family:
                check_cluster_family(cluster, args.family, node)
            for fam in families:
                states.append(build_node_state(cluster, node, fam))
    picture = getattr(args, "output", None) or "text"
    if picture != "text":
        return _render_picture(backend, states, args, picture)
    chunks = []
    for state in states:
        state = _filter_service(state, args.service)
        text = backend.render(state).section(fmt)
        if len(states) > 1:
            text = f"# {state.family}\n{text}"
        chunks.append(text if text.endswith("\n") else text + "\n")
    _out("".join(chunks))
    return 0


# Which rendering section a chain graph is drawn from, per mode, and in which syntax: the
# whole iptables-save dump (with the built-in chains' jump rules) for iptables, the helper
# chains for IPVS and userspace, the ruleset for nftables.
_PICTURE_SECTIONS = {"iptables": ("save", "iptables"), "ipvs": ("iptables", "iptables"),
                     "userspace": ("iptables", "iptables"), "nftables": ("ruleset", "nft")}


def _render_picture(backend: Any, states: Sequence[Any], args: argparse.Namespace,
                    fmt: str) -> int:
    """``render -o dot|svg|png``: the chain graph (:mod:`kservice.graph`) of the rendering."""
    from kservice.graph import convert, iptables_to_dot, nft_to_dot

    section, syntax = _PICTURE_SECTIONS.get(backend.name, (None, None))
    if section is None:
        raise InvalidInput(f"-o {fmt}: chain graphs are drawn for "
                           f"{' and '.join(sorted(_PICTURE_SECTIONS))} rules, not for "
                           f"{backend.name}; use -o text")
    if len(states) > 1:
        raise InvalidInput(f"-o {fmt} draws one IP family; pass --family IPv4 or IPv6")
    state = _filter_service(states[0], args.service)
    what = args.service or "all services"
    title = f"{what}: {backend.name} rules on {state.node.name} ({state.family})"
    text = backend.render(state).section(section)
    dot = (nft_to_dot(text, title=title) if syntax == "nft"
           else iptables_to_dot(text, title=title))
    data = convert(dot, fmt)
    if fmt == "png" and sys.stdout.isatty():
        raise InvalidInput("refusing to write PNG to a terminal; redirect it: "
                           "kservice render ... -o png > chains.png")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- explain


def cmd_explain(args: argparse.Namespace) -> int:
    from kservice.cli.explain import explain

    _out(explain(args.field))
    return 0


# --------------------------------------------------------------------------- init & demo


def cmd_init(args: argparse.Namespace) -> int:
    import attrs

    from kservice.api.clusterconfig import (
        load_cluster_config,
        parse_port_range,
        validate_dns_domain,
        validate_pod_subnets,
        validate_service_cluster_ip_ranges,
    )
    from kservice.config import DEFAULT_CLUSTER_CONFIG

    if Path(args.state).exists() and not args.force:
        raise InvalidInput(f"state file {args.state} exists; pass --force to replace it")
    config = DEFAULT_CLUSTER_CONFIG
    if args.config:
        try:
            text = Path(args.config).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.config}: {exc.strerror}") from None
        config = load_cluster_config(text, config, source=args.config)
    changes: dict[str, Any] = {}
    if args.service_cidr:
        changes["service_subnets"] = validate_service_cluster_ip_ranges(
            args.service_cidr.split(","))
    if args.pod_cidr is not None:
        # kubeadm init --pod-network-cidr: validated as ClusterConfiguration.networking.
        changes["pod_subnets"] = validate_pod_subnets(args.pod_cidr, "podSubnet")
    if args.node_port_range:
        changes["node_port_range"] = parse_port_range(args.node_port_range)
    if args.dns_domain is not None:
        changes["dns_domain"] = validate_dns_domain(args.dns_domain, "dns-domain")
    if args.seed is not None:
        changes["seed"] = args.seed
    if "service_subnets" in changes:
        # kubeadm puts CoreDNS at the 10th address of the (primary) service range.
        from kservice.embedded import _nth_ip

        changes["cluster_dns"] = (_nth_ip(changes["service_subnets"][0], 10),)
    config = attrs.evolve(config, **changes)
    # Only once every setting is valid: a bad flag with --force keeps the old file.
    if Path(args.state).exists():
        try:
            Path(args.state).unlink()
        except OSError as exc:
            raise InvalidInput(f"cannot replace {args.state}: {exc.strerror}") from None
    with open_session(args.state, config=config) as cluster:
        n = len(cluster.objects_for_storage())
    _out(f"initialised {args.state}: service CIDR {','.join(config.service_subnets)}, "
         f"pod CIDR {','.join(config.pod_subnets)}, node ports "
         f"{config.node_port_range[0]}-{config.node_port_range[1]}, {n} default objects\n")
    return 0


DEMO_PLUGIN = "backends.demo.cli:register"


def _plugin_provides(name: str) -> bool:
    """Whether an installed ``kservice.commands`` entry point registers ``name``."""
    from importlib.metadata import entry_points

    return any(ep.name == name for ep in entry_points(group="kservice.commands"))


def cmd_demo(args: argparse.Namespace) -> int:
    """Stands in for the ``demo`` plugin when it is not installed, and says how to get it."""
    raise InvalidInput(
        "the demo traces packets through the mock kernel, an adapter, so `kservice demo` "
        f"is a plugin ({DEMO_PLUGIN}) and its entry point is not installed in this "
        "environment; reinstall kservice (`pip install -e .`, or `make demo`, which does)")


# --------------------------------------------------------------------------- parser


def _cmd(sub: Any, name: str, func: Handler, help: str, description: str,
         aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, aliases=list(aliases),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --state is accepted after the command too (`kservice get svc --state x.db`), as
    # kubectl accepts its global flags anywhere.
    p.add_argument("--state", default=argparse.SUPPRESS, metavar="PATH",
                   help="the cluster's state file (see kservice --help)")
    p.set_defaults(func=func, command=name)
    return p


def register(sub: Any) -> None:
    p = _cmd(sub, "apply", cmd_apply, "create or update objects from manifests",
             "Create objects that do not exist and update those that do, like kubectl apply:\n"
             "a three-way merge of the live object, the manifest and the last-applied\n"
             "configuration (kept in the kubectl.kubernetes.io/last-applied-configuration\n"
             "annotation). All objects are applied in one transaction.\n\n"
             "examples:\n  kservice apply -f docs/examples/\n  cat svc.yaml | kservice apply -f -")
    _add_files(p)
    _add_ns(p)

    p = _cmd(sub, "create", cmd_create, "create objects from manifests",
             "Create every object in the manifests; fails (storing nothing) if any exists.")
    _add_files(p)
    _add_ns(p)
    p.add_argument("--save-config", action="store_true",
                   help="record the manifest in the last-applied-configuration annotation, "
                        "so later `apply` runs can three-way merge")

    p = _cmd(sub, "replace", cmd_replace, "replace objects (PUT) from manifests",
             "Replace existing objects with the manifests' content (an update, not a merge).")
    _add_files(p)
    _add_ns(p)

    p = _cmd(sub, "get", cmd_get, "list objects (kubectl get)",
             "Print objects as kubectl get does.\n\n"
             "RESOURCE is a type (svc, services, po, no, deploy, rs, sts, ds, ep,\n"
             "endpointslices, ing, servicecidrs ...), a comma list of types (svc,ep), or\n"
             "TYPE/NAME.\n\nexamples:\n  kservice get svc\n  kservice get svc -A -o wide\n"
             "  kservice get svc/kubernetes -o yaml")
    p.add_argument("resource", metavar="RESOURCE")
    p.add_argument("names", nargs="*", metavar="NAME")
    _add_ns(p, all_namespaces=True)
    p.add_argument("-o", "--output", type=_output_format, default=None,
                   metavar="wide|yaml|json|name|jsonpath=TEMPLATE",
                   help="output format (default: a table); jsonpath supports field paths "
                        "such as jsonpath='{.spec.clusterIP}' and {.items[*].metadata.name}")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db or "
                                            "'env in (a,b)'")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true",
                   help="omit the header row of the table (and of -o wide)")

    p = _cmd(sub, "describe", cmd_describe, "show details of a service (kubectl describe)",
             "Print the detail view kubectl describe service prints.")
    p.add_argument("resource", metavar="RESOURCE", help="svc")
    p.add_argument("names", nargs="*", metavar="NAME")
    _add_ns(p)

    p = _cmd(sub, "patch", cmd_patch, "patch an object (strategic, merge or json)",
             "Update fields of an object with a patch, like kubectl patch.\n\n"
             "  strategic (default): Kubernetes strategic merge patch; ports merge on `port`,\n"
             "                       {\"$patch\": \"delete\"} removes a list item\n"
             "  merge:               RFC 7386 JSON merge patch (lists are replaced)\n"
             "  json:                RFC 6902 JSON patch (a list of operations)\n\n"
             "example:\n  kservice patch svc web -p '{\"spec\":{\"type\":\"NodePort\"}}'")
    p.add_argument("resource", metavar="RESOURCE", help="TYPE or TYPE/NAME")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("-p", "--patch", required=True, help="the patch, JSON or YAML")
    p.add_argument("--type", choices=["strategic", "merge", "json"], default="strategic",
                   help="patch type (default strategic)")
    p.add_argument("--subresource", choices=["status"], default=None,
                   help="patch the status subresource (as a controller would), e.g. a "
                        "LoadBalancer's status.loadBalancer.ingress")
    _add_ns(p)

    p = _cmd(sub, "delete", cmd_delete, "delete objects",
             "Delete objects by TYPE NAME..., TYPE/NAME or -f FILE.\n"
             "Pods are deleted through the workloads component: --graceful keeps the pod\n"
             "terminating (its endpoints turn ready=false, serving=true, terminating=true)\n"
             "instead of removing it at once.")
    p.add_argument("resource", nargs="?", metavar="RESOURCE")
    p.add_argument("names", nargs="*", metavar="NAME")
    _add_files(p, required=False)
    _add_ns(p)
    p.add_argument("--graceful", action="store_true",
                   help="pods only: start graceful termination instead of removing at once")

    p = _cmd(sub, "explain", cmd_explain, "document Service fields (kubectl explain)",
             "Describe a Service field and its sub-fields.\n\nexamples:\n"
             "  kservice explain svc\n  kservice explain svc.spec.ports\n"
             "  kservice explain service.spec.externalTrafficPolicy")
    p.add_argument("field", metavar="FIELD", help="svc[.spec.FIELD...]")

    p = _cmd(sub, "scale", cmd_scale, "set the replicas of a deployment or statefulset",
             "Set spec.replicas; the workloads controller creates or removes pods.")
    p.add_argument("target", metavar="TYPE/NAME", help="deployment/web, statefulset/db ...")
    p.add_argument("name", nargs="?", metavar="NAME", help="NAME when TYPE is given alone")
    p.add_argument("--replicas", type=int, required=True, help="the new replica count")
    _add_ns(p)

    p = _cmd(sub, "set-ready", cmd_set_ready, "set a pod's Ready condition",
             "Flip a pod's readiness (as its readiness probe would); EndpointSlices follow.")
    p.add_argument("target", metavar="pod/NAME")
    p.add_argument("ready", metavar="true|false")
    _add_ns(p)

    p = _cmd(sub, "render", cmd_render, "render a node's kube-proxy dataplane",
             "Render what kube-proxy in MODE programs on a node.\n\n"
             "Without --raw, -f files are applied to a throwaway copy of the stored cluster\n"
             "first (nothing is saved). With --raw the files alone are the input (Services,\n"
             "EndpointSlices, Nodes) and no apiserver defaulting or allocation runs.\n"
             "Dual-stack clusters render both families under '# IPv4' / '# IPv6' unless\n"
             "--family is given.\n\nexample:\n  kservice render --mode iptables --node worker-1")
    _add_files(p, required=False)
    p.add_argument("--mode", required=True, help="iptables, ipvs, nftables, userspace ...")
    p.add_argument("--node", help="the node whose view to render (default: the first node)")
    p.add_argument("--format", help="one of the backend's output formats (default: its first)")
    p.add_argument("--family", choices=["IPv4", "IPv6"], help="only this IP family")
    p.add_argument("--raw", action="store_true",
                   help="render the files as given, without the stored cluster")
    p.add_argument("--service", metavar="NS/NAME", help="only this service's ports")
    p.add_argument("--node-ip", action="append", default=None, metavar="IP",
                   help="--raw files without a Node: the node's address (repeatable; the "
                        "first is the primary)")
    p.add_argument("-o", "--output", choices=("text", "dot", "svg", "png"), default="text",
                   help="text: the rules (default); dot/svg/png: the chain graph "
                        "(svg/png run Graphviz `dot`)")
    _add_ns(p)

    p = _cmd(sub, "init", cmd_init, "create a state file with a cluster configuration",
             "Create the state file with kubeadm's default objects for the given settings.")
    p.add_argument("--config", metavar="FILE",
                   help="a kubeadm config file; its ClusterConfiguration (serviceSubnet, "
                        "podSubnet, dnsDomain, apiServer extraArgs) is used")
    p.add_argument("--service-cidr", help="--service-cluster-ip-range: one CIDR or two "
                                          "(dual-stack, primary first), comma separated")
    p.add_argument("--pod-cidr", help="pod subnet(s), comma separated")
    p.add_argument("--service-node-port-range", dest="node_port_range",
                   help="e.g. 30000-32767")
    p.add_argument("--dns-domain", help="cluster domain (default cluster.local)")
    p.add_argument("--seed", type=int, help="seed of the emulated cluster's random choices")
    p.add_argument("--force", action="store_true", help="replace an existing state file")

    if not _plugin_provides("demo"):
        # The walkthrough lives in backends/demo (it drives the mock kernel); until its
        # entry point is installed, `demo` explains how to get it.
        p = _cmd(sub, "demo", cmd_demo, "walk through the seed note's cluster (plugin)",
                 "The walkthrough is the backends.demo plugin; reinstall kservice to get it.")
        p.add_argument("--examples", help="examples directory (default: docs/examples)")
        p.add_argument("--seed", type=int, default=1)
