"""The knowledge base: (entity, relation, value) facts with tiered lookup and instant edits."""

from lmlm.kb.base import KnowledgeBase, LookupResult, SqliteKB
from lmlm.kb.store import Triplet

__all__ = ["KnowledgeBase", "LookupResult", "SqliteKB", "Triplet"]
