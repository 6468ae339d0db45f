"""Generation with lookups: a token-level, batched engine that keeps one KV cache.

When a row emits ``<|db_return|>``, its (entity, relation) is read from its own token ids; every row
that asked in that step is answered by one ``lookup_many`` call; the forced tokens of " VALUE" and
``<|db_end|>`` join the row's queue of tokens to feed into the same cache (a prompt that ends with a call's
``<|db_return|>`` is answered so before the first step). A step feeds every row the
next tokens of its queue, left-padded to the longest: the whole queue when few rows are left (a
forward then costs about the same for a few more positions), one token when many are (every step
stays one token wide). Nothing is re-tokenized from decoded text, and finished rows leave the batch.

LMLM text repeats a looked-up value after the call (``<|db_return|> Yokohama<|db_end|> Yokohama``), so
in wide steps under greedy decoding the engine also feeds the value a second time, as a draft, after
the forced tokens, and keeps each drafted token the model would have chosen anyway: the repeat costs
no forwards of its own, and the output is unchanged (rejected drafts are masked out of the cache).

Other tokens are drafted the same way (speculative decoding): at batch 1 every forward reads all the
weights, so drafts are how the engine makes fewer of them. Each row proposes its next ``draft_tokens``
tokens, and the model verifies them in its next forward (the first draft, in the prompt's forward).
The proposals come from the row's own text (what followed the last earlier occurrence of its last 2 or
3 tokens) or the n-gram table of the training text (``lmlm.ngrams``), which cost no forwards; or, when
one is given, from a smaller LMLM with the same tokenizer, whose proposals agree with the model most of
the time once ``lmlm.draft`` has fine-tuned it on the model's own output. A proposal that closes a call
whose entity the model wrote is looked up at once, and the answer (and its repeat) joins the draft:
when the model takes the call, its answer is already in the cache, a forward sooner. On a 2-core CPU a
forward of 2 to 5 positions cost about 1.2-1.3x what one of 1 does, and one of 8 about 1.45x
(benchmarks/generate_speed.py), so a draft earns its width only where it is likely to be taken.

``reference_loop`` is the naive loop the reference implementation runs (restart ``generate()`` on
the full token ids after each lookup): the correctness anchor for greedy decoding, and the
baseline of ``benchmarks/generate_speed.py``.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers.cache_utils import Cache, DynamicLayer

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.ngrams import NGRAMS_FILE, NgramTable
from lmlm.tokenizer import check_lookup_tokens

log = logging.getLogger(__name__)

FALLBACKS = ("top1_anyway", "unknown", "abstain")
# With up to this many rows a forward is bound by reading the weights, so extra positions are nearly free:
# a row's forced value (and the draft of its repeat) is fed in one step. With more rows, positions cost
# compute and the left padding of the other rows, so forced tokens are fed one per step: every step then
# stays one token wide (and compiled, when asked). Measured in benchmarks/generate_speed.py.
WIDE_STEP_MAX_ROWS = 8


@dataclass
class GenerationConfig:
    """The generation options. Each field's metadata is the one source of its help, bounds and surfaces
    (``lmlm.config`` says what the keys mean): the CLI flags, the HTTP request bodies and the keywords of
    ``lmlm.compat`` are made from it. Bounds keep an API request from overflowing torch or SQLite, or
    turning the sampling distribution into inf/nan."""

    max_new_tokens: int = field(default=64, metadata={
        "help": "tokens to generate per prompt", "ge": 1, "le": 1_000_000, "surfaces": ("cli", "api", "compat"),
        "compat": {"default": 256}})  # the reference's default
    min_new_tokens: int = field(default=0, metadata={
        "help": "eos is banned before this many new tokens (benchmarks use it to fix the length)", "ge": 0, "surfaces": ()})
    do_sample: bool = field(default=False, metadata={"help": "sample (default: greedy)", "surfaces": ("cli", "api", "compat")})
    temperature: float = field(default=1.0, metadata={
        "help": "sampling temperature", "gt": 0, "le": 2.0, "surfaces": ("cli", "api", "compat")})  # OpenAI's cap
    top_k: int = field(default=0, metadata={
        "help": "sample among the k likeliest tokens (0: all)", "ge": 0, "le": 1_000_000, "surfaces": ("cli", "api")})
    top_p: float = field(default=1.0, metadata={
        "help": "sample within this probability mass (nucleus)", "gt": 0, "le": 1, "surfaces": ("cli", "api", "compat"),
        "compat": {"default": 0.9}})  # the reference's default
    repetition_penalty: float = field(default=1.2, metadata={
        "help": "divides the logits of tokens seen already (the reference's default)", "ge": 0.5, "le": 5.0,
        "surfaces": ("cli", "api", "compat")})
    entity_bias: float = field(default=4.0, metadata={"help": "logit bias on <|db_entity|> (the reference's default)", "surfaces": ()})
    lookup_bias: float = field(default=2.0, metadata={
        "help": "logit bias on the other three lookup tokens (the reference's default)", "surfaces": ()})
    max_lookups: int = field(default=5, metadata={
        "help": "lookups per prompt; then <|db_entity|> is banned", "ge": 0, "le": 1000, "surfaces": ("cli", "api", "compat"),
        "compat": {"name": "max_lookup_limit"}})
    fallback: str = field(default="top1_anyway", metadata={
        "help": "when the KB has no match: state the nearest fact's value, say 'unknown', or stop", "choices": FALLBACKS,
        "surfaces": ("cli", "eval", "api", "completions")})
    use_lookups: bool = field(default=True, metadata={
        "help": "generate freely, with <|db_entity|> banned", "flag": "--no-lookups",
        "surfaces": ("cli", "api", "completions", "compat"), "compat": {"name": "enable_dblookup"}})
    lookup_mode: str = field(default="default", metadata={
        "help": "the KB's lookup mode", "choices": ("default", "reference"), "surfaces": ("cli", "api")})
    stop_token_ids: tuple[int, ...] = field(default=(), metadata={"help": "token ids that end a row, besides eos", "surfaces": ()})
    truncate_prompt: bool = field(default=False, metadata={
        "help": "keep the last tokens of a prompt that does not fit the context, instead of refusing it", "flag": "--truncate",
        "surfaces": ("cli",)})
    draft_values: bool = field(default=True, metadata={
        "help": "greedy only: verify the value's repeat after <|db_end|> in the forward that forces it", "surfaces": ()})
    draft_tokens: int = field(default=4, metadata={
        "help": "greedy: the tokens a draft model or an n-gram proposes, for the model to verify in one forward", "surfaces": ()})
    ngram_drafts: bool = field(default=True, metadata={
        "help": "greedy, without a draft model: draft from the row's own text and the engine's n-gram table", "surfaces": ()})
    seed: int = field(default=0, metadata={
        "help": "the sampling seed", "ge": 0, "le": 2**63 - 1, "surfaces": ("cli", "api"),
        "api_default": None})  # an API request without a seed gets a fresh one: sampling is not reproducible unless asked

    def __post_init__(self):
        if self.fallback not in FALLBACKS:
            raise LmlmError(f"unknown fallback {self.fallback!r}: expected one of {', '.join(FALLBACKS)}")


@dataclass
class Provenance:
    entity: str
    relation: str
    value: str
    triplet_id: int | None
    score: float
    tier: str
    token_span: tuple[int, int]  # [start, end) in the generated token ids, <|db_entity|> to <|db_end|>

    def to_dict(self) -> dict:
        return {"entity": self.entity, "relation": self.relation, "value": self.value, "triplet_id": self.triplet_id,
                "score": round(self.score, 4), "tier": self.tier, "token_span": list(self.token_span)}


@dataclass
class GenerationResult:
    text: str  # lookups removed, as the reference's post_process
    raw: str  # with the lookup calls
    lookups: list[Provenance]
    token_ids: list[int] = field(repr=False)

    def to_dict(self) -> dict:
        return {"text": self.text, "raw": self.raw, "lookups": [p.to_dict() for p in self.lookups]}


class LookupTokens:
    """The ids of the four lookup tokens in a tokenizer."""

    def __init__(self, tokenizer):
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in markup.SPECIAL_TOKENS}
        self.entity, self.relationship, self.ret, self.end = (ids[t] for t in markup.SPECIAL_TOKENS)
        self.calls = {self.entity, self.relationship, self.ret, self.end}
        space = tokenizer.encode(" ", add_special_tokens=False)
        self.space = space[0] if len(space) == 1 else None
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # left padding, masked out


# --- logits processing, shared by the engine and the reference loop -----------------------------------


def process_logits(scores: torch.Tensor, seen: torch.Tensor, lookups_done: torch.Tensor, tokens: LookupTokens, cfg: GenerationConfig,
                   new_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Repetition penalty over the tokens each row has seen, lookup-token biases, the ban on
    <|db_entity|> when lookups are off or a row has used its quota, and on eos before min_new_tokens."""
    scores = scores.float()
    if cfg.repetition_penalty != 1.0:
        penalized = torch.where(scores > 0, scores / cfg.repetition_penalty, scores * cfg.repetition_penalty)
        scores = torch.where(seen, penalized, scores)
    scores = scores + _lookup_biases(scores.shape[-1], tokens.entity, (tokens.relationship, tokens.ret, tokens.end),
                                     cfg.entity_bias, cfg.lookup_bias, scores.device)
    # a column is a view, so each ban is one in-place op: at batch 1 the engine's time goes to ops like these
    if tokens.entity is not None:  # a tokenizer without lookup tokens runs with lookups off
        scores[:, tokens.entity].masked_fill_((lookups_done >= cfg.max_lookups) | (not cfg.use_lookups), float("-inf"))
    if cfg.min_new_tokens and new_tokens is not None:
        scores[:, tokens.eos].masked_fill_(new_tokens < cfg.min_new_tokens, float("-inf"))
    return scores


