"""Which relations entities hold side by side: co-occurrence counts kept in the KB file.

Two relations that many entities hold together are different facts ("Employer" and "Employer City"),
however alike their names; synonyms rarely share an entity. The resolver uses this to keep a relation
from answering for another that merely reads like it.
"""

from __future__ import annotations

import logging

from lmlm.kb.storage import Store

log = logging.getLogger(__name__)

# Two relations held side by side by at least this many entities, and by this share of the entities that
# hold the rarer one, count as different facts.
DISTINCT_MIN_ENTITIES, DISTINCT_MIN_SHARE = 3, 0.1
CACHED_RELATIONS_MAX = 100_000  # asked relations are open-ended: the cache is bounded



class RelationStatistics:
    """The ``relation_pairs`` table of one KB (how many entities hold both relation a and relation b; a == b: hold
    a), and a cache of the relations known to differ from an asked one."""

    def __init__(self, store: Store):
        self.store = store
        self._distinct: dict[str, set[str]] = {}  # relation key -> keys of relations known to be other facts

    def bring_up_to_date(self) -> None:
        """Recount, if facts were added since the last count (after a bulk import: one pass over the facts)."""
        if not self.is_current():
            log.info("%s: counting which relations entities hold together", self.store.path)
            with self.store.transaction():
                self.store.recount_relation_pairs()
                self.store.set_meta("relation_pairs_at", str(self.store.last_triplet_id()))
            self.forget_cached()

    def is_current(self) -> bool:
        return self.store.get_meta("relation_pairs_at") == str(self.store.last_triplet_id())

    def count_new_fact(self, entity_id: int, relation_id: int) -> None:
        """Keep the counts current after one added fact, inside the add's transaction (a recount at scale is slow)."""
        live = self.store.live_relation_counts(entity_id)
        if live.get(relation_id) == 1:  # the relation is new to this entity
            others = [r for r in live if r != relation_id]
            pairs = [(relation_id, relation_id)] + [p for r in others for p in ((relation_id, r), (r, relation_id))]
            self.store.count_relation_pairs(pairs)
        self.store.set_meta("relation_pairs_at", str(self.store.last_triplet_id()))

    def distinct_from(self, relation_key: str) -> set[str]:
        """Keys of the relations that count as different facts from ``relation_key`` (cached)."""
        if relation_key not in self._distinct:
            if len(self._distinct) > CACHED_RELATIONS_MAX:
                self._distinct.clear()
            self._distinct[relation_key] = self._cooccurring(relation_key, DISTINCT_MIN_ENTITIES, DISTINCT_MIN_SHARE)
        return self._distinct[relation_key]

    def forget_cached(self) -> None:
        """Drop the cache: the counts changed."""
        self._distinct.clear()

    def _cooccurring(self, relation_key: str, min_count: int, min_share: float) -> set[str]:
        """Keys of the relations that at least ``min_count`` entities, and at least ``min_share`` of the
        entities having the rarer of the two, hold together with ``relation_key``."""
        rows = self.store.relation_cooccurrence(relation_key)
        return {key for key, n, na, nb in rows if n >= min_count and n >= min_share * min(na, nb)}
