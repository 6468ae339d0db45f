"""HTTP serving: a JSON API (OpenAI-compatible completions too), KB editing, and a web page.

Generation runs on one engine thread. Requests that arrive within a short window, or while the engine is
busy, are gathered into one engine batch (one batch per distinct set of options, never more rows than
``max_batch``), so concurrent clients share forward passes. A sampled request with a seed runs alone: the
engine draws every row of a batch from one generator, so company would change its text. KB edits run on
the request's own thread under the KB's lock and are committed before their response is sent; every
lookup made after that sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import json
import logging
import secrets
import sqlite3
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
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmlm import markup
from lmlm.errors import Ambiguous, Busy, LmlmError, NotFound
from lmlm.generate import LMLM, GenerationConfig, GenerationResult, LookupTokens, _inside_call

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
    bind_host: str = "127.0.0.1"  # where uvicorn listens: on loopback without a key, only local Host names are served

    @property
    def max_body_bytes(self) -> int:
        """Room for a full batch of the longest prompts, each character escaped as JSON's 6-byte \\uXXXX, and 64 KiB."""
        return 6 * self.max_prompt_chars * self.max_batch + 65536


LOOPBACK = {"127.0.0.1", "::1", "localhost"}
SQLITE_ID_MAX = 2**63 - 1


# --- batching ------------------------------------------------------------------------------------------------

TokenCallback = Callable[[int, int, bool], None]  # (row in the request, token id, forced by a lookup)


@dataclass
class _Job:
    prompts: list[str]
    cfg: GenerationConfig
    future: asyncio.Future
    on_token: TokenCallback | None
    alone: bool  # runs in an engine batch of its own

    def batch_key(self) -> tuple:
        if self.alone:
            return ("alone", id(self))
        return dataclasses.astuple(dataclasses.replace(self.cfg, seed=0))  # an unseeded batch draws from its first job's seed


