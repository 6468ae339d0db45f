"""``SqliteKB``, the embedded knowledge base: a SQLite file plus faiss indexes beside it, named by their content."""

from __future__ import annotations

import os
from pathlib import Path

from lmlm.kb.encoder import Encoder
from lmlm.kb.facade import DEFAULT_THRESHOLDS as _DEFAULTS
from lmlm.kb.facade import StoredKB
from lmlm.kb.index import IndexFiles, describe
from lmlm.kb.resolver import Thresholds
from lmlm.kb.storage import BUSY_TIMEOUT_S, Store


class SqliteKB(StoredKB):
    """The embedded default: a SQLite file plus faiss indexes beside it, built from stored vectors."""

    def __init__(
        self,
        path: str | os.PathLike,
        encoder: str | Encoder | None = None,
        create: bool = False,
        entity_threshold: float = _DEFAULTS.entity,
        relation_threshold: float = _DEFAULTS.relation,
        relation_floor: float = _DEFAULTS.relation_floor,
        relation_margin: float = _DEFAULTS.relation_margin,
        reference_threshold: float = _DEFAULTS.reference,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ):
        self.path = Path(path)
        thresholds = Thresholds(entity_threshold, relation_threshold, relation_floor, relation_margin, reference_threshold)
        self._assemble(Store(self.path, create=create, busy_timeout=busy_timeout), IndexFiles(self.path), encoder, thresholds)

    def __enter__(self) -> SqliteKB:
        return self

    def stats(self) -> dict:
        with self._lock:
            out = self.store.counts()
            out["file_bytes"] = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
            out["encoder"] = self.store.get_meta("encoder")
            if "entities" in self.indexes.loaded:
                out["entity_index"] = describe(self.indexes.loaded["entities"])
            return out

    def version(self) -> tuple[int, int]:
        """Changes whenever an entity may have been added (an add of a new or revived entity or an import here, or
        a commit by another connection to the file): what caches of ``entity_names`` key on."""
        with self._lock:
            return self._edits, self.store.data_version()
