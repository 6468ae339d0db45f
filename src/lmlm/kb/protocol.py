"""What the engine, the evaluations and the server need from a knowledge base, and the types it speaks in.

``SqliteKB`` (a file) and ``PostgresKB`` (a database shared by replicas) implement it; code that only looks
facts up or edits them takes a ``KnowledgeBase`` (``lmlm.kb.open_kb`` opens either from a path or URL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Tier = Literal["exact", "fuzzy", "none"]
Mode = Literal["default", "reference"]


@dataclass(frozen=True)
class Triplet:
    id: int
    entity: str
    relation: str
    value: str | None  # None for a tombstone


@dataclass(frozen=True)
class LookupResult:
    value: str | None
    triplet: Triplet | None
    score: float
    tier: Tier
    nearest: Triplet | None = None  # best live candidate below the thresholds, for a top1_anyway fallback
    # the version of a shared KB (PostgreSQL) the answer was read at; None for a KB file, which has no shared version
    kb_version: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        t = self.triplet
        return {
            "value": self.value,
            "entity": t.entity if t else None,
            "relation": t.relation if t else None,
            "id": t.id if t else None,
            "score": round(float(self.score), 4),
            "tier": self.tier,
            **({} if self.kb_version is None else {"kb_version": self.kb_version}),
        }


NO_ANSWER = LookupResult(None, None, 0.0, "none")


@runtime_checkable
class KnowledgeBase(Protocol):
    """Lookups (single and batched), edits that the next lookup sees, and reads for people and tools."""

    def lookup(self, entity: str, relation: str, mode: Mode = "default") -> LookupResult: ...
    def lookup_many(self, pairs: Sequence[tuple[str, str]], mode: Mode = "default") -> list[LookupResult]: ...
    def add(self, entity: str, relation: str, value: str, source: str | None = None, example_id: str | None = None) -> Triplet: ...
    def update(self, triplet_id: int, value: str) -> Triplet: ...
    def delete(self, triplet_id: int) -> Triplet: ...
    def forget(self, entity: str, exact: bool = False) -> int: ...
    def facts(self, entity: str) -> list[Triplet]: ...
    def search(self, query: str, limit: int = 20) -> list[Triplet]: ...
    def stats(self) -> dict: ...
    def entity_names(self) -> list[str]: ...
    def version(self) -> tuple[int, int]: ...
