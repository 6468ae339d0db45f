"""The OpenAI-compatible ``/v1/completions`` route, and its streaming as server-sent events.

OpenAI's SDKs and tools speak this shape; it maps onto the same generation as ``/v1/generate``, and the
lookups an LMLM made travel along in each choice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, params
from fastapi.responses import StreamingResponse

from lmlm.engine import GenerationConfig, GenerationResult, LookupTokens, inside_call
from lmlm.errors import LmlmError
from lmlm.serve.errors import error_body, internal_message
from lmlm.serve.generation import Generation
from lmlm.serve.schemas import CompletionRequest, GenerateOptions


def add_completions_route(app: FastAPI, gen: Generation, reads: params.Depends) -> None:
    @app.post("/v1/completions", dependencies=[reads])
    async def completions(body: CompletionRequest):
        if body.n != 1:
            raise HTTPException(400, "n must be 1: an LMLM completion is one sample per prompt")
        if body.stop is not None:
            raise HTTPException(400, "stop sequences are not supported; use max_tokens")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        chosen = _generate_options(body)
        cfg, prompt_ids = gen.plan(chosen, prompts)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": body.model or gen.model_name}
        if body.stream:
            return StreamingResponse(_stream(gen, prompts, prompt_ids, cfg, chosen, head), media_type="text/event-stream")
        results = await gen.run(prompts, cfg, chosen)
        choices = [_choice(i, r.text, r, cfg) for i, r in enumerate(results)]
        prompt_tokens = sum(map(len, prompt_ids))
        completion_tokens = sum(len(r.token_ids) for r in results)
        return {**head, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}


def _generate_options(body: CompletionRequest) -> GenerateOptions:
    """OpenAI's fields as the native options: temperature 0 or none is greedy."""
    sampling = body.temperature not in (None, 0)
    return GenerateOptions(max_new_tokens=body.max_tokens, do_sample=sampling, temperature=body.temperature if sampling else 1.0,
                           top_p=body.top_p or 1.0, seed=body.seed, use_lookups=body.use_lookups, fallback=body.fallback)


def _choice(index: int, text: str, result: GenerationResult, cfg: GenerationConfig) -> dict:
    finish = "length" if len(result.token_ids) >= cfg.max_new_tokens else "stop"
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish, "raw": result.raw,
            "lookups": [p.to_dict() for p in result.lookups]}


class _VisibleText:
    """The clean text of one streamed row as it grows, decoded a few tokens at a time (decoding the whole text
    on every token would cost the engine thread quadratic time). Mirrors ``strip_calls``: a lookup call is
    not shown, nor the lone space token before it, so a space is held back until the next token says."""

    def __init__(self, decode: Callable[[list[int]], str], tokens: LookupTokens, in_call: bool):
        self.decode, self.tokens, self.in_call = decode, tokens, in_call
        self.ids: list[int] = []  # the visible tokens so far
        self.start = self.read = 0  # ids[start:read] is the context that decodes to text already sent
        self.space_held = False

    def push(self, token: int) -> str:
        """The text that ``token`` adds (often "", while a call or a multi-byte character is unfinished)."""
        t = self.tokens
        if token == t.eos:
            return ""
        if token == t.entity:
            self.space_held, self.in_call = False, True
            return ""
        if self.in_call:
            self.in_call = token != t.end
            return ""
        if self.space_held:
            self.ids.append(t.space)
        self.space_held = token == t.space
        if not self.space_held:
            self.ids.append(token)
        return self._delta()

    def _delta(self) -> str:
        before = self.decode(self.ids[self.start : self.read])
        text = self.decode(self.ids[self.start :])
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.start, self.read = self.read, len(self.ids)
        return text[len(before) :]


async def _stream(gen: Generation, prompts: list[str], prompt_ids: list[list[int]], cfg: GenerationConfig, body: GenerateOptions,
                  head: dict):
    """Server-sent events of the clean text as it grows, one choice per prompt; lookups in the last event.
    The stream always ends with ``[DONE]``, after an error event if generation failed."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    engine = gen.lmlm.engine
    decode = functools.partial(engine.tokenizer.decode, skip_special_tokens=True)
    rows = [_VisibleText(decode, engine.tokens, inside_call(ids, engine.tokens)) for ids in prompt_ids]
    sent = [""] * len(prompts)

    def on_token(row: int, token: int, forced: bool) -> None:  # on the engine thread
        if delta := rows[row].push(token):
            sent[row] += delta
            loop.call_soon_threadsafe(events.put_nowait, (row, delta))

    def chunk(choices: list[dict]) -> str:
        return f"data: {json.dumps({**head, 'choices': choices})}\n\n"

    done = asyncio.ensure_future(gen.run(prompts, cfg, body, on_token))
    done.add_done_callback(lambda _: events.put_nowait(None))
    while (event := await events.get()) is not None:
        row, delta = event
        yield chunk([{"index": row, "text": delta, "logprobs": None, "finish_reason": None}])
    try:
        results = done.result()
    except Exception as e:  # noqa: BLE001 - the client learns of any failure in-band: the status line has gone
        yield f"data: {json.dumps({'error': _stream_error(e)})}\n\n"
    else:
        for i, result in enumerate(results):
            rest = result.text[len(sent[i]) :] if result.text.startswith(sent[i]) else ""
            yield chunk([_choice(i, rest, result, cfg)])
    yield "data: [DONE]\n\n"


def _stream_error(e: Exception) -> dict:
    """The error event of a failed stream (the batcher has logged the failure)."""
    if isinstance(e, LmlmError):
        return error_body(400, str(e))
    return error_body(500, internal_message(e))
