"""From a queried (entity, relation) to the stored fact: the lookup tiers and the matcher.

Default mode, per query (DESIGN.md section 3):
  1. exact: the normalized keys of both match a stored triplet;
  2. fuzzy, triplet-aware: resolve the entity (exact key, then an alias rewrite of ``aliases``, then a
     sentence-vector neighbour whose name contains every word of the query),
     then match the relation among that entity's own relations by sentence-vector similarity, never to a fact
     of another kind than the asked relation names (``value_types``);
  3. none.
A query that resolves to a forgotten entity or a deleted fact gets ``none``: tombstones are part of
the search, so nothing answers in their place.

Reference mode reproduces the reference retriever: cosine similarity between the query and every
"entity relation" string, a fixed threshold, top-1.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import asdict, dataclass

import numpy as np

from lmlm.kb import index as vindex
from lmlm.kb.aliases import query_alias_keys
from lmlm.kb.fields import query_key
from lmlm.kb.normalize import compact_key, normalize_key, shortened_name, sibling_relations
from lmlm.kb.protocol import NO_ANSWER, LookupResult, Mode, Tier, Triplet
from lmlm.kb.statistics import RelationStatistics
from lmlm.kb.storage import Store
from lmlm.kb.value_types import compatible, one_time_two_grains, relation_kind
from lmlm.kb.vectors import Vectors, reference_text, relation_question

REWRITE_SCORE = 0.97
ALIAS_SCORE = 0.95
ENTITY_NEIGHBOURS = 8
REFERENCE_NEIGHBOURS = 16
TIE_MARGIN = 0.02  # facts of several entities scoring within this of the best fit equally well

Candidate = tuple[int, float, bool]  # (entity id, score, forgotten)


@dataclass
class Thresholds:
    """When a fuzzy match counts. The relation thresholds were chosen by ``benchmarks/retrieval_quality.py``."""

    entity: float = 0.5  # cosine for a vector-neighbour entity; the word-containment test does most of the work
    relation: float = 0.65  # cosine between the asked relation and one of the entity's
    # A weaker match still counts when it clearly beats the entity's other relations; chosen on a second query
    # sample (seed 1 in benchmarks/retrieval_quality.py) for the best paraphrase precision at a fixed abstention
    # on absent relations.
    relation_floor: float = 0.55
    relation_margin: float = 0.08
    reference: float = 0.6  # the reference retriever's threshold


class Resolver:
    """Answers lookups over one store; the caller holds the KB's lock."""

    def __init__(self, store: Store, vectors: Vectors, statistics: RelationStatistics, thresholds: Thresholds):
        self.store, self.vectors, self.statistics, self.thresholds = store, vectors, statistics, thresholds

    def lookup_many(self, pairs: Sequence[tuple[str, str]], mode: Mode) -> list[LookupResult]:
        results: list[LookupResult | None] = [None] * len(pairs)
        todo = []
        for i, (entity, relation) in enumerate(pairs):
            keys = query_key(entity), query_key(relation)
            if not all(keys):
                results[i] = NO_ANSWER
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
        return exact_result(self.store.exact(entity_key, relation_key))

    # --- default mode: resolve the entity, then match the relation among its own -------------

    def _fuzzy_many(self, pairs: list[tuple[str, str]]) -> list[LookupResult]:
        self.statistics.bring_up_to_date()
        candidates = [self.named_candidates(entity) for entity, _ in pairs]
        unresolved = [i for i, c in enumerate(candidates) if not c]
        questions = [relation_question(r) for _, r in pairs]
        # one encoder call for the names still unresolved and for every relation question
        vectors = self.vectors.encode_queries([pairs[i][0] for i in unresolved] + questions)
        if unresolved:
            for i, found in zip(unresolved, self._neighbour_candidates([pairs[i][0] for i in unresolved], vectors)):
                candidates[i] = found
        return [self._decided(c, r, vectors[q])[0] if c else NO_ANSWER for (_, r), q, c in zip(pairs, questions, candidates)]

    def named_candidates(self, entity: str) -> list[Candidate]:
        """The entities ``entity`` names: the exact key, else a rewrite of the query (no parenthetical, "Last,
        First" turned round, transliterated, no article, given names as initials) that is a stored name, else
        one that is a stored entity's alias (``aliases``). Rewrites are only tried when the exact key misses."""
        key = normalize_key(entity)
        for score, found in ((1.0, lambda: self.store.entities_by_key([key])),
                             (REWRITE_SCORE, lambda: self.store.entities_by_key(query_alias_keys(entity, initials=True))),
                             (ALIAS_SCORE, lambda: self.store.entities_by_alias(query_alias_keys(entity, initials=False)))):
            if rows := found():
                return [(i, score, f) for i, _, f in rows]
        return []

    def _neighbour_candidates(self, entities: list[str], vectors: dict[str, np.ndarray]) -> list[list[Candidate]]:
        index = self.vectors.index("entities")
        scores, ids = vindex.search(index, np.stack([vectors[e] for e in entities]), ENTITY_NEIGHBOURS)
        rows = self.store.entity_rows({int(i) for i in ids.ravel() if i >= 0})
        out = []
        for entity, row_scores, row_ids in zip(entities, scores, ids):
            found = []
            for score, eid in zip(row_scores, row_ids):
                if eid < 0 or score < self.thresholds.entity or int(eid) not in rows:
                    continue
                name, forgotten = rows[int(eid)]
                if shortened_name(entity, name):
                    found.append((int(eid), float(score), forgotten))
            out.append(found)
        return out

    def _decided(self, candidates: list[Candidate], relation: str, qvec: np.ndarray) -> tuple[LookupResult, str]:
        """The answer over the candidate entities, and how it was decided."""
        top_entity_score = max(score for _, score, _ in candidates)
        if any(forgotten and score >= top_entity_score for _, score, forgotten in candidates):
            return NO_ANSWER, "none: the query names a forgotten entity, so no neighbour answers for it"
        best, nearest = self._best_per_entity(candidates, relation, qvec)
        if not best:
            result = LookupResult(None, None, nearest[0] if nearest else 0.0, "none", nearest[1] if nearest else None)
            return result, "none: no fact passes the thresholds"
        score, triplet = max(best, key=lambda b: b[0])
        rivals = {t.value for s, t in best if s >= score - TIE_MARGIN}
        if triplet.value is None:
            return LookupResult(None, None, score, "none"), "none: the best fact was deleted"
        if len(rivals) > 1:
            return (LookupResult(None, None, score, "none", nearest[1] if nearest else None),
                    "none: facts of several entities fit equally well, with different values")
        tier: Tier = "exact" if score >= 1.0 else "fuzzy"
        return LookupResult(triplet.value, triplet, score, tier), f"{tier}: the best fact passes"

    def _best_per_entity(self, candidates: list[Candidate], relation: str, qvec: np.ndarray
                         ) -> tuple[list[tuple[float, Triplet]], tuple[float, Triplet] | None]:
        """The matching fact of each live candidate entity, scored, and the best live fact below the thresholds."""
        asked = AskedRelation.of(relation, self.statistics)
        best: list[tuple[float, Triplet]] = []
        nearest: tuple[float, Triplet] | None = None
        for eid, entity_score, forgotten in candidates:
            if forgotten:
                continue
            judged = judge_facts(self.store.facts_of(eid), asked, qvec)
            live = [f for f in judged if f.answers_if_close_enough and f.triplet.value is not None]
            if live and (nearest is None or entity_score * live[0].similarity > nearest[0]):
                nearest = (entity_score * live[0].similarity, live[0].triplet)
            top, rule = decide(judged, self.thresholds)
            if rule:
                best.append((entity_score * top.similarity, top.triplet))
        return best, nearest

    def explain(self, entity: str, relation: str) -> dict:
        """A default-mode lookup's answer, how it was decided, and what it weighed: the entities the query may name,
        and for each its facts, with their similarity to the asked relation or why they cannot answer, and which
        fact (if any) passes the thresholds."""
        keys = query_key(entity), query_key(relation)
        if not all(keys):
            return {"answer": NO_ANSWER.to_dict(), "decision": "none: the entity or the relation is empty or cannot be stored",
                    "relation_kind": None, "thresholds": asdict(self.thresholds), "entities": []}
        self.statistics.bring_up_to_date()
        question = relation_question(relation)
        candidates = self.named_candidates(entity)
        vectors = self.vectors.encode_queries([question] + ([] if candidates else [entity]))
        if not candidates:
            candidates = self._neighbour_candidates([entity], vectors)[0]
        if (exact := self._exact(*keys)) is not None:
            answer, decision = exact, "exact: the keys match a stored fact" if exact.value else "none: the fact under these keys was deleted, or its entity forgotten"
        elif candidates:
            answer, decision = self._decided(candidates, relation, vectors[question])
        else:
            answer, decision = NO_ANSWER, "none: no entity matches the query's name"
        asked = AskedRelation.of(relation, self.statistics)
        return {"answer": answer.to_dict(), "decision": decision, "relation_kind": asked.kind,
                "thresholds": asdict(self.thresholds), "entities": self._weighed(candidates, asked, vectors[question])}

    def _weighed(self, candidates: list[Candidate], asked: AskedRelation, qvec: np.ndarray) -> list[dict]:
        names = self.store.entity_rows({eid for eid, _, _ in candidates})
        entities = []
        for eid, score, forgotten in candidates:
            judged = judge_facts(self.store.facts_of(eid), asked, qvec)
            top, rule = decide(judged, self.thresholds)
            passing = {"fact": top.triplet.id, "rule": rule} if rule and not forgotten else None
            entities.append({"entity": names[eid][0], "entity_score": score, "forgotten": forgotten,
                             "passes": passing, "facts": [f.to_dict() for f in judged]})
        return entities

    # --- reference mode ------------------------------------------------------------------------

    def _reference_many(self, pairs: list[tuple[str, str]]) -> list[LookupResult]:
        index = self.vectors.index("triplet_vec")
        texts = [reference_text(f"{e} {r}") for e, r in pairs]
        vectors = self.vectors.encode_queries(texts)
        scores, ids = vindex.search(index, np.stack([vectors[t] for t in texts]), REFERENCE_NEIGHBOURS)
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
            return NO_ANSWER
        score, top = hits[0]
        if top.value is None:
            return LookupResult(None, None, score, "none")
        if score >= self.thresholds.reference:
            return LookupResult(top.value, top, score, "fuzzy")
        return LookupResult(None, None, score, "none", top)


