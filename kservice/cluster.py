"""The emulated apiserver's object store: sans-IO, in memory, with strategies and watches.

Theory of operation
-------------------
Objects are frozen models keyed by (kind, namespace, name). Each kind has a
:class:`Strategy` that reads manifests and runs the kind's create/update/delete pipeline
(defaulting, allocation, validation, release). Every successful write bumps the cluster's
resourceVersion and emits an :class:`Event`; subscribers (controllers such as the
EndpointSlice controller) receive events in order and may write further objects, whose
events are queued behind the current ones -- never delivered re-entrantly.

:meth:`Cluster.transaction` makes a group of writes atomic: on an exception every object
and every allocator goes back to how it was. Persistence (SQLite for the CLI) is an
adapter that saves :meth:`Cluster.objects_for_storage` and restores with
:meth:`Cluster.load_objects`; allocators are always rebuilt from stored objects, as the
apiserver's repair controllers do, so no allocator state is ever stored separately.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs

from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import AlreadyExists, InvalidInput, NotFound

__all__ = ["Cluster", "Event", "Strategy"]

ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


@attrs.frozen
class Event:
    """A watch event: ``ADDED``, ``MODIFIED`` or ``DELETED``."""

    type: str
    kind: str
    object: Any
    old: Any = None
    resource_version: int = 0


class Strategy(Protocol):
    """Per-kind behaviour of the store (the apiserver's RESTCreateStrategy and friends)."""

    kind: str
    api_version: str
    #: Plural lower-case resource name (``services``).
    resource: str
    namespaced: bool

    def decode(self, data: Any, path: str = "") -> Any:
        """Read a manifest strictly into this kind's model (``Model.from_manifest``)."""
        ...

    def create(self, cluster: Cluster, obj: Any) -> Any:
        """Default, allocate and validate a new object; return what is stored."""
        ...

    def update(self, cluster: Cluster, old: Any, new: Any) -> Any:
        """Run the update pipeline; return what is stored."""
        ...

    def delete(self, cluster: Cluster, obj: Any) -> None:
        """Release what the object held (allocations)."""
        ...

    def rebuild(self, cluster: Cluster) -> None:
        """Re-derive in-memory state (allocators) from the stored objects."""
        ...


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


class Cluster:
    """An emulated cluster: config, objects, strategies, subscribers."""

    def __init__(
        self,
        config: ClusterConfig = DEFAULT_CLUSTER_CONFIG,
        *,
        clock: Callable[[], _dt.datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.clock = clock
        self.resource_version = 0
        self._objects: dict[str, dict[ObjKey, Any]] = {}
        self._strategies: dict[str, Strategy] = {}
        self._subscribers: list[Callable[[Cluster, Event], None]] = []
        self._queue: deque[Event] = deque()
        self._dispatching = False
        #: Free-form state components keep per cluster (allocators, controllers).
        self.extensions: dict[str, Any] = {}

    # ------------------------------------------------------------------ registration
    def register(self, strategy: Strategy) -> None:
        self._strategies[strategy.kind] = strategy
        self._objects.setdefault(strategy.kind, {})

    def strategy(self, kind: str) -> Strategy:
        try:
            return self._strategies[kind]
        except KeyError:
            raise InvalidInput(
                f'no matches for kind "{kind}"',
                hint="known kinds: " + ", ".join(sorted(self._strategies)),
            ) from None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._strategies))

    def subscribe(self, callback: Callable[[Cluster, Event], None]) -> None:
        self._subscribers.append(callback)

    # ------------------------------------------------------------------ reads
    def get(self, kind: str, name: str, namespace: str = "default") -> Any:
        st = self.strategy(kind)
        key = (namespace if st.namespaced else "", name)
        try:
            return self._objects[kind][key]
        except KeyError:
            raise NotFound(st.resource, name, namespace) from None

    def find(self, kind: str, name: str, namespace: str = "default") -> Any | None:
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None) -> list[Any]:
        """Objects of ``kind`` sorted by (namespace, name); ``namespace=None`` = all."""
        objs = self._objects.get(kind, {})
        keys = sorted(objs)
        if namespace is not None:
            keys = [k for k in keys if k[0] == namespace]
        return [objs[k] for k in keys]

    def decode(self, data: Any, path: str = "") -> Any:
        """Decode a manifest dict of any registered kind."""
        if not isinstance(data, dict):
            raise InvalidInput("expected an object with apiVersion and kind", path=path or None)
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidInput("Object 'Kind' is missing", path=path or None)
        return self.strategy(kind).decode(data, path)

    # ------------------------------------------------------------------ writes
    def _key(self, st: Strategy, obj: Any) -> ObjKey:
        meta = obj.metadata
        return (meta.namespace if st.namespaced else "", meta.name)

    def _default_namespace(self, st: Strategy, obj: Any) -> Any:
        if st.namespaced and not obj.metadata.namespace:
            obj = attrs.evolve(obj, metadata=attrs.evolve(obj.metadata, namespace="default"))
        return obj

    def _stamp(self, obj: Any, old: Any | None) -> Any:
        self.resource_version += 1
        meta = obj.metadata
        changes: dict[str, Any] = {"resource_version": str(self.resource_version)}
        if old is None:
            changes["uid"] = meta.uid or self._uid()
            changes["creation_timestamp"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            changes["uid"] = old.metadata.uid
            changes["creation_timestamp"] = old.metadata.creation_timestamp
        return attrs.evolve(obj, metadata=attrs.evolve(meta, **changes))

    def _uid(self) -> str:
        # Deterministic UIDs (seed + counter) keep output reproducible.
        n = (self.config.seed * 1_000_003 + self.resource_version) & ((1 << 128) - 1)
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    #: The apiserver's alphabet for generated name suffixes (no vowels, no confusable digits).
    _NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

    def _generate_name(self, st: Strategy, obj: Any) -> Any:
        """metadata.generateName: base (cut to 58) + 5 characters, as the apiserver does.

        The suffix comes from the cluster seed and resourceVersion, so runs are reproducible.
        """
        meta = obj.metadata
        if meta.name or not meta.generate_name:
            return obj
        base = meta.generate_name[:58]
        n = self.config.seed * 7_919 + self.resource_version * 104_729 + 1
        for attempt in range(100):
            x = (n + attempt * 1_000_003) * 2_654_435_761 % (27**5)
            suffix = ""
            for _ in range(5):
                x, r = divmod(x, 27)
                suffix += self._NAME_ALPHABET[r]
            name = base + suffix
            if (meta.namespace if st.namespaced else "", name) not in self._objects[st.kind]:
                return attrs.evolve(obj, metadata=attrs.evolve(meta, name=name))
        raise AlreadyExists(st.resource, base + "*****")

    def create(self, obj: Any) -> Any:
        st = self.strategy(obj.kind)
        obj = self._default_namespace(st, obj)
        obj = self._generate_name(st, obj)
        key = self._key(st, obj)
        if key in self._objects[st.kind]:
            raise AlreadyExists(st.resource, obj.metadata.name)
        stored = self._stamp(st.create(self, obj), None)
        self._objects[st.kind][key] = stored
        self._emit(Event("ADDED", st.kind, stored, None, self.resource_version))
        return stored

    def update(self, obj: Any) -> Any:
        """Replace an existing object (PUT)."""
        st = self.strategy(obj.kind)
        obj = self._default_namespace(st, obj)
        key = self._key(st, obj)
        old = self._objects[st.kind].get(key)
        if old is None:
            raise NotFound(st.resource, obj.metadata.name, obj.metadata.namespace)
        # Server-set metadata carries over from the stored object, as the apiserver does
        # for a PUT that omits it; only then is "nothing changed" detectable.
        meta = obj.metadata
        obj = attrs.evolve(obj, metadata=attrs.evolve(
            meta,
            uid=old.metadata.uid,
            creation_timestamp=old.metadata.creation_timestamp,
            resource_version=old.metadata.resource_version,
            generation=meta.generation or old.metadata.generation,
        ))
        new = st.update(self, old, obj)
        if new == old:
            return old  # a no-op write does not bump resourceVersion, as the apiserver
        stored = self._stamp(new, old)
        self._objects[st.kind][key] = stored
        self._emit(Event("MODIFIED", st.kind, stored, old, self.resource_version))
        return stored

    def apply(self, obj: Any) -> tuple[Any, str]:
        """Create or update; returns the stored object and ``created``/``configured``/``unchanged``."""
        st = self.strategy(obj.kind)
        obj = self._default_namespace(st, obj)
        if self._key(st, obj) not in self._objects[st.kind]:
            return self.create(obj), "created"
        before = self.resource_version
        stored = self.update(obj)
        return stored, ("unchanged" if self.resource_version == before else "configured")

    def delete(self, kind: str, name: str, namespace: str = "default") -> Any:
        st = self.strategy(kind)
        key = (namespace if st.namespaced else "", name)
        obj = self._objects[kind].get(key)
        if obj is None:
            raise NotFound(st.resource, name, namespace)
        st.delete(self, obj)
        del self._objects[kind][key]
        self.resource_version += 1
        self._emit(Event("DELETED", kind, obj, obj, self.resource_version))
        return obj

    def put_raw(self, obj: Any) -> Any:
        """Store an object as is (no pipeline): controllers' own writes and restore."""
        st = self.strategy(obj.kind)
        key = self._key(st, obj)
        old = self._objects[st.kind].get(key)
        if old == obj:
            return old
        stored = self._stamp(obj, old)
        self._objects[st.kind][key] = stored
        self._emit(Event("ADDED" if old is None else "MODIFIED", st.kind, stored, old,
                         self.resource_version))
        return stored

    def delete_raw(self, kind: str, name: str, namespace: str = "") -> None:
        st = self.strategy(kind)
        key = (namespace if st.namespaced else "", name)
        obj = self._objects[kind].pop(key, None)
        if obj is not None:
            self.resource_version += 1
            self._emit(Event("DELETED", kind, obj, obj, self.resource_version))

    # ------------------------------------------------------------------ events
    def _emit(self, event: Event) -> None:
        self._queue.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._queue:
                ev = self._queue.popleft()
                for cb in list(self._subscribers):
                    cb(self, ev)
        finally:
            self._dispatching = False
            self._queue.clear()

    # ------------------------------------------------------------------ atomicity
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cluster]:
        """All writes inside succeed together or are undone together."""
        saved = {k: dict(v) for k, v in self._objects.items()}
        saved_rv = self.resource_version
        try:
            yield self
        except BaseException:
            self._objects = saved
            self.resource_version = saved_rv
            self.rebuild()
            raise

    def rebuild(self) -> None:
        for st in self._strategies.values():
            st.rebuild(self)

    # ------------------------------------------------------------------ persistence
    def objects_for_storage(self) -> builtins.list[tuple[str, str, str, Any]]:
        """(kind, namespace, name, object) for every stored object, sorted."""
        out = []
        for kind in sorted(self._objects):
            for (ns, name), obj in sorted(self._objects[kind].items()):
                out.append((kind, ns, name, obj))
        return out

    def load_objects(self, objects: builtins.list[Any], resource_version: int) -> None:
        """Restore stored objects verbatim (no pipeline, no events), then rebuild."""
        for kind in self._objects:
            self._objects[kind].clear()
        for obj in objects:
            st = self.strategy(obj.kind)
            self._objects[st.kind][self._key(st, obj)] = obj
        self.resource_version = resource_version
        self.rebuild()
