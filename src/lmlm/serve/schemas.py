"""The request bodies of the API, as pydantic models that refuse what the server cannot honour.

Every number is bounded: a huge int overflows torch or SQLite, an infinite or extreme float turns the
sampling distribution into inf/nan or noise. The generation options, their defaults and ranges are made
from ``GenerationConfig``'s fields (``lmlm.options``); the ranges are in the README's Serving section.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from lmlm.config import BOUNDS
from lmlm.options import generation_config, generation_fields, surface_default

N_MAX = 1_000_000  # OpenAI's n: far above 1, the only value served, so that its own message explains


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


def _request_field(f: dataclasses.Field, surface: str, **changes) -> tuple[object, object]:
    """The pydantic (type, Field) of a generation option on ``surface``: its choices, bounds and default."""
    meta, default = f.metadata, changes.get("default", surface_default(f, surface))
    kind = Literal[meta["choices"]] if "choices" in meta else typing.get_type_hints(generation_config())[f.name]
    if default is None:
        kind = kind | None
    bounds = {name: meta[name] for name in BOUNDS if name in meta}
    bounds.update(changes.get("bounds", {}))
    return kind, Field(default, **bounds)


def _options(surface: str) -> dict[str, tuple[object, object]]:
    return {f.name: _request_field(f, surface) for f in generation_fields(surface)}


GenerateOptions = create_model("GenerateOptions", __base__=_Body, **_options("api"))
GenerateOptions.__doc__ = "The generation options of /v1/generate: GenerationConfig's fields marked for the API."


class GenerateRequest(GenerateOptions):
    prompt: str | list[str]


def _openai_sampling() -> dict[str, tuple[object, object]]:
    """OpenAI's own names and defaults for options the engine has, with the engine's bounds; OpenAI's
    temperature may be 0 (greedy) and is unset by default, as is its top_p."""
    fields = {f.name: f for f in generation_fields("api")}
    return {"max_tokens": _request_field(fields["max_new_tokens"], "api", default=16),  # OpenAI's default
            "temperature": _request_field(fields["temperature"], "api", default=None, bounds={"gt": None, "ge": 0}),
            "top_p": _request_field(fields["top_p"], "api", default=None),
            "seed": _request_field(fields["seed"], "api")}


class _OpenAIBody(_Body):
    """OpenAI's completions body; fields it has that an LMLM cannot honour are refused, others ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    n: int = Field(1, ge=1, le=N_MAX)
    stream: bool = False
    stop: str | list[str] | None = None


CompletionRequest = create_model("CompletionRequest", __base__=_OpenAIBody, **_openai_sampling(), **_options("completions"))
CompletionRequest.__doc__ = _OpenAIBody.__doc__ + " lmlm's own options come through the SDK's extra_body."


class NewTriplet(_Body):
    entity: str
    relation: str
    value: str


class NewValue(_Body):
    value: str


class ForgetRequest(_Body):
    entity: str