@functools.lru_cache(maxsize=16)
def _lookup_biases(vocab: int, entity: int, others: tuple[int, ...], entity_bias: float, lookup_bias: float, device) -> torch.Tensor:
    """The logit bias on the lookup tokens (those the tokenizer has), one row to add to every row of scores."""
    bias = torch.zeros(vocab, device=device)
    for token, value in ((entity, entity_bias), *((t, lookup_bias) for t in others)):
        if token is not None:
            bias[token] = value
    return bias


def choose(scores: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    if not cfg.do_sample:
        return scores.argmax(dim=-1)
    scores = scores / max(cfg.temperature, 1e-6)
    if cfg.top_k > 0:
        kth = torch.topk(scores, min(cfg.top_k, scores.shape[-1])).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_scores.softmax(-1) > cfg.top_p
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)


def sampling_generator(seed: int, device) -> torch.Generator:
    """The seeded generator that ``choose`` samples with: ``torch.multinomial`` on an accelerator needs one on
    that device. Meta tensors have no generator of their own; the CPU's serves them."""
    device = torch.device(device)
    return torch.Generator(device="cpu" if device.type == "meta" else device).manual_seed(seed)


# --- the engine ----------------------------------------------------------------------------------------------


class _BufferLayer(DynamicLayer):
    """A KV cache layer that writes each step into preallocated buffers (the stock DynamicLayer
    concatenates, copying the whole cache every step). The engine grows them before a step that would
    overflow (``reserve``), outside the forward, so that a compiled forward never branches on it.
    Defined once, so that a compiled forward sees the same class in every generate call."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        self.k_buffer = key_states.new_empty(b, h, self.capacity, d)
        self.v_buffer = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])

    def reserve(self, columns: int):
        """Room for ``columns`` more positions; chunks of forced tokens can outgrow the first guess: double.
        A column always stays free: a write that fills the buffer exactly would make a compiled forward
        specialize on it, and recompile."""
        end = self.length + columns + 1
        if not self.is_initialized:
            self.capacity = max(self.capacity, end)
        elif end > self.k_buffer.shape[2]:
            grow = lambda buf: torch.cat([buf, buf.new_empty(*buf.shape[:2], max(end, 2 * buf.shape[2]) - buf.shape[2], buf.shape[3])], 2)  # noqa: E731
            self.k_buffer, self.v_buffer = grow(self.k_buffer), grow(self.v_buffer)

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.k_buffer[:, :, self.length : end] = key_states
        self.v_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.k_buffer[:, :, :end], self.v_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices):
        if self.is_initialized:
            self.k_buffer, self.v_buffer = self.k_buffer[indices], self.v_buffer[indices]
            self.keys, self.values = self.k_buffer[:, :, : self.length], self.v_buffer[:, :, : self.length]


def _compiled(model):
    """The model's forward through torch.compile, for every step after the prompt. It takes about a minute
    once per process, then removes most of the per-step Python overhead that dominates small models, and
    makes wide steps (forced values, drafts to verify) cost little more than one-token steps. Prompts stay
    eager: their widths vary most, and each new width class costs a compile. Freezing makes the weights
    constants of the graph (the engine never trains), so inductor can pre-pack them for the CPU's matmul
    kernels: about 1.1x more tokens/s at batch 32 (benchmarks/generate_speed.py)."""
    # every model of one class shares a code object, and with it dynamo's budget of recompiles: a draft
    # model and the width classes of the steps need more than the default 8, or later graphs fall back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(model, dynamic=True, options={"freezing": True})


def _column_major_linears(model):
    """Store the model's linear weights transposed in memory, in place: the same values, shapes and state dict.
    On the CPU, MKL multiplies 4 to 48 rows by a weight stored this way 1.5 to 4x faster than by the usual
    row-major one (the matrix products of batched and drafted steps); for one row both cost the same
    (benchmarks/generate_speed.py). Weights shared with another module (tied embeddings) are left as they
    are: transformers' check of tied weights needs them contiguous to save the model."""
    uses = Counter(id(parameter) for _, parameter in model.named_parameters(remove_duplicate=False))
    for linear in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        weight = linear.weight
        if weight.device.type == "cpu" and weight.is_contiguous() and uses[id(weight)] == 1:
            weight.data = weight.data.t().contiguous().t()