class Batcher:
    """Gathers concurrent generate calls into engine batches, run one at a time on the engine thread."""

    def __init__(self, lmlm: LMLM, max_batch: int, window_ms: float):
        self.lmlm, self.max_batch, self.window = lmlm, max_batch, window_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="lmlm-engine")
        self.batches = 0  # engine batches run, for /health and the load benchmark
        self.held: _Job | None = None  # a job that did not fit in the last batch; it opens the next one

    async def generate(self, prompts: list[str], cfg: GenerationConfig, on_token: TokenCallback | None = None,
                       alone: bool = False) -> list[GenerationResult]:
        job = _Job(prompts, cfg, asyncio.get_running_loop().create_future(), on_token, alone)
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.batch_key(), []).append(job)
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
        jobs = [self.held or await self.queue.get()]
        self.held = None
        rows = len(jobs[0].prompts)
        deadline = asyncio.get_running_loop().time() + self.window
        while rows < self.max_batch and (job := await self._next(deadline)):
            if rows + len(job.prompts) > self.max_batch:
                self.held = job
                break
            jobs.append(job)
            rows += len(job.prompts)
        return jobs

    async def _next(self, deadline: float) -> _Job | None:
        """The next queued job, waiting for one until ``deadline``; None when none came."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), remaining)
        except asyncio.TimeoutError:
            return None

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
# Every number is bounded: a huge int overflows torch or SQLite, an infinite or extreme float turns the
# sampling distribution into inf/nan or noise. The ranges are in the README's Serving section.

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
    app.add_middleware(_Gate, config=config)
    _install_error_handlers(app)
    reads = Depends(_guard(config, write=False))
    writes = Depends(_guard(config, write=True))
    kb = lmlm.kb

    def options(body: GenerateOptions, prompts: list[str]) -> tuple[GenerationConfig, list[list[int]]]:
        _check_limits(config, prompts, body.max_new_tokens)
        chosen = {name: getattr(body, name) for name in GenerateOptions.model_fields}
        chosen["seed"] = secrets.randbits(63) if body.seed is None else body.seed
        cfg = GenerationConfig(**chosen)
        return cfg, lmlm.engine.encode_prompts(prompts, cfg)  # a prompt too long for the context fails here, alone

    def run_alone(body: GenerateOptions) -> bool:
        return body.do_sample and body.seed is not None

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_name, "engine_batches": batcher.batches}

    @app.post("/v1/generate", dependencies=[reads])
    async def generate(body: GenerateRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        cfg, _ = options(body, prompts)
        results = [_result_json(r) for r in await batcher.generate(prompts, cfg, alone=run_alone(body))]
        return results[0] if isinstance(body.prompt, str) else {"results": results}

    @app.post("/v1/completions", dependencies=[reads])
    async def completions(body: CompletionRequest):
        if body.n != 1:
            raise HTTPException(400, "n must be 1: an LMLM completion is one sample per prompt")
        if body.stop is not None:
            raise HTTPException(400, "stop sequences are not supported; use max_tokens")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        sampling = body.temperature not in (None, 0)
        chosen = GenerateOptions(max_new_tokens=body.max_tokens, do_sample=sampling, temperature=body.temperature if sampling else 1.0,
                                 top_p=body.top_p or 1.0, seed=body.seed, use_lookups=body.use_lookups, fallback=body.fallback)
        cfg, prompt_ids = options(chosen, prompts)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": body.model or model_name}
        alone = run_alone(chosen)
        if body.stream:
            return StreamingResponse(_stream(batcher, lmlm, prompts, prompt_ids, cfg, head, alone), media_type="text/event-stream")
        results = await batcher.generate(prompts, cfg, alone=alone)
        choices = [_choice(i, r.text, r, cfg) for i, r in enumerate(results)]
        prompt_tokens = sum(map(len, prompt_ids))
        completion_tokens = sum(len(r.token_ids) for r in results)
        return {**head, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}

    @app.get("/v1/kb/search", dependencies=[reads])
    def search(q: str, limit: int = Query(20, ge=1, le=200)):
        return {"results": [_triplet_json(t) for t in kb.search(q, limit)]}

    @app.get("/v1/kb/entity/{name:path}", dependencies=[reads])  # a name may hold a "/" (AC/DC)
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
        return _triplet_json(kb.update(_existing_id(triplet_id), body.value))

    @app.delete("/v1/kb/triplets/{triplet_id}", dependencies=[writes])
    def delete(triplet_id: int):
        return _triplet_json(kb.delete(_existing_id(triplet_id)))

    @app.post("/v1/kb/forget", dependencies=[writes])
    def forget(body: ForgetRequest):
        return {"entity": body.entity, "forgotten": kb.forget(body.entity)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html")

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


def _existing_id(triplet_id: int) -> int:
    """Ids are SQLite rowids: one past their range names no triplet (and would overflow the query)."""
    if not 1 <= triplet_id <= SQLITE_ID_MAX:
        raise NotFound(f"no triplet with id {triplet_id}")
    return triplet_id


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


def _error(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": status, **extra}}, status_code=status, headers=headers)


class _Gate:
    """Checks made before a request reaches a route: the Host header and the size of the body.

    Without a key on loopback, any web page the user opens could reach the server through a name of its
    own that resolves to 127.0.0.1 (DNS rebinding); only local Host names are served then. The body cap
    keeps a huge upload from being read in full."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.limit = app, config.max_body_bytes
        self.check_host = config.api_key is None and config.bind_host in LOOPBACK

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.check_host and _host_name(headers.get("host", "")) not in LOOPBACK:
            message = f"Host {headers.get('host', '')!r} is not served: without --api-key this server answers only localhost, 127.0.0.1 and [::1]"
            return await _error(421, message)(scope, receive, send)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await _error(413, self._too_large())(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # a chunked body declares no length
                raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> str:
        return f"the request body exceeds the server's cap of {self.limit} bytes"


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: "127.0.0.1:8000" → "127.0.0.1", "[::1]:80" → "::1"."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
            problems.append("malformed JSON" if e["type"] == "json_invalid" else f"{where}: {e['msg']}")
        return _error(400, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own too, and the router's 404 and 405
    async def http(request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            message = f"the body is not UTF-8: byte {exc.__cause__.start} ({exc.__cause__.reason}); send UTF-8 JSON"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {(exc.headers or {}).get('Allow', 'none')})"
        return _error(exc.status_code, message, exc.headers)

    @app.exception_handler(NotFound)
    async def not_found(request, exc: NotFound):
        return _error(404, str(exc))

    @app.exception_handler(Ambiguous)
    async def ambiguous(request, exc: Ambiguous):
        return _error(409, str(exc), candidates=list(exc.candidates))

    @app.exception_handler(Busy)
    async def busy(request, exc: Busy):
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(sqlite3.OperationalError)
    async def locked(request, exc: sqlite3.OperationalError):
        if "locked" in str(exc) or "busy" in str(exc):  # another process holds the KB file's write lock
            return _error(503, "the knowledge base is busy with another writer; try again", {"Retry-After": "1"})
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _internal(exc)

    @app.exception_handler(LmlmError)
    async def bad(request, exc: LmlmError):
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        return _internal(exc)  # Starlette raises it again after this answer, and uvicorn logs the traceback


def _internal(exc: Exception) -> JSONResponse:
    return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


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


async def _stream(batcher: Batcher, lmlm: LMLM, prompts: list[str], prompt_ids: list[list[int]], cfg: GenerationConfig, head: dict,
                  alone: bool):
    """Server-sent events of the clean text as it grows, one choice per prompt; lookups in the last event.
    The stream always ends with ``[DONE]``, after an error event if generation failed."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    decode = functools.partial(lmlm.engine.tokenizer.decode, skip_special_tokens=True)
    rows = [_VisibleText(decode, lmlm.engine.tokens, _inside_call(ids, lmlm.engine.tokens)) for ids in prompt_ids]
    sent = [""] * len(prompts)

    def on_token(row: int, token: int, forced: bool) -> None:  # on the engine thread
        if delta := rows[row].push(token):
            sent[row] += delta
            loop.call_soon_threadsafe(events.put_nowait, (row, delta))

    def chunk(choices: list[dict]) -> str:
        return f"data: {json.dumps({**head, 'choices': choices})}\n\n"

    done = asyncio.ensure_future(batcher.generate(prompts, cfg, on_token, alone=alone))
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
        return {"message": str(e), "code": 400}
    return {"message": f"internal error ({type(e).__name__}); the server log has the details", "code": 500}


def serve(model: str, kb: str, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None) -> None:
    import uvicorn

    from lmlm.kb import SqliteKB

    if not Path(kb).exists():
        raise LmlmError(f"{kb}: no such knowledge base (build one with lmlm kb build)")
    lmlm = LMLM.from_pretrained(model, kb=SqliteKB(kb))
    lmlm.kb.embed()  # vectors and indexes now, not on the first request
    config = dataclasses.replace(config or ServeConfig(), bind_host=host)
    app = create_app(lmlm, config, model_name=Path(model).name)
    log.info("serving %s with %s on http://%s:%d", model, kb, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
