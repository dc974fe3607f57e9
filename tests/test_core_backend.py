"""Backend discovery through entry points: lazy, and a broken plugin does not break others."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from kservice import backend as registry
from kservice.backend import Rendering
from kservice.errors import BackendError


class Good:
    name = "good"
    formats = ("text",)

    def render(self, state: Any, previous: Any = None) -> Rendering:
        return Rendering("good", "n", "IPv4", (("text", "hello\n"),))

    def load(self, kernel: Any, rendering: Rendering) -> None:
        return None


GOOD = Good()


@pytest.fixture
def fake_eps(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = {
        "good": EntryPoint("good", f"{__name__}:GOOD", registry.ENTRY_POINT_GROUP),
        "broken": EntryPoint("broken", "no_such_module_xyz:backend", registry.ENTRY_POINT_GROUP),
        "notabackend": EntryPoint("notabackend", "os:sep", registry.ENTRY_POINT_GROUP),
    }
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    monkeypatch.setattr(registry, "_cache", {})


def test_lists_and_loads_registered_backends(fake_eps: None) -> None:
    assert registry.available_backends() == ("broken", "good", "notabackend")
    b = registry.get_backend("good")
    assert b is GOOD
    assert b.render(None).section("text") == "hello\n"


def test_errors_name_the_backend(fake_eps: None) -> None:
    with pytest.raises(BackendError, match="unknown backend 'nope'; registered backends: broken"):
        registry.get_backend("nope")
    with pytest.raises(BackendError, match="'broken' failed to load"):
        registry.get_backend("broken")
    with pytest.raises(BackendError, match="does not provide a kservice Backend"):
        registry.get_backend("notabackend")
    # the good one still works after the broken ones failed
    assert registry.get_backend("good") is GOOD


def test_rendering_sections() -> None:
    r = Rendering("x", "n", "IPv4", (("a", "1"), ("b", "2")))
    assert r.names == ("a", "b")
    with pytest.raises(BackendError, match="no output format 'c'; it has: a, b"):
        r.section("c")


def test_builtin_backends_are_registered_through_entry_points() -> None:
    names = {ep.name for ep in registry._entry_points().values()}
    assert {"iptables", "ipvs", "nftables", "userspace"} <= names


def test_lazy_sections_are_computed_once_on_demand() -> None:
    calls: list[str] = []

    def expensive() -> str:
        calls.append("x")
        return "big\n"

    r = Rendering("x", "n", "IPv4", (("a", "1"), ("b", expensive)))
    assert calls == []
    assert r.section("b") == "big\n"
    assert r.section("b") == "big\n"
    assert calls == ["x"]
    assert r == Rendering("x", "n", "IPv4", (("a", "1"), ("b", "big\n")))
    assert r != Rendering("x", "n", "IPv4", (("a", "1"), ("b", "other\n")))