def _make_cache(model, capacity: int) -> Cache:
    return Cache(layers=[_BufferLayer(capacity) for _ in range(model.config.get_text_config().num_hidden_layers)])


class _Track:
    """One model's KV cache over the active rows, fed in steps of each row's new tokens, left-padded to the
    longest. Tokens fed on trial that turn out wrong are retracted: masked out, and the row's position steps back."""

    def __init__(self, model, decode, pad: int, rows: int, capacity: int, device):
        self.model, self.decode, self.pad, self.device = model, decode, pad, device
        self.cache = _make_cache(model, capacity)
        self.mask = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.next_pos = torch.zeros(rows, dtype=torch.long, device=device)

    def step(self, feeds: list[list[int]], keep: int = 1) -> torch.Tensor:
        """One forward over each row's new tokens; returns the logits of the last ``keep`` positions."""
        width = max(len(f) for f in feeds)
        ids = torch.tensor([[self.pad] * (width - len(f)) + f for f in feeds], device=self.device)
        new = torch.tensor([[0] * (width - len(f)) + [1] * len(f) for f in feeds], device=self.device)
        positions = self.next_pos[:, None] + (new.cumsum(-1) - 1).clamp(min=0)
        forward = self.model if self.mask.shape[1] == 0 else self.decode  # prompts run eager (see LookupEngine)
        self.mask = torch.cat([self.mask, new], dim=1)
        for layer in self.cache.layers:
            layer.reserve(width)
        out = forward(input_ids=ids, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache, use_cache=True,
                      logits_to_keep=keep)
        self.next_pos = self.next_pos + new.sum(-1)
        return out.logits

    def retract(self, b: int, count: int):
        """Take the last ``count`` tokens of batch row ``b`` back out of the cache."""
        self.mask[b, self.mask.shape[1] - count :] = 0
        self.next_pos[b] -= count

    def select(self, index: torch.Tensor):
        self.cache.batch_select_indices(index)
        self.mask, self.next_pos = self.mask[index], self.next_pos[index]


@dataclass
class _Answer:
    """The knowledge base's answer to one call, to force into a row."""
    lookup: Provenance  # its token span is set when the answer is forced
    start: int  # the index of the call's <|db_entity|> in the row's tokens
    forced: list[int]  # " VALUE" and <|db_end|> (only <|db_end|> for an abstention)
    repeat: list[int]  # the draft of the value's repeat after <|db_end|> (none for "unknown" or an abstention)
    abstains: bool  # the row closes its call and stops


