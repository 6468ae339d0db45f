"""faiss indexes over stored vectors: exact for small sets, compressed (IVF + 8-bit scalar
quantization) for large ones. ``IndexFiles`` keeps them in files beside the KB, named by a digest of
their content and written atomically; faiss's own format, no pickle."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

EXACT_MAX = 100_000  # above this many vectors, an exact index costs more memory than it is worth
NPROBE = 32


def build_index(
    dim: int, batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], count: int, exact_max: int = EXACT_MAX
) -> faiss.Index:
    """An inner-product index over ``count`` vectors; ``batches()`` yields (ids, vectors) anew on each call."""
    if count <= exact_max:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        nlist = int(4 * np.sqrt(count))
        index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        sample = _take(batches(), 64 * nlist)
        log.info("training IVF%d,SQ8 on %d vectors", nlist, len(sample))
        index.train(sample)
        index.nprobe = NPROBE
    for ids, vecs in batches():
        index.add_with_ids(vecs, ids)
    return index


def _take(batches: Iterator[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    taken, have = [], 0
    for _, vecs in batches:
        taken.append(vecs[: n - have])
        have += len(taken[-1])
        if have >= n:
            break
    return np.concatenate(taken)


def describe(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIDMap2):
        return "flat (exact)"
    ivf = faiss.extract_index_ivf(index)
    return f"IVF{ivf.nlist},SQ8 (nprobe {ivf.nprobe})"


def bytes_per_vector(index: faiss.Index) -> float:
    if isinstance(index, faiss.IndexIDMap2):
        return index.d * 4 + 8
    return faiss.extract_index_ivf(index).code_size + 8


def save_index(index: faiss.Index, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def load_index(path: Path) -> faiss.Index:
    index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap2):
        faiss.extract_index_ivf(index).nprobe = NPROBE
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if index.ntotal == 0:
        return np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


class IndexFiles:
    """The index of each vector table of one KB: in memory once opened, and in a file beside the KB whose
    name carries a digest of the vectors' content, so a changed KB never opens a stale index."""

    def __init__(self, kb_path: Path):
        self.kb_path = kb_path
        self.loaded: dict[str, faiss.Index] = {}

    def path(self, table: str, digest: str) -> Path:
        return self.kb_path.with_name(f"{self.kb_path.name}.{table}-{digest[:16]}.faiss")

    def open(self, table: str, digest: Callable[[], str], build: Callable[[], faiss.Index]) -> faiss.Index:
        """The index of ``table`` for the content ``digest()`` names: loaded from its file, else built, saved and
        the files of older content removed."""
        path = self.path(table, digest())
        if path.exists():
            index = load_index(path)
        else:
            index = build()
            save_index(index, path)
            for stale in self.kb_path.parent.glob(f"{self.kb_path.name}.{table}-*.faiss"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        self.loaded[table] = index
        return index

    def drop(self, table: str) -> None:
        """Forget the open index of ``table``: its vectors changed, the next use reopens it."""
        self.loaded.pop(table, None)

    def clear(self) -> None:
        self.loaded.clear()


class MemoryIndexes(IndexFiles):
    """Indexes kept in memory only, built from the stored vectors when first needed (a replica of a shared KB,
    whose vectors other replicas change: a file would be stale at once)."""

    def __init__(self):
        self.loaded: dict[str, faiss.Index] = {}

    def open(self, table: str, digest: Callable[[], str], build: Callable[[], faiss.Index]) -> faiss.Index:
        self.loaded[table] = build()
        return self.loaded[table]
