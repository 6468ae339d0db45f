"""HTTP serving: a JSON API (OpenAI-compatible completions too), KB editing, and a web page.

Generation runs on one engine thread. Requests that arrive within a short window, or while the engine is
busy, are gathered into one engine batch (one batch per distinct set of options), so concurrent clients
share forward passes. KB edits run on the request's own thread under the KB's lock and are committed
before their response is sent; every lookup made after that sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from lmlm import markup
from lmlm.errors import LmlmError, NotFound
from lmlm.generate import LMLM, GenerationConfig, GenerationResult

log = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"


@dataclass
class ServeConfig:
    max_prompt_chars: int = 4000
    max_batch: int = 32  # prompts per request, and per engine batch
    max_new_tokens: int = 256
    window_ms: float = 5.0  # how long the first request of a batch waits for company
    read_only: bool = False
    api_key: str | None = None
    protect: Literal["writes", "all"] = "writes"  # what --api-key guards


# --- batching ------------------------------------------------------------------------------------------------

TokenCallback = Callable[[int, int, bool], None]  # (row in the request, token id, forced by a lookup)


@dataclass
class _Job:
    prompts: list[str]
    cfg: GenerationConfig
    future: asyncio.Future
    on_token: TokenCallback | None


class Batcher:
    """Gathers concurrent generate calls into engine batches, run one at a time on the engine thread."""

    def __init__(self, lmlm: LMLM, max_batch: int, window_ms: float):
        self.lmlm, self.max_batch, self.window = lmlm, max_batch, window_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="lmlm-engine")
        self.batches = 0  # engine batches run, for /health and the load benchmark

    async def generate(self, prompts: list[str], cfg: GenerationConfig, on_token: TokenCallback | None = None) -> list[GenerationResult]:
        job = _Job(prompts, cfg, asyncio.get_running_loop().create_future(), on_token)
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(dataclasses.astuple(job.cfg), []).append(job)
            for group in groups.values():
                try:
                    results = await loop.run_in_executor(self.engine_thread, self._run, group)
                except Exception as e:  # noqa: BLE001 - every waiting request gets the failure, the server goes on
                    log.exception("engine batch failed")
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(e)
                    continue
                for job in group:
                    if not job.future.done():  # a client that went away cancelled its future
                        job.future.set_result(results[: len(job.prompts)])
                    results = results[len(job.prompts) :]

    async def _gather(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.window
        while sum(len(j.prompts) for j in jobs) < self.max_batch:
            if not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return jobs

    def _run(self, group: list[_Job]) -> list[GenerationResult]:
        owners = [(job, row) for job in group for row in range(len(job.prompts))]

        def on_token(i: int, token: int, forced: bool) -> None:
            job, row = owners[i]
            if job.on_token:
                job.on_token(row, token, forced)

        self.batches += 1
        prompts = [p for job in group for p in job.prompts]
        start = time.perf_counter()
        results = self.lmlm.engine.generate(prompts, group[0].cfg, on_token if any(j.on_token for j in group) else None)
        log.debug("engine batch of %d prompts (%d requests) in %.3f s", len(prompts), len(group), time.perf_counter() - start)
        return results


# --- request bodies ------------------------------------------------------------------------------------------


class GenerateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(64, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.2, gt=0)
    max_lookups: int = Field(5, ge=0)
    fallback: Literal["top1_anyway", "unknown", "abstain"] = "top1_anyway"
    use_lookups: bool = True
    lookup_mode: Literal["default", "reference"] = "default"
    seed: int = 0


class GenerateRequest(GenerateOptions):
    prompt: str | list[str]


class CompletionRequest(BaseModel):
    """OpenAI's completions body; fields it has that an LMLM cannot honour are refused, others ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1)  # OpenAI's default
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    use_lookups: bool = True  # lmlm's own, through the SDK's extra_body
    fallback: Literal["top1_anyway", "unknown", "abstain"] = "top1_anyway"


class NewTriplet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity: str
    relation: str
    value: str


class NewValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity: str


# --- the app -------------------------------------------------------------------------------------------------