def exact_result(hit: tuple[Triplet, bool] | None) -> LookupResult | None:
    """The answer of the exact tier for a stored (triplet, entity forgotten) row; None when no row matched."""
    if hit is None:
        return None
    triplet, forgotten = hit
    if forgotten or triplet.value is None:
        return LookupResult(None, None, 1.0, "none")
    return LookupResult(triplet.value, triplet, 1.0, "exact")


@dataclass(frozen=True)
class AskedRelation:
    key: str
    compact: str
    kind: str | None  # the kind of value its name asks for (``value_types``)
    distinct: Set[str]  # relations that entities hold beside it: never a paraphrase of it (the statistics' cached set)

    @classmethod
    def of(cls, relation: str, statistics: RelationStatistics) -> AskedRelation:
        key = normalize_key(relation)
        return cls(key, compact_key(relation), relation_kind(relation), statistics.distinct_from(key))


@dataclass
class JudgedFact:
    """One stored fact weighed against the asked relation."""

    triplet: Triplet
    key: str
    similarity: float | None  # None: left out before any similarity was computed
    left_out: str | None = None  # why it cannot answer; a fact of another kind keeps its similarity, as a rival

    @property
    def answers_if_close_enough(self) -> bool:
        return self.similarity is not None and self.left_out is None

    def to_dict(self) -> dict:
        return {"id": self.triplet.id, "relation": self.triplet.relation, "key": self.key, "value": self.triplet.value,
                "similarity": self.similarity, "left_out": self.left_out}


