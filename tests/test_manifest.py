"""kservice.manifest: YAML/JSON/List/stdin/directory loading and file:line:column errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kservice.cluster import Cluster
from kservice.errors import InvalidInput
from kservice.manifest import TAB_HINT, decode_documents, load_files, load_text
from kservice.testing.cli import install_service_api


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    install_service_api(c)
    return c


SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  ports:
  - port: 80
"""


def decode_one(cluster: Cluster, text: str, source: str = "svc.yaml"):
    return decode_documents(cluster, load_text(text, source))


def test_multi_document_yaml_skips_empty_documents(cluster: Cluster) -> None:
    text = SVC.format(name="a") + "---\n---\n" + SVC.format(name="b") + "---\n"
    out = decode_one(cluster, text)
    assert [obj.metadata.name for _, obj in out] == ["a", "b"]


def test_unknown_field_points_at_the_key(cluster: Cluster) -> None:
    text = SVC.format(name="a") + "    prot: TCP\n"
    with pytest.raises(InvalidInput) as ei:
        decode_one(cluster, text)
    e = ei.value
    assert (e.source, e.line, e.column) == ("svc.yaml", 8, 5)
    assert e.path == "spec.ports[0].prot"
    assert str(e).startswith('svc.yaml:8:5: unknown field "spec.ports[0].prot"')
    assert "`kservice explain svc.spec.ports` lists the fields" in str(e)


def test_wrong_type_points_at_the_value(cluster: Cluster) -> None:
    text = SVC.format(name="a").replace("port: 80", "port: eighty")
    with pytest.raises(InvalidInput) as ei:
        decode_one(cluster, text)
    assert (ei.value.line, ei.value.column) == (7, 11)
    assert "cannot unmarshal string into field spec.ports[0].port" in str(ei.value)
    assert str(ei.value).endswith("expected a number without quotes here")


def test_label_values_must_be_strings_with_position_and_hint(cluster: Cluster) -> None:
    text = SVC.format(name="a").replace("  name: a\n", "  name: a\n  labels:\n    x: true\n")
    with pytest.raises(InvalidInput) as ei:
        decode_one(cluster, text)
    assert (ei.value.line, ei.value.column) == (6, 8)
    assert "quote values" in str(ei.value)


def test_tab_indentation_is_named(cluster: Cluster) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n\tname: a\n"
    with pytest.raises(InvalidInput) as ei:
        load_text(text, "tabs.yaml")
    assert (ei.value.line, ei.value.column) == (4, 1)
    assert TAB_HINT in str(ei.value)
    assert str(ei.value).startswith("tabs.yaml:4:1:")


def test_yaml_syntax_error_has_position() -> None:
    with pytest.raises(InvalidInput) as ei:
        load_text("a: 1\n b: 2\n", "bad.yaml")
    assert ei.value.line == 2
    # libyaml (and go-yaml, its port) say "in this context"; pure-Python PyYAML "here".
    assert "mapping values are not allowed" in str(ei.value)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(InvalidInput) as ei:
        load_text("apiVersion: v1\nkind: Service\nkind: Pod\n", "dup.yaml")
    assert (ei.value.line, ei.value.column) == (3, 1)
    assert 'key "kind" already set' in str(ei.value)


def test_unknown_kind(cluster: Cluster) -> None:
    text = "apiVersion: v1\nkind: Servise\nmetadata:\n  name: a\n"
    with pytest.raises(InvalidInput) as ei:
        decode_one(cluster, text)
    assert 'no matches for kind "Servise" in version "v1"' in str(ei.value)
    assert (ei.value.line, ei.value.column) == (2, 7)


def test_unknown_api_version(cluster: Cluster) -> None:
    text = SVC.format(name="a").replace("apiVersion: v1", "apiVersion: v2")
    with pytest.raises(InvalidInput) as ei:
        decode_one(cluster, text)
    assert 'no matches for kind "Service" in version "v2"' in str(ei.value)
    assert ei.value.line == 1


def test_missing_api_version(cluster: Cluster) -> None:
    with pytest.raises(InvalidInput, match="apiVersion not set"):
        decode_one(cluster, "kind: Service\nmetadata:\n  name: a\n")


def test_kind_list_items_with_positions(cluster: Cluster) -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
  spec:
    bogus: 1
"""
    docs = load_text(text, "list.yaml")
    assert [d.name for d in docs] == ["a", "b"]
    with pytest.raises(InvalidInput) as ei:
        decode_documents(cluster, docs)
    assert (ei.value.line, ei.value.column) == (12, 5)


def test_json_document_and_positions(cluster: Cluster) -> None:
    text = ('{"apiVersion": "v1", "kind": "Service",\n'
            ' "metadata": {"name": "j"},\n "spec": {"ports": [{"port": "x"}]}}\n')
    docs = load_text(text, "svc.json")
    with pytest.raises(InvalidInput) as ei:
        decode_documents(cluster, docs)
    assert ei.value.line == 3


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(InvalidInput) as ei:
        load_text('{"apiVersion": "v1",\n "kind": }', "bad.json")
    assert (ei.value.line, ei.value.column) == (2, 10)


def test_directory_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SVC.format(name="b"))
    (tmp_path / "a.yml").write_text(SVC.format(name="a"))
    (tmp_path / "c.json").write_text('{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}')
    (tmp_path / "notes.txt").write_text("not a manifest")
    docs = load_files([str(tmp_path)])
    assert [d.name for d in docs] == ["a", "b", "c"]
    assert docs[0].source.endswith("a.yml")


def test_stdin_and_missing_path(tmp_path: Path) -> None:
    docs = load_files(["-"], stdin=io.StringIO(SVC.format(name="s")))
    assert docs[0].source == "<stdin>" and docs[0].name == "s"
    with pytest.raises(InvalidInput, match="does not exist"):
        load_files([str(tmp_path / "nope.yaml")])


def test_non_mapping_document(cluster: Cluster) -> None:
    with pytest.raises(InvalidInput, match="expected a manifest object"):
        decode_one(cluster, "- a\n- b\n")


# --------------------------------------------------------------------------- properties

_names = st.text("abcxyz", min_size=1, max_size=4)
_tree = st.recursive(
    st.integers(0, 9) | st.sampled_from(["v", "w"]),
    lambda inner: st.dictionaries(_names, inner, min_size=1, max_size=3)
    | st.lists(inner, min_size=1, max_size=3),
    max_leaves=10,
)


def _paths(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{prefix}.{k}" if prefix else k
            yield p, k
            yield from _paths(v, p)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, f"{prefix}[{i}]")


@given(st.dictionaries(_names, _tree, min_size=1, max_size=3))
def test_every_key_path_points_at_its_key(data) -> None:
    text = yaml.safe_dump(data, default_flow_style=False)
    doc = load_text(text, "gen.yaml")[0]
    lines = text.splitlines()
    for path, key in _paths(data):
        pos = doc.where(path, prefer_key=True)
        assert pos is not None, path
        assert lines[pos.line - 1][pos.column - 1:].startswith(key), (path, pos)
