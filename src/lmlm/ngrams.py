"""Drafts from an n-gram table of training text, for the engine's speculative decoding at batch 1.

A model trained on a corpus writes the corpus's recurring phrases ("works in the city of <|db_entity|>")
as the corpus does. For every context of 1 to ``longest`` tokens in the text, the table keeps the token
that follows it at least ``min_share`` of the time, or else its most frequent follower as a guess. The
engine proposes from the longest context that ends a row's tokens, token by token, up to the first
context with only a guess, which ends the proposal; the model verifies the proposal in its next forward,
so the output is unchanged. Unlike a draft model it costs no forwards of its own. A guess is worth its
position: at batch 1 a forward of two positions costs about what one of one does, and a guess that is
right saves a forward.
REST (He et al. 2023) drafts from a datastore of text the same way.

A call's relation follows from the words that led to the call ("was born in <|db_entity|> NAME
<|db_relationship|> Birth City"), not from the entity's name, which is new in almost every call. So the
table also counts each call with its entity left out, and a row inside a relation drafts from that view
of its tokens ("born in <|db_entity|><|db_relationship|>" -> " Birth").

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

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.files import atomic_write

log = logging.getLogger(__name__)

NGRAMS_FILE = "ngram_drafts.json"  # in a checkpoint folder
NONE_LIKELY = -1  # the context occurs, but no token follows it often enough to draft with confidence (see guesses)
RECENT = 64  # the tokens a proposal reads: a call's entity and relation, and the words before it, fit well within


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
    """The likely next token after each context seen in training text (tuples of token ids), and for the
    contexts without one (NONE_LIKELY) their most frequent follower, in ``guesses``. ``calls``: the ids of
    <|db_entity|>, <|db_relationship|> and <|db_return|>, to count relations without their entity (none:
    every context is plain text)."""

    def __init__(self, next_token: dict[tuple[int, ...], int], longest: int, calls: tuple[int, int, int] | None = None,
                 guesses: dict[tuple[int, ...], int] | None = None):
        self.next_token, self.longest, self.calls, self.guesses = next_token, longest, calls, guesses or {}

    @classmethod
    def from_token_ids(cls, sequences: Iterable[list[int]], longest: int = 4, min_share: float = 0.5,
                       max_tokens: int = 1_000_000, calls: tuple[int, int, int] | None = None) -> NgramTable:
        """Counts over the first ``max_tokens`` tokens of ``sequences`` (the table of a large corpus outgrows memory)."""
        counts: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        total = 0
        for ids in tqdm(sequences, desc="counting n-grams", unit="doc"):
            for t in range(1, len(ids)):
                for n in range(1, min(longest, t) + 1):
                    counts[tuple(ids[t - n : t])][ids[t]] += 1
            for view in _relations_without_entity(ids, calls, longest) if calls else ():
                junction = view.index(calls[1])  # only contexts across it: the others were counted above
                for t in range(junction + 1, len(view)):
                    for n in range(t - junction + 1, min(longest, t) + 1):
                        counts[tuple(view[t - n : t])][view[t]] += 1
            total += len(ids)
            if total >= max_tokens:
                log.info("n-gram table: stopped at %d tokens (max_tokens)", total)
                break
        next_token, guesses = {}, {}
        for context, following in counts.items():
            token, count = following.most_common(1)[0]
            likely = count >= min_share * following.total()
            next_token[context] = token if likely else NONE_LIKELY
            if not likely:
                guesses[context] = token
        return cls(next_token, longest, calls, guesses)

    @classmethod
    def from_texts(cls, texts: Iterable[str], tokenizer, **options) -> NgramTable:
        calls = tuple(tokenizer.convert_tokens_to_ids(list(markup.SPECIAL_TOKENS[:3])))  # <|db_entity|>, <|db_relationship|>, <|db_return|>
        return cls.from_token_ids((tokenizer.encode(text) for text in texts), calls=None if None in calls else calls, **options)

    @property
    def max_token_id(self) -> int:
        return max((max(max(context), token) for table in (self.next_token, self.guesses) for context, token in table.items()), default=-1)

    def propose(self, ids: list[int], count: int) -> list[int]:
        """Up to ``count`` tokens after ``ids``: each the likely follower of the longest context in the
        table that ends the tokens so far; where that context has none, its guess ends the proposal."""
        recent, out = list(ids[-RECENT:]), []
        while len(out) < count:
            tail = self._tail(recent + out)
            context = next((c for n in range(len(tail), 0, -1) if (c := tuple(tail[-n:])) in self.next_token), None)
            if context is None:
                break
            if self.next_token[context] == NONE_LIKELY:
                out += [self.guesses[context]] if context in self.guesses else []
                break
            out.append(self.next_token[context])
        return out

    def _tail(self, ids: list[int]) -> list[int]:
        """The last ``longest`` tokens of ``ids`` as the table counted them: inside a relation, without its entity."""
        if self.calls:
            entity, relationship, ret = self.calls
            last = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] in self.calls), None)
            if last is not None and ids[last] == relationship:
                start = next((i for i in range(last - 1, -1, -1) if ids[i] in (entity, ret)), None)
                if start is not None and ids[start] == entity:
                    ids = ids[: start + 1] + ids[last:]
        return list(ids[-self.longest :])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_write(path) as f:
            json.dump({"longest": self.longest, "calls": self.calls,
                       "contexts": [[*context, token] for context, token in self.next_token.items()],
                       "guesses": [[*context, token] for context, token in self.guesses.items()]}, f)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NgramTable:
        try:
            data = json.loads(Path(path).read_text())
            longest, rows, calls = int(data["longest"]), (data["contexts"], data.get("guesses", [])), data.get("calls")
            next_token, guesses = ({tuple(int(t) for t in row[:-1]): int(row[-1]) for row in part} for part in rows)
            calls = tuple(int(t) for t in calls) if calls else None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise LmlmError(f"{path}: not an n-gram table written by 'lmlm ngrams' ({type(e).__name__}: {e})") from None
        if any(not 1 <= len(context) <= longest for context in (*next_token, *guesses)):
            raise LmlmError(f"{path}: a context is empty or longer than longest={longest}")
        if calls is not None and len(calls) != 3:
            raise LmlmError(f"{path}: 'calls' must hold the ids of <|db_entity|>, <|db_relationship|> and <|db_return|>")
        return cls(next_token, longest, calls, guesses)


def _relations_without_entity(ids: list[int], calls: tuple[int, int, int], longest: int) -> Iterable[list[int]]:
    """For each whole call in ``ids``: the ``longest`` tokens up to its <|db_entity|>, then its
    <|db_relationship|>, relation and <|db_return|>, with the entity left out."""
    entity, relationship, ret = calls
    start = rel = None
    for i, t in enumerate(ids):
        if t == entity:
            start, rel = i, None
        elif t == relationship and start is not None:
            rel = i
        elif t == ret:
            if rel is not None:
                yield ids[max(start - longest + 1, 0) : start + 1] + ids[rel : i + 1]
            start = rel = None
