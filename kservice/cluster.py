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

Dispatch rounds
---------------
A write that is not itself made by a subscriber starts a *dispatch round*: its event and
every event the subscribers' own writes cause are delivered in order until the queue is
empty. Then the round's *idle callbacks* (:meth:`Cluster.on_idle`) run -- this is where a
controller that batches its work, as upstream's work queues de-duplicate keys, does the
batch (the EndpointSlice controller syncs each dirty Service once, not once per pod event).
Writes an idle callback makes are dispatched in turn, and the idle callbacks run again,
until a pass is quiet. By the time the write that started the round returns, the cluster
has settled. :meth:`Cluster.events_pending` lets a subscriber ask whether more events of
some kinds are still queued behind the current one.

Cost model
----------
A write is the hot path of every bulk operation (100,000 pods are ~250,000 writes), so
server-set metadata is stamped with one constructor call rather than chained
``attrs.evolve`` calls, and the RFC 3339 timestamp string is formatted once per clock tick.
See :meth:`Cluster.transaction` for how bulk transactions treat the cyclic garbage
collector.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import gc
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs

from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import AlreadyExists, InvalidInput, NotFound
from kservice.models.meta import ObjectMeta

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


#: attrs field names per model class, for :func:`_replace` (None: not safe to copy slots).
_SLOT_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _slot_fields(cls: type) -> tuple[str, ...] | None:
    try:
        return _SLOT_FIELDS[cls]
    except KeyError:
        pass
    names: tuple[str, ...] | None = None
    # Only plain slotted attrs classes: no cached hash to invalidate, no post-init hook.
    if attrs.has(cls) and "__slots__" in cls.__dict__ and \
            not hasattr(cls, "__attrs_post_init__") and \
            "_attrs_cached_hash" not in getattr(cls, "__slots__", ()):
        names = tuple(a.name for a in attrs.fields(cls))
    _SLOT_FIELDS[cls] = names
    return names


def _replace(obj: Any, name: str, value: Any) -> Any:
    """``attrs.evolve(obj, **{name: value})`` without re-running converters/validators.

    Used only by the store to put server-set metadata on an object built by its attrs
    constructor (so every other field is already converted and valid) -- the store's
    hottest line, where evolve's generic path costs twice as much.
    """
    names = _slot_fields(type(obj))
    if names is None:
        return attrs.evolve(obj, **{name: value})
    new = object.__new__(type(obj))
    set_ = object.__setattr__
    for n in names:
        set_(new, n, value if n == name else getattr(obj, n))
    return new


def _with_server_meta(meta: Any, resource_version: str, uid: str,
                      creation_timestamp: str | None, generation: int | None = None) -> Any:
    """``meta`` with the server-set fields replaced (one constructor call, not evolve)."""
    if type(meta) is not ObjectMeta:
        changes: dict[str, Any] = {"resource_version": resource_version, "uid": uid,
                                   "creation_timestamp": creation_timestamp}
        if generation is not None:
            changes["generation"] = generation
        return attrs.evolve(meta, **changes)
    return ObjectMeta(
        name=meta.name, namespace=meta.namespace, generate_name=meta.generate_name,
        labels=meta.labels, annotations=meta.annotations, uid=uid,
        resource_version=resource_version,
        generation=meta.generation if generation is None else generation,
        creation_timestamp=creation_timestamp, deletion_timestamp=meta.deletion_timestamp,
        deletion_grace_period_seconds=meta.deletion_grace_period_seconds,
        owner_references=meta.owner_references, finalizers=meta.finalizers,
    )


