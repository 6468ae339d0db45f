"""The knowledge base: (entity, relation, value) facts with tiered lookup and instant edits."""

from lmlm.kb.opening import open_kb
from lmlm.kb.protocol import KnowledgeBase, LookupResult, Triplet
from lmlm.kb.sqlite import SqliteKB

__all__ = ["KnowledgeBase", "LookupResult", "SqliteKB", "Triplet", "open_kb"]
