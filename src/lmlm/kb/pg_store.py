"""The knowledge base in PostgreSQL: the same rows and queries as ``storage.Store`` (SQLite), over a
connection pool, so that several serving replicas share one KB.

Every write runs in one transaction that also raises the KB version (``kb_state``), logs what it changed
(``changes``) and NOTIFYs ``lmlm_kb`` with the version, all at its commit. A writer holds the ``kb_state``
row from its first change to its commit, so versions commit in order. ``snapshot()`` gives a lookup one
consistent view (REPEATABLE READ) and the version it answers from.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lmlm.errors import Busy, LmlmError
from lmlm.kb.aliases import stored_alias_keys
from lmlm.kb.fields import field_problem, is_row_id, provenance_problem
from lmlm.kb.normalize import normalize_key
from lmlm.kb.pg_schema import configure_connection, prepare, redact
from lmlm.kb.pg_tables import PgSideTables
from lmlm.kb.protocol import Triplet
from lmlm.kb.storage import BUSY_RETRY_AFTER_S, BUSY_TIMEOUT_S, ImportStats

CHANNEL = "lmlm_kb"
NOTIFY_MAX_BYTES = 7000  # PostgreSQL refuses payloads of 8000 bytes; longer changes send the version alone
POOL_MAX = 4
CHANGES_KEPT = 10_000  # versions of the change log kept: a replica further behind starts its in-memory state over


def md5(key: str) -> str:
    return hashlib.md5(key.encode("utf-8")).hexdigest()


def _has_nul(*texts) -> bool:
    """PostgreSQL text cannot hold NUL characters (SQLite can)."""
    return any(isinstance(t, str) and "\x00" in t for t in texts)


class PgStore(PgSideTables):
    """PostgreSQL access for one KB. Every write is one transaction; reads outside one take a pooled connection."""

    def __init__(self, url: str, create: bool = False, busy_timeout: float = BUSY_TIMEOUT_S, target_schema: int | None = None):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url, self.path = url, redact(url)  # ``path`` names the KB in messages, as the SQLite store's does
        self.busy_timeout = busy_timeout
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                prepare(conn, self.path, create, *([target_schema] if target_schema else []))
        except psycopg.Error as e:
            raise LmlmError(f"{self.path}: cannot open the knowledge base ({str(e).strip().splitlines()[0]})") from None
        self.pool = ConnectionPool(url, min_size=1, max_size=POOL_MAX, kwargs={"autocommit": True}, configure=configure_connection, open=True,
                                   name="lmlm-kb")
        self._local = threading.local()
        self._relation_ids: dict[str, int] = {}
        self.written: set[int] = set()  # versions this process committed: its own state already reflects them

    def close(self) -> None:
        self.pool.close()

    # --- connections and transactions -----------------------------------------------------

    @contextmanager
    def _conn(self):
        import psycopg

        bound = getattr(self._local, "conn", None)
        if bound is not None:
            yield bound
            return
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as e:
            raise self._unreachable(e) from None

    def _unreachable(self, error) -> Busy:
        """A lost or refused connection is the database's outage, not bad input: try again later (HTTP 503)."""
        return Busy(f"{self.path}: the database is unreachable ({str(error).strip().splitlines()[0]}); try again later",
                    retry_after=BUSY_RETRY_AFTER_S)

    def rows(self, sql: str, params=()) -> list[tuple]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, params=()):
        with self._conn() as conn:
            return conn.execute(sql, params).fetchone()

    @contextmanager
    def transaction(self):
        """One transaction (joined by any nested one); its changes get one KB version, published at commit."""
        if getattr(self._local, "conn", None) is not None:
            yield self._local.conn
            return
        with self._bound("BEGIN") as conn:
            conn.execute(f"SET LOCAL lock_timeout = {int(self.busy_timeout * 1000)}")  # then Busy, as SQLite's busy timeout
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[int]:
        """A consistent view for a batch of lookups; yields the KB version it shows (one indexed read)."""
        if getattr(self._local, "conn", None) is not None:
            yield self._local.version
            return
        with self._bound("BEGIN ISOLATION LEVEL REPEATABLE READ") as conn:
            self._local.version = conn.execute("SELECT version FROM kb_state WHERE id=1").fetchone()[0]
            yield self._local.version

    @contextmanager
    def _bound(self, begin: str):
        import psycopg

        with self._conn() as conn:  # a lost connection, here or in the block, is reported as the database's outage
            self._local.conn, self._local.notes, self._local.version = conn, [], None
            try:
                conn.execute(begin)
                yield conn
                version = self._publish(conn, self._local.notes)
                conn.execute("COMMIT")
                if version:
                    self.written.add(version)
            except psycopg.errors.LockNotAvailable:
                self._rollback(conn)
                raise Busy(f"{self.path}: another writer holds this knowledge base (waited {self.busy_timeout:g} s); try again later",
                           retry_after=BUSY_RETRY_AFTER_S) from None
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._local.conn = self._local.notes = self._local.version = None

    def _rollback(self, conn) -> None:
        import psycopg

        self._relation_ids.clear()
        try:
            conn.execute("ROLLBACK")
        except psycopg.OperationalError:  # the connection is gone, and its transaction with it
            pass

    def _note(self, kind: str, **detail) -> None:
        self._local.notes.append({"kind": kind, **detail})

    def _publish(self, conn, notes: list[dict]) -> int | None:
        """Raise the KB version, log the transaction's changes under it and NOTIFY replicas (sent at commit)."""
        if not notes:
            return None
        version = self.next_version(conn, notes)
        conn.execute("INSERT INTO changes(version, detail) VALUES (%s, %s)", (version, json.dumps(notes)))
        conn.execute("DELETE FROM changes WHERE version <= %s", (version - CHANGES_KEPT,))
        payload = json.dumps({"version": version, "changes": notes})
        payload = payload if len(payload.encode()) <= NOTIFY_MAX_BYTES else json.dumps({"version": version})
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        return version

    # --- meta ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key=%s", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))
        if key == "encoder":
            self._note("vectors_cleared")

    # --- writes (call inside ``transaction()``) --------------------------------------------

    def holds_live_entity(self, name: str) -> bool:
        key = normalize_key(name)
        return self.one("SELECT 1 FROM entities WHERE md5(key)=%s AND key=%s AND NOT forgotten", (md5(key), key)) is not None

    def entity_id(self, name: str, create: bool = True) -> int | None:
        ids = self._entity_ids([name], create)
        return ids.get(name)

    def relation_id(self, name: str, create: bool = True) -> int | None:
        key = normalize_key(name)
        if key not in self._relation_ids:
            if create:
                self._insert_keys("relations", {key: name})
            row = self.one("SELECT id FROM relations WHERE md5(key)=%s AND key=%s", (md5(key), key))
            if row is None:
                return None
            self._relation_ids[key] = row[0]
        return self._relation_ids[key]

    def _insert_keys(self, table: str, names: dict[str, str]) -> list[tuple[int, str]]:
        """Insert (key, name) rows not yet stored; returns (id, key) of those inserted."""
        return self.rows(
            f"INSERT INTO {table}(key, name) SELECT k, n FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(k, n, o)"
            " ORDER BY o ON CONFLICT DO NOTHING RETURNING id, key", (list(names), list(names.values())))

    def _entity_ids(self, names: list[str], create: bool) -> dict[str, int]:
        """Ids of the entities ``names`` (raw text) name; with ``create``, made if missing (with their alias keys)
        and revived if forgotten."""
        keys = {name: normalize_key(name) for name in names}
        first = {}
        for name, key in keys.items():
            first.setdefault(key, name)
        digests = [md5(k) for k in first]
        if create:
            if made := self._insert_keys("entities", first):
                self._note("entities", added=len(made))
            aliases = [(alias, eid) for eid, key in made for alias in stored_alias_keys(first[key])]
            if aliases:
                self.execute("INSERT INTO aliases(key, entity_id) SELECT * FROM unnest(%s::text[], %s::bigint[]) ON CONFLICT DO NOTHING",
                           ([a for a, _ in aliases], [e for _, e in aliases]))
            self.execute("UPDATE entities SET forgotten=false WHERE md5(key)=ANY(%s) AND forgotten", (digests,))
        found = {key: eid for eid, key in self.rows("SELECT id, key FROM entities WHERE md5(key)=ANY(%s)", (digests,))}
        return {name: found[key] for name, key in keys.items() if key in found}

    def insert_triplets(self, rows: Iterable[tuple], stats: ImportStats, batch: int = 50_000) -> None:
        """Insert (entity, relation, value, source, example_id) rows; invalid rows are counted and skipped."""
        entity_ids: dict[str, int | None] = {}  # by raw text: each distinct string is checked and normalized once
        relation_ids: dict[str, int | None] = {}
        pending: list[tuple] = []
        for row in rows:
            stats.read += 1
            pending.append(row)
            if len(pending) >= batch:
                self._insert_batch(pending, stats, entity_ids, relation_ids)
        self._insert_batch(pending, stats, entity_ids, relation_ids)

    def _insert_batch(self, pending: list[tuple], stats: ImportStats, entity_ids: dict, relation_ids: dict) -> None:
        if not pending:
            return
        self._resolve_names(pending, 0, "entity", entity_ids, lambda names: self._entity_ids(names, True))
        self._resolve_names(pending, 1, "relation", relation_ids, lambda names: {n: self.relation_id(n) for n in names})
        now, good = time.time(), []
        for entity, relation, value, source, example_id in pending:
            eid, rid = entity_ids.get(entity) if isinstance(entity, str) else None, relation_ids.get(relation) if isinstance(relation, str) else None
            if eid is None or rid is None or field_problem("value", value) or provenance_problem(source, example_id) or _has_nul(value, source, example_id):
                stats.invalid += 1
                continue
            good.append((eid, rid, entity, relation, value.strip(), source, example_id, now, now))
        pending.clear()
        added = self._copy_triplets(good) if good else 0
        stats.added += added
        stats.duplicates += len(good) - added
        if added:
            self._note("facts", added=added)

    @staticmethod
    def _resolve_names(pending, column: int, kind: str, ids: dict, make) -> None:
        new = [t for t in dict.fromkeys(row[column] for row in pending) if isinstance(t, str) and t not in ids]
        storable = [t for t in new if not field_problem(kind, t) and not _has_nul(t)]
        ids.update(dict.fromkeys(new))
        if storable:
            ids.update(make(storable))

    def _copy_triplets(self, rows: list[tuple]) -> int:
        """COPY a batch into a staging table, then insert those not stored yet (first of duplicates wins)."""
        with self._conn() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS staging(o bigint, entity_id bigint, relation_id bigint, entity text, relation text,"
                         " value text, source text, example_id text, created double precision, updated double precision) ON COMMIT DROP")
            conn.execute("TRUNCATE staging")
            with conn.cursor().copy("COPY staging FROM STDIN") as copy:
                for i, row in enumerate(rows):
                    copy.write_row((i, *row))
            cur = conn.execute(
                "INSERT INTO triplets(entity_id, relation_id, entity, relation, value, source, example_id, created, updated)"
                " SELECT entity_id, relation_id, entity, relation, value, source, example_id, created, updated FROM staging ORDER BY o"
                " ON CONFLICT DO NOTHING")
            return cur.rowcount

    def set_value(self, triplet_id: int, value: str | None) -> bool:
        """Set a triplet's value (None: a tombstone); False if there is no such triplet. A value that another
        fact of the same entity and relation already has is refused."""
        import psycopg

        if not is_row_id(triplet_id):
            return False
        if _has_nul(value):
            raise LmlmError(f"value {value!r} holds a NUL character, which PostgreSQL cannot store")
        with self._conn() as conn:
            conn.execute("SAVEPOINT set_value")
            try:
                cur = conn.execute("UPDATE triplets SET value=%s, updated=%s WHERE id=%s", (value, time.time(), triplet_id))
            except psycopg.errors.UniqueViolation:
                conn.execute("ROLLBACK TO SAVEPOINT set_value")
                twin = conn.execute(
                    "SELECT o.id, o.entity, o.relation FROM triplets t JOIN triplets o ON o.entity_id=t.entity_id"
                    " AND o.relation_id=t.relation_id AND o.value=%s WHERE t.id=%s", (value, triplet_id)).fetchone()
                raise LmlmError(f"triplet {triplet_id}: {twin[1]!r} / {twin[2]!r} already has the value {value!r} (triplet {twin[0]});"
                                " delete this one instead") from None
        if cur.rowcount:
            self._note("value", id=triplet_id)
        return cur.rowcount > 0

    def entity_of(self, triplet_id: int) -> tuple[str, bool] | None:
        if not is_row_id(triplet_id):
            return None
        return self.one("SELECT e.name, e.forgotten FROM triplets t JOIN entities e ON e.id=t.entity_id WHERE t.id=%s", (triplet_id,))

    def forget_entity(self, entity_id: int) -> int:
        self.execute("UPDATE entities SET forgotten=true WHERE id=%s", (entity_id,))
        erased = self.execute("UPDATE triplets SET value=NULL, updated=%s WHERE entity_id=%s AND value IS NOT NULL", (time.time(), entity_id))
        self._note("forget", entity_id=entity_id)
        return erased

    # --- reads --------------------------------------------------------------------------

    def fact(self, entity_id: int, relation_id: int, value: str) -> Triplet | None:
        row = self.one("SELECT id, entity, relation, value FROM triplets WHERE entity_id=%s AND relation_id=%s AND md5(value)=%s AND value=%s",
                        (entity_id, relation_id, md5(value), value))
        return Triplet(*row) if row else None

    def exact(self, entity_key: str, relation_key: str) -> tuple[Triplet, bool] | None:
        """The triplet under these keys (a live row before a tombstone, then the oldest) and whether its entity is forgotten."""
        row = self.one(
            "SELECT t.id, t.entity, t.relation, t.value, e.forgotten FROM entities e"
            " JOIN relations r ON md5(r.key)=%s AND r.key=%s JOIN triplets t ON t.entity_id=e.id AND t.relation_id=r.id"
            " WHERE md5(e.key)=%s AND e.key=%s ORDER BY t.value IS NULL, t.id LIMIT 1",
            (md5(relation_key), relation_key, md5(entity_key), entity_key))
        return (Triplet(*row[:4]), row[4]) if row else None

    def exact_many(self, keys: list[tuple[str, str]]) -> tuple[int, list[tuple[Triplet, bool] | None]]:
        """``exact`` for many (entity key, relation key) pairs and the KB version, in one statement (one snapshot)."""
        keys = [(e, r) if not _has_nul(e, r) else ("", "") for e, r in keys]
        rows = self.rows(
            "SELECT (SELECT version FROM kb_state WHERE id=1), x.id, x.entity, x.relation, x.value, x.forgotten"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(ek, eh, rk, rh, i) LEFT JOIN LATERAL"
            " (SELECT t.id, t.entity, t.relation, t.value, e.forgotten FROM entities e JOIN relations r ON md5(r.key)=q.rh AND r.key=q.rk"
            " JOIN triplets t ON t.entity_id=e.id AND t.relation_id=r.id WHERE md5(e.key)=q.eh AND e.key=q.ek"
            " ORDER BY t.value IS NULL, t.id LIMIT 1) x ON true ORDER BY q.i",
            ([e for e, _ in keys], [md5(e) for e, _ in keys], [r for _, r in keys], [md5(r) for _, r in keys]))
        version = rows[0][0] if rows else self.current_version()
        return version, [(Triplet(*row[1:5]), row[5]) if row[1] is not None else None for row in rows]

    def entities_by_key(self, keys: Iterable[str]) -> list[tuple[int, str, bool]]:
        keys = [k for k in keys if not _has_nul(k)]
        return self.rows("SELECT id, name, forgotten FROM entities WHERE md5(key)=ANY(%s) AND key=ANY(%s)", ([md5(k) for k in keys], keys))

    def entities_by_alias(self, keys: Iterable[str]) -> list[tuple[int, str, bool]]:
        keys = [k for k in keys if not _has_nul(k)]
        return self.rows("SELECT DISTINCT e.id, e.name, e.forgotten FROM aliases a JOIN entities e ON e.id=a.entity_id"
                          " WHERE md5(a.key)=ANY(%s) AND a.key=ANY(%s)", ([md5(k) for k in keys], keys))

    def entity_rows(self, ids: Iterable[int]) -> dict[int, tuple[str, bool]]:
        return {i: (n, f) for i, n, f in self.rows("SELECT id, name, forgotten FROM entities WHERE id=ANY(%s)", (list(ids),))}

    def entity_names(self) -> list[str]:
        return [name for (name,) in self.rows("SELECT name FROM entities")]

    def facts_of(self, entity_id: int) -> list[tuple[Triplet, str, bytes | None]]:
        rows = self.rows(
            "SELECT t.id, t.entity, t.relation, t.value, r.key, r.vec FROM triplets t JOIN relations r ON r.id=t.relation_id"
            " WHERE t.entity_id=%s ORDER BY t.value IS NULL, t.id", (entity_id,))
        return [(Triplet(*row[:4]), row[4], row[5]) for row in rows]

    def search(self, key_prefix: str, text: str, limit: int) -> list[Triplet]:
        """Live triplets of entities whose key starts with ``key_prefix`` (the trigram index), then of any whose
        entity, relation or value contains ``text`` (a scan, stopped at ``limit``)."""
        if _has_nul(text):
            return []
        escape = lambda s: s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # noqa: E731
        found = self.rows(
            "SELECT t.id, t.entity, t.relation, t.value FROM entities e JOIN triplets t ON t.entity_id=e.id"
            " WHERE e.key LIKE %s AND t.value IS NOT NULL ORDER BY e.key, t.id LIMIT %s", (escape(key_prefix) + "%", limit)) if key_prefix else []
        if len(found) < limit:
            pattern, seen = "%" + escape(text) + "%", {row[0] for row in found}
            found += [row for row in self.rows(
                "SELECT id, entity, relation, value FROM triplets WHERE value IS NOT NULL"
                " AND (entity ILIKE %(p)s OR relation ILIKE %(p)s OR value ILIKE %(p)s) ORDER BY id LIMIT %(n)s",
                {"p": pattern, "n": limit + len(seen)}) if row[0] not in seen][: limit - len(found)]
        return [Triplet(*row) for row in found]

    def triplet(self, triplet_id: int) -> Triplet | None:
        if not is_row_id(triplet_id):
            return None
        row = self.one("SELECT id, entity, relation, value FROM triplets WHERE id=%s", (triplet_id,))
        return Triplet(*row) if row else None

    def triplets_by_id(self, ids: Iterable[int]) -> dict[int, Triplet]:
        return {row[0]: Triplet(*row) for row in self.rows("SELECT id, entity, relation, value FROM triplets WHERE id=ANY(%s)", (list(ids),))}

    def last_triplet_id(self) -> int:
        return self.one("SELECT max(id) FROM triplets")[0] or 0

    def iter_triplets(self, live_only: bool = True, after: int = 0, batch: int = 10_000) -> Iterator[tuple]:
        """Rows in id order after ``after``, read ``batch`` at a time by key (no transaction held between batches)."""
        where = " AND value IS NOT NULL" if live_only else ""
        while rows := self.rows("SELECT id, entity, relation, value, source, example_id, created, updated FROM triplets"
                                 f" WHERE id > %s{where} ORDER BY id LIMIT %s", (after, batch)):
            yield from rows
            after = rows[-1][0]

    def counts(self) -> dict[str, int]:
        row = self.one(
            "SELECT (SELECT count(*) FROM triplets WHERE value IS NOT NULL), (SELECT count(*) FROM triplets WHERE value IS NULL),"
            " (SELECT count(*) FROM entities WHERE NOT forgotten), (SELECT count(*) FROM entities WHERE forgotten),"
            " (SELECT count(*) FROM relations)")
        return dict(zip(("triplets", "tombstones", "entities", "forgotten_entities", "relations"), row))