@dataclass
class _Row:
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    lookups: list[Provenance] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)  # generated or forced tokens not yet fed to the model
    # the end of the queue, fed on trial: the value's repeat, or a draft model's or an n-gram's proposal
    draft: list[int] = field(default_factory=list)
    # a call the draft closes: the index of its <|db_return|> in the draft, and the answer that follows it there
    draft_call: tuple[int, _Answer] | None = None
    done: bool = False

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.generated


class _Drafter:
    """A smaller model with the same tokenizer that proposes each row's next tokens (speculative decoding);
    the engine's next forward verifies them and keeps those it would have chosen, so greedy output is
    unchanged. It keeps its own cache of every row's settled tokens, plus the proposals fed on trial."""

    def __init__(self, model, compile: bool):
        self.model = model.eval()
        _column_major_linears(model)
        self.decode = _compiled(model) if compile else model

    def start(self, rows: int, batch: int, capacity: int, pad: int, device):
        """``rows`` in all, of which the first step feeds ``batch``."""
        self.track = _Track(self.model, self.decode, pad, batch, capacity, device)
        self.fed = [0] * rows  # by row: how many of its tokens are settled in the cache
        self.trial = 0  # proposal columns fed on trial in the last round, the same for every active row
        # by active row: how many of those columns hold its own proposal; a row whose proposal ended early
        # fills the rest with placeholders (the batch's other rows go on), never to be kept
        self.own_trial: list[int] = []

    def propose(self, rows: list[_Row], active: list[int], count: int, stops: set[int], seen, lookups_done, tokens: LookupTokens,
                cfg: GenerationConfig) -> list[list[int]]:
        """Up to ``count`` greedy tokens after each active row: cut after a stop token or <|db_return|>
        (the call's answer comes next)."""
        feeds = [rows[i].tokens[self.fed[i] :] for i in active]
        logits = self.track.step(feeds)
        for i, fed in zip(active, feeds):
            self.fed[i] += len(fed)
        seen = seen[active].clone()
        proposals: list[list[int]] = [[] for _ in active]
        open_ = list(range(len(active)))  # batch rows whose proposal goes on
        for s in range(count):
            new_tokens = torch.tensor([len(rows[i].generated) + s for i in active], device=seen.device)
            chosen = process_logits(logits[:, -1], seen, lookups_done[active], tokens, cfg, new_tokens).argmax(-1)
            seen[torch.arange(len(active)), chosen] = True
            chosen = chosen.tolist()
            for b in list(open_):
                proposals[b].append(chosen[b])
                if chosen[b] in stops or chosen[b] == tokens.ret:
                    open_.remove(b)
            if not open_ or s == count - 1:
                break
            logits = self.track.step([[t] for t in chosen])
            self.trial += 1
        self.own_trial = [min(len(p), self.trial) for p in proposals]
        return proposals

    def settle(self, active: list[int], taken: list[int]):
        """``taken``: by active row, how many of its proposed tokens the engine kept (a drafted call's answer
        among them); the rest leave the cache, and so do the placeholders after a proposal that ended early."""
        for b, (i, kept) in enumerate(zip(active, taken) if self.trial else ()):  # (no trial: nothing proposed, or nothing fed)
            kept = min(kept, self.own_trial[b])
            self.track.retract(b, self.trial - kept)
            self.fed[i] += kept
        self.trial, self.own_trial = 0, []


