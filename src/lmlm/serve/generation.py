"""``Generation``: what the generate and completions routes share. It checks a request against the
server's caps, turns its options into the engine's config, and runs it on the batcher.

It sits between the routes and the batcher so that the native API and the OpenAI layer cannot come to
apply different limits or seeds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from fastapi import HTTPException

from lmlm.engine import LMLM, GenerationConfig, GenerationResult
from lmlm.serve.batcher import Batcher, TokenCallback
from lmlm.serve.config import ServeConfig
from lmlm.serve.schemas import GenerateOptions


@dataclass
class Generation:
    lmlm: LMLM
    batcher: Batcher
    config: ServeConfig
    model_name: str
    defaults: dict = field(default_factory=dict)  # the server's generation options for requests that leave them out

    def plan(self, body: GenerateOptions, prompts: list[str]) -> tuple[GenerationConfig, list[list[int]]]:
        """The engine config of a request within the caps, and its prompts' token ids."""
        self._check_limits(prompts, body.max_new_tokens)
        chosen = {name: getattr(body, name) for name in GenerateOptions.model_fields}
        chosen.update({name: value for name, value in self.defaults.items() if name not in body.model_fields_set})
        chosen["seed"] = secrets.randbits(63) if body.seed is None else body.seed
        cfg = GenerationConfig(**chosen)
        return cfg, self.lmlm.engine.encode_prompts(prompts, cfg)  # a prompt too long for the context fails here, alone

    async def run(self, prompts: list[str], cfg: GenerationConfig, body: GenerateOptions,
                  on_token: TokenCallback | None = None) -> list[GenerationResult]:
        return await self.batcher.generate(prompts, cfg, on_token, alone=runs_alone(body))

    def _check_limits(self, prompts: list[str], max_new_tokens: int) -> None:
        config = self.config
        if not prompts:
            raise HTTPException(400, "prompt: give at least one prompt")
        if len(prompts) > config.max_batch:
            raise HTTPException(400, f"prompt: {len(prompts)} prompts exceed the server's cap of {config.max_batch} per request")
        for i, p in enumerate(prompts):
            if len(p) > config.max_prompt_chars:
                raise HTTPException(400, f"prompt {i}: {len(p)} characters exceed the server's cap of {config.max_prompt_chars}")
        if max_new_tokens > config.max_new_tokens:
            raise HTTPException(400, f"max_new_tokens {max_new_tokens} exceeds the server's cap of {config.max_new_tokens}")


def runs_alone(body: GenerateOptions) -> bool:
    """A sampled request with a seed gets an engine batch of its own: company would change its text."""
    return body.do_sample and body.seed is not None
