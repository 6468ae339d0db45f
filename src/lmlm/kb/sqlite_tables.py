"""The SQLite queries of a KB's side tables: relation co-occurrence counts (``statistics``) and sentence vectors
(``vectors``), as a part of ``storage.Store`` (which supplies ``conn``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from scipy import sparse


class SideTables:
    # --- relation co-occurrence (``statistics``) ------------------------------------------------

    def recount_relation_pairs(self) -> None:
        """Recount ``relation_pairs`` over the live facts (call inside ``transaction()``); the table is made on
        first need in files of any age."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS relation_pairs(a INTEGER NOT NULL, b INTEGER NOT NULL, n INTEGER NOT NULL,"
                          " PRIMARY KEY (a, b)) WITHOUT ROWID")
        self.conn.execute("DELETE FROM relation_pairs")
        # Not a self-join grouped in SQL: SQLite sorts its k*k rows per entity on disk, hours at tens of millions of facts.
        pairs = self.conn.execute("SELECT DISTINCT entity_id, relation_id FROM triplets WHERE value IS NOT NULL ORDER BY entity_id, relation_id")
        self.conn.executemany("INSERT INTO relation_pairs(a, b, n) VALUES (?, ?, ?)", count_pairs(pairs))

    def live_relation_counts(self, entity_id: int) -> dict[int, int]:
        return dict(self.conn.execute(
            "SELECT relation_id, count(*) FROM triplets WHERE entity_id=? AND value IS NOT NULL GROUP BY relation_id", (entity_id,)))

    def count_relation_pairs(self, pairs: list[tuple[int, int]]) -> None:
        self.conn.executemany("INSERT INTO relation_pairs(a, b, n) VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET n=n+1", pairs)

    def relation_cooccurrence(self, relation_key: str) -> list[tuple[str, int, int, int]]:
        """(other relation's key, entities holding both, entities holding the asked one, entities holding the other)."""
        return self.conn.execute(
            "SELECT o.key, p.n, da.n, db.n FROM relations r JOIN relation_pairs p ON p.a=r.id JOIN relations o ON o.id=p.b"
            " JOIN relation_pairs da ON da.a=p.a AND da.b=p.a JOIN relation_pairs db ON db.a=p.b AND db.b=p.b"
            " WHERE r.key=? AND p.b != p.a",
            (relation_key,),
        ).fetchall()

    # --- vectors ----------------------------------------------------------------------------

    def clear_vectors(self) -> None:
        """Drop every stored vector (call inside ``transaction()``): they are recomputed on the next embed."""
        for table in ("entities", "relations"):
            self.conn.execute(f"UPDATE {table} SET vec=NULL")
        self.conn.execute("DELETE FROM triplet_vec")

    def vector_count(self, table: str) -> int:
        where = "" if table == "triplet_vec" else " WHERE vec IS NOT NULL"
        return self.conn.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0]

    def missing_vectors(self, table: str) -> list[tuple[int, str]]:
        if table == "triplet_vec":
            sql = "SELECT t.id, t.entity || ' ' || t.relation FROM triplets t LEFT JOIN triplet_vec v ON v.triplet_id=t.id WHERE v.vec IS NULL"
        else:
            sql = f"SELECT id, name FROM {table} WHERE vec IS NULL"
        return self.conn.execute(sql).fetchall()

    def vectorless(self, table: str, ids: Iterable[int]) -> list[tuple[int, str]]:
        """Those of ``ids`` that have no vector yet, with the text their vector is made from."""
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        if table == "triplet_vec":
            sql = ("SELECT t.id, t.entity || ' ' || t.relation FROM triplets t LEFT JOIN triplet_vec v ON v.triplet_id=t.id"
                   f" WHERE v.vec IS NULL AND t.id IN ({marks})")
        else:
            sql = f"SELECT id, name FROM {table} WHERE vec IS NULL AND id IN ({marks})"
        return self.conn.execute(sql, ids).fetchall()

    def put_vectors(self, table: str, ids: list[int], vectors: np.ndarray) -> None:
        blobs = [v.astype(np.float16).tobytes() for v in vectors]
        if table == "triplet_vec":
            self.conn.executemany("INSERT OR REPLACE INTO triplet_vec(triplet_id, vec) VALUES (?, ?)", zip(ids, blobs))
        else:
            self.conn.executemany(f"UPDATE {table} SET vec=? WHERE id=?", zip(blobs, ids))

    def iter_vectors(self, table: str, batch: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) in id order, ``batch`` rows at a time."""
        id_col = "triplet_id" if table == "triplet_vec" else "id"
        cur = self.conn.execute(f"SELECT {id_col}, vec FROM {table} WHERE vec IS NOT NULL ORDER BY {id_col}")
        while rows := cur.fetchmany(batch):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
            yield ids, vecs.astype(np.float32)

    def content_digest(self, table: str, salt: str) -> str:
        """A digest of what the vectors of ``table`` were computed from: changes whenever the content does."""
        h = hashlib.blake2b(salt.encode(), digest_size=16)
        sql = {
            "entities": "SELECT id, key FROM entities WHERE vec IS NOT NULL ORDER BY id",
            "triplet_vec": "SELECT t.id, t.entity || '\x1f' || t.relation FROM triplets t JOIN triplet_vec v ON v.triplet_id=t.id ORDER BY t.id",
        }[table]
        cur = self.conn.execute(sql)
        while rows := cur.fetchmany(65_536):
            h.update("\x1e".join(f"{i}\x1f{k}" for i, k in rows).encode())
        return h.hexdigest()



def count_pairs(rows, chunk: int = 1_000_000) -> Iterator[tuple[int, int, int]]:
    """(a, b, how many entities hold both relation a and relation b) from a cursor of distinct (entity id, relation id)
    rows in entity order, read a chunk at a time. Each chunk's entity-by-relation matrix M adds M^T M, so an
    entity's rows must stay in one chunk: those of the chunk's last entity wait for the next."""
    parts, carried = [], np.zeros((0, 2), dtype=np.int64)
    while True:
        got = rows.fetchmany(chunk)
        block = np.concatenate([carried, np.asarray(got, dtype=np.int64).reshape(-1, 2)])
        if got and len(block):
            held = block[:, 0] == block[-1, 0]
            block, carried = block[~held], block[held]
        if len(block):
            _, entity = np.unique(block[:, 0], return_inverse=True)
            m = sparse.csr_matrix((np.ones(len(block), dtype=np.int64), (entity, block[:, 1])))
            parts.append((m.T @ m).tocoo())
        if not got:
            break
    if parts:
        size = max(p.shape[0] for p in parts)
        total = sparse.coo_matrix((np.concatenate([p.data for p in parts]), (np.concatenate([p.row for p in parts]),
                                   np.concatenate([p.col for p in parts]))), shape=(size, size)).tocsr().tocoo()  # sums the parts
        yield from zip(total.row.tolist(), total.col.tolist(), total.data.tolist())