class LookupEngine:
    """Batched decoding with lookups for any HF causal LM whose tokenizer has the lookup tokens. On the CPU it
    lays the model's linear weights out column-major, in place (``_column_major_linears``)."""

    def __init__(self, model, tokenizer, kb=None, compile: bool = False, draft_model=None, ngrams: NgramTable | None = None):
        self.model, self.tokenizer, self.kb, self.ngrams = model.eval(), tokenizer, kb, ngrams
        _column_major_linears(model)
        self.decode = _compiled(model) if compile else model
        if compile and kb is not None:
            # the KB's encoder is an HF model too; building a model class after the first compile makes every graph recompile
            getattr(kb, "encoder", None)
        self.tokens = LookupTokens(tokenizer)
        self.drafter = _Drafter(draft_model, compile) if draft_model is not None else None
        if draft_model is not None and (vocab := draft_model.get_output_embeddings().weight.shape[0]) != self.vocab:
            raise LmlmError(f"the draft model has {vocab} token embeddings and the model {self.vocab}: they must share the tokenizer")
        if ngrams is not None and ngrams.max_token_id >= self.vocab:
            raise LmlmError(f"the n-gram table has token id {ngrams.max_token_id}, the model {self.vocab} tokens: "
                            "it was built with another tokenizer")
        # since the engine was made: tokens fed on trial (value repeats, proposals, drafted calls' answers), those
        # masked out again, and drafted calls that were taken (answered in the forward that verified them)
        self.draft_stats = {"drafted": 0, "rejected": 0, "calls": 0}
        self.context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)

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

    @torch.inference_mode()  # no autograd bookkeeping at all: a one-row eager step of small took 8% less than under no_grad
    def generate(self, prompts: Sequence[str], cfg: GenerationConfig | None = None,
                 on_token: Callable[[int, int, bool], None] | None = None) -> list[GenerationResult]:
        """Generate for every prompt in one batch. ``on_token(row, token_id, forced)`` streams tokens."""
        cfg = cfg or GenerationConfig()
        if not prompts:
            return []
        if cfg.use_lookups and self.kb is None:
            raise LmlmError("lookups are on but no knowledge base was given (pass kb=..., or use_lookups=False)")
        rows = [_Row(ids) for ids in self.encode_prompts(prompts, cfg)]
        device = next(self.model.parameters()).device
        generator = sampling_generator(cfg.seed, device) if cfg.do_sample else None
        seen = torch.zeros(len(rows), self.vocab, dtype=torch.bool, device=device)
        for i, r in enumerate(rows):
            seen[i, r.prompt] = True
        # a prompt that ends with a call's <|db_return|> is answered first, as if the model had written it
        calls = [i for i, r in enumerate(rows) if cfg.use_lookups and r.prompt[-1] == self.tokens.ret]
        lookups_done = torch.tensor([r.prompt.count(self.tokens.ret) - (i in calls) for i, r in enumerate(rows)], device=device)
        stops = {self.tokens.eos, *cfg.stop_token_ids}
        for row in rows:
            row.queue = list(row.prompt)  # fed whole in the first step, with a draft of what follows it
        if calls:
            self._force(rows, calls, cfg, len(rows) <= WIDE_STEP_MAX_ROWS, seen, lookups_done, on_token)
        active = [i for i, r in enumerate(rows) if not r.done]  # an abstention can end a row before its first step
        if not active:
            return [self._result(r) for r in rows]
        capacity = max(len(r.prompt) for r in rows) + cfg.max_new_tokens + cfg.draft_tokens + 1
        track = _Track(self.model, self.decode, self.tokens.pad, len(active), capacity, device)
        drafter = self.drafter if self.drafter and not cfg.do_sample and cfg.draft_tokens > 0 else None
        if drafter:
            drafter.start(len(rows), len(active), capacity, self.tokens.pad, device)
        first = True
        while True:
            wide = len(active) <= WIDE_STEP_MAX_ROWS
            proposed = self._draft(drafter, rows, active, stops, seen, lookups_done, cfg) if wide else set()
            feeds = [rows[i].queue[: None if wide or first else 1] for i in active]  # the whole queue, or one token
            first = False
            for i, fed in zip(active, feeds):
                rows[i].queue = rows[i].queue[len(fed) :]
            logits = track.step(feeds, keep=1 + max(len(rows[i].draft) for i in active))
            ready = [(b, i) for b, i in enumerate(active) if not rows[i].queue]  # busy rows still have forced tokens to feed
            rejected = self._take(logits, ready, rows, seen, lookups_done, stops, cfg, generator, on_token)
            for b, count in rejected.items():
                track.retract(b, count)  # drafted tokens the model did not choose leave the cache
            if drafter:
                drafter.settle(active, [len(rows[i].draft) - rejected.get(b, 0) if i in proposed else 0 for b, i in enumerate(active)])
            for _, i in ready:
                rows[i].queue, rows[i].draft, rows[i].draft_call = [rows[i].generated[-1]], [], None
            asking = [i for _, i in ready if not rows[i].done and rows[i].generated[-1] == self.tokens.ret and cfg.use_lookups]
            if asking:  # the answers enter the cache right after <|db_return|>
                self._force(rows, asking, cfg, wide, seen, lookups_done, on_token)
            keep = [b for b, i in enumerate(active) if not rows[i].done]
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch and the caches
                index = torch.tensor(keep, device=device)
                for t in (track, drafter.track) if drafter else (track,):
                    t.select(index)
                active = [active[b] for b in keep]
        return [self._result(r) for r in rows]

    def _draft(self, drafter: _Drafter | None, rows: list[_Row], active: list[int], stops, seen, lookups_done, cfg: GenerationConfig) -> set[int]:
        """Drafts for the rows that have none (a value's repeat is one), from the draft model or from text,
        and the answers of the calls they close. Returns the rows whose draft the draft model proposed."""
        if all(rows[i].draft for i in active):
            return set()
        proposed = set()
        if drafter:
            proposed = self._propose(drafter, rows, active, stops, seen, lookups_done, cfg)
        elif cfg.ngram_drafts and not cfg.do_sample:
            self._propose_ngrams(rows, active, stops, cfg)
        self._draft_answers(rows, active, cfg)
        return proposed

    def _propose(self, drafter: _Drafter, rows: list[_Row], active: list[int], stops, seen, lookups_done, cfg: GenerationConfig) -> set[int]:
        """The draft model's proposals join the queue of each row that has no value draft, as its draft.
        Returns the rows that took one."""
        took = set()
        for i, proposal in zip(active, drafter.propose(rows, active, cfg.draft_tokens, stops, seen, lookups_done, self.tokens, cfg)):
            row = rows[i]
            if not row.draft:
                row.draft = proposal[: cfg.max_new_tokens - len(row.generated) - 1]  # the model's own next token comes after
                row.queue += row.draft
                took.add(i)
        return took

    def _propose_ngrams(self, rows: list[_Row], active: list[int], stops, cfg: GenerationConfig):
        """Each row without a draft drafts from its own text, where its last tokens occurred before (names
        recur in LMLM text, in calls and out), up to a call's <|db_relationship|>: the relation follows from
        the words before the call, which the n-gram table of the training text reads. The table drafts the
        rest, and a call's closing <|db_return|> (``_draft_answers`` adds its answer)."""
        for i in active:
            row = rows[i]
            if not row.draft:
                ids = row.tokens
                # a lone <|db_entity|> says what follows it: the entity of the row's last call
                proposal = repeated_ngram(ids, cfg.draft_tokens, shortest=1 if ids[-1] == self.tokens.entity else 2)
                if self.tokens.relationship in proposal:
                    proposal = proposal[: proposal.index(self.tokens.relationship) + 1]
                if self.ngrams and len(proposal) < cfg.draft_tokens:
                    proposal += self.ngrams.propose(ids + proposal, cfg.draft_tokens - len(proposal))
                row.draft = cut_proposal(proposal, stops, self.tokens.ret)[: cfg.max_new_tokens - len(row.generated) - 1]
                row.queue += row.draft

    def _draft_answers(self, rows: list[_Row], active: list[int], cfg: GenerationConfig):
        """A draft that closes a call with <|db_return|> is looked up now, and its answer (and the draft of the
        value's repeat) joins the draft: if the model takes the call, the answer is in the cache in the same
        forward, a forward sooner than when the model's own <|db_return|> is answered. Only calls whose entity
        the model has written are answered so: a drafted name is the likeliest part of a call to be wrong, and
        an answer widens the forward by its value twice (forwards of more than 3 positions cost more here)."""
        closing = [i for i in active if rows[i].draft[-1:] == [self.tokens.ret]] if cfg.use_lookups else []
        for i in closing:
            if self.tokens.relationship in rows[i].draft[1:]:  # the entity is drafted too
                self._drop_last_drafted(rows[i])
        asking = [i for i in closing if rows[i].draft[-1:] == [self.tokens.ret]]
        calls = [rows[i].tokens + rows[i].draft for i in asking]
        for i, answer in zip(asking, self._answer(calls, cfg) if asking else []):
            row = rows[i]
            room = cfg.max_new_tokens - len(row.generated) - len(row.draft) - 1  # the model's own next token comes after
            if len(answer.forced) > room:  # the answer would be cut short
                self._drop_last_drafted(row)
                continue
            extra = answer.forced + (answer.repeat if cfg.draft_values else [])[: room - len(answer.forced)]
            row.draft_call = (len(row.draft) - 1, answer)
            row.draft += extra
            row.queue += extra

    @staticmethod
    def _drop_last_drafted(row: _Row):
        """A drafted <|db_return|> that gets no answer leaves the draft: the call waits for the model's own
        <|db_return|>, answered in the step after it (a draft must not run past an unanswered call)."""
        row.draft, row.queue = row.draft[:-1], row.queue[:-1]

    def _force(self, rows: list[_Row], asking: list[int], cfg: GenerationConfig, wide: bool, seen, lookups_done, on_token):
        """Look up the calls the ``asking`` rows just closed; queue each answer (and, when steps are wide and
        decoding is greedy, the draft of its repeat) to be fed."""
        for i, answer in zip(asking, self._answer([rows[i].tokens for i in asking], cfg)):
            row = rows[i]
            forced = self._apply(i, row, answer, cfg, seen, lookups_done, on_token)
            room = cfg.max_new_tokens - len(row.generated) - 1  # the model's own next token comes after the draft
            if wide and cfg.draft_values and not cfg.do_sample and not row.done and room > 0:
                row.draft = answer.repeat[:room]
            row.queue += forced + row.draft

    def _apply(self, i: int, row: _Row, answer: _Answer, cfg: GenerationConfig, seen, lookups_done, on_token) -> list[int]:
        """Force an answer into row ``i``'s tokens and record its provenance; returns the tokens forced."""
        lookups_done[i] += 1
        span = (max(answer.start - len(row.prompt), 0), len(row.generated) + len(answer.forced))  # past the end when cut short
        row.lookups.append(replace(answer.lookup, token_span=span))
        forced = answer.forced[: cfg.max_new_tokens - len(row.generated)]
        row.generated += forced
        seen[i, forced] = True
        for token in forced:
            if on_token:
                on_token(i, token, True)
        row.done = answer.abstains or len(row.generated) >= cfg.max_new_tokens
        return forced

    def _take(self, logits, ready, rows, seen, lookups_done, stops, cfg, generator, on_token) -> dict[int, int]:
        """Append new tokens to each ready (batch index, row): its drafted tokens while they are what it
        chooses (with a drafted call's answer once it chooses the call's <|db_return|>), then its own next
        token. ``logits`` are the last positions of the step, right-aligned. Returns {batch index: how many
        drafted tokens were not taken}."""
        playing, rejected = ready, {}
        cursor = {i: 0 for _, i in ready}  # by row: the draft position its next choice is checked against
        while playing:
            batch, ids = [b for b, _ in playing], [i for _, i in playing]
            at = [logits.shape[1] - 1 - len(rows[i].draft) + cursor[i] for i in ids]  # a draft's first guess sits on <|db_end|>
            new_tokens = torch.tensor([len(rows[i].generated) for i in ids], device=logits.device)
            scores = process_logits(logits[batch, at], seen[ids], lookups_done[ids], self.tokens, cfg, new_tokens)
            still = []
            for b, i, token in zip(batch, ids, choose(scores, cfg, generator).tolist()):
                row, j = rows[i], cursor[i]
                row.generated.append(token)
                seen[i, token] = True
                if on_token:
                    on_token(i, token, False)
                row.done = token in stops or len(row.generated) >= cfg.max_new_tokens
                if j < len(row.draft) and not row.done:
                    if token != row.draft[j]:
                        rejected[b] = len(row.draft) - j
                        continue
                    cursor[i] += 1
                    if row.draft_call and row.draft_call[0] == j:  # the drafted call is taken: so is its answer
                        cursor[i] += len(self._apply(i, row, row.draft_call[1], cfg, seen, lookups_done, on_token))
                        self.draft_stats["calls"] += 1
                    if not row.done:
                        still.append((b, i))
            playing = still
        self.draft_stats["drafted"] += sum(len(rows[i].draft) for _, i in ready)
        self.draft_stats["rejected"] += sum(rejected.values())
        return rejected

    def _answer(self, calls: list[list[int]], cfg: GenerationConfig) -> list[_Answer]:
        """Read the query of each call (token ids that end with its <|db_return|>), look all of them up at once."""
        queries = [query_of(ids, self.tokens, self.tokenizer) for ids in calls]
        results = self.kb.lookup_many([(q[0], q[1]) for q in queries], mode=cfg.lookup_mode)
        answers = []
        for (entity, relation, start), result in zip(queries, results):
            value, triplet, tier, abstains = result.value, result.triplet, result.tier, False
            if value is None:
                if cfg.fallback == "top1_anyway" and result.nearest is not None:
                    value, triplet, tier = result.nearest.value, result.nearest, "nearest"
                elif cfg.fallback == "abstain":
                    value, abstains = "", True
                else:
                    value = "unknown"
            value_ids = encode_text(self.tokenizer, " " + value) if value else []
            found = triplet is not None and not set(value_ids) & self.tokens.calls
            lookup = Provenance(entity, relation, value, triplet.id if triplet else None, float(result.score), tier, (0, 0))
            answers.append(_Answer(lookup, start, forced=value_ids + [self.tokens.end], repeat=value_ids if found else [], abstains=abstains))
        return answers

    def _result(self, row: _Row) -> GenerationResult:
        ids = [t for t in row.generated if t != self.tokens.eos]
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        return GenerationResult(text=self.visible_text(row.prompt, ids), raw=raw, lookups=row.lookups, token_ids=row.generated)

    def visible_text(self, prompt: list[int], generated: list[int]) -> str:
        """The clean text of ``generated`` (lookup calls removed), also while a call is still open (for streaming)."""
        ids = strip_calls([t for t in generated if t != self.tokens.eos], self.tokens, _inside_call(prompt, self.tokens))
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def encode_text(tokenizer, text: str) -> list[int]:
    """The ids of ``text`` as plain text: a special token's string in it (a KB value holding "<|db_end|>")
    is spelled in ordinary tokens, never read as the token itself, which would close a call early."""
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


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


