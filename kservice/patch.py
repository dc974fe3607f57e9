"""The three patch types ``kubectl patch`` sends, applied to manifest dicts.

* :func:`json_merge_patch` -- RFC 7386 (``--type merge``): maps merge recursively,
  ``null`` deletes, anything else (lists included) replaces.
* :func:`json_patch` -- RFC 6902 (``--type json``): ``add``/``remove``/``replace``/
  ``move``/``copy``/``test`` at RFC 6901 pointers.
* :func:`strategic_merge_patch` -- Kubernetes' strategic merge patch (the default):
  like a merge patch, except that lists whose Go type carries ``patchStrategy:"merge"``
  are merged item by item on their ``patchMergeKey`` (a Service's ``spec.ports`` on
  ``port``, a Pod's ``containers`` on ``name`` ...), and the ``$patch``,
  ``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>`` and ``$retainKeys``
  directives are honoured. Which lists merge, and on which key, is the table
  :data:`MERGE_KEYS`, copied from the struct tags in ``k8s.io/api``.

:func:`three_way_merge` computes what ``kubectl apply`` sends: the patch that turns the
live object into the newly applied manifest while keeping fields other writers set,
using the last-applied configuration to know what the user removed.

All functions are pure: they return new dicts and never modify their arguments.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kservice.errors import InvalidInput

__all__ = [
    "MERGE_KEYS",
    "apply_patch",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
    "three_way_merge",
]

# (kind or "*", dotted path with [] for list items) -> patchMergeKey. Lists not listed are
# atomic: a patch replaces them whole (clusterIPs, externalIPs, selector values ...).
MERGE_KEYS: dict[tuple[str, str], str] = {
    # core/v1 ServiceSpec.Ports: `patchStrategy:"merge" patchMergeKey:"port"`. Upstream
    # knows this key is not unique (53/TCP and 53/UDP share it; kubernetes#47249).
    ("Service", "spec.ports"): "port",
    ("*", "metadata.ownerReferences"): "uid",
    ("*", "status.conditions"): "type",
    # PodSpec and the pod templates of the workload kinds.
    ("Pod", "spec.containers"): "name",
    ("Pod", "spec.initContainers"): "name",
    ("Pod", "spec.containers[].ports"): "containerPort",
    ("Pod", "spec.containers[].env"): "name",
    ("Pod", "spec.volumes"): "name",
    ("Pod", "spec.hostAliases"): "ip",
    ("Pod", "status.podIPs"): "ip",
    ("*", "spec.template.spec.containers"): "name",
    ("*", "spec.template.spec.initContainers"): "name",
    ("*", "spec.template.spec.containers[].ports"): "containerPort",
    ("*", "spec.template.spec.containers[].env"): "name",
    ("*", "spec.template.spec.volumes"): "name",
    ("Node", "status.addresses"): "type",
    ("Node", "spec.taints"): "key",
}

# Lists of scalars with `patchStrategy:"merge"`: merged as sets, not replaced.
MERGE_SETS: frozenset[tuple[str, str]] = frozenset({
    ("*", "metadata.finalizers"),
})

_DELETE_FROM = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def _merge_key(kind: str, path: str) -> str | None:
    return MERGE_KEYS.get((kind, path)) or MERGE_KEYS.get(("*", path))


def _is_set(kind: str, path: str) -> bool:
    return (kind, path) in MERGE_SETS or ("*", path) in MERGE_SETS


# --------------------------------------------------------------------------- RFC 7386


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = json_merge_patch(out.get(key), value)
    return out


# --------------------------------------------------------------------------- RFC 6902


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise InvalidInput(f'JSON pointer "{path}" must start with "/"')
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise InvalidInput(f'JSON pointer "{path}": "{token}" is not an array index')
    i = int(token)
    limit = len(container) + (1 if allow_end else 0)
    if i >= limit:
        raise InvalidInput(f'JSON pointer "{path}": index {i} out of range '
                           f"(array has {len(container)} items)")
    return i


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise InvalidInput(f'JSON pointer "{path}": no member "{tok}"')
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, path, allow_end=False)]
        else:
            raise InvalidInput(f'JSON pointer "{path}": cannot index into a scalar')
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise InvalidInput(f'JSON pointer "{path}": parent is not an object or array')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise InvalidInput("cannot remove the whole document")
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise InvalidInput(f'JSON patch remove: no member "{last}" at "{path}"')
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise InvalidInput(f'JSON pointer "{path}": parent is not an object or array')


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 operation list; all or nothing."""
    if not isinstance(operations, list):
        raise InvalidInput("a JSON patch must be an array of operations")
    out = copy.deepcopy(doc)
    for n, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise InvalidInput(f"JSON patch operation {n} must be an object with an \"op\"")
        name = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise InvalidInput(f'JSON patch operation {n} ({name}) needs a string "path"')
        if name in ("add", "replace", "test") and "value" not in op:
            raise InvalidInput(f'JSON patch operation {n} ({name}) needs a "value"')
        if name == "add":
            out = _add(out, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            out, _ = _remove(out, path)
        elif name == "replace":
            _walk(out, _pointer(path), path)  # must exist
            out, _ = _remove(out, path) if _pointer(path) else (out, None)
            out = _add(out, path, copy.deepcopy(op["value"]))
        elif name in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise InvalidInput(f'JSON patch operation {n} ({name}) needs a string "from"')
            if name == "move":
                if path.startswith(src + "/"):
                    raise InvalidInput(f'JSON patch move: cannot move "{src}" into its own child')
                out, value = _remove(out, src)
            else:
                value = copy.deepcopy(_walk(out, _pointer(src), src))
            out = _add(out, path, value)
        elif name == "test":
            if _walk(out, _pointer(path), path) != op["value"]:
                raise InvalidInput(f'JSON patch test failed: the value at "{path}" is not '
                                   f"{json.dumps(op['value'])}")
        else:
            raise InvalidInput(f'JSON patch operation {n}: unknown op "{name}"; expected '
                               "add, remove, replace, move, copy or test")
    return out


# --------------------------------------------------------------------------- strategic


def strategic_merge_patch(original: Any, patch: Any, kind: str = "") -> Any:
    """Apply a strategic merge patch for an object of ``kind``."""
    if not isinstance(patch, Mapping):
        raise InvalidInput("a strategic merge patch must be an object")
    kind = kind or (original.get("kind", "") if isinstance(original, Mapping) else "")
    return _smp_map(original if isinstance(original, Mapping) else {}, patch, kind, "")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_map(original: Mapping[str, Any], patch: Mapping[str, Any], kind: str,
             path: str) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None:
        raise InvalidInput(f'unknown $patch directive "{directive}" at {path or "<root>"}')
    out = copy.deepcopy(dict(original))
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ORDER):
            continue  # $setElementOrder only orders; our lists keep the merged order
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM):]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        sub = _child(path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            cur = out.get(key)
            out[key] = _smp_map(cur if isinstance(cur, Mapping) else {}, value, kind, sub)
            if value.get("$patch") == "delete":
                out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _smp_list(out.get(key), value, kind, sub)
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _smp_list(original: Any, patch: list[Any], kind: str, path: str) -> list[Any]:
    cur = list(original) if isinstance(original, list) else []
    key = _merge_key(kind, path)
    if any(isinstance(p, Mapping) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch
                if not (isinstance(p, Mapping) and p.get("$patch") == "replace")]
    if key is None:
        if _is_set(kind, path):
            return cur + [copy.deepcopy(v) for v in patch if v not in cur]
        # Atomic list: the patch replaces it. `$patch: delete` items make no sense here.
        return [copy.deepcopy(p) for p in patch]
    item_path = path + "[]"
    out = copy.deepcopy(cur)
    for item in patch:
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{path}: items must be objects (merged on key {key!r})")
        if key not in item:
            raise InvalidInput(f'{path}: item {json.dumps(item, sort_keys=True)} does not '
                               f'contain the merge key "{key}"')
        match = next((i for i, o in enumerate(out)
                      if isinstance(o, Mapping) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            out = [o for o in out if not (isinstance(o, Mapping) and o.get(key) == item[key])]
        elif match is None:
            out.append(_smp_map({}, item, kind, item_path))
        else:
            out[match] = _smp_map(out[match], item, kind, item_path)
    return out


# --------------------------------------------------------------------------- apply


def three_way_merge(last_applied: Mapping[str, Any] | None, new: Mapping[str, Any],
                    live: Mapping[str, Any], kind: str = "") -> dict[str, Any]:
    """What ``kubectl apply`` makes of ``live``: ``new`` wins, fields only others set stay,
    and fields the user dropped since ``last_applied`` are removed."""
    kind = kind or str(new.get("kind", ""))
    patch = _three_way(last_applied or {}, new, kind, "")
    merged: dict[str, Any] = strategic_merge_patch(live, patch, kind)
    return merged


def _three_way(last: Mapping[str, Any], new: Mapping[str, Any], kind: str,
               path: str) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key in last:
        if key not in new:
            patch[key] = None  # the user removed it from the manifest
    for key, value in new.items():
        sub = _child(path, key)
        before = last.get(key)
        if isinstance(value, Mapping):
            patch[key] = _three_way(before if isinstance(before, Mapping) else {}, value,
                                    kind, sub)
        elif isinstance(value, list) and _merge_key(kind, sub):
            mk = _merge_key(kind, sub)
            items: list[Any] = []
            new_keys = {v.get(mk) for v in value if isinstance(v, Mapping)}
            for old in before if isinstance(before, list) else []:
                if isinstance(old, Mapping) and old.get(mk) not in new_keys:
                    items.append({mk: old.get(mk), "$patch": "delete"})
            for v in value:
                if isinstance(v, Mapping):
                    prev = next((o for o in (before or []) if isinstance(o, Mapping)
                                 and o.get(mk) == v.get(mk)), {})
                    items.append({**_three_way(prev, v, kind, sub + "[]"), mk: v.get(mk)})
                else:
                    items.append(v)
            patch[key] = items
        else:
            patch[key] = copy.deepcopy(value)
    return patch


def apply_patch(doc: Mapping[str, Any], patch_text: str, patch_type: str = "strategic") -> Any:
    """Parse ``patch_text`` (JSON or YAML) and apply it as ``patch_type``."""
    import yaml

    try:
        patch = json.loads(patch_text)
    except json.JSONDecodeError:
        try:
            patch = yaml.safe_load(patch_text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the patch is neither valid JSON nor YAML: {exc}") from None
    if patch_type == "json":
        return json_patch(doc, patch)
    if not isinstance(patch, Mapping):
        raise InvalidInput(f"a {patch_type} patch must be an object, got {type(patch).__name__}")
    if patch_type == "merge":
        return json_merge_patch(doc, patch)
    if patch_type == "strategic":
        return strategic_merge_patch(doc, patch)
    raise InvalidInput(f'unknown patch type "{patch_type}"; use strategic, merge or json')
