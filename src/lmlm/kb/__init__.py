"""The knowledge base: (entity, relation, value) facts with tiered lookup and instant edits."""

from lmlm.kb.base import KnowledgeBase, LookupResult, SqliteKB, open_kb
from lmlm.kb.store import Triplet

__all__ = ["KnowledgeBase", "LookupResult", "SqliteKB", "Triplet", "open_kb"]
