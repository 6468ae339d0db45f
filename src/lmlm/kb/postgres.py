"""``PostgresKB``: one knowledge base in PostgreSQL shared by several serving replicas, each with its faiss
indexes in memory, built from the stored vectors.

Consistency: every lookup batch opens a snapshot whose first read is the KB version (one indexed read of
``kb_state``); if this replica's in-memory state is behind that version, it applies the logged changes
first, then answers from the snapshot, and each result carries the version. Facts themselves are always read
from the database, so once an edit's commit returns, no replica's next batch can answer with the old fact. A
LISTEN thread applies changes as their NOTIFY arrives, so a batch rarely has anything to catch up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Sequence

import numpy as np

from lmlm.errors import LmlmError
from lmlm.kb.encoder import Encoder
from lmlm.kb.facade import DEFAULT_THRESHOLDS as _DEFAULTS
from lmlm.kb.facade import StoredKB
from lmlm.kb.fields import query_key
from lmlm.kb.index import MemoryIndexes, describe
from lmlm.kb.normalize import normalize_key, shortened_name
from lmlm.kb.pg_store import CHANNEL, PgStore
from lmlm.kb.protocol import NO_ANSWER, LookupResult, Mode
from lmlm.kb.resolver import ENTITY_NEIGHBOURS, Resolver, Thresholds, exact_result
from lmlm.kb.storage import BUSY_TIMEOUT_S

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # how often a replica records its applied version (its lag, for lmlm kb serve-check)
LISTEN_POLL_S = 0.25  # how long the listener waits for a notification before checking whether to stop


class PgResolver(Resolver):
    """The resolver, with entity candidates also proposed by trigram similarity (``pg_trgm``) where faiss found
    none: they pass the same tests as a vector neighbour (cosine to the query, the query's words in the name),
    so the trigram index adds recall where a compressed faiss index misses a neighbour, never a spelling match."""

    def _neighbour_candidates(self, entities, vectors):
        found = super()._neighbour_candidates(entities, vectors)
        for entity, candidates in zip(entities, found):
            if candidates:  # asked only where faiss found none: a trigram search costs more than a vector search
                continue
            for eid, name, forgotten, vec in self.store.trigram_neighbours(normalize_key(entity), ENTITY_NEIGHBOURS):
                if vec is None or len(vec) != 2 * len(vectors[entity]):
                    continue
                score = float(np.frombuffer(vec, dtype=np.float16).astype(np.float32) @ vectors[entity])
                if score >= self.thresholds.entity and shortened_name(entity, name):
                    candidates.append((eid, score, forgotten))
        return found


class VersionedIndexes(MemoryIndexes):
    """In-memory indexes, each built in one snapshot, so the KB version its vectors reflect is known exactly."""

    def __init__(self, store: PgStore):
        super().__init__()
        self.store = store
        self.built_at: dict[str, int] = {}

    def open(self, table, digest, build):
        with self.store.snapshot() as version:
            index = super().open(table, digest, build)
        self.built_at[table] = version
        return index


class Replica:
    """This process's view of the shared KB: the version its in-memory state reflects, brought up to date from
    the change log, and the LISTEN thread that does so as changes arrive."""

    def __init__(self, kb: PostgresKB, listen: bool):
        self.kb, self.store = kb, kb.store
        self.applied = self.store.current_version()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="lmlm-kb-listen", daemon=True) if listen else None
        if self._thread:
            self._thread.start()

    def catch_up(self, version: int) -> None:
        """Apply the changes up to ``version`` that this process did not make itself (the caller holds the KB's lock)."""
        if version <= self.applied:
            return
        changes = self.store.changes_between(self.applied, version)
        pruned = range(self.applied + 1, changes[0][0] if changes else version + 1)  # every version logs a row
        if any(v not in self.store.written for v in pruned):  # a change this process did not make is gone from the log
            self._start_over(version)
            return
        self.store.written.difference_update(pruned)
        for changed_at, notes in changes:
            if changed_at in self.store.written:
                self.store.written.discard(changed_at)
                continue
            for note in notes:
                self._apply(changed_at, note)
        self.applied = version

    def _start_over(self, version: int) -> None:
        """Forget what this replica holds in memory (indexes, statistics), to be built again from the database."""
        log.warning("%s: this replica was behind the change log's oldest version; its in-memory state starts over", self.store.path)
        self.kb.statistics.forget_cached()
        self.kb.indexes.clear()
        self.store.written.difference_update([v for v in self.store.written if v <= version])
        self.applied = version

    def _apply(self, version: int, note: dict) -> None:
        kind, kb = note["kind"], self.kb
        if kind in ("facts", "pairs"):
            kb.statistics.forget_cached()
        elif kind == "vectors_cleared":
            for table in [t for t in kb.indexes.loaded if version > kb.indexes.built_at[t]]:  # an index built since is current
                kb.indexes.drop(table)
        elif kind == "vectors" and note["table"] in kb.indexes.loaded and version > kb.indexes.built_at[note["table"]]:
            if note["ids"] is None:
                kb.indexes.drop(note["table"])  # many vectors changed: rebuilt from the stored ones when next needed
            else:
                ids, vecs = self.store.vectors_of(note["table"], note["ids"])
                if len(ids):
                    kb.indexes.loaded[note["table"]].add_with_ids(vecs, ids)

    def sync(self) -> None:
        with self.kb._lock:
            self.catch_up(self.store.current_version())

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.store.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._follow(conn)
            except (psycopg.Error, LmlmError) as e:  # the database went away (Busy): listen again once it is back
                log.warning("%s: listening for KB changes failed (%s); retrying", self.store.path, str(e).strip().splitlines()[0])
                self._stop.wait(1.0)

    def _follow(self, conn) -> None:
        beat = 0.0
        while not self._stop.is_set():
            if list(conn.notifies(timeout=LISTEN_POLL_S, stop_after=1)) or beat <= 0:
                self.sync()
            beat -= LISTEN_POLL_S
            if beat <= 0:
                conn.execute("INSERT INTO replicas(id, applied_version, seen) VALUES (%s, %s, now())"
                             " ON CONFLICT (id) DO UPDATE SET applied_version=excluded.applied_version, seen=now()", (self.id, self.applied))
                beat = HEARTBEAT_S
        conn.execute("DELETE FROM replicas WHERE id=%s", (self.id,))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


class PostgresKB(StoredKB):
    """A KB in PostgreSQL (``postgresql://`` URL), shared by every process that opens it."""

    resolver_class = PgResolver

    def __init__(
        self,
        url: str,
        encoder: str | Encoder | None = None,
        create: bool = False,
        entity_threshold: float = _DEFAULTS.entity,
        relation_threshold: float = _DEFAULTS.relation,
        relation_floor: float = _DEFAULTS.relation_floor,
        relation_margin: float = _DEFAULTS.relation_margin,
        reference_threshold: float = _DEFAULTS.reference,
        busy_timeout: float = BUSY_TIMEOUT_S,
        listen: bool = True,
    ):
        store = PgStore(url, create=create, busy_timeout=busy_timeout)
        self.path = store.path  # the URL without its password
        thresholds = Thresholds(entity_threshold, relation_threshold, relation_floor, relation_margin, reference_threshold)
        self._assemble(store, VersionedIndexes(store), encoder, thresholds)
        self.vectors.embed_every_add = True  # replicas read an added fact's vectors from the database: the writer computes them
        self.replica = Replica(self, listen)

    def __enter__(self) -> PostgresKB:
        return self

    def close(self) -> None:
        self.replica.stop()
        self.store.close()

    def import_triplets(self, rows, source=None):
        stats = super().import_triplets(rows, source)
        with self._lock:
            self.statistics.bring_up_to_date()  # counted now, so that no lookup's snapshot has to write the counts
        return stats

    def _answer(self, pairs: Sequence[tuple[str, str]], mode: Mode) -> list[LookupResult]:
        if mode == "default" and (answered := self._all_exact(pairs)) is not None:
            return answered
        with self.store.snapshot() as version:
            self.replica.catch_up(version)
            results = self.resolver.lookup_many(pairs, mode)
        return [dataclasses.replace(r, kb_version=version) for r in results]

    def _explained(self, entity: str, relation: str) -> dict:
        with self.store.snapshot() as version:
            self.replica.catch_up(version)
            explained = self.resolver.explain(entity, relation)
        return {**explained, "answer": {**explained["answer"], "kb_version": version}}  # as a lookup's answer says it

    def _all_exact(self, pairs: Sequence[tuple[str, str]]) -> list[LookupResult] | None:
        """A batch the exact tier answers whole, from one statement that also reads the KB version (one snapshot,
        one round trip); None if any pair needs the other tiers."""
        keys = [(query_key(e), query_key(r)) for e, r in pairs]
        version, hits = self.store.exact_many([k for k in keys if all(k)])
        found = iter(hits)
        results = [exact_result(next(found)) if all(k) else NO_ANSWER for k in keys]
        if any(r is None for r in results):
            return None
        self.replica.catch_up(version)
        return [dataclasses.replace(r, kb_version=version) for r in results]

    def stats(self) -> dict:
        with self._lock:
            out = self.store.counts()
            out["database_bytes"] = self.store.database_bytes()
            out["encoder"] = self.store.get_meta("encoder")
            out["kb_version"] = self.store.current_version()
            if "entities" in self.indexes.loaded:
                out["entity_index"] = describe(self.indexes.loaded["entities"])
            return out

    def version(self) -> tuple[int, int]:
        """Changes whenever an entity may have been added, by any replica (one indexed read): what caches of
        ``entity_names`` key on. An edit of facts alone leaves it as it is."""
        return self._edits, self.store.names_version()

    def serve_check(self) -> dict:
        """What an operator checks before and while serving: schema, version, counts, and each live replica's lag."""
        version = self.store.current_version()
        replicas = [{"id": rid, "applied_version": applied, "lag": version - applied, "seen_seconds_ago": round(age, 1)}
                    for rid, applied, age in self.store.replicas()]
        return {"kb": self.path, "schema_version": self.store.schema_version(), "kb_version": version, **self.store.counts(),
                "replicas": replicas}
