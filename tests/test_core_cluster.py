"""The generic store: strategies, resourceVersion, events, transactions, persistence."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from kservice.cluster import Cluster, Event
from kservice.errors import AlreadyExists, InvalidInput, InvalidObject, NotFound
from kservice.models import ObjectMeta
from kservice.models._reader import Reader


@attrs.frozen
class Widget:
    api_version = "test/v1"
    kind = "Widget"
    metadata: ObjectMeta
    size: int = 0

    @classmethod
    def from_manifest(cls, data: Any, path: str = "") -> Widget:
        r = Reader(data, path)
        r.ignore("apiVersion", "kind")
        out = cls(metadata=r.obj("metadata", ObjectMeta.from_reader) or ObjectMeta(),
                  size=r.int("size") or 0)
        r.finish()
        return out


class WidgetStrategy:
    """Allocates one 'slot' per widget so rollback of derived state can be checked."""

    kind = "Widget"
    api_version = "test/v1"
    resource = "widgets"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Widget:
        return Widget.from_manifest(data, path)

    def create(self, cluster: Cluster, obj: Widget) -> Widget:
        if obj.size < 0:
            raise InvalidObject("Widget", obj.metadata.name, [])
        cluster.extensions.setdefault("slots", set()).add(obj.metadata.name)
        return obj

    def update(self, cluster: Cluster, old: Widget, new: Widget) -> Widget:
        return self.create(cluster, new)

    def delete(self, cluster: Cluster, obj: Widget) -> None:
        cluster.extensions.setdefault("slots", set()).discard(obj.metadata.name)

    def rebuild(self, cluster: Cluster) -> None:
        cluster.extensions["slots"] = {w.metadata.name for w in cluster.list("Widget")}


def make() -> Cluster:
    c = Cluster()
    c.register(WidgetStrategy())
    return c


def w(name: str, size: int = 1, ns: str = "") -> Widget:
    return Widget(metadata=ObjectMeta(name=name, namespace=ns), size=size)


def test_create_defaults_namespace_and_stamps_metadata() -> None:
    c = make()
    stored = c.create(w("a"))
    assert stored.metadata.namespace == "default"
    assert stored.metadata.resource_version == "1"
    assert stored.metadata.uid
    assert stored.metadata.creation_timestamp is not None
    assert c.get("Widget", "a") == stored
    with pytest.raises(AlreadyExists):
        c.create(w("a"))
    with pytest.raises(NotFound):
        c.get("Widget", "b")


def test_apply_reports_created_configured_unchanged() -> None:
    c = make()
    assert c.apply(w("a", 1))[1] == "created"
    assert c.apply(w("a", 1))[1] == "unchanged"
    stored, verb = c.apply(w("a", 2))
    assert verb == "configured"
    assert stored.size == 2
    assert stored.metadata.uid == c.get("Widget", "a").metadata.uid


def test_events_are_delivered_in_order_and_never_reentrantly() -> None:
    c = make()
    seen: list[tuple[str, str]] = []
    depth = [0]

    def controller(cluster: Cluster, ev: Event) -> None:
        depth[0] += 1
        assert depth[0] == 1, "re-entrant delivery"
        seen.append((ev.type, ev.object.metadata.name))
        if ev.object.metadata.name == "a" and ev.type == "ADDED":
            cluster.create(w("child"))
        depth[0] -= 1

    c.subscribe(controller)
    c.create(w("a"))
    c.delete("Widget", "a")
    assert seen == [("ADDED", "a"), ("ADDED", "child"), ("DELETED", "a")]


def test_transaction_undoes_everything_on_failure() -> None:
    c = make()
    c.create(w("keep"))
    rv = c.resource_version
    with pytest.raises(InvalidObject), c.transaction():
        c.create(w("new"))
        c.create(w("bad", size=-1))
    assert [x.metadata.name for x in c.list("Widget")] == ["keep"]
    assert c.resource_version == rv
    assert c.extensions["slots"] == {"keep"}


def test_storage_round_trip_rebuilds_derived_state() -> None:
    c = make()
    c.create(w("a"))
    c.create(w("b", ns="other"))
    rows = c.objects_for_storage()
    assert [(k, ns, n) for k, ns, n, _ in rows] == [("Widget", "default", "a"),
                                                   ("Widget", "other", "b")]
    d = make()
    d.load_objects([o for *_, o in rows], c.resource_version)
    assert d.list("Widget") == c.list("Widget")
    assert d.extensions["slots"] == {"a", "b"}
    assert [x.metadata.name for x in d.list("Widget", namespace="other")] == ["b"]


def test_decode_dispatches_by_kind_and_rejects_unknown_kinds() -> None:
    c = make()
    assert c.decode({"kind": "Widget", "metadata": {"name": "x"}, "size": 3}).size == 3
    with pytest.raises(InvalidInput, match='no matches for kind "Gadget"'):
        c.decode({"kind": "Gadget"})
    with pytest.raises(InvalidInput, match="Kind"):
        c.decode({"apiVersion": "v1"})


def test_generate_name_appends_five_apiserver_characters() -> None:
    c = make()
    a = c.create(Widget(metadata=ObjectMeta(generate_name="web-")))
    b = c.create(Widget(metadata=ObjectMeta(generate_name="web-")))
    for obj in (a, b):
        assert obj.metadata.name.startswith("web-")
        suffix = obj.metadata.name[len("web-"):]
        assert len(suffix) == 5 and set(suffix) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert a.metadata.name != b.metadata.name
    again = make()
    assert again.create(Widget(metadata=ObjectMeta(generate_name="web-"))).metadata.name == (
        a.metadata.name
    )


def test_idle_callbacks_run_once_the_round_has_drained() -> None:
    """on_idle: after every queued event (including subscribers' own writes), before the
    write that started the round returns; an idle write starts another pass."""
    c = make()
    log: list[str] = []

    def controller(cluster: Cluster, ev: Event) -> None:
        log.append(f"{ev.type} {ev.object.metadata.name}")
        if ev.object.metadata.name == "a" and ev.type == "ADDED":
            cluster.create(w("child"))
            assert cluster.events_pending("Widget")
            assert not cluster.events_pending("Gadget")

    def batch(cluster: Cluster) -> None:
        log.append("idle")
        assert not cluster.events_pending()
        if cluster.find("Widget", "batched") is None and cluster.find("Widget", "a"):
            cluster.create(w("batched"))

    c.subscribe(controller)
    c.on_idle(batch)
    c.create(w("a"))
    assert log == ["ADDED a", "ADDED child", "idle", "ADDED batched", "idle"]
    log.clear()
    c.delete("Widget", "child")
    assert log == ["DELETED child", "idle"]


def test_kind_revision_changes_with_writes_and_rollbacks_only() -> None:
    c = make()
    r0 = c.kind_revision("Widget")
    c.create(w("a"))
    r1 = c.kind_revision("Widget")
    assert r1 != r0
    c.get("Widget", "a")
    c.list("Widget")
    assert c.kind_revision("Widget") == r1  # reads change nothing
    c.apply(w("a"))  # unchanged: no write
    assert c.kind_revision("Widget") == r1
    with pytest.raises(InvalidObject), c.transaction():
        c.create(w("bad", size=-1))
    # A rollback restores older objects: derived caches must not survive it.
    assert c.kind_revision("Widget") != r1


def test_stamped_metadata_keeps_user_fields_and_formats_time() -> None:
    import datetime as dt

    clock = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    c = Cluster(clock=lambda: clock)
    c.register(WidgetStrategy())
    meta = ObjectMeta(name="a", labels={"app": "x"}, annotations={"k": "v"}, finalizers=("f",))
    stored = c.create(Widget(metadata=meta, size=3))
    assert stored.metadata.creation_timestamp == "2026-01-02T03:04:05Z" == c.timestamp()
    assert (stored.metadata.labels, stored.metadata.annotations, stored.metadata.finalizers,
            stored.size) == ({"app": "x"}, {"k": "v"}, ("f",), 3)
    updated = c.update(Widget(metadata=ObjectMeta(name="a", namespace="default"), size=4))
    assert updated.metadata.uid == stored.metadata.uid
    assert updated.metadata.creation_timestamp == stored.metadata.creation_timestamp
    assert int(updated.metadata.resource_version) > int(stored.metadata.resource_version)


def test_bulk_transaction_defers_full_collections_and_freezes(monkeypatch) -> None:
    import gc

    import kservice.cluster as cluster_mod

    c = make()
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    c.subscribe(lambda cluster, ev: seen.append(gc.get_threshold()))
    monkeypatch.setattr(cluster_mod, "BULK_WRITES", 3)
    frozen = gc.get_freeze_count()
    try:
        with c.transaction():
            c.create(w("a"))
        assert seen[-1][2] >= cluster_mod._BULK_GC_THRESHOLD_2
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == frozen  # 1 write: not bulk
        with c.transaction():
            for name in ("b", "c", "d"):
                c.create(w(name))
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() > frozen or not gc.isenabled()
    finally:
        gc.unfreeze()
