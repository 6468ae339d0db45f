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

# Made on first need in files of any age: how many entities have both relation a and relation b (a == b: have a).
_PAIRS_SCHEMA = "CREATE TABLE IF NOT EXISTS relation_pairs(a INTEGER NOT NULL, b INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID"


class RelationStatistics:
    """The ``relation_pairs`` table of one KB, and a cache of the relations known to differ from an asked one."""

    def __init__(self, store: Store):
        self.store = store
        self._distinct: dict[str, set[str]] = {}  # relation key -> keys of relations known to be other facts

    @property
    def conn(self):
        return self.store.conn

    def bring_up_to_date(self) -> None:
        """Recount, if facts were added since the last count (after a bulk import: one pass over the facts)."""
        if not self.is_current():
            log.info("%s: counting which relations entities hold together", self.store.path)
            with self.store.transaction():
                self._recount()
            self.forget_cached()

    def is_current(self) -> bool:
        return self.store.get_meta("relation_pairs_at") == str(self.store.last_triplet_id())

    def _recount(self) -> None:
        """Recount ``relation_pairs`` over the live facts, and note the last triplet id it has seen."""
        self.conn.execute(_PAIRS_SCHEMA)
        self.conn.execute("DELETE FROM relation_pairs")
        self.conn.execute(
            "WITH er AS MATERIALIZED (SELECT DISTINCT entity_id, relation_id FROM triplets WHERE value IS NOT NULL)"
            " INSERT INTO relation_pairs(a, b, n) SELECT x.relation_id, y.relation_id, count(*)"
            " FROM er x JOIN er y ON y.entity_id=x.entity_id GROUP BY 1, 2"
        )
        self.store.set_meta("relation_pairs_at", str(self.store.last_triplet_id()))

    def count_new_fact(self, entity_id: int, relation_id: int) -> None:
        """Keep the counts current after one added fact, inside the add's transaction (a recount at scale is slow)."""
        live = dict(self.conn.execute(
            "SELECT relation_id, count(*) FROM triplets WHERE entity_id=? AND value IS NOT NULL GROUP BY relation_id", (entity_id,)))
        if live.get(relation_id) == 1:  # the relation is new to this entity
            others = [r for r in live if r != relation_id]
            pairs = [(relation_id, relation_id)] + [p for r in others for p in ((relation_id, r), (r, relation_id))]
            self.conn.executemany("INSERT INTO relation_pairs(a, b, n) VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET n=n+1", pairs)
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
        rows = self.conn.execute(
            "SELECT o.key, p.n, da.n, db.n FROM relations r JOIN relation_pairs p ON p.a=r.id JOIN relations o ON o.id=p.b"
            " JOIN relation_pairs da ON da.a=p.a AND da.b=p.a JOIN relation_pairs db ON db.a=p.b AND db.b=p.b"
            " WHERE r.key=? AND p.b != p.a",
            (relation_key,),
        )
        return {key for key, n, na, nb in rows if n >= min_count and n >= min_share * min(na, nb)}
