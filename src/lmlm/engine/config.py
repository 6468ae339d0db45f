"""What a generation is asked for and what it returns: the options, the result and the provenance of each
lookup, and the ids of the lookup tokens in a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from lmlm import markup
from lmlm.config import check_bounds
from lmlm.errors import LmlmError

FALLBACKS = ("top1_anyway", "unknown", "abstain")
CONSTRAINTS = ("off", "relation", "entity_relation")


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
        "help": "sampling temperature", "gt": 0, "le": 2.0, "sampling": True, "surfaces": ("cli", "api", "compat")})  # OpenAI's cap
    top_k: int = field(default=0, metadata={
        "help": "sample among the k likeliest tokens (0: all)", "ge": 0, "le": 1_000_000, "sampling": True, "surfaces": ("cli", "api")})
    top_p: float = field(default=1.0, metadata={
        "help": "sample within this probability mass (nucleus)", "gt": 0, "le": 1, "sampling": True, "surfaces": ("cli", "api", "compat"),
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
    use_db: bool = field(default=True, metadata={
        "help": "the database off: the model's calls go unanswered and it writes each value itself after <|db_return|> (the "
                "reference's runs without --enable_dblookup); lmlm eval under our protocol bans lookups instead (README, "
                "Evaluation)", "flag": "--no-db",
        "surfaces": ("cli", "eval")})
    lookup_mode: str = field(default="default", metadata={
        "help": "the KB's lookup mode", "choices": ("default", "reference"), "surfaces": ("cli", "api")})
    constrain_lookups: str = field(default="off", metadata={
        "help": "hold a call's relation to those its entity has in the KB (relation), and its entity to the KB's names too "
                "(entity_relation)", "choices": CONSTRAINTS, "surfaces": ("cli", "eval", "api", "serve")})
    constrain_margin: float = field(default=5.0, metadata={
        "help": "nats a constrained call may cost before it ends as a miss: in its entity, how far it falls below the model's "
                "own choice (with the mention prior's bonuses); in its relation, how far the model's best allowed token falls "
                "below its best token outside the mask",
        "ge": 0, "le": 1000, "surfaces": ("cli", "api", "serve")})
    relation_prior: float = field(default=0.0, metadata={
        "help": "under a constraint: nats per unit of cosine similarity, under the KB's encoder, between each allowed relation "
                "and the sentence the call stands in, added to the relation's tokens", "ge": 0, "le": 100,
        "surfaces": ("cli", "eval", "api", "serve")})
    mention_prior: float = field(default=0.0, metadata={
        "help": "under entity_relation: nats added to each token of a call's entity that continues a KB entity named in the "
                "text before the call", "ge": 0, "le": 100, "surfaces": ("cli", "eval", "api", "serve")})
    chain_prior: bool = field(default=False, metadata={
        "help": "with the relation prior, under a constraint: weigh a call that would open right after a looked-up value (a chain "
                "onto it) by how much better the call's sentence reads as one of the value's relations than as the relation just answered",
        "surfaces": ("cli", "eval", "api", "serve")})
    hold_value_repeat: bool = field(default=False, metadata={
        "help": "once the text after a call's <|db_end|> begins to restate the looked-up value, it restates all of it (a small "
                "model can miscopy a value's later tokens, such as a year's digits)", "surfaces": ("cli", "eval", "api", "serve")})
    lookup_free_budget: int = field(default=0, metadata={
        "help": "end a row once its prompt and output, lookup calls left out, hold this many tokens (the reference's FactScore "
                "budget; 0: only max_new_tokens counts)", "ge": 0, "surfaces": ()})
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

    @property
    def answers_calls(self) -> bool:
        """A call the model closes with <|db_return|> is answered from the knowledge base."""
        return self.use_lookups and self.use_db

    def __post_init__(self):
        if self.fallback not in FALLBACKS:
            raise LmlmError(f"unknown fallback {self.fallback!r}: expected one of {', '.join(FALLBACKS)}")
        if self.constrain_lookups not in CONSTRAINTS:
            raise LmlmError(f"unknown constrain_lookups {self.constrain_lookups!r}: expected one of {', '.join(CONSTRAINTS)}")
        for f in fields(self):  # the CLI and the API check them on the way in; the Python API only here
            check_bounds(f.name, getattr(self, f.name), f.metadata)


@dataclass
class Provenance:
    entity: str
    relation: str
    value: str
    triplet_id: int | None
    score: float
    tier: str
    token_span: tuple[int, int]  # [start, end) in the generated token ids, <|db_entity|> to <|db_end|>
    kb_version: int | None = None  # the shared KB's version the answer was read at (None for a KB file)

    def to_dict(self) -> dict:
        return {"entity": self.entity, "relation": self.relation, "value": self.value, "triplet_id": self.triplet_id,
                "score": round(self.score, 4), "tier": self.tier, "token_span": list(self.token_span),
                **({} if self.kb_version is None else {"kb_version": self.kb_version})}


@dataclass
class GenerationResult:
    text: str  # lookups removed, as the reference's post_process
    raw: str  # with the lookup calls
    lookups: list[Provenance]
    token_ids: list[int] = field(repr=False)
    # by lookup: the character offset in ``text`` where its call stood (calls are removed from ``text``), so that
    # the text can be cut into fact segments without parsing ``raw`` again
    text_offsets: list[int] = field(default_factory=list, repr=False)

    @property
    def kb_version(self) -> int | None:
        """The newest shared-KB version any of its lookups was answered at; None without lookups or with a KB file."""
        return max((p.kb_version for p in self.lookups if p.kb_version is not None), default=None)

    def to_dict(self) -> dict:
        return {"text": self.text, "raw": self.raw, "lookups": [p.to_dict() for p in self.lookups], "kb_version": self.kb_version}


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
