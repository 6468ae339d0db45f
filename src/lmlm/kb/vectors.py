"""The sentence vectors of a KB: what text each row is encoded from, computing the missing ones (stored
once, as float16), the faiss index of each table, and the vectors of query strings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import faiss
import numpy as np
from tqdm.auto import tqdm

from lmlm.kb.encoder import RELATION_TEMPLATE, EncoderChoice
from lmlm.kb.index import IndexFiles, build_index
from lmlm.kb.storage import Store

log = logging.getLogger(__name__)

CACHED_QUERIES_MAX = 100_000  # generation asks the same strings again and again, but not forever the same
# table -> the index whose presence shows that the table's vectors are in use
_INDEX_IN_USE = {"entities": "entities", "relations": "entities", "triplet_vec": "triplet_vec"}


class Vectors:
    """Vectors of the ``entities``, ``relations`` and ``triplet_vec`` (reference strings) tables."""

    def __init__(self, store: Store, encoders: EncoderChoice, indexes: IndexFiles, lock: threading.RLock):
        self.store, self.encoders, self.indexes, self._lock = store, encoders, indexes, lock
        self._query_vectors: dict[str, np.ndarray] = {}
        self.embed_every_add = False  # True: an add computes its vectors even when no index is open here (a shared KB)

    def embed_missing(self, table: str, batch: int = 4096) -> int:
        """Compute and store every missing vector of ``table`` (batched); returns how many."""
        encoder = self.encoders.record()
        rows = self.store.missing_vectors(table)
        if not rows:
            return 0
        texts = [vector_text(table, text) for _, text in rows]
        for start in tqdm(range(0, len(rows), batch), desc=f"embedding {table}", unit="batch", disable=len(rows) < batch):
            ids = [i for i, _ in rows[start : start + batch]]
            vectors = encoder.encode(texts[start : start + batch])
            with self.store.transaction():
                self.store.put_vectors(table, ids, vectors)
        self.indexes.drop(table)
        return len(rows)

    def index(self, table: str) -> faiss.Index:
        """The faiss index over ``table``'s vectors (missing ones computed first), loaded from its file or built."""
        if table in self.indexes.loaded:
            return self.indexes.loaded[table]
        self.embed_missing(table)
        encoder = self.encoders.record()
        digest = lambda: self.store.content_digest(table, salt=encoder.name)  # noqa: E731  (an index kept in memory needs none)
        return self.indexes.open(table, digest, lambda: self._build_index(table, encoder.dim))

    def _build_index(self, table: str, dim: int) -> faiss.Index:
        count = self.store.vector_count(table)
        log.info("building the %s index over %d vectors", table, count)
        return build_index(dim, lambda: self.store.iter_vectors(table), count)

    def embed_added(self, ids: dict[str, int]) -> None:
        """Vectors for the rows one add made (table -> row id), put into the open indexes. Only these rows are
        encoded (never a backlog left by an import without vectors), and outside the lock and any transaction."""
        with self._lock:
            shared = self.embed_every_add and self.store.get_meta("encoder") is not None  # the KB has vectors: keep them complete
            todo = {t: self.store.vectorless(t, [i]) for t, i in ids.items() if shared or _INDEX_IN_USE[t] in self.indexes.loaded}
        for table, rows in todo.items():
            if rows:
                encoder = self.encoders.record()
                self._put_new_vectors(table, rows, encoder.encode([vector_text(table, text) for _, text in rows]))

    def _put_new_vectors(self, table: str, rows: list[tuple[int, str]], vectors: np.ndarray) -> None:
        with self._lock:
            still = {i for i, _ in self.store.vectorless(table, [i for i, _ in rows])}  # another add may have put them meanwhile
            keep = [k for k, (i, _) in enumerate(rows) if i in still]
            if not keep:
                return
            ids, vectors = [rows[k][0] for k in keep], vectors[keep]
            with self.store.transaction():
                self.store.put_vectors(table, ids, vectors)
            if table in self.indexes.loaded:
                self.indexes.loaded[table].add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def encode_queries(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors for query strings, cached: generation asks the same relations again and again."""
        texts = list(texts)
        if len(self._query_vectors) > CACHED_QUERIES_MAX:  # cleared before the look-up, so no asked text is lost
            self._query_vectors.clear()
        todo = list(dict.fromkeys(t for t in texts if t not in self._query_vectors))
        if todo:
            self._query_vectors.update(zip(todo, self.encoders.record().encode(todo)))
        return self._query_vectors

    def forget_query_vectors(self) -> None:
        self._query_vectors.clear()


def vector_text(table: str, text: str) -> str:
    """What is encoded for a row of ``table``: entity names as they are, relations in a question, reference strings normalized."""
    if table == "relations":
        return relation_question(text)
    return reference_text(text) if table == "triplet_vec" else text


def relation_question(relation: str) -> str:
    """A relation put in a question, as it is encoded both when stored and when asked."""
    return RELATION_TEMPLATE.format(relation)


def reference_text(text: str) -> str:
    """The reference retriever's normalization of "entity relation" strings."""
    return text.lower().replace("_", " ").strip()
