"""The state the engine's loop carries: one ``RowState`` per prompt, and the ``Batch`` that holds them
with what every step reads (the tokens each row has seen, its lookups so far, the stop tokens, the
options and the stream)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lmlm.engine.calls import ForcedAnswer
from lmlm.engine.config import GenerationConfig, LookupTokens, Provenance

TokenCallback = Callable[[int, int, bool], None]  # (row, token id, forced)


@dataclass
class RowState:
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    lookups: list[Provenance] = field(default_factory=list)
    # tokens to feed before the row chooses again: its prompt, then its last chosen token and a call's forced answer
    forced_tokens: deque[int] = field(default_factory=deque)
    # fed on trial after the forced tokens: the value's repeat, or a draft model's or an n-gram's proposal
    draft: list[int] = field(default_factory=list)
    # a call the draft closes: the index of its <|db_return|> in the draft, and the answer that follows it there
    draft_call: tuple[int, ForcedAnswer] | None = None
    done: bool = False
    # the open call, for constrained decoding: the indexes in ``tokens`` of its <|db_entity|> and <|db_relationship|>
    call_start: int | None = None
    relation_start: int | None = None
    call_cost: float = 0.0  # what the constraint has cost the open call, in nats
    call_miss: bool = False  # the cost passed the margin: the call is answered as a miss
    call_trie: tuple[int, dict | None] | None = None  # the trie of the part being written, by where that part starts
    relation_similarity: dict[str, float] | None = None  # by relation of the call's entity, for the relation prior
    mentioned: list[list[int]] | None = None  # the spellings of KB entities named before the call, for the mention prior
    call_context: np.ndarray | None = None  # the encoded sentence the call stands in, for the chain prior
    # a looked-up value that the text after <|db_end|> must restate whole once it has begun to (hold_value_repeat), how
    # many of its tokens it has restated, and how many make a beginning (two where the first is a lone space, which
    # also comes before a new call)
    held_repeat: list[int] = field(default_factory=list)
    repeat_written: int = 0
    repeat_begun_at: int = 1
    # the lookup-free count: tokens outside calls among the first ``free_counted`` of ``tokens``, and whether they end in a call
    free_tokens: int = 0
    free_counted: int = 0
    free_in_call: bool = False

    def follow(self, token: int, position: int, tokens: LookupTokens):
        """Track the open call as ``token`` is written at ``position`` of ``tokens``."""
        if token == tokens.entity:
            self.call_start, self.relation_start, self.call_cost, self.call_miss = position, None, 0.0, False
            self.relation_similarity = self.mentioned = self.call_context = None
        elif token == tokens.relationship and self.call_start is not None:
            self.relation_start = position
        elif token in (tokens.ret, tokens.end):
            self.call_start = self.relation_start = None

    def follow_repeat(self, token: int):
        """Track the restatement of a held value as ``token`` is written: on while the tokens are the value's, done once
        all of it is written, dropped when the first token after <|db_end|> is something else."""
        if not self.held_repeat:
            return
        self.repeat_written = self.repeat_written + 1 if token == self.held_repeat[self.repeat_written] else 0
        if self.repeat_written in (0, len(self.held_repeat)):
            self.held_repeat, self.repeat_written = [], 0

    @property
    def next_held_token(self) -> int | None:
        """The value's next token, once its restatement has begun and until it is whole."""
        return self.held_repeat[self.repeat_written] if self.repeat_written >= self.repeat_begun_at else None

    def lookup_free_tokens(self, tokens: LookupTokens) -> int:
        """How many of the row's tokens, prompt included, are outside lookup calls (the lone space in front of a call
        is the call's, as in ``strip_calls``); counted on from where the last count stopped, as tokens only ever join."""
        ids = self.tokens
        for k in range(self.free_counted, len(ids)):
            if ids[k] == tokens.entity:
                self.free_tokens -= k > 0 and not self.free_in_call and ids[k - 1] == tokens.space
                self.free_in_call = True
            elif self.free_in_call:
                self.free_in_call = ids[k] != tokens.end
            else:
                self.free_tokens += 1
        self.free_counted = len(ids)
        return self.free_tokens

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.generated

    def room(self, cfg: GenerationConfig) -> int:
        """How many tokens a draft may still hold: the model's own next token comes after it."""
        return cfg.max_new_tokens - len(self.generated) - 1


@dataclass
class Batch:
    """One ``generate`` call's rows, and the tensors every step of it reads."""
    rows: list[RowState]
    active: list[int]  # the rows still generating, in the order of the cache's batch rows
    seen: torch.Tensor  # [rows, vocab]: the tokens each row has seen, for the repetition penalty
    lookups_done: torch.Tensor  # [rows]: the calls each row has made, for max_lookups
    stops: set[int]
    cfg: GenerationConfig
    generator: torch.Generator | None = None
    on_token: TokenCallback | None = None
    tokens: LookupTokens | None = None  # when set, each row follows its open call (constrained decoding reads it)

    @property
    def wide(self) -> bool:
        """With up to WIDE_STEP_MAX_ROWS rows a step feeds each row all its tokens, drafts included."""
        return len(self.active) <= WIDE_STEP_MAX_ROWS

    def append(self, i: int, tokens: list[int], forced: bool):
        """Add tokens to row ``i``'s output: seen from now on, and streamed."""
        row = self.rows[i]
        if self.tokens is not None:
            for k, token in enumerate(tokens, start=len(row.prompt) + len(row.generated)):
                row.follow(token, k, self.tokens)
        for token in tokens:
            row.follow_repeat(token)
        row.generated += tokens
        self.seen[i, tokens] = True
        if self.on_token:
            for token in tokens:
                self.on_token(i, token, forced)


# With up to this many rows a forward is bound by reading the weights, so extra positions are nearly free:
# a row's forced value (and the draft of its repeat) is fed in one step. With more rows, positions cost
# compute and the left padding of the other rows, so forced tokens are fed one per step: every step then
# stays one token wide (and compiled, when asked). Measured in benchmarks/generate_speed.py.
WIDE_STEP_MAX_ROWS = 8
