"""Reading manifest files: YAML (multi-document), JSON, ``kind: List``, stdin and directories.

This module owns the path from bytes to models and every "where" in an input error. It
builds, next to each decoded document, a :class:`PositionMap` from field paths
(``spec.ports[0].port``, the same spelling :class:`~kservice.models._reader.Reader` uses)
to the line and column of that node in the source, read off PyYAML's node tree. When a
model refuses a document with ``InvalidInput(path=...)``, :func:`decode_documents` turns
the path into ``file:line:column`` so the user can go straight to the offending node.

Like ``kubectl apply -f``: a directory is read in sorted order, only ``*.yaml``, ``*.yml``
and ``*.json`` files (not recursively); ``-`` is stdin; empty documents are skipped;
a ``kind: List`` (or ``*List``) contributes its ``items``. Unlike kubectl, nothing is
half-done: :func:`decode_documents` decodes every document before anything is stored, and
the first error aborts the whole batch.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import yaml

from kservice.errors import InvalidInput

if TYPE_CHECKING:
    from kservice.cluster import Cluster

__all__ = [
    "Document",
    "PositionMap",
    "decode_documents",
    "load_files",
    "load_text",
    "strategy_for",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


# libyaml's parser when PyYAML was built with it (about 5x faster); the nodes carry the
# same marks either way.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader without the timestamp resolver: sigs.k8s.io/yaml converts YAML to JSON,
    where an unquoted ``2024-01-01T00:00:00Z`` is just a string (a creationTimestamp)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
TAB_HINT = "tabs are not allowed for indentation in YAML; replace them with spaces"


@attrs.frozen
class Position:
    line: int  # 1-based
    column: int  # 1-based


class PositionMap:
    """Field path -> position of the value node, and of the key for mapping entries."""

    def __init__(self) -> None:
        self.values: dict[str, Position] = {}
        self.keys: dict[str, Position] = {}

    def lookup(self, path: str, *, prefer_key: bool = False) -> Position | None:
        """The position of ``path``, or of its nearest ancestor that is known."""
        probe = path
        while True:
            table = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for t in table:
                if probe in t:
                    return t[probe]
            if not probe:
                return None
            probe = _parent(probe)

    @classmethod
    def from_node(cls, node: yaml.Node, source: str) -> PositionMap:
        out = cls()
        out._walk(node, "", source)
        return out

    def _walk(self, node: yaml.Node, path: str, source: str) -> None:
        self.values[path] = _pos(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, Position] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merge keys: the merged values keep their own marks
                key = str(key_node.value)
                if key in seen:
                    # sigs.k8s.io/yaml (strict) refuses duplicate keys; PyYAML would keep
                    # the last one silently, hiding a typo.
                    p = _pos(key_node.start_mark)
                    raise InvalidInput(
                        f'key "{key}" already set in map (first at line {seen[key].line})',
                        source=source, line=p.line, column=p.column,
                        hint="remove one of the duplicate keys",
                    )
                seen[key] = _pos(key_node.start_mark)
                child = f"{path}.{key}" if path else key
                self.keys[child] = seen[key]
                self._walk(value_node, child, source)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, f"{path}[{i}]", source)


def _parent(path: str) -> str:
    # "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> ""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""


def _pos(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


@attrs.frozen
class Document:
    """One object from a manifest file, before it is decoded into a model."""

    data: Any
    source: str
    positions: PositionMap = attrs.field(eq=False)
    #: Prefix of this object's paths inside its file (``items[2]`` for a List item).
    prefix: str = ""

    def where(self, path: str | None, *, prefer_key: bool = False) -> Position | None:
        full = self.prefix
        if path and path != "<root>":
            full = f"{self.prefix}.{path}" if self.prefix else path
        return self.positions.lookup(full, prefer_key=prefer_key)

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "")) if isinstance(self.data, dict) else ""

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    def error(self, message: str, path: str | None = None, hint: str | None = None,
              *, prefer_key: bool = False) -> InvalidInput:
        p = self.where(path, prefer_key=prefer_key)
        return InvalidInput(
            message, source=self.source, line=p.line if p else None,
            column=p.column if p else None, path=path, hint=hint,
        )


# --------------------------------------------------------------------------- reading


def load_text(text: str, source: str = "<input>") -> list[Document]:
    """Every non-empty document in ``text`` (YAML or JSON), ``List`` kinds expanded."""
    stripped = text.lstrip()
    if source.endswith(".json") or stripped.startswith(("{", "[")):
        return _expand(_load_json(text, source))
    return _expand(_load_yaml(text, source))


def _load_json(text: str, source: str) -> list[Document]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"invalid JSON: {exc.msg}", source=source, line=exc.lineno, column=exc.colno,
        ) from None
    # Positions come from reading the same text as YAML (JSON is YAML's flow style); a
    # JSON file PyYAML cannot read (tab-indented, say) still loads, just without positions.
    try:
        node = yaml.compose(text, Loader=_Loader)
        positions = PositionMap.from_node(node, source) if node is not None else PositionMap()
    except (yaml.YAMLError, InvalidInput):
        positions = PositionMap()
    docs = data if isinstance(data, list) else [data]
    if isinstance(data, list):
        return [Document(d, source, positions, f"[{i}]") for i, d in enumerate(docs)]
    return [Document(data, source, positions)]


def _load_yaml(text: str, source: str) -> list[Document]:
    out: list[Document] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            positions = PositionMap.from_node(node, source)
            data = loader.construct_document(node)
            if data is None:
                continue  # an empty document between `---` separators
            out.append(Document(data, source, positions))
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    except yaml.YAMLError as exc:  # unmarked (rare): still never a traceback
        raise InvalidInput(f"YAML syntax error: {exc}", source=source) from None
    finally:
        loader.dispose()
    return out


def _yaml_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> InvalidInput:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    problem = exc.problem or "invalid YAML"
    lines = text.splitlines()
    # A tab in the indentation is the most common cause; name it, at the tab itself.
    for ln in ([line - 1, line - 2] if line else []):
        if 0 <= ln < len(lines):
            body = lines[ln]
            indent = body[: len(body) - len(body.lstrip(" \t"))]
            if "\t" in indent or ("\t" in problem and "\t" in body):
                col = body.index("\t") + 1
                return InvalidInput(
                    "YAML syntax error: found a tab character", source=source,
                    line=ln + 1, column=col, hint=TAB_HINT,
                )
    message = f"YAML syntax error: {problem}"
    if exc.context:
        message += f" ({exc.context})"
    return InvalidInput(message, source=source, line=line, column=column)


def _expand(docs: list[Document]) -> list[Document]:
    """Replace ``kind: List`` documents by their items (kubectl accepts any ``*List``)."""
    out: list[Document] = []
    for doc in docs:
        data = doc.data
        if isinstance(data, dict) and isinstance(data.get("kind"), str) \
                and data["kind"].endswith("List") and "items" in data:
            items = data["items"]
            base = f"{doc.prefix}.items" if doc.prefix else "items"
            if items is None:
                continue
            if not isinstance(items, list):
                raise doc.error("the items of a List must be an array", "items")
            for i, item in enumerate(items):
                out.extend(_expand([Document(item, doc.source, doc.positions, f"{base}[{i}]")]))
        else:
            out.append(doc)
    return out


def _files_in(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)


def load_files(paths: Sequence[str], stdin: IO[str] | None = None) -> list[Document]:
    """Read every ``-f`` argument: files, directories (sorted) and ``-`` (stdin)."""
    docs: list[Document] = []
    for arg in paths:
        if arg == "-":
            stream = stdin if stdin is not None else sys.stdin
            docs.extend(load_text(stream.read(), "<stdin>"))
            continue
        p = Path(arg)
        if p.is_dir():
            files = _files_in(p)
            if not files:
                raise InvalidInput(
                    f"no manifest files (*.yaml, *.yml, *.json) in directory {arg}",
                    source=arg,
                )
        elif p.exists():
            files = [p]
        else:
            raise InvalidInput(f'the path "{arg}" does not exist', source=arg)
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"not UTF-8 text ({exc.reason})", source=str(f)) from None
            except OSError as exc:
                raise InvalidInput(f"cannot read file: {exc.strerror}", source=str(f)) from None
            docs.extend(load_text(text, str(f)))
    return docs


# --------------------------------------------------------------------------- decoding


def check_header(doc: Document) -> None:
    """apiVersion and kind present and strings, as kubectl's client-side check does."""
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error(
            "expected a manifest object (a mapping with apiVersion, kind and metadata), "
            f"got {type(data).__name__}", None,
        )
    for key in ("apiVersion", "kind"):
        value = data.get(key)
        if value is None or value == "":
            raise doc.error(f"{key} not set", None,
                            hint="every manifest needs apiVersion and kind, e.g. "
                                 "apiVersion: v1 / kind: Service")
        if not isinstance(value, str):
            raise doc.error(f"{key} must be a string", key)


