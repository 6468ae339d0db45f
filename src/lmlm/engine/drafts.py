"""Where the engine's drafts come from (speculative decoding): a row's own text (``repeated_ngram``), the
n-gram table of the training text (``lmlm.ngrams``), or a smaller model with the same tokenizer
(``Drafter``; ``lmlm.draft`` fine-tunes one on the model's output). The model verifies every draft in
its next forward, so drafts change the speed, never the tokens."""

from __future__ import annotations

import torch

from lmlm.engine.cache import CacheTrack
from lmlm.engine.config import LookupTokens
from lmlm.engine.layout import column_major_linears, compiled
from lmlm.engine.sampling import process_logits
from lmlm.engine.state import Batch
from lmlm.errors import LmlmError


def check_same_vocabulary(model, draft_model):
    """A draft model proposes token ids of the model's tokenizer: their embeddings must count the same."""
    vocab, draft_vocab = (m.get_output_embeddings().weight.shape[0] for m in (model, draft_model))
    if draft_vocab != vocab:
        raise LmlmError(f"the draft model has {draft_vocab} token embeddings and the model {vocab}: "
                        "the draft model must share the model's tokenizer")


def repeated_ngram(ids: list[int], count: int, longest: int = 3, shortest: int = 2) -> list[int]:
    """Prompt lookup: the ``count`` tokens that followed the last earlier occurrence of the last n tokens of
    ``ids``, for the longest n from ``longest`` down to ``shortest`` that occurred before (one token recurs
    too often to say what comes next)."""
    for n in range(min(longest, len(ids) - 1), shortest - 1, -1):
        tail = ids[-n:]
        for start in range(len(ids) - n - 1, -1, -1):
            if ids[start : start + n] == tail:
                return ids[start + n : start + n + count]
    return []


def cut_proposal(proposal: list[int], stops: set[int], ret: int) -> list[int]:
    """A draft ends after a stop token, or after <|db_return|>: the call's answer comes next."""
    end = next((k for k, t in enumerate(proposal) if t in stops or t == ret), len(proposal) - 1)
    return proposal[: end + 1]


def text_proposal(ids: list[int], count: int, tokens: LookupTokens, ngrams, stops: set[int]) -> list[int]:
    """A row's draft from text: where its last tokens occurred before in its own text (names recur in LMLM
    text, in calls and out), up to a call's <|db_relationship|>: the relation follows from the words before
    the call, which the n-gram table of the training text reads. The table drafts the rest, and a call's
    closing <|db_return|>."""
    # a lone <|db_entity|> says what follows it: the entity of the row's last call
    proposal = repeated_ngram(ids, count, shortest=1 if ids[-1] == tokens.entity else 2)
    if tokens.relationship in proposal:
        proposal = proposal[: proposal.index(tokens.relationship) + 1]
    if ngrams and len(proposal) < count:
        proposal += ngrams.propose(ids + proposal, count - len(proposal))
    return cut_proposal(proposal, stops, tokens.ret)


class Drafter:
    """A smaller model with the same tokenizer that proposes each row's next tokens; the engine's next
    forward verifies them and keeps those it would have chosen, so greedy output is unchanged. It keeps
    its own cache of every row's settled tokens, plus the proposals fed on trial."""

    def __init__(self, model, compile: bool):
        self.model = model.eval()
        column_major_linears(model)
        self.decode = compiled(model) if compile else model

    def start(self, rows: int, batch: int, capacity: int, pad: int, device):
        """``rows`` in all, of which the first step feeds ``batch``."""
        self.track = CacheTrack(self.model, self.decode, pad, batch, capacity, device)
        self.fed = [0] * rows  # by row: how many of its tokens are settled in the cache
        self.trial = 0  # proposal columns fed on trial in the last round, the same for every active row
        # by active row: how many of those columns hold its own proposal; a row whose proposal ended early
        # fills the rest with placeholders (the batch's other rows go on), never to be kept
        self.own_trial: list[int] = []

    def propose(self, batch: Batch, tokens: LookupTokens) -> list[list[int]]:
        """Up to ``draft_tokens`` greedy tokens after each active row: cut after a stop token or <|db_return|>
        (the call's answer comes next)."""
        rows, active, cfg = batch.rows, batch.active, batch.cfg
        feeds = [rows[i].tokens[self.fed[i] :] for i in active]
        logits = self.track.step(feeds)
        for i, fed in zip(active, feeds):
            self.fed[i] += len(fed)
        seen = batch.seen[active].clone()
        proposals: list[list[int]] = [[] for _ in active]
        open_ = list(range(len(active)))  # batch rows whose proposal goes on
        for s in range(cfg.draft_tokens):
            new_tokens = torch.tensor([len(rows[i].generated) + s for i in active], device=seen.device)
            chosen = process_logits(logits[:, -1], seen, batch.lookups_done[active], tokens, cfg, new_tokens).argmax(-1)
            seen[torch.arange(len(active)), chosen] = True
            chosen = chosen.tolist()
            for b in list(open_):
                proposals[b].append(chosen[b])
                if chosen[b] in batch.stops or chosen[b] == tokens.ret:
                    open_.remove(b)
            if not open_ or s == cfg.draft_tokens - 1:
                break
            logits = self.track.step([[t] for t in chosen])
            self.trial += 1
        self.own_trial = [min(len(p), self.trial) for p in proposals]
        return proposals

    def settle(self, active: list[int], taken: list[int]):
        """``taken``: by active row, how many of its proposed tokens the engine took (a drafted call's answer
        among them); the rest leave the cache, and so do the placeholders after a proposal that ended early."""
        for b, (i, count) in enumerate(zip(active, taken) if self.trial else ()):  # (no trial: nothing proposed, or nothing fed)
            count = min(count, self.own_trial[b])
            self.track.retract(b, self.trial - count)
            self.fed[i] += count
        self.trial, self.own_trial = 0, []

    def select(self, index: torch.Tensor):
        self.track.select(index)