def _inside_call(prompt: list[int], tokens: LookupTokens) -> bool:
    """Does the prompt end inside a lookup call (a forced ``<|db_entity|>``)?"""
    last_entity = max((i for i, t in enumerate(prompt) if t == tokens.entity), default=-1)
    last_end = max((i for i, t in enumerate(prompt) if t == tokens.end), default=-1)
    return last_entity > last_end


def strip_calls(ids: list[int], tokens: LookupTokens, in_call: bool = False) -> list[int]:
    """The ids with every lookup call removed (and the lone space in front of it), as the clean text."""
    out: list[int] = []
    for t in ids:
        if t == tokens.entity:
            if out and out[-1] == tokens.space:
                out.pop()
            in_call = True
        elif in_call:
            in_call = t != tokens.end
        else:
            out.append(t)
    return out


def query_of(ids: list[int], tokens: LookupTokens, tokenizer) -> tuple[str, str, int]:
    """(entity, relation, index of <|db_entity|>) of the call that ends ``ids`` with <|db_return|>.
    A missing piece reads as "" and gets no answer from the KB, so the fallback decides."""
    ret = len(ids) - 1
    start = next((i for i in range(ret - 1, -1, -1) if ids[i] in (tokens.entity, tokens.end, tokens.ret)), -1)
    if start < 0 or ids[start] != tokens.entity:
        return "", "", ret
    rel = next((i for i in range(start + 1, ret) if ids[i] == tokens.relationship), None)
    if rel is None:
        return "", "", start
    decode = lambda part: tokenizer.decode(part, skip_special_tokens=False).strip()  # noqa: E731
    return decode(ids[start + 1 : rel]), decode(ids[rel + 1 : ret]), start


