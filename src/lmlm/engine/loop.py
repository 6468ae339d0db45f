"""The engine: token-level, batched decoding with lookups that keeps one KV cache.

When a row emits ``<|db_return|>``, its (entity, relation) is read from its own token ids; every row
that asked in that step is answered by one ``lookup_many`` call; the tokens of " VALUE" and
``<|db_end|>`` join the row's ``forced_tokens``, to feed into the same cache (a prompt that ends with a
call's ``<|db_return|>`` is answered so before the first step). A step feeds every row its forced
tokens, left-padded to the longest: all of them when few rows are left (a forward then costs about the
same for a few more positions), one when many are (every step stays one token wide). Nothing is
re-tokenized from decoded text, and finished rows leave the batch.

LMLM text repeats a looked-up value after the call (``<|db_return|> Yokohama<|db_end|> Yokohama``), so
in wide steps under greedy decoding the engine also feeds the value a second time, as a draft, after
the forced tokens, and accepts each drafted token the model would have chosen anyway: the repeat costs
no forwards of its own, and the output is unchanged (rejected drafts are retracted from the cache).
With ``hold_value_repeat``, a row that has begun to restate the value must restate all of it.

Other tokens are drafted the same way (speculative decoding, ``lmlm.engine.drafts``): at batch 1 every
forward reads all the weights, so drafts are how the engine makes fewer of them. Each row proposes its
next ``draft_tokens`` tokens, and the model verifies them in its next forward (the first draft, in the
prompt's forward). A proposal that closes a call whose entity the model wrote is looked up at once, and
the answer (and its repeat) joins the draft: when the model takes the call, its answer is already in
the cache, a forward sooner. A wider forward costs more than a one-token one, so a draft earns its
width only where it is likely to be taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import torch

from lmlm.engine.cache import CacheTrack
from lmlm.engine.calls import ForcedAnswer, answer_calls, inside_call, strip_calls
from lmlm.engine.config import GenerationConfig, GenerationResult, LookupTokens
from lmlm.engine.constrain import CallConstraints
from lmlm.engine.drafts import Drafter, check_same_vocabulary, text_proposal
from lmlm.engine.layout import column_major_linears, compiled
from lmlm.engine.sampling import choose, process_logits, sampling_generator
from lmlm.engine.state import Batch, RowState, TokenCallback
from lmlm.errors import LmlmError


class LookupEngine:
    """Batched decoding with lookups for any HF causal LM whose tokenizer has the lookup tokens. On the CPU it
    lays the model's linear weights out column-major, in place (``lmlm.engine.layout``)."""

    def __init__(self, model, tokenizer, kb=None, compile: bool = False, draft_model=None, ngrams=None):
        self.model, self.tokenizer, self.kb, self.ngrams = model.eval(), tokenizer, kb, ngrams
        column_major_linears(model)
        self.decode = compiled(model) if compile else model
        if compile and kb is not None:
            # the KB's encoder is an HF model too; building a model class after the first compile makes every graph recompile
            getattr(kb, "encoder", None)
        self.tokens = LookupTokens(tokenizer)
        if draft_model is not None:
            check_same_vocabulary(model, draft_model)
        self.drafter = Drafter(draft_model, compile) if draft_model is not None else None
        if ngrams is not None and ngrams.max_token_id >= self.vocab:
            raise LmlmError(f"the n-gram table has token id {ngrams.max_token_id}, the model {self.vocab} tokens: "
                            "it was built with another tokenizer")
        # since the engine was made: tokens fed on trial (value repeats, proposals, drafted calls' answers), those
        # retracted again, and drafted calls that were taken (answered in the forward that verified them)
        self.draft_stats = {"drafted": 0, "rejected": 0, "calls": 0}
        self.context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.constraints = CallConstraints(kb, tokenizer, self.tokens) if kb is not None else None

    @property
    def vocab(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    def encode_prompts(self, prompts: Sequence[str], cfg: GenerationConfig) -> list[list[int]]:
        room = (self.context or 10**9) - cfg.max_new_tokens
        if room < 1:  # refused rather than cut: the caller asked for this many tokens (README, Generation)
            raise LmlmError(f"max_new_tokens {cfg.max_new_tokens} leaves no room for a prompt in the model's context of {self.context} "
                            f"tokens: ask for at most {self.context - 1}")
        out = []
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise LmlmError(f"prompt {i} is empty: give at least one token of text")
            ids = self.tokenizer.encode(prompt)  # with bos where the tokenizer adds one, as in training
            if len(ids) > room:
                if not cfg.truncate_prompt:
                    raise LmlmError(f"prompt {i} has {len(ids)} tokens; with max_new_tokens {cfg.max_new_tokens} the context of "
                                    f"{self.context} leaves room for {room} (set truncate_prompt to keep its last tokens)")
                ids = ids[len(ids) - room :]
            out.append(ids)
        return out

    @torch.inference_mode()  # no autograd bookkeeping at all: at batch 1 the engine's time goes to small ops
    def generate(self, prompts: Sequence[str], cfg: GenerationConfig | None = None,
                 on_token: TokenCallback | None = None) -> list[GenerationResult]:
        """Generate for every prompt in one batch. ``on_token(row, token_id, forced)`` streams tokens."""
        cfg = cfg or GenerationConfig()
        if not prompts:
            return []
        if cfg.answers_calls and self.kb is None:
            raise LmlmError("lookups are on but no knowledge base was given (pass kb=..., use_lookups=False, or use_db=False)")
        batch = self.start_batch(self.encode_prompts(prompts, cfg), cfg, on_token)
        self.run(batch)
        return [self._result(row) for row in batch.rows]

    def start_batch(self, prompts: list[list[int]], cfg: GenerationConfig, on_token: TokenCallback | None = None) -> Batch:
        """The batch of the prompts' token ids, each prompt queued to be fed whole in the first step; a prompt
        that ends with a call's <|db_return|> has its answer queued too, as if the model had written the call."""
        device = next(self.model.parameters()).device
        rows = [RowState(ids, forced_tokens=deque(ids)) for ids in prompts]
        seen = torch.zeros(len(rows), self.vocab, dtype=torch.bool, device=device)
        for i, row in enumerate(rows):
            seen[i, row.prompt] = True
        # only a <|db_return|> that closes an open call's query asks the KB; a bare one is plain text
        calls = [i for i, r in enumerate(rows)
                 if cfg.answers_calls and r.prompt[-1] == self.tokens.ret and inside_call(r.prompt, self.tokens)]
        lookups_done = torch.tensor([r.prompt.count(self.tokens.ret) - (i in calls) for i, r in enumerate(rows)], device=device)
        generator = sampling_generator(cfg.seed, device) if cfg.do_sample else None
        constraining = self.constraining(cfg)
        if constraining:
            for row in rows:
                for k, token in enumerate(row.prompt):
                    row.follow(token, k, self.tokens)
        batch = Batch(rows, list(range(len(rows))), seen, lookups_done, {self.tokens.eos, *cfg.stop_token_ids}, cfg, generator, on_token,
                      self.tokens if constraining else None)
        if calls:
            self.force_answers(batch, calls)
        batch.active = [i for i, r in enumerate(rows) if not r.done]  # an abstention can end a row before its first step
        return batch

    def constraining(self, cfg: GenerationConfig) -> bool:
        return cfg.constrain_lookups != "off" and cfg.answers_calls and self.constraints is not None

    def run(self, batch: Batch):
        """Step until every row is done."""
        if not batch.active:
            return
        cfg, device = batch.cfg, batch.seen.device
        capacity = max(len(r.prompt) for r in batch.rows) + cfg.max_new_tokens + cfg.draft_tokens + 1
        track = CacheTrack(self.model, self.decode, self.tokens.pad, len(batch.active), capacity, device)
        drafter = self.drafter if self.drafter and not cfg.do_sample and cfg.draft_tokens > 0 else None
        if drafter:
            drafter.start(len(batch.rows), len(batch.active), capacity, self.tokens.pad, device)
        first = True
        while batch.active:
            self.step(batch, track, drafter, first)
            first = False

    def step(self, batch: Batch, track: CacheTrack, drafter: Drafter | None, first: bool = False):
        """One forward: feed every active row, choose for those with nothing left to feed, retract the drafts
        they rejected, answer the calls they closed, and let finished rows leave the batch."""
        rows, active, wide = batch.rows, batch.active, batch.wide
        proposed = self.propose_drafts(batch, drafter) if wide else set()
        feeds = [self._take_feed(rows[i], whole=wide or first) for i in active]  # all its tokens, or one
        logits = track.step(feeds, last_positions=1 + max(len(rows[i].draft) for i in active))
        ready = [(b, i) for b, i in enumerate(active) if not rows[i].forced_tokens]  # the others still have forced tokens to feed
        rejected = self.choose_tokens(batch, logits, ready)
        for b, count in rejected.items():
            track.retract(b, count)
        if drafter:
            drafter.settle(active, [len(rows[i].draft) - rejected.get(b, 0) if i in proposed else 0 for b, i in enumerate(active)])
        for _, i in ready:
            rows[i].forced_tokens, rows[i].draft, rows[i].draft_call = deque([rows[i].generated[-1]]), [], None
        closed = [i for _, i in ready if not rows[i].done and rows[i].generated[-1] == self.tokens.ret and batch.cfg.use_lookups]
        if closed and batch.cfg.use_db:  # the answers enter the cache right after <|db_return|>
            self.force_answers(batch, closed)
        elif closed:  # no database: the model writes the value itself, and the call counts towards max_lookups
            batch.lookups_done[closed] += 1
        staying = [b for b, i in enumerate(active) if not rows[i].done]
        if len(staying) < len(active):
            batch.active = [active[b] for b in staying]
            if staying:
                index = torch.tensor(staying, device=batch.seen.device)
                for t in (track, drafter) if drafter else (track,):
                    t.select(index)

    @staticmethod
    def _take_feed(row: RowState, whole: bool) -> list[int]:
        """The tokens row feeds this step: all its forced tokens and its draft, or its next forced token."""
        if not whole:
            return [row.forced_tokens.popleft()]
        feed = [*row.forced_tokens, *row.draft]
        row.forced_tokens.clear()
        return feed

    def choose_tokens(self, batch: Batch, logits: torch.Tensor, ready: list[tuple[int, int]]) -> dict[int, int]:
        """Append new tokens to each ready (batch index, row): its drafted tokens while they are what it
        chooses (with a drafted call's answer once it chooses the call's <|db_return|>), then its own next
        token. ``logits`` are the last positions of the step, right-aligned. Returns {batch index: how many
        drafted tokens were rejected}, to retract."""
        rows, playing, rejected = batch.rows, ready, {}
        cursor = {i: 0 for _, i in ready}  # by row: the draft position its next choice is checked against
        while playing:
            index, ids = [b for b, _ in playing], [i for _, i in playing]
            at = [logits.shape[1] - 1 - len(rows[i].draft) + cursor[i] for i in ids]  # a draft's first guess sits on <|db_end|>
            new_tokens = torch.tensor([len(rows[i].generated) for i in ids], device=logits.device)
            scores = process_logits(logits[index, at], batch.seen[ids], batch.lookups_done[ids], self.tokens, batch.cfg, new_tokens)
            if batch.cfg.hold_value_repeat:
                hold_repeats(batch, ids, scores)
            if batch.tokens is not None:
                chosen = self.constraints.choose(batch, ids, scores)
            else:
                chosen = choose(scores, batch.cfg, batch.generator).tolist()
            playing = [(b, i) for b, i, token in zip(index, ids, chosen) if self._accept_draft(batch, b, i, token, cursor, rejected)]
        self.draft_stats["drafted"] += sum(len(rows[i].draft) for _, i in ready)
        self.draft_stats["rejected"] += sum(rejected.values())
        return rejected

    def _accept_draft(self, batch: Batch, b: int, i: int, token: int, cursor: dict[int, int], rejected: dict[int, int]) -> bool:
        """Append the token row ``i`` chose. Returns whether the row goes on to choose at its next drafted
        position: the token was the draft's; else the rest of the draft is counted in ``rejected``."""
        row, j = batch.rows[i], cursor[i]
        batch.append(i, [token], forced=False)
        row.done = token in batch.stops or self.spent(row, batch.cfg)
        if j >= len(row.draft) or row.done:
            return False
        if token != row.draft[j]:
            rejected[b] = len(row.draft) - j
            return False
        cursor[i] += 1
        if row.draft_call and row.draft_call[0] == j:  # the drafted call is taken: so is its answer
            if row.call_miss:  # unless the constraint gave up on it: the step's end answers it as a miss, and
                rejected[b] = len(row.draft) - j  # its <|db_return|> leaves the cache too, to be fed again as the others
                return False
            cursor[i] += len(self.write_answer(batch, i, row.draft_call[1]))
            self.draft_stats["calls"] += 1
        return not row.done

    def propose_drafts(self, batch: Batch, drafter: Drafter | None) -> set[int]:
        """Drafts for the rows that have none (a value's repeat is one), from the draft model or from text,
        and the answers of the calls they close. Returns the rows whose draft the draft model proposed."""
        rows, cfg = batch.rows, batch.cfg
        if all(rows[i].draft for i in batch.active):
            return set()
        proposed = set()
        if drafter:
            for i, proposal in zip(batch.active, drafter.propose(batch, self.tokens)):
                if not rows[i].draft:
                    rows[i].draft = proposal[: rows[i].room(cfg)]
                    proposed.add(i)
        elif cfg.ngram_drafts and not cfg.do_sample:
            for row in (rows[i] for i in batch.active if not rows[i].draft):
                row.draft = text_proposal(row.tokens, cfg.draft_tokens, self.tokens, self.ngrams, batch.stops)[: row.room(cfg)]
        self.answer_drafted_calls(batch)
        return proposed

    def answer_drafted_calls(self, batch: Batch):
        """A draft that closes a call with <|db_return|> is looked up now, and its answer (and the draft of the
        value's repeat) joins the draft: if the model takes the call, the answer is in the cache in the same
        forward, a forward sooner than when the model's own <|db_return|> is answered. Only calls whose entity
        the model has written are answered so: a drafted name is the likeliest part of a call to be wrong, and
        an answer widens the forward by its value twice. A drafted <|db_return|> that gets no answer leaves the
        draft: the call waits for the model's own <|db_return|> (a draft must not run past an unanswered call)."""
        rows, cfg, ret = batch.rows, batch.cfg, self.tokens.ret
        closing = [i for i in batch.active if rows[i].draft[-1:] == [ret]] if cfg.use_lookups else []
        if not cfg.use_db:  # nothing answers a call: the model's own <|db_return|> closes it, and is counted in ``step``
            for i in closing:
                rows[i].draft.pop()
            return
        for i in closing:
            if self.tokens.relationship in rows[i].draft[1:]:  # the entity is drafted too
                rows[i].draft.pop()
        asking = [i for i in closing if rows[i].draft[-1:] == [ret]]
        calls = [rows[i].tokens + rows[i].draft for i in asking]
        for i, answer in zip(asking, self._look_up(calls, cfg) if asking else []):
            row = rows[i]
            room = row.room(cfg) - len(row.draft)
            if len(answer.forced) > room:  # the answer would be cut short
                row.draft.pop()
                continue
            row.draft_call = (len(row.draft) - 1, answer)
            row.draft += answer.forced + (answer.repeat if cfg.draft_values else [])[: room - len(answer.forced)]

    def force_answers(self, batch: Batch, asking: list[int]):
        """Look up the calls the ``asking`` rows just closed; write each answer into the row and queue it to be
        fed (with, when steps are wide and decoding is greedy, the draft of the value's repeat)."""
        cfg = batch.cfg
        misses = [batch.rows[i].call_miss for i in asking]
        for i, answer in zip(asking, self._look_up([batch.rows[i].tokens for i in asking], cfg, misses)):
            row = batch.rows[i]
            forced = self.write_answer(batch, i, answer)
            if batch.wide and cfg.draft_values and not cfg.do_sample and not row.done and row.room(cfg) > 0:
                row.draft = answer.repeat[: row.room(cfg)]
            row.forced_tokens.extend(forced)

    def write_answer(self, batch: Batch, i: int, answer: ForcedAnswer) -> list[int]:
        """Write an answer into row ``i``'s tokens and record its provenance; returns the tokens written
        (fewer than the answer's when max_new_tokens cuts it short)."""
        row, cfg = batch.rows[i], batch.cfg
        batch.lookups_done[i] += 1
        span = (max(answer.start - len(row.prompt), 0), len(row.generated) + len(answer.forced))  # past the end when cut short
        row.lookups.append(replace(answer.lookup, token_span=span))
        forced = answer.forced[: cfg.max_new_tokens - len(row.generated)]
        batch.append(i, forced, forced=True)
        row.done = answer.abstains or self.spent(row, cfg)
        row.held_repeat, row.repeat_written = (list(answer.repeat) if cfg.hold_value_repeat and forced == answer.forced else []), 0
        row.repeat_begun_at = 2 if row.held_repeat[:1] == [self.tokens.space] else 1
        return forced

    def spent(self, row: RowState, cfg: GenerationConfig) -> bool:
        """The row has used its budget: ``max_new_tokens``, or the lookup-free budget, which counts the prompt."""
        if len(row.generated) >= cfg.max_new_tokens:
            return True
        return cfg.lookup_free_budget > 0 and row.lookup_free_tokens(self.tokens) >= cfg.lookup_free_budget

    def _look_up(self, calls: list[list[int]], cfg: GenerationConfig, misses: list[bool] | None = None) -> list[ForcedAnswer]:
        return answer_calls(calls, self.kb, self.tokenizer, self.tokens, cfg, misses)

    def _result(self, row: RowState) -> GenerationResult:
        ids = [t for t in row.generated if t != self.tokens.eos]
        in_call = inside_call(row.prompt, self.tokens)
        clean = lambda part: self.tokenizer.decode(strip_calls(part, self.tokens, in_call), skip_special_tokens=True)  # noqa: E731
        text = clean(ids)
        # where each call stood in the clean text: the text of the tokens before it, its <|db_entity|> included
        offsets = [min(len(clean(ids[: p.token_span[0] + 1])), len(text)) for p in row.lookups]
        return GenerationResult(text=text, raw=self.tokenizer.decode(ids, skip_special_tokens=False), lookups=row.lookups,
                                token_ids=row.generated, text_offsets=offsets)


def hold_repeats(batch: Batch, ids: list[int], scores: torch.Tensor) -> None:
    """A row that has begun to restate its held value may only write the value's next token (``hold_value_repeat``)."""
    for r, i in enumerate(ids):
        token = batch.rows[i].next_held_token
        if token is not None:
            scores[r].fill_(float("-inf"))
            scores[r, token] = 0.0
