"""The request bodies of the API, as pydantic models that refuse what the server cannot honour.

Every number is bounded: a huge int overflows torch or SQLite, an infinite or extreme float turns the
sampling distribution into inf/nan or noise. The ranges are in the README's Serving section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

TOKENS_MAX = 1_000_000  # far above any server cap: the cap's own message names the limit
TEMPERATURE_MAX = 2.0  # OpenAI's
PENALTY_RANGE = (0.5, 5.0)
SEED_MAX = 2**63 - 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _valid_unicode(cls, value):
        """JSON can carry a lone surrogate (\\ud800) that is no text: the tokenizer and SQLite fail on it."""
        for i, text in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(text, str) and (at := _lone_surrogate(text)) is not None:
                item = f"item {i} " if isinstance(value, list) else ""
                raise PydanticCustomError("lone_surrogate", "{item}has a lone surrogate at character {at}: send valid Unicode",
                                          {"item": item, "at": at})
        return value


def _lone_surrogate(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


class GenerateOptions(_Body):
    max_new_tokens: int = Field(64, ge=1, le=TOKENS_MAX)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0, le=TEMPERATURE_MAX)
    top_k: int = Field(0, ge=0, le=TOKENS_MAX)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.2, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])
    max_lookups: int = Field(5, ge=0, le=1000)
    fallback: Literal["top1_anyway", "unknown", "abstain"] = "top1_anyway"
    use_lookups: bool = True
    lookup_mode: Literal["default", "reference"] = "default"
    seed: int | None = Field(None, ge=0, le=SEED_MAX)  # a sampled request with a seed gives the same text whatever else runs


class GenerateRequest(GenerateOptions):
    prompt: str | list[str]


class CompletionRequest(_Body):
    """OpenAI's completions body; fields it has that an LMLM cannot honour are refused, others ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1, le=TOKENS_MAX)  # OpenAI's default
    temperature: float | None = Field(None, ge=0, le=TEMPERATURE_MAX)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=TOKENS_MAX)
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    use_lookups: bool = True  # lmlm's own, through the SDK's extra_body
    fallback: Literal["top1_anyway", "unknown", "abstain"] = "top1_anyway"


class NewTriplet(_Body):
    entity: str
    relation: str
    value: str


class NewValue(_Body):
    value: str


class ForgetRequest(_Body):
    entity: str
