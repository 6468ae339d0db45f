"""Tiered lookup over the SQLite store, edits that take effect at once, and the reference retriever.

Default mode, per (entity, relation) query (DESIGN.md section 3):
  1. exact: the normalized keys of both match a stored triplet;
  2. fuzzy, triplet-aware: resolve the entity (exact key, then a name variant, then a sentence-vector
     neighbour whose name contains every word of the query), then match the relation among that
     entity's own relations by sentence-vector similarity;
  3. none.
A query that resolves to a forgotten entity or a deleted fact gets ``none``: tombstones are part of
the search, so nothing answers in their place.

Reference mode reproduces the reference retriever: cosine similarity between the query and every
"entity relation" string, threshold 0.6, top-1.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from tqdm.auto import tqdm

from lmlm.errors import Ambiguous, LmlmError, NotFound
from lmlm.kb import index as vindex
from lmlm.kb.encoder import DEFAULT_ENCODER, Encoder, load_encoder
from lmlm.kb.normalize import compact_key, normalize_key, query_forms, shortened_name, sibling_relations
from lmlm.kb.store import BUSY_TIMEOUT_S, MAX_FIELD_CHARS, ImportStats, Store, Triplet, _check_field, row_problem, storable_text

log = logging.getLogger(__name__)

Tier = Literal["exact", "fuzzy", "none"]
Mode = Literal["default", "reference"]

ENTITY_THRESHOLD = 0.5  # cosine for a vector-neighbour entity; the word-containment test does most of the work
RELATION_THRESHOLD = 0.65  # cosine between the asked relation and one of the entity's; chosen by benchmarks/retrieval_quality.py
# A weaker match still counts when it clearly beats the entity's other relations; chosen on a second query
# sample (queries drawn with seed 1 in benchmarks/retrieval_quality.py) as the best paraphrase precision with absent-relation
# abstention >= 0.85 on both KBs.
RELATION_FLOOR, RELATION_MARGIN = 0.55, 0.08
REFERENCE_THRESHOLD = 0.6  # the reference retriever's threshold
# Two relations that at least 3 entities, and a tenth of those holding the rarer one, hold side by side are
# different facts ("Employer" and "Employer City"), however alike their names; synonyms rarely share an entity.
DISTINCT_MIN_ENTITIES, DISTINCT_MIN_SHARE = 3, 0.1
RELATION_TEMPLATE = "What is their {}?"  # relations alone are terse; a question context separates synonyms better
REWRITE_SCORE = 0.97
ALIAS_SCORE = 0.95
ENTITY_NEIGHBOURS = 8


@dataclass(frozen=True)
class LookupResult:
    value: str | None
    triplet: Triplet | None
    score: float
    tier: Tier
    nearest: Triplet | None = None  # best live candidate below the thresholds, for a top1_anyway fallback

    def to_dict(self) -> dict:
        t = self.triplet
        return {
            "value": self.value,
            "entity": t.entity if t else None,
            "relation": t.relation if t else None,
            "id": t.id if t else None,
            "score": round(float(self.score), 4),
            "tier": self.tier,
        }


NONE = LookupResult(None, None, 0.0, "none")


class KnowledgeBase(Protocol):
    """What the engine, the evaluations and the server need from a knowledge base."""

    def lookup(self, entity: str, relation: str, mode: Mode = "default") -> LookupResult: ...
    def lookup_many(self, pairs: Sequence[tuple[str, str]], mode: Mode = "default") -> list[LookupResult]: ...
    def add(self, entity: str, relation: str, value: str, source: str | None = None, example_id: str | None = None) -> Triplet: ...
    def update(self, triplet_id: int, value: str) -> Triplet: ...
    def delete(self, triplet_id: int) -> Triplet: ...
    def forget(self, entity: str, exact: bool = False) -> int: ...
    def facts(self, entity: str) -> list[Triplet]: ...
    def search(self, query: str, limit: int = 20) -> list[Triplet]: ...
    def stats(self) -> dict: ...


class SqliteKB:
    """The embedded default: a SQLite file plus faiss indexes beside it, built from stored vectors."""

    def __init__(
        self,
        path: str | os.PathLike,
        encoder: str | Encoder | None = None,
        create: bool = False,
        entity_threshold: float = ENTITY_THRESHOLD,
        relation_threshold: float = RELATION_THRESHOLD,
        relation_floor: float = RELATION_FLOOR,
        relation_margin: float = RELATION_MARGIN,
        reference_threshold: float = REFERENCE_THRESHOLD,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ):
        self.path = Path(path)
        self.store = Store(self.path, create=create, busy_timeout=busy_timeout)
        self.entity_threshold = entity_threshold
        self.relation_threshold = relation_threshold
        self.relation_floor, self.relation_margin = relation_floor, relation_margin
        self.reference_threshold = reference_threshold
        self._encoder_arg = encoder
        self._encoder: Encoder | None = None
        self._indexes: dict[str, object] = {}
        self._query_vectors: dict[str, np.ndarray] = {}
        self._distinct: dict[str, set[str]] = {}  # relation key -> keys of relations known to be other facts
        self._lock = threading.RLock()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SqliteKB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- encoder and vectors ------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            arg = self._encoder_arg or self.store.get_meta("encoder") or DEFAULT_ENCODER
            self._encoder = load_encoder(arg) if isinstance(arg, str) else arg
            stored = self.store.get_meta("encoder")
            if stored != self._encoder.name or self.store.get_meta("relation_template") != RELATION_TEMPLATE:
                if stored:
                    log.warning("%s: vectors were made with %s; recomputing them with %s", self.path, stored, self._encoder.name)
                with self.store.transaction() as conn:
                    for table in ("entities", "relations"):
                        conn.execute(f"UPDATE {table} SET vec=NULL")
                    conn.execute("DELETE FROM triplet_vec")
                    self.store.set_meta("encoder", self._encoder.name)
                    self.store.set_meta("relation_template", RELATION_TEMPLATE)
        return self._encoder

    def embed(self, reference: bool = False) -> dict[str, int]:
        """Compute every missing vector (batched, stored once) and load or build the indexes."""
        with self._lock:
            counts = {t: self._embed_missing(t) for t in ("entities", "relations")}
            self._index("entities")
            self._count_relation_pairs()
            if reference:
                counts["triplets"] = self._embed_missing("triplet_vec")
                self._index("triplet_vec")
            return counts

    def _embed_missing(self, table: str, batch: int = 4096) -> int:
        encoder = self.encoder
        rows = self.store.missing_vectors(table)
        if not rows:
            return 0
        texts = [_vector_text(table, text) for _, text in rows]
        for start in tqdm(range(0, len(rows), batch), desc=f"embedding {table}", unit="batch", disable=len(rows) < batch):
            ids = [i for i, _ in rows[start : start + batch]]
            vectors = encoder.encode(texts[start : start + batch])
            with self.store.transaction():
                self.store.put_vectors(table, ids, vectors)
        self._indexes.pop(table, None)
        return len(rows)

    def _index(self, table: str):
        """The faiss index over ``table``'s vectors, loaded from its content-named file or built."""
        if table in self._indexes:
            return self._indexes[table]
        self._embed_missing(table)
        digest = self.store.content_digest(table, salt=self.encoder.name)
        path = self.path.with_name(f"{self.path.name}.{table}-{digest[:16]}.faiss")
        if path.exists():
            index = vindex.load_index(path)
        else:
            count = self.store.conn.execute(
                "SELECT count(*) FROM " + ("triplet_vec" if table == "triplet_vec" else f"{table} WHERE vec IS NOT NULL")
            ).fetchone()[0]
            log.info("building the %s index over %d vectors", table, count)
            index = vindex.build_index(self.encoder.dim, lambda: self.store.iter_vectors(table), count)
            vindex.save_index(index, path)
            for stale in self.path.parent.glob(f"{self.path.name}.{table}-*.faiss"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        self._indexes[table] = index
        return index

    def _count_relation_pairs(self) -> None:
        """Bring the relation co-occurrence counts up to date (after a bulk import: one pass over the facts)."""
        if not self.store.relation_pairs_current():
            log.info("%s: counting which relations entities hold together", self.path)
            with self.store.transaction():
                self.store.count_relation_pairs()
            self._distinct.clear()

    def _distinct_relations(self, relation_key: str) -> set[str]:
        if relation_key not in self._distinct:
            if len(self._distinct) > 100_000:  # bounded like the query vectors: asked relations are open-ended
                self._distinct.clear()
            self._distinct[relation_key] = self.store.cooccurring_relations(relation_key, DISTINCT_MIN_ENTITIES, DISTINCT_MIN_SHARE)
        return self._distinct[relation_key]

    def _encode_queries(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors for query strings, cached: generation asks the same relations again and again."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._query_vectors))
        if todo:
            if len(self._query_vectors) > 100_000:
                self._query_vectors.clear()
            self._query_vectors.update(zip(todo, self.encoder.encode(todo)))
        return self._query_vectors

    # --- lookup -------------------------------------------------------------------------

    def lookup(self, entity: str, relation: str, mode: Mode = "default") -> LookupResult:
        return self.lookup_many([(entity, relation)], mode)[0]

    def lookup_many(self, pairs: Sequence[tuple[str, str]], mode: Mode = "default") -> list[LookupResult]:
        if mode not in ("default", "reference"):
            raise LmlmError(f"unknown lookup mode {mode!r}: expected 'default' or 'reference'")
        with self._lock:
            results: list[LookupResult | None] = [None] * len(pairs)
            todo = []
            for i, (entity, relation) in enumerate(pairs):
                keys = _key(entity), _key(relation)
                if not all(keys):
                    results[i] = NONE
                elif mode == "default":
                    results[i] = self._exact(*keys)
                if results[i] is None:
                    todo.append(i)
            if todo:
                resolve = self._fuzzy_many if mode == "default" else self._reference_many
                for i, result in zip(todo, resolve([pairs[i] for i in todo])):
                    results[i] = result
            return results

    def _exact(self, entity_key: str, relation_key: str) -> LookupResult | None:
        hit = self.store.exact(entity_key, relation_key)
        if hit is None:
            return None
        triplet, forgotten = hit
        if forgotten or triplet.value is None:
            return LookupResult(None, None, 1.0, "none")
        return LookupResult(triplet.value, triplet, 1.0, "exact")

    def _fuzzy_many(self, pairs: list[tuple[str, str]]) -> list[LookupResult]:
        self._count_relation_pairs()
        candidates = [self._named_candidates(entity) for entity, _ in pairs]
        unresolved = [i for i, c in enumerate(candidates) if not c]
        questions = [RELATION_TEMPLATE.format(r) for _, r in pairs]
        # one encoder call for the names still unresolved and for every relation question
        vectors = self._encode_queries([pairs[i][0] for i in unresolved] + questions)
        if unresolved:
            for i, found in zip(unresolved, self._neighbour_candidates([pairs[i][0] for i in unresolved], vectors)):
                candidates[i] = found
        return [self._best_fact(c, r, vectors[q]) if c else NONE for (_, r), q, c in zip(pairs, questions, candidates)]

    def _named_candidates(self, entity: str) -> list[tuple[int, float, bool]]:
        """(entity id, score, forgotten): the exact key, else a lossless rewrite of the query (no
        parenthetical, "Last, First" turned round), else a stored entity's shortened name."""
        key, forms = normalize_key(entity), query_forms(entity)
        for score, found in ((1.0, lambda: self.store.entities_by_key([key])),
                             (REWRITE_SCORE, lambda: self.store.entities_by_key(forms)),
                             (ALIAS_SCORE, lambda: self.store.entities_by_alias(forms))):
            if rows := found():
                return [(i, score, f) for i, _, f in rows]
        return []

    def _neighbour_candidates(self, entities: list[str], vectors: dict[str, np.ndarray]) -> list[list[tuple[int, float, bool]]]:
        index = self._index("entities")
        scores, ids = vindex.search(index, np.stack([vectors[e] for e in entities]), ENTITY_NEIGHBOURS)
        rows = self.store.entity_rows({int(i) for i in ids.ravel() if i >= 0})
        out = []
        for entity, row_scores, row_ids in zip(entities, scores, ids):
            found = []
            for score, eid in zip(row_scores, row_ids):
                if eid < 0 or score < self.entity_threshold or int(eid) not in rows:
                    continue
                name, forgotten = rows[int(eid)]
                if shortened_name(entity, name):
                    found.append((int(eid), float(score), forgotten))
            out.append(found)
        return out

    def _best_fact(self, candidates: list[tuple[int, float, bool]], relation: str, qvec: np.ndarray) -> LookupResult:
        top_entity_score = max(score for _, score, _ in candidates)
        if any(forgotten and score >= top_entity_score for _, score, forgotten in candidates):
            return NONE  # the query names a forgotten entity: no neighbour answers for it
        rkey, rcompact = normalize_key(relation), compact_key(relation)
        distinct = self._distinct_relations(rkey)
        best: list[tuple[float, Triplet]] = []  # the best fact of each candidate entity
        nearest: tuple[float, Triplet] | None = None
        for eid, entity_score, forgotten in candidates:
            if forgotten:
                continue
            scored = self._relation_similarities(self.store.facts_of(eid), rkey, rcompact, qvec, distinct)
            if not scored:
                continue
            live = [(sim, t) for sim, _, t in scored if t.value is not None]
            if live and (nearest is None or entity_score * live[0][0] > nearest[0]):
                nearest = (entity_score * live[0][0], live[0][1])
            top_sim, top_key, top = scored[0]
            runner_up = next((sim for sim, key, _ in scored if key != top_key), 0.0)
            if top_sim >= self.relation_threshold or (top_sim >= self.relation_floor and top_sim - runner_up >= self.relation_margin):
                best.append((entity_score * top_sim, top))
        if not best:
            return LookupResult(None, None, nearest[0] if nearest else 0.0, "none", nearest[1] if nearest else None)
        score, triplet = max(best, key=lambda b: b[0])
        rivals = {t.value for s, t in best if s >= score - 0.02}
        if triplet.value is None or len(rivals) > 1:  # a deleted fact, or several entities fit equally well
            return LookupResult(None, None, score, "none", nearest[1] if nearest and triplet.value is not None else None)
        tier: Tier = "exact" if score >= 1.0 else "fuzzy"
        return LookupResult(triplet.value, triplet, score, tier)

    @staticmethod
    def _relation_similarities(facts, rkey: str, rcompact: str, qvec: np.ndarray, distinct: set[str]) -> list[tuple[float, str, Triplet]]:
        """(similarity, relation key, triplet) of an entity's facts to the asked relation, best first; facts
        under a sibling relation, or one that entities hold beside the asked relation, are left out."""
        scored = []
        for triplet, fact_key, fact_vec in facts:
            if fact_key == rkey:
                similarity = 1.0
            elif fact_key.replace(" ", "") == rcompact:
                similarity = 0.99
            elif fact_vec is not None and fact_key not in distinct and not sibling_relations(rkey, fact_key):
                similarity = float(np.frombuffer(fact_vec, dtype=np.float16).astype(np.float32) @ qvec)
            else:
                continue
            scored.append((similarity, fact_key, triplet))
        scored.sort(key=lambda x: (-x[0], x[2].value is None, x[2].id))
        return scored

    def _reference_many(self, pairs: list[tuple[str, str]]) -> list[LookupResult]:
        index = self._index("triplet_vec")
        texts = [_reference_text(f"{e} {r}") for e, r in pairs]
        vectors = self._encode_queries(texts)
        k = 16
        scores, ids = vindex.search(index, np.stack([vectors[t] for t in texts]), k)
        triplets = self.store.triplets_by_id({int(i) for i in ids.ravel() if i >= 0})
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [(float(s), triplets[int(i)]) for s, i in zip(row_scores, row_ids) if i >= 0 and int(i) in triplets]
            results.append(self._reference_result(hits))
        return results

    def _reference_result(self, hits: list[tuple[float, Triplet]]) -> LookupResult:
        """Top-1 over the hits, best first. Tombstones take part: a query whose best hit is a deleted or
        forgotten fact gets none, so no neighbour answers in its place."""
        if not hits:
            return NONE
        score, top = hits[0]
        if top.value is None:
            return LookupResult(None, None, score, "none")
        if score >= self.reference_threshold:
            return LookupResult(top.value, top, score, "fuzzy")
        return LookupResult(None, None, score, "none", top)

    # --- edits ----------------------------------------------------------------------------

    def import_triplets(self, rows: Iterable[tuple], source: str | None = None) -> ImportStats:
        """Bulk insert (entity, relation, value[, source, example_id]) rows in one transaction."""
        stats = ImportStats()
        padded = ((*row, source, None)[:5] if len(row) == 3 else (*row, None)[:5] for row in rows)
        with self._lock, self.store.transaction():
            self.store.insert_triplets(padded, stats)
        self._indexes.clear()
        self._distinct.clear()
        return stats

    def add(self, entity: str, relation: str, value: str, source: str | None = None, example_id: str | None = None) -> Triplet:
        """Add one fact (adding it again changes nothing); re-adds its entity if it was forgotten."""
        if problem := row_problem(entity, relation, value, source, example_id):
            raise LmlmError(problem)
        with self._lock:
            with self.store.transaction():
                triplet, entity_id, relation_id = self._insert_fact(entity, relation, value, source, example_id)
            self._distinct.clear()
        self._embed_added({"entities": entity_id, "relations": relation_id, "triplet_vec": triplet.id})
        return triplet

    def _insert_fact(self, entity: str, relation: str, value: str, source, example_id) -> tuple[Triplet, int, int]:
        stats = ImportStats()
        pairs_current = self.store.relation_pairs_current()
        self.store.insert_triplets([(entity, relation, value, source, example_id)], stats)
        eid, rid = self.store.entity_id(entity, create=False), self.store.relation_id(relation, create=False)
        if stats.added and pairs_current:  # a fact already there is no new co-occurrence
            self.store.count_new_fact(eid, rid)
        row = self.store.conn.execute(
            "SELECT id, entity, relation, value FROM triplets WHERE entity_id=? AND relation_id=? AND value=?", (eid, rid, value.strip())
        ).fetchone()
        return Triplet(*row), eid, rid

    def _embed_added(self, ids: dict[str, int]) -> None:
        """Vectors for the rows one add made, put into the indexes in memory. Only these rows are encoded
        (never a backlog left by an import without vectors), and outside the lock and any transaction."""
        # table -> the index whose presence shows that the table's vectors are in use
        wanted = {"entities": "entities", "relations": "entities", "triplet_vec": "triplet_vec"}
        with self._lock:
            todo = {t: self.store.vectorless(t, [i]) for t, i in ids.items() if wanted[t] in self._indexes}
        for table, rows in todo.items():
            if rows:
                self._put_new_vectors(table, rows, self.encoder.encode([_vector_text(table, text) for _, text in rows]))

    def _put_new_vectors(self, table: str, rows: list[tuple[int, str]], vectors: np.ndarray) -> None:
        with self._lock:
            still = {i for i, _ in self.store.vectorless(table, [i for i, _ in rows])}  # another add may have put them meanwhile
            keep = [k for k, (i, _) in enumerate(rows) if i in still]
            if not keep:
                return
            ids, vectors = [rows[k][0] for k in keep], vectors[keep]
            with self.store.transaction():
                self.store.put_vectors(table, ids, vectors)
            if table in self._indexes:
                self._indexes[table].add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def update(self, triplet_id: int, value: str) -> Triplet:
        if problem := _check_field("value", value):
            raise LmlmError(problem)
        return self._set_value(triplet_id, value.strip())

    def delete(self, triplet_id: int) -> Triplet:
        return self._set_value(triplet_id, None)

    def _set_value(self, triplet_id: int, value: str | None) -> Triplet:
        """A forgotten entity's facts stay erased: only ``add`` brings the entity back."""
        with self._lock, self.store.transaction():
            owner = self.store.entity_of(triplet_id)
            if owner is None:
                raise NotFound(f"no triplet with id {triplet_id}")
            if owner[1] and value is not None:
                raise LmlmError(f"triplet {triplet_id} belongs to the forgotten entity {owner[0]!r}; add the fact to re-add the entity")
            self.store.set_value(triplet_id, value)
            return self.store.triplet(triplet_id)

    def forget(self, entity: str, exact: bool = False) -> int:
        """Erase every fact of the one entity ``entity`` names; later queries that resolve to it get ``none``.
        Returns the count. A name that fits several entities raises Ambiguous and erases nothing; with
        ``exact``, only the entity stored under that very name (normalized) counts."""
        with self._lock:
            entity_id = self._one_entity(entity, exact)
            with self.store.transaction():
                return self.store.forget_entity(entity_id)

    def _one_entity(self, entity: str, exact: bool) -> int:
        if not _key(entity):
            candidates = []
        elif exact:
            candidates = [(i, 1.0, f) for i, _, f in self.store.entities_by_key([_key(entity)])]
        else:
            candidates = self._named_candidates(entity)
        if not candidates:
            raise NotFound(f"no entity named {entity!r}")
        if len(candidates) > 1:
            names = sorted(name for name, _ in self.store.entity_rows(i for i, _, _ in candidates).values())
            raise Ambiguous(f"{entity!r} fits {len(names)} entities ({', '.join(map(repr, names))}); give the one meant in full", names)
        return candidates[0][0]

    def facts(self, entity: str) -> list[Triplet]:
        """The live facts of the entity named ``entity`` (its exact key, else a lossless rewrite or shortened name)."""
        with self._lock:
            candidates = self._named_candidates(entity) if _key(entity) else []
            if not candidates:
                raise NotFound(f"no entity named {entity!r}")
            return [t for eid, _, _ in candidates for t, _, _ in self.store.facts_of(eid) if t.value is not None]

    def search(self, query: str, limit: int = 20) -> list[Triplet]:
        """Live facts whose entity name starts with ``query`` (by normalized key, indexed), then facts whose
        entity, relation or value contains it; at most ``limit``."""
        with self._lock:
            return self.store.search(normalize_key(query), query.strip(), limit) if query.strip() and storable_text(query) else []

    def stats(self) -> dict:
        with self._lock:
            out = self.store.counts()
            out["file_bytes"] = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
            out["encoder"] = self.store.get_meta("encoder")
            if "entities" in self._indexes:
                out["entity_index"] = vindex.describe(self._indexes["entities"])
            return out

    def triplets(self, live_only: bool = True):
        return self.store.iter_triplets(live_only)


def _key(text) -> str:
    """The normalized key of a queried string; empty for anything that cannot match."""
    return normalize_key(text) if isinstance(text, str) and 0 < len(text) <= MAX_FIELD_CHARS and storable_text(text) else ""


def _vector_text(table: str, text: str) -> str:
    """What is encoded for a row of ``table``: entity names as they are, relations in a question, reference strings normalized."""
    if table == "relations":
        return RELATION_TEMPLATE.format(text)
    return _reference_text(text) if table == "triplet_vec" else text


def _reference_text(text: str) -> str:
    """The reference retriever's normalization of "entity relation" strings."""
    return text.lower().replace("_", " ").strip()