def judge_facts(facts, asked: AskedRelation, qvec: np.ndarray) -> list[JudgedFact]:
    """An entity's facts weighed against the asked relation, the scored ones best first. Left out: facts under a
    sibling relation, or one that entities hold beside the asked relation; a fact of another kind than the asked
    relation names is scored but cannot answer."""
    judged = []
    for triplet, fact_key, fact_vec in facts:
        if fact_key == asked.key or fact_key.replace(" ", "") == asked.compact:
            judged.append(JudgedFact(triplet, fact_key, 1.0 if fact_key == asked.key else 0.99))
        elif fact_vec is None:
            judged.append(JudgedFact(triplet, fact_key, None, "no vector yet"))
        elif fact_key in asked.distinct:
            judged.append(JudgedFact(triplet, fact_key, None, "held beside the asked relation"))
        elif sibling_relations(asked.key, fact_key) and not one_time_two_grains(asked.key, fact_key):
            judged.append(JudgedFact(triplet, fact_key, None, "a sibling relation"))
        else:
            similarity = float(np.frombuffer(fact_vec, dtype=np.float16).astype(np.float32) @ qvec)
            fits = compatible(asked.kind, fact_key, triplet.value)
            judged.append(JudgedFact(triplet, fact_key, similarity, None if fits else "of another kind"))
    judged.sort(key=lambda f: (f.similarity is None, -(f.similarity or 0.0), f.triplet.value is None, f.triplet.id))
    return judged


def decide(judged: list[JudgedFact], limits: Thresholds) -> tuple[JudgedFact | None, str | None]:
    """The entity's best fact that may answer, and the rule it passes by (None: it does not pass). Its runner-up
    is the best fact under another relation, of any kind, and it must not score higher: ruling a fact out never lets
    a weaker one through."""
    top = next((f for f in judged if f.answers_if_close_enough), None)
    if top is None:
        return None, None
    runner_up = next((f.similarity for f in judged if f.similarity is not None and f.key != top.key), 0.0)
    if runner_up > top.similarity:  # a fact of another kind fits the asked relation better: the asked fact is not here
        return top, None
    if top.similarity >= limits.relation:
        return top, "at least the relation threshold"
    if top.similarity >= limits.relation_floor and top.similarity - runner_up >= limits.relation_margin:
        return top, "at least the floor, ahead of the next relation by the margin"
    return top, None