#: A transaction that wrote at least this many objects is "bulk" (see Cluster.transaction).
BULK_WRITES = 10_000
#: gc generation-2 threshold while an outermost transaction runs: full collections wait.
_BULK_GC_THRESHOLD_2 = 1_000_000


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
        self._subscribers: tuple[Callable[[Cluster, Event], None], ...] = ()
        self._idle: tuple[Callable[[Cluster], None], ...] = ()
        self._queue: deque[Event] = deque()
        self._dispatching = False
        self._transaction_depth = 0
        #: resourceVersion when the outermost transaction began.
        self._transaction_start = 0
        #: Per kind, a number that changes whenever any object of the kind changes (a
        #: write, a rollback, a restore): lets derived data (a scheduler's node list) be
        #: cached safely. Never rolled back, unlike resourceVersion.
        self._kind_rev: dict[str, int] = {}
        self._rev_counter = 0
        #: (datetime, its RFC 3339 text): the clock's last reading, formatted once.
        self._ts_memo: tuple[Any, str] = (None, "")
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
        """Receive every event, in order, after the write that caused it."""
        self._subscribers = (*self._subscribers, callback)

    def on_idle(self, callback: Callable[[Cluster], None]) -> None:
        """Call ``callback(cluster)`` at the end of every dispatch round.

        It runs once the event queue has drained and before the write that started the
        round returns; its writes are dispatched and the idle callbacks run again until a
        pass writes nothing. This is the hook for batching: mark work on events, do it once
        here (upstream controllers get the same effect from de-duplicating work queues).
        """
        self._idle = (*self._idle, callback)

    def events_pending(self, *kinds: str) -> bool:
        """Whether events (of ``kinds``, or of any kind) are queued behind the current one."""
        if not kinds:
            return bool(self._queue)
        return any(e.kind in kinds for e in self._queue)

    def kind_revision(self, kind: str) -> int:
        """A number that changes whenever any stored object of ``kind`` changes.

        For caching things derived from a whole kind (the scheduler's view of the Nodes);
        equal numbers mean the kind's objects are the very same objects.
        """
        return self._kind_rev.get(kind, 0)

    def _touch(self, kind: str) -> None:
        self._rev_counter += 1
        self._kind_rev[kind] = self._rev_counter

    def _touch_all(self) -> None:
        for kind in self._objects:
            self._touch(kind)

    def timestamp(self) -> str:
        """The clock's current time as the apiserver writes it (RFC 3339, seconds, ``Z``)."""
        now = self.clock()
        memo = self._ts_memo
        if memo[0] != now:
            memo = self._ts_memo = (now, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return memo[1]

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
        if old is None:
            uid = meta.uid or self._uid()
            created: str | None = self.timestamp()
        else:
            uid = old.metadata.uid
            created = old.metadata.creation_timestamp
        return _replace(obj, "metadata", _with_server_meta(
            meta, str(self.resource_version), uid, created))

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
        self._touch(st.kind)
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
        meta, old_meta = obj.metadata, old.metadata
        obj = _replace(obj, "metadata", _with_server_meta(
            meta, old_meta.resource_version, old_meta.uid, old_meta.creation_timestamp,
            meta.generation or old_meta.generation))
        new = st.update(self, old, obj)
        if new == old:
            return old  # a no-op write does not bump resourceVersion, as the apiserver
        stored = self._stamp(new, old)
        self._objects[st.kind][key] = stored
        self._touch(st.kind)
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
        self._touch(kind)
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
        self._touch(st.kind)
        self._emit(Event("ADDED" if old is None else "MODIFIED", st.kind, stored, old,
                         self.resource_version))
        return stored

    def delete_raw(self, kind: str, name: str, namespace: str = "") -> None:
        st = self.strategy(kind)
        key = (namespace if st.namespaced else "", name)
        obj = self._objects[kind].pop(key, None)
        if obj is not None:
            self._touch(kind)
            self.resource_version += 1
            self._emit(Event("DELETED", kind, obj, obj, self.resource_version))

    # ------------------------------------------------------------------ events
    def _emit(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while True:
                while queue:
                    ev = queue.popleft()
                    for cb in self._subscribers:
                        cb(self, ev)
                for idle in self._idle:
                    idle(self)
                if not queue:
                    break
        finally:
            self._dispatching = False
            queue.clear()
        if self._transaction_depth and \
                self.resource_version - self._transaction_start >= BULK_WRITES:
            # A bulk load is under way (see transaction()): what this round left alive is
            # the store's new objects; freezing them now (constant time) keeps every later
            # young collection from tracing them again.
            gc.freeze()

    # ------------------------------------------------------------------ atomicity
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cluster]:
        """All writes inside succeed together or are undone together.

        Garbage collection: while the outermost transaction runs, CPython's *full*
        (generation 2) collections are deferred (its threshold is raised, and restored on
        exit); young collections go on as usual. A bulk load only ever adds live objects,
        and each full pass re-traverses all of them -- at 100,000 pods that was a third of
        the time. Once the transaction has written :data:`BULK_WRITES` objects, each
        dispatch round (and the transaction itself) ends with :func:`gc.freeze` (constant
        time), moving everything then alive out of the collector's sight for good: the store's objects are long-lived, immutable and acyclic, so reference
        counting alone frees them when they are replaced or deleted, and tracing them
        again on every later full pass would only cost time. The price: reference cycles
        alive at that moment (kservice's models form none) are never collected; a process
        that needs that can call :func:`gc.unfreeze`.
        """
        saved = {k: dict(v) for k, v in self._objects.items()}
        saved_rv = self.resource_version
        outermost = self._transaction_depth == 0
        if outermost:
            self._transaction_start = saved_rv
        thresholds = gc.get_threshold()
        if outermost and thresholds[2] < _BULK_GC_THRESHOLD_2:
            gc.set_threshold(thresholds[0], thresholds[1], _BULK_GC_THRESHOLD_2)
        self._transaction_depth += 1
        try:
            yield self
        except BaseException:
            self._objects = saved
            self.resource_version = saved_rv
            self._touch_all()
            self.rebuild()
            raise
        finally:
            self._transaction_depth -= 1
            if outermost:
                gc.set_threshold(*thresholds)
        if outermost and self.resource_version - saved_rv >= BULK_WRITES and gc.isenabled():
            gc.freeze()

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
        self._touch_all()
        self.rebuild()
