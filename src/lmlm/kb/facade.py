"""``StoredKB``: the knowledge base over any store (SQLite or PostgreSQL). It ties the parts together
(storage, vectors, the resolver, the relation statistics) and makes the edits, each of which the next
lookup sees. A backend supplies the store, where the faiss indexes live, and its own ``stats`` and ``version``."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from lmlm.errors import Ambiguous, LmlmError, NotFound
from lmlm.kb.encoder import Encoder, EncoderChoice
from lmlm.kb.fields import field_problem, query_key, row_problem, storable_text
from lmlm.kb.normalize import normalize_key
from lmlm.kb.protocol import LookupResult, Mode, Triplet
from lmlm.kb.resolver import Resolver, Thresholds
from lmlm.kb.statistics import RelationStatistics
from lmlm.kb.storage import ImportStats
from lmlm.kb.vectors import Vectors

DEFAULT_THRESHOLDS = Thresholds()


class StoredKB:
    """Lookups and edits over ``self.store``; a backend's ``__init__`` makes the store and the indexes, then calls ``_assemble``."""

    resolver_class = Resolver

    def _assemble(self, store, indexes, encoder: str | Encoder | None, thresholds: Thresholds) -> None:
        self.store = store
        self.thresholds = thresholds
        self._lock = threading.RLock()
        self.encoders = EncoderChoice(self.store, encoder)
        self.indexes = indexes
        self.vectors = Vectors(self.store, self.encoders, self.indexes, self._lock)
        self.statistics = RelationStatistics(self.store)
        self.resolver = self.resolver_class(self.store, self.vectors, self.statistics, self.thresholds)
        self._edits = 0  # edits through this object that may have added an entity name

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def encoder(self) -> Encoder:
        """The encoder this KB's lookups use (loaded on first use; reading it writes nothing)."""
        return self.encoders.encoder

    def embed(self, reference: bool = False) -> dict[str, int]:
        """Compute every missing vector (batched, stored once), record the encoder, and load or build the indexes."""
        with self._lock:
            counts = {t: self.vectors.embed_missing(t) for t in ("entities", "relations")}
            self.vectors.index("entities")
            self.statistics.bring_up_to_date()
            if reference:
                counts["triplets"] = self.vectors.embed_missing("triplet_vec")
                self.vectors.index("triplet_vec")
            return counts

    # --- lookup -------------------------------------------------------------------------

    def lookup(self, entity: str, relation: str, mode: Mode = "default") -> LookupResult:
        return self.lookup_many([(entity, relation)], mode)[0]

    def lookup_many(self, pairs: Sequence[tuple[str, str]], mode: Mode = "default") -> list[LookupResult]:
        if mode not in ("default", "reference"):
            raise LmlmError(f"unknown lookup mode {mode!r}: expected 'default' or 'reference'")
        with self._lock:
            return self._answer(pairs, mode)

    def _answer(self, pairs: Sequence[tuple[str, str]], mode: Mode) -> list[LookupResult]:
        return self.resolver.lookup_many(pairs, mode)

    def explain(self, entity: str, relation: str) -> dict:
        """A default-mode lookup's answer, how it was decided, and what it weighed (``Resolver.explain``)."""
        with self._lock:
            return self._explained(entity, relation)

    def _explained(self, entity: str, relation: str) -> dict:
        return self.resolver.explain(entity, relation)

    # --- edits ----------------------------------------------------------------------------

    def import_triplets(self, rows: Iterable[tuple], source: str | None = None) -> ImportStats:
        """Bulk insert (entity, relation, value[, source, example_id]) rows in one transaction."""
        stats = ImportStats()
        padded = ((*row, source, None)[:5] if len(row) == 3 else (*row, None)[:5] for row in rows)
        with self._lock, self.store.transaction():
            self.store.insert_triplets(padded, stats)
        self.indexes.clear()
        self.statistics.forget_cached()
        self._edits += 1
        return stats

    def add(self, entity: str, relation: str, value: str, source: str | None = None, example_id: str | None = None) -> Triplet:
        """Add one fact (adding it again changes nothing); re-adds its entity if it was forgotten."""
        if problem := row_problem(entity, relation, value, source, example_id):
            raise LmlmError(problem)
        with self._lock:
            new_name = not self.store.holds_live_entity(entity)
            with self.store.transaction():
                triplet, entity_id, relation_id = self._insert_fact(entity, relation, value, source, example_id)
            self.statistics.forget_cached()
            self._edits += new_name  # a new entity adds a name for the engine's trie (a revived one is counted too, needlessly)
        self.vectors.embed_added({"entities": entity_id, "relations": relation_id, "triplet_vec": triplet.id})
        return triplet

    def _insert_fact(self, entity: str, relation: str, value: str, source, example_id) -> tuple[Triplet, int, int]:
        stats = ImportStats()
        counts_current = self.statistics.is_current()
        self.store.insert_triplets([(entity, relation, value, source, example_id)], stats)
        eid, rid = self.store.entity_id(entity, create=False), self.store.relation_id(relation, create=False)
        if stats.added and counts_current:  # a fact already there is no new co-occurrence
            self.statistics.count_new_fact(eid, rid)
        return self.store.fact(eid, rid, value.strip()), eid, rid

    def update(self, triplet_id: int, value: str) -> Triplet:
        if problem := field_problem("value", value):
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
                erased = self.store.forget_entity(entity_id)
            return erased

    def _one_entity(self, entity: str, exact: bool) -> int:
        if not query_key(entity):
            candidates = []
        elif exact:
            candidates = [(i, 1.0, f) for i, _, f in self.store.entities_by_key([query_key(entity)])]
        else:
            candidates = self.resolver.named_candidates(entity)
        if not candidates:
            raise NotFound(f"no entity named {entity!r}")
        if len(candidates) > 1:
            names = sorted(name for name, _ in self.store.entity_rows(i for i, _, _ in candidates).values())
            raise Ambiguous(f"{entity!r} fits {len(names)} entities ({', '.join(map(repr, names))}); give the one meant in full", names)
        return candidates[0][0]

    # --- reads ----------------------------------------------------------------------------

    def facts(self, entity: str) -> list[Triplet]:
        """The live facts of the entity named ``entity`` (its exact key, else a lossless rewrite or shortened name)."""
        with self._lock:
            candidates = self.resolver.named_candidates(entity) if query_key(entity) else []
            if not candidates:
                raise NotFound(f"no entity named {entity!r}")
            return [t for eid, _, _ in candidates for t, _, _ in self.store.facts_of(eid) if t.value is not None]

    def search(self, query: str, limit: int = 20) -> list[Triplet]:
        """Live facts whose entity name starts with ``query`` (by normalized key, indexed), then facts whose
        entity, relation or value contains it; at most ``limit``."""
        with self._lock:
            return self.store.search(normalize_key(query), query.strip(), limit) if query.strip() and storable_text(query) else []

    def entity_names(self) -> list[str]:
        """The name of every entity, the forgotten ones included (for constrained decoding's entity trie): a call
        about a forgotten entity must be able to name it, so that its lookup is refused, not held to a neighbour's
        name and answered with the neighbour's fact."""
        with self._lock:
            return self.store.entity_names()

    def triplets(self, live_only: bool = True):
        return self.store.iter_triplets(live_only)
