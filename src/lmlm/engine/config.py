"""What a generation is asked for and what it returns: the options, the result and the provenance of each
lookup, and the ids of the lookup tokens in a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmlm import markup
from lmlm.errors import LmlmError

FALLBACKS = ("top1_anyway", "unknown", "abstain")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    min_new_tokens: int = 0  # eos is banned before this many new tokens (benchmarks use it to fix the length)
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.2  # the reference default
    entity_bias: float = 4.0  # logit bias on <|db_entity|> (reference default)
    lookup_bias: float = 2.0  # logit bias on the other three lookup tokens (reference default)
    max_lookups: int = 5
    fallback: str = "top1_anyway"  # when the KB has no match: top1_anyway | unknown | abstain
    use_lookups: bool = True
    lookup_mode: str = "default"  # the KB's: default | reference
    stop_token_ids: tuple[int, ...] = ()
    truncate_prompt: bool = False  # keep the last tokens of a prompt that does not fit, instead of refusing it
    draft_values: bool = True  # greedy only: verify the value's repeat after <|db_end|> in the forward that forces it
    draft_tokens: int = 4  # greedy: the tokens a draft model or an n-gram proposes, for the model to verify in one forward
    ngram_drafts: bool = True  # greedy, without a draft model: draft from the row's own text and the engine's n-gram table
    seed: int = 0

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
    # by lookup: the character offset in ``text`` where its call stood (calls are removed from ``text``), so that
    # the text can be cut into fact segments without parsing ``raw`` again
    text_offsets: list[int] = field(default_factory=list, repr=False)

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