def create_app(lmlm: LMLM, config: ServeConfig | None = None, model_name: str = "lmlm") -> FastAPI:
    config = config or ServeConfig()
    if lmlm.kb is None:
        raise LmlmError("serving needs a knowledge base")
    batcher = Batcher(lmlm, config.max_batch, config.window_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.engine_thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="lmlm", lifespan=lifespan)
    app.state.batcher = batcher
    _install_error_handlers(app)
    reads = Depends(_guard(config, write=False))
    writes = Depends(_guard(config, write=True))
    kb = lmlm.kb

    def options(body: GenerateOptions, prompts: list[str]) -> tuple[GenerationConfig, list[list[int]]]:
        _check_limits(config, prompts, body.max_new_tokens)
        cfg = GenerationConfig(**{name: getattr(body, name) for name in GenerateOptions.model_fields})
        return cfg, lmlm.engine.encode_prompts(prompts, cfg)  # a prompt too long for the context fails here, alone

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_name, "engine_batches": batcher.batches}

    @app.post("/v1/generate", dependencies=[reads])
    async def generate(body: GenerateRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        cfg, _ = options(body, prompts)
        results = [_result_json(r) for r in await batcher.generate(prompts, cfg)]
        return results[0] if isinstance(body.prompt, str) else {"results": results}

    @app.post("/v1/completions", dependencies=[reads])
    async def completions(body: CompletionRequest):
        if body.n != 1:
            raise HTTPException(400, "n must be 1: an LMLM completion is one sample per prompt")
        if body.stop is not None:
            raise HTTPException(400, "stop sequences are not supported; use max_tokens")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        sampling = body.temperature not in (None, 0)
        cfg, prompt_ids = options(GenerateOptions(max_new_tokens=body.max_tokens, do_sample=sampling, temperature=body.temperature if sampling else 1.0,
                                      top_p=body.top_p or 1.0, seed=body.seed or 0, use_lookups=body.use_lookups,
                                      fallback=body.fallback), prompts)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": body.model or model_name}
        if body.stream:
            return StreamingResponse(_stream(batcher, lmlm, prompts, prompt_ids, cfg, head), media_type="text/event-stream")
        results = await batcher.generate(prompts, cfg)
        choices = [_choice(i, r.text, r, cfg) for i, r in enumerate(results)]
        prompt_tokens = sum(map(len, prompt_ids))
        completion_tokens = sum(len(r.token_ids) for r in results)
        return {**head, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}

    @app.get("/v1/kb/search", dependencies=[reads])
    def search(q: str, limit: int = Query(20, ge=1, le=200)):
        return {"results": [_triplet_json(t) for t in kb.search(q, limit)]}

    @app.get("/v1/kb/entity/{name}", dependencies=[reads])
    def entity(name: str):
        return {"entity": name, "facts": [_triplet_json(t) for t in kb.facts(name)]}

    @app.get("/v1/kb/stats", dependencies=[reads])
    def stats():
        return kb.stats()

    @app.post("/v1/kb/triplets", status_code=201, dependencies=[writes])
    def add(body: NewTriplet):
        return _triplet_json(kb.add(body.entity, body.relation, body.value, source="serve"))

    @app.put("/v1/kb/triplets/{triplet_id}", dependencies=[writes])
    def update(triplet_id: int, body: NewValue):
        return _triplet_json(kb.update(triplet_id, body.value))

    @app.delete("/v1/kb/triplets/{triplet_id}", dependencies=[writes])
    def delete(triplet_id: int):
        return _triplet_json(kb.delete(triplet_id))

    @app.post("/v1/kb/forget", dependencies=[writes])
    def forget(body: ForgetRequest):
        return {"entity": body.entity, "forgotten": kb.forget(body.entity)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html")

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


def _check_limits(config: ServeConfig, prompts: list[str], max_new_tokens: int) -> None:
    if not prompts:
        raise HTTPException(400, "prompt: give at least one prompt")
    if len(prompts) > config.max_batch:
        raise HTTPException(400, f"prompt: {len(prompts)} prompts exceed the server's cap of {config.max_batch} per request")
    for i, p in enumerate(prompts):
        if len(p) > config.max_prompt_chars:
            raise HTTPException(400, f"prompt {i}: {len(p)} characters exceed the server's cap of {config.max_prompt_chars}")
    if max_new_tokens > config.max_new_tokens:
        raise HTTPException(400, f"max_new_tokens {max_new_tokens} exceeds the server's cap of {config.max_new_tokens}")


def _guard(config: ServeConfig, write: bool):
    def check(request: Request) -> None:
        if write and config.read_only:
            raise HTTPException(403, "the knowledge base is read-only on this server (--read-only)")
        if config.api_key and (write or config.protect == "all"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
                raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer KEY)")

    return check


def _install_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
            problems.append("malformed JSON" if e["type"] == "json_invalid" else f"{where}: {e['msg']}")
        return error(400, "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(NotFound)
    async def not_found(request, exc: NotFound):
        return error(404, str(exc))

    @app.exception_handler(LmlmError)
    async def bad(request, exc: LmlmError):
        return error(400, str(exc))


# --- responses -----------------------------------------------------------------------------------------------


def _triplet_json(t) -> dict:
    return {"id": t.id, "entity": t.entity, "relation": t.relation, "value": t.value}


def _result_json(result: GenerationResult) -> dict:
    return {**result.to_dict(), "segments": fact_segments(result)}


def _choice(index: int, text: str, result: GenerationResult, cfg: GenerationConfig) -> dict:
    finish = "length" if len(result.token_ids) >= cfg.max_new_tokens else "stop"
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish, "raw": result.raw,
            "lookups": [p.to_dict() for p in result.lookups]}


def fact_segments(result: GenerationResult) -> list[dict]:
    """The clean text in pieces, for display: ``{"text"}`` plain, or ``{"text", "fact": i}`` where lookup i's
    value is written (the model's copy right after the call), or ``{"text": "", "fact": i}`` for a lookup
    whose value the model did not copy (or whose call the token budget cut short)."""
    segments, pending = [], list(enumerate(result.lookups))
    doc = markup.parse(result.raw)
    fact = None
    for seg in doc.segments:
        if isinstance(seg, markup.Lookup):
            if fact is not None:
                segments.append({"text": "", "fact": fact})
            fact = _match(seg, pending)
            continue
        if fact is not None:
            value = result.lookups[fact].value
            body = seg.lstrip()
            lead = seg[: len(seg) - len(body)]
            if value and body.startswith(value):
                segments += [{"text": lead}, {"text": value, "fact": fact}, {"text": body[len(value) :]}]
            else:
                segments += [{"text": "", "fact": fact}, {"text": seg}]
            fact = None
        else:
            segments.append({"text": seg})
    if fact is not None:
        segments.append({"text": "", "fact": fact})
    segments += [{"text": "", "fact": i} for i, _ in pending]  # calls cut short by max_new_tokens
    return [s for s in segments if s["text"] or "fact" in s]


def _match(lookup: markup.Lookup, pending: list) -> int | None:
    """The index of the provenance record of a call parsed from the raw text (the next one with its value)."""
    value = markup.normalize_whitespace(lookup.value)
    for k, (i, p) in enumerate(pending):
        if markup.normalize_whitespace(p.value) == value:
            del pending[: k + 1]
            return i
    return None


async def _stream(batcher: Batcher, lmlm: LMLM, prompts: list[str], prompt_ids: list[list[int]], cfg: GenerationConfig, head: dict):
    """Server-sent events of the clean text as it grows, one choice per prompt; lookups in the last event."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    generated: list[list[int]] = [[] for _ in prompts]
    sent = [""] * len(prompts)

    def on_token(row: int, token: int, forced: bool) -> None:  # on the engine thread
        generated[row].append(token)
        text = lmlm.engine.visible_text(prompt_ids[row], generated[row])
        if text.startswith(sent[row]) and len(text) > len(sent[row]) and not text.endswith("\ufffd"):
            delta, sent[row] = text[len(sent[row]) :], text
            loop.call_soon_threadsafe(events.put_nowait, (row, delta))

    def chunk(choices: list[dict]) -> str:
        return f"data: {json.dumps({**head, 'choices': choices})}\n\n"

    done = asyncio.ensure_future(batcher.generate(prompts, cfg, on_token))
    done.add_done_callback(lambda _: events.put_nowait(None))
    while (event := await events.get()) is not None:
        row, delta = event
        yield chunk([{"index": row, "text": delta, "logprobs": None, "finish_reason": None}])
    try:
        results = done.result()
    except LmlmError as e:
        yield f"data: {json.dumps({'error': {'message': str(e), 'code': 400}})}\n\n"
        return
    for i, result in enumerate(results):
        rest = result.text[len(sent[i]) :] if result.text.startswith(sent[i]) else ""
        yield chunk([_choice(i, rest, result, cfg)])
    yield "data: [DONE]\n\n"


def serve(model: str, kb: str, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None) -> None:
    import uvicorn

    from lmlm.kb import SqliteKB

    if not Path(kb).exists():
        raise LmlmError(f"{kb}: no such knowledge base (build one with lmlm kb build)")
    lmlm = LMLM.from_pretrained(model, kb=SqliteKB(kb))
    lmlm.kb.embed()  # vectors and indexes now, not on the first request
    app = create_app(lmlm, config, model_name=Path(model).name)
    log.info("serving %s with %s on http://%s:%d", model, kb, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
