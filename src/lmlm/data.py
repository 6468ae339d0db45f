"""Training data: tokenize annotated documents, compute labels once, pack into blocks on disk.

``lmlm`` mode trains on the special-token form with -100 on the VALUE tokens and ``<|db_end|>``
(the model learns to ask, not to recite). ``standard`` mode trains on the same documents with the
lookups stripped, every token trained. Documents are joined with eos and cut into fixed-length
blocks, stored as numpy memmaps so that corpora larger than memory work:

    DIR/input_ids.bin   uint16 or uint32, [blocks, block_size]
    DIR/labels.bin      int32, -100 where no loss is taken
    DIR/org_mask.bin    uint8, 1 on tokens of the original text (T_org)
    DIR/meta.json       mode, block size, dtype, token counts, tokenizer fingerprint, sources
    DIR/tokenizer/      the tokenizer it was built with
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lmlm import markup
from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError
from lmlm.files import atomic_directory, atomic_write
from lmlm.tokenizer import check_lookup_tokens, fingerprint, lookup_token_ids

IGNORE = -100


@dataclass
class Tokenized:
    ids: np.ndarray
    labels: np.ndarray
    org: np.ndarray  # bool: token of the original text


def documents(paths: list[str | os.PathLike], mode: str) -> list[str]:
    """The training text of every example: special-token form (lmlm) or lookups stripped (standard)."""
    if mode not in ("lmlm", "standard"):
        raise LmlmError(f"unknown data mode {mode!r}: expected 'lmlm' or 'standard'")
    docs = []
    for path in paths:
        for example in read_corpus(path).examples:
            doc = markup.parse(example["annotated_text"])
            docs.append(markup.render(doc.segments, "special") if mode == "lmlm" else doc.plain)
    return docs


def label_document(ids: np.ndarray, special: dict[str, int], space_id: int | None, bos_id: int | None = None) -> Tokenized:
    """Labels and the T_org mask of one tokenized document (lmlm mode; standard documents have no calls).
    A leading bos is trained (it follows the previous document's eos) but is no text of the document."""
    is_ret, is_end = ids == special[markup.DB_RETURN], ids == special[markup.DB_END]
    is_ent = ids == special[markup.DB_ENTITY]
    # inside (RETURN, END]: the VALUE tokens and END itself
    masked = (np.cumsum(is_ret) - np.cumsum(is_end) + is_end > 0) & ~is_ret
    in_call = np.cumsum(is_ent) - np.cumsum(is_end) + is_end > 0
    if space_id is not None:  # the lone space in front of <|db_entity|> belongs to the call
        before = np.flatnonzero(is_ent) - 1
        before = before[(before >= 0) & (ids[np.maximum(before, 0)] == space_id)]
        in_call[before] = True
    labels = ids.astype(np.int32)
    labels[masked] = IGNORE
    org = ~in_call
    if bos_id is not None and len(ids) and ids[0] == bos_id:
        org[0] = False
    return Tokenized(ids, labels, org)


def tokenize(docs: list[str], tokenizer, batch: int = 1024) -> list[Tokenized]:
    special = lookup_token_ids(tokenizer)
    space_ids = tokenizer.encode(" ", add_special_tokens=False)
    space_id = space_ids[0] if len(space_ids) == 1 else None
    out = []
    for start in tqdm(range(0, len(docs), batch), desc="tokenizing", unit="batch", disable=len(docs) <= batch):
        encoded = tokenizer(docs[start : start + batch])["input_ids"]  # with bos where the tokenizer adds one
        out += [label_document(np.asarray(ids, dtype=np.int64), special, space_id, tokenizer.bos_token_id) for ids in encoded]
    return out


def pack(docs: list[Tokenized], block_size: int, eos_id: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join documents with eos and cut into blocks; the last block is padded (pad labels are -100)."""
    eos = Tokenized(np.array([eos_id]), np.array([eos_id], dtype=np.int32), np.array([False]))
    parts = [p for d in docs for p in (d, eos)]
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, dtype=np.int32)
    org = np.concatenate([p.org for p in parts]) if parts else np.zeros(0, dtype=bool)
    pad = (-len(ids)) % block_size
    ids = np.concatenate([ids, np.full(pad, pad_id)])
    labels = np.concatenate([labels, np.full(pad, IGNORE, dtype=np.int32)])
    org = np.concatenate([org, np.zeros(pad, dtype=bool)])
    return ids.reshape(-1, block_size), labels.reshape(-1, block_size), org.reshape(-1, block_size)


def build_dataset(paths: list[str | os.PathLike], tokenizer, mode: str, out: str | os.PathLike, block_size: int = 256) -> dict:
    """Tokenize, label and pack ``paths`` into ``out``; returns the metadata (with token counts)."""
    check_lookup_tokens(tokenizer, "dataset tokenizer")
    docs = tokenize(documents(paths, mode), tokenizer)
    ids, labels, org = pack(docs, block_size, tokenizer.eos_token_id, tokenizer.pad_token_id)
    real = ids != tokenizer.pad_token_id
    value_tokens = int(((labels == IGNORE) & real & (ids != lookup_token_ids(tokenizer)[markup.DB_END])).sum())
    counts = {
        "documents": len(docs),
        "total": int(sum(len(d.ids) for d in docs)),
        "t_org": int(sum(int(d.org.sum()) for d in docs)),
        "lookup_call": int(sum(int((~d.org).sum()) for d in docs)),
        "value": value_tokens,
        "trained": int((labels != IGNORE).sum()),
    }
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32
    meta = {
        "mode": mode, "block_size": block_size, "blocks": len(ids), "dtype": np.dtype(dtype).name,
        "tokenizer": fingerprint(tokenizer), "vocab_size": len(tokenizer), "counts": counts, "sources": [str(p) for p in paths],
    }
    with atomic_directory(out) as tmp:
        ids.astype(dtype).tofile(tmp / "input_ids.bin")
        labels.astype(np.int32).tofile(tmp / "labels.bin")
        org.astype(np.uint8).tofile(tmp / "org_mask.bin")
        tokenizer.save_pretrained(tmp / "tokenizer")
        with atomic_write(tmp / "meta.json") as f:
            json.dump(meta, f, indent=1)
    return meta


class PackedDataset:
    """Read-only view of a built dataset; blocks come out as int64 arrays."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
        except FileNotFoundError:
            raise LmlmError(f"{self.path}: not a dataset built by 'lmlm data build' (no meta.json)") from None
        shape = (self.meta["blocks"], self.meta["block_size"])
        self.ids = np.memmap(self.path / "input_ids.bin", dtype=self.meta["dtype"], mode="r", shape=shape)
        self.labels = np.memmap(self.path / "labels.bin", dtype=np.int32, mode="r", shape=shape)
        self.org = np.memmap(self.path / "org_mask.bin", dtype=np.uint8, mode="r", shape=shape)

    def __len__(self) -> int:
        return self.meta["blocks"]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"input_ids": self.ids[i].astype(np.int64), "labels": self.labels[i].astype(np.int64), "org_mask": self.org[i].astype(bool)}

    def check_tokenizer(self, tokenizer) -> None:
        if self.meta["tokenizer"] != fingerprint(tokenizer):
            raise LmlmError(f"{self.path}: built with another tokenizer (fingerprint {self.meta['tokenizer']}, this one {fingerprint(tokenizer)})")