def strategy_for(cluster: Cluster, doc: Document) -> Any:
    """The store strategy of the document's kind; a located error when there is none."""
    check_header(doc)
    try:
        return cluster.strategy(doc.kind)
    except InvalidInput as exc:
        version = doc.data["apiVersion"]
        raise doc.error(
            f'no matches for kind "{doc.kind}" in version "{version}"', "kind",
            hint=exc.hint,
        ) from None


def decode_document(cluster: Cluster, doc: Document) -> Any:
    """Decode one document into its model; every error carries file, line and column."""
    strategy = strategy_for(cluster, doc)
    try:
        return strategy.decode(doc.data, "")
    except InvalidInput as exc:
        if exc.source:  # already located (a nested loader)
            raise
        prefer_key = exc.message.startswith("unknown field")
        hint = exc.hint or _what_to_do(doc.kind, exc)
        raise doc.error(exc.message, exc.path, hint, prefer_key=prefer_key) from None


def _what_to_do(kind: str, exc: InvalidInput) -> str | None:
    """A hint for the two errors strict decoding gives most: unknown field, wrong type."""
    if exc.message.startswith("unknown field"):
        hint = "remove the field or fix its spelling (field names are case-sensitive)"
        if kind == "Service" and exc.path:
            parent = exc.path.rsplit(".", 1)[0] if "." in exc.path else ""
            parent = re.sub(r"\[\d+\]", "", parent)
            hint += f"; `kservice explain svc{'.' + parent if parent else ''}` lists the fields"
        return hint
    m = re.search(r"of type (\w+)$", exc.message)
    if m:
        want = {"integer": "a number without quotes", "string": "a string (quote it)",
                "boolean": "true or false", "IntOrString": "a number or a port name"}
        return f"expected {want.get(m.group(1), m.group(1))} here"
    return None


def decode_documents(cluster: Cluster, docs: Iterable[Document]) -> list[tuple[Document, Any]]:
    """Decode all documents first, so a bad one leaves nothing half-applied."""
    return [(doc, decode_document(cluster, doc)) for doc in docs]
