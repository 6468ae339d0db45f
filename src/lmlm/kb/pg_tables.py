"""The PostgreSQL queries of a KB's side tables: relation co-occurrence counts (``statistics``), the version
log and replicas, and sentence vectors (``vectors``), as a part of ``pg_store.PgStore`` (which supplies ``rows``, ``one``, ``_conn``, ``_note``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from lmlm.kb.pg_schema import schema_version

NOTED_IDS_MAX = 1000  # a change that stored more vectors than this tells replicas to rebuild that index instead


class PgSideTables:
    # --- relation co-occurrence (``statistics``) ------------------------------------------------

    def recount_relation_pairs(self) -> None:
        self.execute("DELETE FROM relation_pairs")
        self.execute(
            "WITH er AS MATERIALIZED (SELECT DISTINCT entity_id, relation_id FROM triplets WHERE value IS NOT NULL)"
            " INSERT INTO relation_pairs(a, b, n) SELECT x.relation_id, y.relation_id, count(*)"
            " FROM er x JOIN er y ON y.entity_id=x.entity_id GROUP BY 1, 2")
        self._note("pairs")

    def live_relation_counts(self, entity_id: int) -> dict[int, int]:
        return dict(self.rows("SELECT relation_id, count(*) FROM triplets WHERE entity_id=%s AND value IS NOT NULL GROUP BY relation_id",
                               (entity_id,)))

    def count_relation_pairs(self, pairs: list[tuple[int, int]]) -> None:
        self.execute("INSERT INTO relation_pairs(a, b, n) SELECT a, b, 1 FROM unnest(%s::bigint[], %s::bigint[]) AS u(a, b)"
                   " ON CONFLICT (a, b) DO UPDATE SET n=relation_pairs.n+1", ([a for a, _ in pairs], [b for _, b in pairs]))
        self._note("pairs")

    def relation_cooccurrence(self, relation_key: str) -> list[tuple[str, int, int, int]]:
        from lmlm.kb.pg_store import md5

        return self.rows(
            "SELECT o.key, p.n, da.n, db.n FROM relations r JOIN relation_pairs p ON p.a=r.id JOIN relations o ON o.id=p.b"
            " JOIN relation_pairs da ON da.a=p.a AND da.b=p.a JOIN relation_pairs db ON db.a=p.b AND db.b=p.b"
            " WHERE md5(r.key)=%s AND r.key=%s AND p.b != p.a", (md5(relation_key), relation_key))

    def execute(self, sql: str, params=()) -> int:
        with self._conn() as conn:
            return conn.execute(sql, params).rowcount

    # --- versions, operations and replicas ---------------------------------------------------------

    def current_version(self) -> int:
        if getattr(self._local, "version", None) is not None:
            return self._local.version
        return self.one("SELECT version FROM kb_state WHERE id=1")[0]

    @staticmethod
    def next_version(conn, notes: list[dict]) -> int:
        """Raise the KB version by one in ``conn``'s transaction, and the names version too where ``notes`` added
        entities; returns the new KB version."""
        new_names = any(note["kind"] == "entities" for note in notes)
        return conn.execute("UPDATE kb_state SET version = version + 1, names_version = names_version + %s WHERE id=1"
                            " RETURNING version", (int(new_names),)).fetchone()[0]

    def names_version(self) -> int:
        """Raised by every commit that added entities (an entity's name never changes or leaves)."""
        return self.one("SELECT names_version FROM kb_state WHERE id=1")[0]

    def changes_between(self, after: int, upto: int) -> list[tuple[int, list[dict]]]:
        return self.rows("SELECT version, detail FROM changes WHERE version > %s AND version <= %s ORDER BY version", (after, upto))

    def schema_version(self) -> int:
        with self._conn() as conn:
            return schema_version(conn)

    def trigram_neighbours(self, key: str, limit: int) -> list[tuple[int, str, bool, bytes | None]]:
        """Entities whose key is most like ``key`` by trigram similarity (``pg_trgm``'s indexed ``%`` operator)."""
        if not key or '\x00' in key:
            return []
        return self.rows("SELECT id, name, forgotten, vec FROM entities WHERE key %% %s ORDER BY similarity(key, %s) DESC, id LIMIT %s",
                          (key, key, limit))

    def database_bytes(self) -> int:
        return self.one("SELECT pg_database_size(current_database())")[0]

    def replicas(self, within_s: float = 60.0) -> list[tuple[str, int, float]]:
        """(id, applied version, seconds since its last heartbeat) of the replicas seen within ``within_s``."""
        return self.rows("SELECT id, applied_version, extract(epoch FROM now() - seen)::float FROM replicas"
                          " WHERE seen > now() - make_interval(secs => %s) ORDER BY id", (within_s,))

    def vectors_of(self, table: str, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of those of ``ids`` that have one."""
        id_col = "triplet_id" if table == "triplet_vec" else "id"
        rows = self.rows(f"SELECT {id_col}, vec FROM {table} WHERE {id_col}=ANY(%s) AND vec IS NOT NULL", (ids,))
        return _as_arrays(rows)

    # --- vectors ----------------------------------------------------------------------------

    def clear_vectors(self) -> None:
        for table in ("entities", "relations"):
            self.execute(f"UPDATE {table} SET vec=NULL WHERE vec IS NOT NULL")
        self.execute("DELETE FROM triplet_vec")
        self._note("vectors_cleared")

    def vector_count(self, table: str) -> int:
        where = "" if table == "triplet_vec" else " WHERE vec IS NOT NULL"
        return self.one(f"SELECT count(*) FROM {table}{where}")[0]

    def missing_vectors(self, table: str) -> list[tuple[int, str]]:
        if table == "triplet_vec":
            sql = "SELECT t.id, t.entity || ' ' || t.relation FROM triplets t LEFT JOIN triplet_vec v ON v.triplet_id=t.id WHERE v.vec IS NULL"
        else:
            sql = f"SELECT id, name FROM {table} WHERE vec IS NULL"
        return self.rows(sql + " ORDER BY 1")

    def vectorless(self, table: str, ids: Iterable[int]) -> list[tuple[int, str]]:
        ids = list(ids)
        if table == "triplet_vec":
            sql = ("SELECT t.id, t.entity || ' ' || t.relation FROM triplets t LEFT JOIN triplet_vec v ON v.triplet_id=t.id"
                   " WHERE v.vec IS NULL AND t.id=ANY(%s)")
        else:
            sql = f"SELECT id, name FROM {table} WHERE vec IS NULL AND id=ANY(%s)"
        return self.rows(sql, (ids,))

    def put_vectors(self, table: str, ids: list[int], vectors: np.ndarray) -> None:
        blobs = [v.astype(np.float16).tobytes() for v in vectors]
        ids = [int(i) for i in ids]
        if table == "triplet_vec":
            self.execute("INSERT INTO triplet_vec(triplet_id, vec) SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
                       " ON CONFLICT (triplet_id) DO UPDATE SET vec=excluded.vec", (ids, blobs))
        else:
            self.execute(f"UPDATE {table} t SET vec=u.vec FROM unnest(%s::bigint[], %s::bytea[]) AS u(id, vec) WHERE t.id=u.id", (ids, blobs))
        self._note("vectors", table=table, ids=ids if len(ids) <= NOTED_IDS_MAX else None)

    def iter_vectors(self, table: str, batch: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) in id order, ``batch`` rows at a time (read by key: no cursor held open)."""
        id_col = "triplet_id" if table == "triplet_vec" else "id"
        after = -1
        while rows := self.rows(f"SELECT {id_col}, vec FROM {table} WHERE {id_col} > %s AND vec IS NOT NULL ORDER BY {id_col} LIMIT %s",
                                 (after, batch)):
            yield _as_arrays(rows)
            after = rows[-1][0]


def _as_arrays(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float16).reshape(len(rows), -1).astype(np.float32)
