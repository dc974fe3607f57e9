"""The CLI's persistent cluster: one SQLite file, one transaction per command.

Theory of operation
-------------------
The file holds two tables: ``objects`` (kind, namespace, name, manifest JSON) and ``meta``
(``resourceVersion``, ``config`` = the :class:`~kservice.config.ClusterConfig` as JSON).
Allocator state is never stored: after loading, :meth:`Cluster.load_objects` rebuilds it
from the objects, as the apiserver's repair controllers do.

A command runs inside :func:`open_session`: it takes SQLite's write lock first
(``BEGIN IMMEDIATE``; a second invocation waits up to the busy timeout instead of failing),
loads every object into a fresh :func:`~kservice.embedded.new_cluster`, runs, and then
writes back only the rows that changed and commits. If the command raises, the transaction
is rolled back and nothing is stored -- so two concurrent ``kservice apply`` runs are
serialised, and a multi-object apply that fails half-way leaves the file as it was.
Read-only commands write nothing, except that the first command on an existing but empty
file stores the seeded default objects, so their UIDs and ages stay put. A read-only command
on a missing file creates nothing: it reads the embedded default cluster, in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from kservice.cluster import Cluster
from kservice.config import DEFAULT_CLUSTER_CONFIG, ClusterConfig
from kservice.errors import InvalidInput, KServiceError

__all__ = [
    "DEFAULT_STATE",
    "STATE_ENV",
    "StateError",
    "config_from_json",
    "config_to_json",
    "default_state_path",
    "open_session",
]

STATE_ENV = "KSERVICE_STATE"
DEFAULT_STATE = "./.kservice/state.db"
#: How long a command waits for another one holding the write lock.
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    manifest  TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StateError(KServiceError, RuntimeError):
    """The state file cannot be opened or read."""


def default_state_path() -> str:
    return os.environ.get(STATE_ENV) or DEFAULT_STATE


def config_to_json(config: ClusterConfig) -> str:
    return json.dumps(attrs.asdict(config), sort_keys=True)


def config_from_json(text: str) -> ClusterConfig:
    data = json.loads(text)
    fields = {f.name for f in attrs.fields(ClusterConfig)}
    # Lists come back from JSON; the config holds tuples. Unknown keys (a newer writer)
    # are dropped rather than crashing an older reader.
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
    return ClusterConfig(**kwargs)


def _connect(path: str) -> sqlite3.Connection:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open state file {path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StateError(f"{path} is not a kservice state file ({exc}); "
                         f"remove it or point --state elsewhere") from None
    return conn


def _load(conn: sqlite3.Connection, config: ClusterConfig | None) -> tuple[Cluster, bool]:
    """Build the cluster from the rows; a fresh file gets kubeadm's default objects."""
    from kservice.embedded import new_cluster

    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "resourceVersion" not in meta:
        return new_cluster(config or DEFAULT_CLUSTER_CONFIG, seed_defaults=True), True
    stored_config = config_from_json(meta["config"]) if "config" in meta else None
    cluster = new_cluster(stored_config or DEFAULT_CLUSTER_CONFIG, seed_defaults=False)
    objects = []
    for kind, ns, name, manifest in conn.execute(
        "SELECT kind, namespace, name, manifest FROM objects ORDER BY kind, namespace, name"
    ):
        try:
            objects.append(cluster.strategy(kind).decode(json.loads(manifest), ""))
        except InvalidInput as exc:
            raise StateError(
                f"stored {kind} {ns + '/' if ns else ''}{name} cannot be loaded: {exc} "
                "(is the component that defines this kind installed?)"
            ) from None
    cluster.load_objects(objects, int(meta["resourceVersion"]))
    return cluster, False


def _rows(cluster: Cluster) -> dict[tuple[str, str, str], str]:
    return {
        (kind, ns, name): json.dumps(obj.to_manifest(), sort_keys=True, separators=(",", ":"))
        for kind, ns, name, obj in cluster.objects_for_storage()
    }


@contextlib.contextmanager
def open_session(
    path: str | None = None, *, write: bool = True, config: ClusterConfig | None = None,
) -> Iterator[Cluster]:
    """Load the stored cluster; on a clean exit with ``write``, store what changed.

    ``config`` only applies when the file is new (``kservice init``). A read-only session
    (``write=False``) on a missing file creates nothing -- no directory, no file: it gets
    the embedded default cluster, in memory.
    """
    path = path or default_state_path()
    if not write and not Path(path).exists():
        from kservice.embedded import new_cluster

        yield new_cluster(config or DEFAULT_CLUSTER_CONFIG, seed_defaults=True)
        return
    conn = _connect(path)
    try:
        try:
            # Readers take the write lock too: a fresh file is seeded and stored by whichever
            # command comes first, and two readers can never deadlock upgrading their locks.
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state file {path} is busy ({exc}); another kservice command "
                             f"held it for more than {BUSY_TIMEOUT_MS // 1000}s") from None
        try:
            cluster, fresh = _load(conn, config)
            before = {} if fresh else _rows(cluster)
            yield cluster
            if write or fresh:
                after = _rows(cluster)
                for key in before.keys() - after.keys():
                    conn.execute(
                        "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", key
                    )
                for key, manifest in after.items():
                    if before.get(key) != manifest:
                        conn.execute(
                            "INSERT OR REPLACE INTO objects (kind, namespace, name, manifest) "
                            "VALUES (?, ?, ?, ?)", (*key, manifest),
                        )
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('resourceVersion', ?)",
                             (str(cluster.resource_version),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)",
                             (config_to_json(cluster.config),))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StateError(f"state file {path}: {exc}; nothing was stored") from None
            raise
    finally:
        conn.close()
