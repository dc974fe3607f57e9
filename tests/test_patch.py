"""kservice.patch: RFC 7386 and RFC 6902 (their own examples), strategic merge, apply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kservice.errors import InvalidInput
from kservice.patch import (
    apply_patch,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
    three_way_merge,
)

# RFC 7386 Appendix A, every row: (original, patch, result).
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC7386)
def test_rfc7386_appendix_a(original, patch, result) -> None:
    assert json_merge_patch(original, patch) == result


def test_merge_patch_does_not_modify_inputs() -> None:
    orig = {"a": {"b": 1}}
    json_merge_patch(orig, {"a": {"b": 2}})
    assert orig == {"a": {"b": 1}}


# RFC 6902 Appendix A (A.1-A.10, A.16).
RFC6902 = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
]


@pytest.mark.parametrize(("doc", "ops", "result"), RFC6902)
def test_rfc6902_appendix_a(doc, ops, result) -> None:
    assert json_patch(doc, ops) == result


@pytest.mark.parametrize(("doc", "ops", "match"), [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "test failed"),  # A.9
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "no member"),  # A.12
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/5", "value": 1}], "out of range"),
    ({"foo": 1}, [{"op": "remove", "path": "/bar"}], "no member"),
    ({"foo": 1}, [{"op": "frobnicate", "path": "/foo"}], "unknown op"),
])
def test_rfc6902_errors(doc, ops, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        json_patch(doc, ops)


def test_json_patch_is_all_or_nothing() -> None:
    doc = {"a": 1}
    with pytest.raises(InvalidInput):
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 2},
                         {"op": "remove", "path": "/zzz"}])
    assert doc == {"a": 1}


SVC = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"a": "1"}},
    "spec": {
        "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                  {"name": "https", "port": 443}],
        "externalIPs": ["192.0.2.1", "192.0.2.2"],
        "selector": {"app": "web"},
    },
}


def test_smp_merges_service_ports_on_port() -> None:
    out = strategic_merge_patch(SVC, {"spec": {"ports": [{"port": 80, "targetPort": 9090},
                                                         {"port": 8443, "name": "alt"}]}})
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090},
        {"name": "https", "port": 443},
        {"name": "alt", "port": 8443},
    ]


def test_merge_patch_replaces_the_ports_list() -> None:
    out = json_merge_patch(SVC, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}]


def test_smp_delete_directive_on_list_item() -> None:
    out = strategic_merge_patch(SVC, {"spec": {"ports": [{"port": 443, "$patch": "delete"}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [80]


def test_smp_replaces_scalar_lists_and_null_deletes() -> None:
    out = strategic_merge_patch(SVC, {"spec": {"externalIPs": ["192.0.2.9"], "selector": None},
                                      "metadata": {"labels": {"b": "2"}}})
    assert out["spec"]["externalIPs"] == ["192.0.2.9"]
    assert "selector" not in out["spec"]
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert SVC["spec"]["externalIPs"] == ["192.0.2.1", "192.0.2.2"]  # input untouched


def test_smp_replace_directive_on_map() -> None:
    out = strategic_merge_patch(SVC, {"spec": {"selector": {"$patch": "replace", "tier": "x"}}})
    assert out["spec"]["selector"] == {"tier": "x"}


def test_smp_merge_key_missing_is_an_error() -> None:
    with pytest.raises(InvalidInput, match='merge key "port"'):
        strategic_merge_patch(SVC, {"spec": {"ports": [{"name": "x"}]}})


def test_smp_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    obj = {"kind": "Service", "metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge_patch(obj, {"metadata": {"finalizers": ["c", "a"]}})[
        "metadata"]["finalizers"] == ["a", "b", "c"]
    assert strategic_merge_patch(obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})[
        "metadata"]["finalizers"] == ["b"]


def test_three_way_keeps_foreign_fields_and_drops_removed_ones() -> None:
    last = {"kind": "Service", "metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"port": 80}, {"port": 81}]}}
    live = {"kind": "Service", "metadata": {"name": "web", "labels": {"a": "1", "team": "x"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001},
                               {"port": 81, "protocol": "TCP"}], "clusterIP": "10.96.0.5"}}
    new = {"kind": "Service", "metadata": {"name": "web", "labels": {"b": "2"}},
           "spec": {"ports": [{"port": 80, "name": "http"}]}}
    out = three_way_merge(last, new, live)
    # the label the user dropped goes, the one another writer added stays
    assert out["metadata"]["labels"] == {"b": "2", "team": "x"}
    # port 81 was removed from the manifest; port 80 keeps server-set fields
    assert out["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "nodePort": 30001,
                                     "name": "http"}]
    assert out["spec"]["clusterIP"] == "10.96.0.5"


@pytest.mark.parametrize("kind", ["strategic", "merge"])
def test_apply_patch_accepts_yaml(kind: str) -> None:
    out = apply_patch(SVC, "spec:\n  type: NodePort\n", kind)
    assert out["spec"]["type"] == "NodePort"


def test_apply_patch_rejects_garbage() -> None:
    with pytest.raises(InvalidInput):
        apply_patch(SVC, "{not: [valid", "merge")
    with pytest.raises(InvalidInput, match="must be an object"):
        apply_patch(SVC, "[1, 2]", "strategic")


def test_three_way_dropping_a_whole_map_deletes_it_like_kubectl() -> None:
    # CreateThreeWayMergePatch's deletions: a key in last-applied but not in the new
    # manifest becomes null, taking other writers' entries with it.
    last = {"kind": "Service", "metadata": {"name": "web", "labels": {"a": "1"}}}
    live = {"kind": "Service", "metadata": {"name": "web", "labels": {"a": "1", "team": "x"}}}
    new = {"kind": "Service", "metadata": {"name": "web"}}
    assert "labels" not in three_way_merge(last, new, live)["metadata"]


# --------------------------------------------------------------------------- properties

_keys = st.sampled_from(["a", "b", "c", "d"])
_scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.booleans())
_json = st.recursive(_scalars | st.lists(_scalars, max_size=3),
                     lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8)
_docs = st.dictionaries(_keys, _json, max_size=4)
_patches = st.recursive(_scalars | st.none() | st.lists(_scalars, max_size=3),
                        lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8)


@given(_docs, st.dictionaries(_keys, _patches, max_size=4))
def test_merge_patch_is_idempotent(doc, patch) -> None:
    once = json_merge_patch(doc, patch)
    assert json_merge_patch(once, patch) == once


@given(_docs, st.dictionaries(_keys, _patches, max_size=4))
def test_smp_without_merge_keys_is_a_merge_patch(doc, patch) -> None:
    # With no list carrying a patchMergeKey (kind "" has none under these keys), a
    # strategic merge patch degenerates to RFC 7386.
    assert strategic_merge_patch(doc, patch, "Widget") == json_merge_patch(doc, patch)


@given(_docs, _docs)
def test_three_way_from_nothing_yields_the_new_manifest(live, new) -> None:
    # With no last-applied and no foreign fields, applying `new` over `new` is a no-op,
    # and applying it over an empty object gives `new`.
    assert three_way_merge(None, new, new, "Widget") == new
    assert three_way_merge(None, new, {}, "Widget") == new
