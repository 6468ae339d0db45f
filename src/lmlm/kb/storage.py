"""The knowledge base on disk: one SQLite file (WAL), one row per triplet; its schema, rows and
transactions, and how a write waits for another writer.

Entities and relations are stored once each under their normalized key (``normalize.normalize_key``),
with their sentence vectors (float16 blobs) once computed. A triplet row keeps the entity and
relation text as it was given, the value, its provenance and timestamps.

Deleting a triplet or forgetting an entity leaves a tombstone: the value is erased (NULL) but the
(entity, relation) row stays, so that a later fuzzy query that lands on it gets no answer instead of
the next nearest fact.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lmlm.errors import Busy, LmlmError
from lmlm.kb.aliases import stored_alias_keys
from lmlm.kb.fields import field_problem, is_row_id, provenance_problem
from lmlm.kb.normalize import normalize_key
from lmlm.kb.protocol import Triplet
from lmlm.kb.sqlite_tables import SideTables

SCHEMA_VERSION = "1"
# How long a write waits for another writer (a bulk import holds the lock for its whole file) before Busy.
BUSY_TIMEOUT_S = 60.0
BUSY_RETRY_AFTER_S = 10

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entities(
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    forgotten INTEGER NOT NULL DEFAULT 0, vec BLOB);
CREATE TABLE relations(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL, vec BLOB);
CREATE TABLE aliases(key TEXT NOT NULL, entity_id INTEGER NOT NULL, PRIMARY KEY (key, entity_id)) WITHOUT ROWID;
CREATE TABLE triplets(
    id INTEGER PRIMARY KEY, entity_id INTEGER NOT NULL, relation_id INTEGER NOT NULL,
    entity TEXT NOT NULL, relation TEXT NOT NULL, value TEXT,
    source TEXT, example_id TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE triplet_vec(triplet_id INTEGER PRIMARY KEY, vec BLOB NOT NULL);
CREATE UNIQUE INDEX triplets_fact ON triplets(entity_id, relation_id, value);
"""


@dataclass
class ImportStats:
    read: int = 0
    added: int = 0
    duplicates: int = 0
    invalid: int = 0


def _cached_id(text, kind: str, cache: dict[str, int], make) -> int | None:
    """The id of ``text``, made by ``make`` the first time it is seen; None if it cannot be stored."""
    if isinstance(text, str) and text in cache:
        return cache[text]
    if field_problem(kind, text):
        return None
    cache[text] = make(text)
    return cache[text]


def _check_kb_path(path: Path, create: bool) -> bool:
    """Whether ``path`` is to be made a fresh KB; only a creating caller may turn a missing or empty file into one."""
    if path.is_dir():
        raise LmlmError(f"{path}: is a directory, not a knowledge base")
    if not path.exists():
        if not create:
            raise LmlmError(f"{path}: no such knowledge base")
        return True
    if path.stat().st_size == 0:
        if not create:
            raise LmlmError(f"{path}: an empty file, not a knowledge base (make one with lmlm kb build)")
        return True
    return False