# --- the reference loop --------------------------------------------------------------------------------------


@torch.no_grad()
def reference_loop(model, tokenizer, kb, prompt: str, cfg: GenerationConfig | None = None) -> list[int]:
    """The reference's way: HF ``generate()`` until <|db_return|>, look up, append, restart on the full ids.
    Returns the generated token ids (greedy decoding only)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    cfg = cfg or GenerationConfig()
    tokens = LookupTokens(tokenizer)
    vocab = model.get_output_embeddings().weight.shape[0]

    ids = tokenizer.encode(prompt)
    prompt_len = len(ids)

    class Shared(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen = torch.zeros(input_ids.shape[0], vocab, dtype=torch.bool, device=input_ids.device).scatter(1, input_ids, True)
            new_tokens = torch.full((input_ids.shape[0],), input_ids.shape[1] - prompt_len)
            return process_logits(scores, seen, (input_ids == tokens.ret).sum(1), tokens, cfg, new_tokens)

    stops = [tokenizer.eos_token_id, *cfg.stop_token_ids] + ([tokens.ret] if cfg.use_lookups else [])
    while len(ids) - prompt_len < cfg.max_new_tokens:
        if ids[-1] == tokens.ret and cfg.use_lookups:  # a call to answer: the model's, or the one that ends the prompt
            entity, relation, _ = query_of(ids, tokens, tokenizer)
            result = kb.lookup(entity, relation, mode=cfg.lookup_mode)
            value = result.value if result.value is not None else (result.nearest.value if result.nearest and cfg.fallback == "top1_anyway" else "unknown")
            ids += encode_text(tokenizer, " " + value) + [tokens.end]
            continue
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=cfg.max_new_tokens - (len(ids) - prompt_len), do_sample=False,
                             logits_processor=LogitsProcessorList([Shared()]), eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id, repetition_penalty=None)
        ids = out[0].tolist()
        if ids[-1] != tokens.ret or not cfg.use_lookups:
            break
    return ids[prompt_len : prompt_len + cfg.max_new_tokens]


# --- loading a checkpoint ------------------------------------------------------------------------------------------

WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # the file that holds the vocabulary, by kind of tokenizer


def load_model(folder: str | Path, **kwargs):
    """The causal LM of a local checkpoint folder. A missing folder or a missing or damaged file is an
    LmlmError of one line that names it (transformers would say "Repo id must be in the form..." for a
    folder that does not exist, and give tracebacks for damaged files)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = _checkpoint_folder(folder)
    _loading(folder / "config.json", "the model's config", AutoConfig.from_pretrained, folder)
    weights = next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise LmlmError(f"{folder}: no weights file ({', '.join(WEIGHTS_FILES)}); not a checkpoint folder")
    return _loading(weights, "the model", AutoModelForCausalLM.from_pretrained, folder, **kwargs)


