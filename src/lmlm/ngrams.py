"""Drafts from an n-gram table of training text, for the engine's speculative decoding at batch 1.

A model trained on a corpus writes the corpus's recurring phrases ("works in the city of <|db_entity|>")
as the corpus does. For every context of 1 to ``longest`` tokens in the text, the table keeps the token
that follows it at least ``min_share`` of the time (or notes that none does). The engine proposes from
the longest context that ends a row's tokens, token by token, and the model verifies the proposal in
its next forward, so the output is unchanged. Unlike a draft model it costs no forwards of its own.
REST (He et al. 2023) drafts from a datastore of text the same way.

    lmlm ngrams --model MODEL --corpus corpus.json ...   # writes MODEL/ngram_drafts.json, which LMLM.from_pretrained loads
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from lmlm.corpus import atomic_write
from lmlm.errors import LmlmError

log = logging.getLogger(__name__)

NGRAMS_FILE = "ngram_drafts.json"  # in a checkpoint folder
NONE_LIKELY = -1  # the context occurs, but no token follows it often enough to draft


@dataclass
class NgramsConfig:
    model: str = field(metadata={"help": "the checkpoint folder: its tokenizer, and where the table is written"})
    corpus: list[str] = field(metadata={"help": "annotated corpora the model was trained on (the lmlm-mode training text)"})
    longest: int = field(default=4, metadata={"help": "the longest context, in tokens"})
    min_share: float = field(default=0.5, metadata={"help": "draft a context's most frequent follower only if it follows this often"})
    max_tokens: int = field(default=1_000_000, metadata={"help": "count the first this many tokens of the corpus"})


def build_ngrams(cfg: NgramsConfig) -> Path:
    """The n-gram table of the corpora's training text, saved into the checkpoint folder."""
    from transformers import AutoTokenizer

    from lmlm.data import documents

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    except OSError as e:
        raise LmlmError(f"{cfg.model}: cannot load a tokenizer ({e})") from None
    table = NgramTable.from_texts(documents(cfg.corpus, "lmlm"), tokenizer, longest=cfg.longest, min_share=cfg.min_share,
                                  max_tokens=cfg.max_tokens)
    return table.save(Path(cfg.model) / NGRAMS_FILE)


class NgramTable:
    """The likely next token after each context seen in training text (tuples of token ids)."""

    def __init__(self, next_token: dict[tuple[int, ...], int], longest: int):
        self.next_token, self.longest = next_token, longest

    @classmethod
    def from_token_ids(cls, sequences: Iterable[list[int]], longest: int = 4, min_share: float = 0.5,
                       max_tokens: int = 1_000_000) -> NgramTable:
        """Counts over the first ``max_tokens`` tokens of ``sequences`` (the table of a large corpus outgrows memory)."""
        counts: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        total = 0
        for ids in tqdm(sequences, desc="counting n-grams", unit="doc"):
            for t in range(1, len(ids)):
                for n in range(1, min(longest, t) + 1):
                    counts[tuple(ids[t - n : t])][ids[t]] += 1
            total += len(ids)
            if total >= max_tokens:
                log.info("n-gram table: stopped at %d tokens (max_tokens)", total)
                break
        next_token = {}
        for context, following in counts.items():
            token, count = following.most_common(1)[0]
            next_token[context] = token if count >= min_share * following.total() else NONE_LIKELY
        return cls(next_token, longest)

    @classmethod
    def from_texts(cls, texts: Iterable[str], tokenizer, **options) -> NgramTable:
        return cls.from_token_ids((tokenizer.encode(text) for text in texts), **options)

    @property
    def max_token_id(self) -> int:
        return max((max(max(context), token) for context, token in self.next_token.items()), default=-1)

    def propose(self, ids: list[int], count: int) -> list[int]:
        """Up to ``count`` tokens after ``ids``: each the likely follower of the longest context in the
        table that ends the tokens so far; stops where that context has none."""
        tail, out = list(ids[-self.longest :]), []
        while len(out) < count:
            context = next((c for n in range(min(self.longest, len(tail)), 0, -1) if (c := tuple(tail[-n:])) in self.next_token), None)
            if context is None or self.next_token[context] == NONE_LIKELY:
                break
            out.append(self.next_token[context])
            tail = (tail + out[-1:])[-self.longest :]
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_write(path) as f:
            json.dump({"longest": self.longest, "contexts": [[*context, token] for context, token in self.next_token.items()]}, f)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NgramTable:
        try:
            data = json.loads(Path(path).read_text())
            longest, rows = int(data["longest"]), data["contexts"]
            next_token = {tuple(int(t) for t in row[:-1]): int(row[-1]) for row in rows}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise LmlmError(f"{path}: not an n-gram table written by 'lmlm ngrams' ({type(e).__name__}: {e})") from None
        if any(not 1 <= len(context) <= longest for context in next_token):
            raise LmlmError(f"{path}: a context is empty or longer than longest={longest}")
        return cls(next_token, longest)
