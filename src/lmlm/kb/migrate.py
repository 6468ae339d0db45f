"""``lmlm kb migrate SRC DST``: copy a knowledge base between SQLite, PostgreSQL and the reference JSON.

Rows are copied in id order, ``batch`` at a time, with their ids, provenance, timestamps and tombstones
(a forgotten entity stays forgotten), then the stored vectors (no re-encoding). Each batch is one transaction
of the destination that also records how far the copy got (a ``meta`` row named after the source), so a
killed migration, run again, resumes after the last batch it committed and ends with the same KB as an
uninterrupted one. A reference JSON source has no ids: its triplets are numbered by position.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lmlm.errors import LmlmError
from lmlm.kb.fields import row_problem
from lmlm.kb.opening import open_kb, resolve_kb_spec
from lmlm.kb.pg_schema import is_url, redact

log = logging.getLogger(__name__)

BATCH = 10_000
VECTOR_TABLES = ("entities", "relations", "triplet_vec")
ROW = "id, entity, relation, value, source, example_id, created, updated"


def migrate(src, dst, batch: int = BATCH) -> dict:
    """Copy ``src`` into ``dst`` (paths, URLs or ``env:NAME``); returns counts. Resumes a killed copy."""
    source, target = resolve_kb_spec(src), resolve_kb_spec(dst)
    if batch < 1:
        raise LmlmError(f"--batch {batch}: must be at least 1")
    if _identity(source) == _identity(target):
        raise LmlmError(f"{redact(target)}: the source and the destination are the same knowledge base")
    if not is_url(source) and not Path(source).is_file():
        raise LmlmError(f"{source}: no such knowledge base or file")
    if _is_json(source) and _is_json(target):
        raise LmlmError(f"{target}: both sides are JSON; migrate copies into or out of a knowledge base")
    if _is_json(target):
        return _to_json(source, target)
    if _is_json(source):
        rows = JsonRows(source)
        with open_kb(target, create=True) as kb:
            return _copy(rows, kb, _identity(source), batch)
    with open_kb(source) as src_kb, open_kb(target, create=True) as kb:  # the source first: a bad one leaves no target behind
        return _copy(_Rows.of(src_kb.store), kb, _identity(source), batch)


def _identity(spec: str) -> str:
    return redact(spec) if is_url(spec) else str(Path(spec).resolve())


def _is_json(spec: str) -> bool:
    return not is_url(spec) and Path(spec).suffix in (".json", ".jsonl")


def _to_json(source: str, target: str) -> dict:
    from lmlm.kb.io import export

    with open_kb(source) as kb:
        return {"triplets": export(kb.triplets(), target), "destination": target}


def _copy(rows, kb, identity: str, batch: int) -> dict:
    """Copy the source's triplets, then its vectors, recording the resume point in each batch's transaction."""
    marker = f"migrated_from:{identity}"
    state = json.loads(kb.store.get_meta(marker) or "null")
    if state is None:
        if kb.store.last_triplet_id():
            raise LmlmError(f"{kb.path}: already holds triplets; migrate into a new (empty) knowledge base")
        state = {"phase": "triplets", "after": 0, "started": time.time()}
    elif state["phase"] != "done":
        log.info("%s: resuming the migration from %s at %s after id %s", kb.path, identity, state["phase"], state["after"])
    writer = _Rows.of(kb.store)
    copied = 0
    for phase in ("triplets", *VECTOR_TABLES):
        while state["phase"] == phase:
            got = rows.rows_after(state["after"], batch, state["started"]) if phase == "triplets" else rows.vectors_after(phase, state["after"], batch)
            with kb.store.transaction():
                if got and phase == "triplets":
                    writer.put_rows(got)
                    copied += len(got)
                elif got:
                    writer.put_vectors(phase, got)
                if got:
                    state["after"] = got[-1][0]
                else:
                    state = {**state, "phase": _next(phase), "after": 0}
                    if phase == "triplets":
                        _copy_encoder(rows, kb.store)
                kb.store.set_meta(marker, json.dumps(state))
    kb.statistics.bring_up_to_date()
    return {"copied_triplets": copied, **kb.store.counts()}


def _later(phase: str) -> tuple[str, ...]:
    order = ("triplets", *VECTOR_TABLES, "done")
    return order[order.index(phase) + 1:]


def _next(phase: str) -> str:
    return _later(phase)[0]


def _copy_encoder(rows, store) -> None:
    """The encoder the copied vectors were made with (none for a JSON source: the next embed computes them)."""
    for key in ("encoder", "relation_template"):
        if (value := rows.meta(key)) is not None:
            store.set_meta(key, value)


class JsonRows:
    """A reference database JSON (or JSONL triplets) as a source: triplet i gets id i + 1; rows the stores refuse are skipped."""

    def __init__(self, path: str):
        from lmlm.kb.io import read_any

        self.rows = [(i + 1, *row) for i, row in enumerate(read_any(path)) if not row_problem(*row)]
        self.ids = [row[0] for row in self.rows]

    def rows_after(self, after: int, batch: int, started: float) -> list[tuple]:
        from bisect import bisect_right

        start = bisect_right(self.ids, after)
        return [(i, e, r, v.strip(), s, x, started, started, False) for i, e, r, v, s, x in self.rows[start : start + batch]]

    def vectors_after(self, table: str, after: int, batch: int) -> list[tuple]:
        return []

    def meta(self, key: str) -> None:
        return None


class _Rows:
    """Reads and writes of whole rows (ids kept) on one store; ``of`` picks the SQL of its backend."""

    @staticmethod
    def of(store):
        from lmlm.kb.pg_store import PgStore

        return _PgRows(store) if isinstance(store, PgStore) else _SqliteRows(store)

    def __init__(self, store):
        self.store = store

    def meta(self, key: str) -> str | None:
        return self.store.get_meta(key)


class _SqliteRows(_Rows):
    def rows_after(self, after: int, batch: int, started: float) -> list[tuple]:
        return self.store.conn.execute(
            f"SELECT t.{ROW.replace(', ', ', t.')}, e.forgotten FROM triplets t JOIN entities e ON e.id=t.entity_id"
            " WHERE t.id > ? ORDER BY t.id LIMIT ?", (after, batch)).fetchall()

    def vectors_after(self, table: str, after: int, batch: int) -> list[tuple]:
        if table == "triplet_vec":
            sql = "SELECT triplet_id, NULL, vec FROM triplet_vec WHERE triplet_id > ? ORDER BY triplet_id LIMIT ?"
        else:
            sql = f"SELECT id, key, vec FROM {table} WHERE id > ? AND vec IS NOT NULL ORDER BY id LIMIT ?"
        return self.store.conn.execute(sql, (after, batch)).fetchall()

    def put_rows(self, rows: list[tuple]) -> None:
        store = self.store
        placed = [(tid, store.entity_id(e), store.relation_id(r), e, r, v, s, x, c, u, f) for tid, e, r, v, s, x, c, u, f in rows]
        store.conn.executemany("INSERT OR IGNORE INTO triplets(id, entity_id, relation_id, entity, relation, value, source, example_id,"
                               " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [p[:10] for p in placed])
        store.conn.executemany("UPDATE entities SET forgotten=1 WHERE id=?", {(p[1],) for p in placed if p[10]})

    def put_vectors(self, table: str, rows: list[tuple]) -> None:
        if table == "triplet_vec":
            self.store.conn.executemany("INSERT OR REPLACE INTO triplet_vec(triplet_id, vec) VALUES (?, ?)", [(i, v) for i, _, v in rows])
        else:
            self.store.conn.executemany(f"UPDATE {table} SET vec=? WHERE key=?", [(v, k) for _, k, v in rows])


class _PgRows(_Rows):
    def rows_after(self, after: int, batch: int, started: float) -> list[tuple]:
        return self.store.rows(
            f"SELECT t.{ROW.replace(', ', ', t.')}, e.forgotten FROM triplets t JOIN entities e ON e.id=t.entity_id"
            " WHERE t.id > %s ORDER BY t.id LIMIT %s", (after, batch))

    def vectors_after(self, table: str, after: int, batch: int) -> list[tuple]:
        if table == "triplet_vec":
            sql = "SELECT triplet_id, NULL, vec FROM triplet_vec WHERE triplet_id > %s ORDER BY triplet_id LIMIT %s"
        else:
            sql = f"SELECT id, key, vec FROM {table} WHERE id > %s AND vec IS NOT NULL ORDER BY id LIMIT %s"
        return [(i, k, bytes(v)) for i, k, v in self.store.rows(sql, (after, batch))]

    def put_rows(self, rows: list[tuple]) -> None:
        from lmlm.kb.pg_store import _has_nul

        store = self.store
        kept = [r for r in rows if not _has_nul(*r[1:6])]
        if len(kept) < len(rows):
            log.warning("%s: %d rows hold a NUL character, which PostgreSQL cannot store; skipped", store.path, len(rows) - len(kept))
        entity_ids = store._entity_ids(list(dict.fromkeys(r[1] for r in kept)), create=True)
        columns = list(zip(*[(t, entity_ids[e], store.relation_id(r), e, r, v, s, x, c, u) for t, e, r, v, s, x, c, u, _ in kept])) or [[]] * 10
        store.execute(
            "INSERT INTO triplets(id, entity_id, relation_id, entity, relation, value, source, example_id, created, updated)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::float8[], %s::float8[]) ON CONFLICT DO NOTHING", [list(c) for c in columns])
        store.execute("SELECT setval('triplets_id_seq', greatest((SELECT max(id) FROM triplets), 1))")
        store.execute("UPDATE entities SET forgotten=true WHERE id=ANY(%s)", (list({entity_ids[r[1]] for r in kept if r[8]}),))
        store._note("facts", added=len(kept))

    def put_vectors(self, table: str, rows: list[tuple]) -> None:
        ids, keys, vecs = (list(c) for c in zip(*rows))
        if table == "triplet_vec":
            self.store.execute("INSERT INTO triplet_vec(triplet_id, vec) SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
                               " ON CONFLICT (triplet_id) DO UPDATE SET vec=excluded.vec", (ids, vecs))
        else:
            self.store.execute(f"UPDATE {table} t SET vec=u.vec FROM unnest(%s::text[], %s::bytea[]) AS u(key, vec)"
                               " WHERE md5(t.key)=md5(u.key) AND t.key=u.key", (keys, vecs))
        self.store._note("vectors", table=table, ids=None)