def load_tokenizer(folder: str | Path):
    """The tokenizer of a local checkpoint folder; errors as ``load_model``'s."""
    from transformers import AutoTokenizer

    folder = _checkpoint_folder(folder)
    for name in ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
        _check_json(folder / name)
    vocabulary = next((folder / name for name in TOKENIZER_FILES if (folder / name).is_file()), None)
    if vocabulary is None:
        raise LmlmError(f"{folder}: no tokenizer file ({', '.join(TOKENIZER_FILES)}); save the tokenizer with the model")
    return _loading(vocabulary, "the tokenizer", AutoTokenizer.from_pretrained, folder)


def _checkpoint_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise LmlmError(f"{folder}: no such model folder")
    if not folder.is_dir():
        raise LmlmError(f"{folder}: not a folder; give a checkpoint folder (config.json, model.safetensors, tokenizer.json)")
    if not (folder / "config.json").is_file():
        raise LmlmError(f"{folder}: no config.json; not a checkpoint folder")
    _check_json(folder / "config.json")  # the tokenizer reads it too
    return folder


def _check_json(path: Path):
    """A JSON file of the checkpoint, if there, must parse: else transformers' error would not say which file."""
    import json

    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LmlmError(f"{path}: not valid JSON ({_one_line(e)})") from None


def _loading(path: Path, what: str, load, *args, **kwargs):
    """``load(*args, **kwargs)``, with any failure reported as an LmlmError that names ``path``."""
    try:
        return load(*args, **kwargs)
    except Exception as e:  # transformers, tokenizers, safetensors and torch each raise their own types for a damaged file
        raise LmlmError(f"{path}: cannot load {what} ({_one_line(e)})") from None


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


# --- the Python API --------------------------------------------------------------------------------------------------


class LMLM:
    """A checkpoint and a knowledge base: ``LMLM.from_pretrained(path, kb=...).generate(prompts)``."""

    def __init__(self, model, tokenizer, kb=None, compile: bool = False, draft_model=None, ngrams: NgramTable | None = None):
        self.engine = LookupEngine(model, tokenizer, kb, compile=compile, draft_model=draft_model, ngrams=ngrams)

    @property
    def model(self):
        return self.engine.model

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def kb(self):
        return self.engine.kb

    @classmethod
    def from_pretrained(cls, path: str | Path, kb=None, use_lookups: bool = True, compile: bool = False, draft_model: str | Path | None = None,
                        **model_kwargs) -> LMLM:
        """``draft_model``: the folder of a smaller checkpoint with the same tokenizer, to propose tokens (see
        ``lmlm.draft``). An n-gram table in the checkpoint folder (``lmlm ngrams``) is loaded to draft from."""
        tokenizer, model = load_tokenizer(path), load_model(path, **model_kwargs)
        draft = load_model(draft_model, **model_kwargs) if draft_model else None
        if use_lookups:
            check_lookup_tokens(tokenizer, path)
        if isinstance(kb, (str, Path)):
            from lmlm.kb import SqliteKB

            kb = SqliteKB(kb)
        table = Path(path) / NGRAMS_FILE
        return cls(model, tokenizer, kb, compile=compile, draft_model=draft, ngrams=NgramTable.load(table) if table.is_file() else None)

    def generate(self, prompts: str | Sequence[str], batch_size: int = 32, on_token=None, **options):
        """One result for a string, a list of results for a list; ``options`` are GenerationConfig fields."""
        single = isinstance(prompts, str)
        cfg = replace(GenerationConfig(), **options)
        items = [prompts] if single else list(prompts)
        results = []
        for start in range(0, len(items), batch_size):
            stream = functools.partial(_offset_rows, on_token, start) if on_token else None  # rows count across the batches
            results += self.engine.generate(items[start : start + batch_size], cfg, stream)
        return results[0] if single else results


def _offset_rows(on_token, offset: int, row: int, token: int, forced: bool):
    on_token(offset + row, token, forced)


def generate_file(lmlm: LMLM, src: str | Path, out: str | Path, batch_size: int = 32, **options) -> int:
    """Generate for every ``{"prompt"}`` line of ``src`` in batches; write each line back with its result."""
    import json

    from tqdm.auto import tqdm

    from lmlm.corpus import atomic_write, read_corpus

    rows = read_corpus(src, require=("prompt",)).examples
    with atomic_write(out) as f:
        for start in tqdm(range(0, len(rows), batch_size), desc="generating", unit="batch"):
            batch = rows[start : start + batch_size]
            for row, result in zip(batch, lmlm.generate([r["prompt"] for r in batch], batch_size=batch_size, **options)):
                f.write(json.dumps({**row, **result.to_dict()}, ensure_ascii=False) + "\n")
    return len(rows)