class Store(SideTables):
    """SQLite access for one KB file. Every write is one transaction."""

    def __init__(self, path: str | os.PathLike, create: bool = False, busy_timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        fresh = _check_kb_path(self.path, create)
        self.busy_timeout = busy_timeout
        try:
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA cache_size=-262144")  # 256 MB of page cache keeps bulk imports fast
            self.conn.execute("PRAGMA mmap_size=17179869184")  # reads map the file: no copy, no syscall per page
            if fresh:
                with self.transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.set_meta("schema_version", SCHEMA_VERSION)
            version = self.get_meta("schema_version")
        except sqlite3.DatabaseError as e:
            raise LmlmError(f"{self.path}: not a readable lmlm knowledge base ({e})") from None
        if version != SCHEMA_VERSION:
            raise LmlmError(f"{self.path}: knowledge base schema {version!r}, this lmlm reads {SCHEMA_VERSION!r}")
        self._relation_ids: dict[str, int] = {}

    def close(self) -> None:
        """Fold the write-ahead log into the file, so readers that open it next need not consult it."""
        try:
            self.conn.execute("PRAGMA busy_timeout=1000")  # tidying up is not worth the long wait a write gets
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:  # another connection is reading; the WAL stays until later
            pass
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            raise Busy(f"{self.path}: another process is writing to this knowledge base (waited {self.busy_timeout:g} s); try again later",
                       retry_after=BUSY_RETRY_AFTER_S) from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._relation_ids.clear()
            raise
        self.conn.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError as e:
            raise sqlite3.DatabaseError(str(e)) from None
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # --- writes (call inside ``transaction()``) --------------------------------------------

    def holds_live_entity(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM entities WHERE key=? AND forgotten=0", (normalize_key(name),)).fetchone() is not None

    def entity_id(self, name: str, create: bool = True) -> int | None:
        """The entity under ``name``'s key; with ``create``, made if missing, and revived if forgotten."""
        key = normalize_key(name)
        if create:
            row = self.conn.execute("INSERT INTO entities(key, name) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING id", (key, name)).fetchone()
            if row:
                self.conn.executemany("INSERT OR IGNORE INTO aliases(key, entity_id) VALUES (?, ?)", [(v, row[0]) for v in stored_alias_keys(name)])
                return row[0]
            self.conn.execute("UPDATE entities SET forgotten=0 WHERE key=? AND forgotten=1", (key,))
        row = self.conn.execute("SELECT id FROM entities WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def relation_id(self, name: str, create: bool = True) -> int | None:
        key = normalize_key(name)
        if key in self._relation_ids:
            return self._relation_ids[key]
        row = self.conn.execute("SELECT id FROM relations WHERE key=?", (key,)).fetchone()
        if row is None and not create:
            return None
        rid = row[0] if row else self.conn.execute("INSERT INTO relations(key, name) VALUES (?, ?)", (key, name)).lastrowid
        self._relation_ids[key] = rid
        return rid

    def insert_triplets(self, rows: Iterable[tuple], stats: ImportStats, batch: int = 50_000) -> None:
        """Insert (entity, relation, value, source, example_id) rows; invalid rows are counted and skipped."""
        entity_ids: dict[str, int] = {}  # by raw text: each distinct string is checked and normalized once
        relation_ids: dict[str, int] = {}
        pending: list[tuple] = []
        now = time.time()
        for entity, relation, value, source, example_id in rows:
            stats.read += 1
            eid = _cached_id(entity, "entity", entity_ids, self.entity_id)
            rid = _cached_id(relation, "relation", relation_ids, self.relation_id)
            if eid is None or rid is None or field_problem("value", value) or provenance_problem(source, example_id):
                stats.invalid += 1
                continue
            pending.append((eid, rid, entity, relation, value.strip(), source, example_id, now, now))
            if len(pending) >= batch:
                self._flush(pending, stats)
        self._flush(pending, stats)

    def _flush(self, pending: list[tuple], stats: ImportStats) -> None:
        if not pending:
            return
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT OR IGNORE INTO triplets(entity_id, relation_id, entity, relation, value, source, example_id, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            pending,
        )
        added = self.conn.total_changes - before
        stats.added += added
        stats.duplicates += len(pending) - added
        pending.clear()

    def set_value(self, triplet_id: int, value: str | None) -> bool:
        """Set a triplet's value (None: a tombstone); False if there is no such triplet. A value that another
        fact of the same entity and relation already has is refused."""
        if not is_row_id(triplet_id):
            return False
        try:
            cur = self.conn.execute("UPDATE triplets SET value=?, updated=? WHERE id=?", (value, time.time(), triplet_id))
        except sqlite3.IntegrityError:
            twin = self.conn.execute(
                "SELECT o.id, o.entity, o.relation FROM triplets t JOIN triplets o ON o.entity_id=t.entity_id"
                " AND o.relation_id=t.relation_id AND o.value=?2 WHERE t.id=?1", (triplet_id, value)).fetchone()
            raise LmlmError(f"triplet {triplet_id}: {twin[1]!r} / {twin[2]!r} already has the value {value!r} (triplet {twin[0]});"
                            " delete this one instead") from None
        return cur.rowcount > 0

    def entity_of(self, triplet_id: int) -> tuple[str, bool] | None:
        """The name of a triplet's entity and whether it is forgotten; None if there is no such triplet."""
        if not is_row_id(triplet_id):
            return None
        row = self.conn.execute("SELECT e.name, e.forgotten FROM triplets t JOIN entities e ON e.id=t.entity_id WHERE t.id=?",
                                (triplet_id,)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def forget_entity(self, entity_id: int) -> int:
        self.conn.execute("UPDATE entities SET forgotten=1 WHERE id=?", (entity_id,))
        cur = self.conn.execute("UPDATE triplets SET value=NULL, updated=? WHERE entity_id=? AND value IS NOT NULL", (time.time(), entity_id))
        return cur.rowcount

    # --- reads --------------------------------------------------------------------------

    def fact(self, entity_id: int, relation_id: int, value: str) -> Triplet | None:
        """The triplet of this entity, relation and (stripped) value."""
        row = self.conn.execute(
            "SELECT id, entity, relation, value FROM triplets WHERE entity_id=? AND relation_id=? AND value=?", (entity_id, relation_id, value)
        ).fetchone()
        return Triplet(*row) if row else None

    def exact(self, entity_key: str, relation_key: str) -> tuple[Triplet, bool] | None:
        """The triplet under these keys (a live row before a tombstone, then the oldest) and whether its entity is forgotten."""
        rows = self.conn.execute(
            "SELECT t.id, t.entity, t.relation, t.value, e.forgotten FROM entities e"
            " JOIN relations r ON r.key=?2 JOIN triplets t ON t.entity_id=e.id AND t.relation_id=r.id WHERE e.key=?1",
            (entity_key, relation_key),
        ).fetchall()
        if not rows:
            return None
        row = min(rows, key=lambda r: (r[3] is None, r[0]))
        return Triplet(*row[:4]), bool(row[4])

    def entities_by_key(self, keys: Iterable[str]) -> list[tuple[int, str, bool]]:
        keys = list(keys)
        rows = self.conn.execute(f"SELECT id, name, forgotten FROM entities WHERE key IN ({','.join('?' * len(keys))})", keys)
        return [(i, n, bool(f)) for i, n, f in rows]

    def entities_by_alias(self, keys: Iterable[str]) -> list[tuple[int, str, bool]]:
        keys = list(keys)
        rows = self.conn.execute(
            "SELECT DISTINCT e.id, e.name, e.forgotten FROM aliases a JOIN entities e ON e.id=a.entity_id"
            f" WHERE a.key IN ({','.join('?' * len(keys))})",
            keys,
        )
        return [(i, n, bool(f)) for i, n, f in rows]

    def entity_rows(self, ids: Iterable[int]) -> dict[int, tuple[str, bool]]:
        ids = list(ids)
        rows = self.conn.execute(f"SELECT id, name, forgotten FROM entities WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {i: (n, bool(f)) for i, n, f in rows}

    def entity_names(self) -> list[str]:
        return [name for (name,) in self.conn.execute("SELECT name FROM entities")]

    def data_version(self) -> int:
        """SQLite's counter of commits by other connections to the file."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def facts_of(self, entity_id: int) -> list[tuple[Triplet, str, bytes | None]]:
        """Every triplet row of an entity (tombstones included), with its relation key and vector."""
        rows = self.conn.execute(
            "SELECT t.id, t.entity, t.relation, t.value, r.key, r.vec FROM triplets t JOIN relations r ON r.id=t.relation_id"
            " WHERE t.entity_id=? ORDER BY t.value IS NULL, t.id",
            (entity_id,),
        )
        return [(Triplet(*row[:4]), row[4], row[5]) for row in rows]

    def search(self, key_prefix: str, text: str, limit: int) -> list[Triplet]:
        """Live triplets of entities whose key starts with ``key_prefix``, then of any whose entity, relation or
        value contains ``text`` (a scan, stopped at ``limit``)."""
        upper = key_prefix + "\U0010ffff"
        found = self.conn.execute(
            "SELECT t.id, t.entity, t.relation, t.value FROM entities e JOIN triplets t ON t.entity_id=e.id"
            " WHERE e.key >= ? AND e.key < ? AND t.value IS NOT NULL ORDER BY e.key, t.id LIMIT ?",
            (key_prefix, upper, limit),
        ).fetchall() if key_prefix else []
        if len(found) < limit:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            seen = {row[0] for row in found}
            found += [row for row in self.conn.execute(
                "SELECT id, entity, relation, value FROM triplets WHERE value IS NOT NULL"
                " AND (entity LIKE ?1 ESCAPE '\\' OR relation LIKE ?1 ESCAPE '\\' OR value LIKE ?1 ESCAPE '\\') ORDER BY id LIMIT ?2",
                (pattern, limit + len(seen)),
            ) if row[0] not in seen][: limit - len(found)]
        return [Triplet(*row) for row in found]

    def triplet(self, triplet_id: int) -> Triplet | None:
        if not is_row_id(triplet_id):
            return None
        row = self.conn.execute("SELECT id, entity, relation, value FROM triplets WHERE id=?", (triplet_id,)).fetchone()
        return Triplet(*row) if row else None

    def triplets_by_id(self, ids: Iterable[int]) -> dict[int, Triplet]:
        ids = list(ids)
        rows = self.conn.execute(f"SELECT id, entity, relation, value FROM triplets WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {row[0]: Triplet(*row) for row in rows}

    def last_triplet_id(self) -> int:
        return self.conn.execute("SELECT max(id) FROM triplets").fetchone()[0] or 0

    def iter_triplets(self, live_only: bool = True) -> Iterator[tuple]:
        sql = "SELECT id, entity, relation, value, source, example_id, created, updated FROM triplets"
        yield from self.conn.execute(sql + (" WHERE value IS NOT NULL" if live_only else "") + " ORDER BY id")

    def counts(self) -> dict[str, int]:
        one = lambda sql: self.conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "triplets": one("SELECT count(*) FROM triplets WHERE value IS NOT NULL"),
            "tombstones": one("SELECT count(*) FROM triplets WHERE value IS NULL"),
            "entities": one("SELECT count(*) FROM entities WHERE forgotten=0"),
            "forgotten_entities": one("SELECT count(*) FROM entities WHERE forgotten=1"),
            "relations": one("SELECT count(*) FROM relations"),
        }
