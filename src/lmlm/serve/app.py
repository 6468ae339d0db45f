"""``create_app``: the FastAPI app with its routes (generation, the knowledge base, the web page), and
``serve``, which loads a model and runs the app under uvicorn.

KB edits run on the request's own thread under the KB's lock and are committed before their response is
sent; every lookup made after that sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Callable

from fastapi import Depends, FastAPI, Query, params
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from lmlm.engine import LMLM
from lmlm.errors import LmlmError, NotFound
from lmlm.kb import KnowledgeBase
from lmlm.serve.auth import Gate, guard
from lmlm.serve.batcher import Batcher
from lmlm.serve.completions import add_completions_route
from lmlm.serve.config import ServeConfig
from lmlm.serve.errors import install_error_handlers
from lmlm.serve.generation import Generation
from lmlm.serve.responses import result_json, triplet_json
from lmlm.serve.schemas import ForgetRequest, GenerateRequest, NewTriplet, NewValue

log = logging.getLogger(__name__)

WEB = Path(__file__).parent.parent / "web"
SQLITE_ID_MAX = 2**63 - 1


def create_app(lmlm: LMLM, config: ServeConfig | None = None, model_name: str = "lmlm", defaults: dict | None = None) -> FastAPI:
    """``defaults``: generation options (of the ``serve`` surface) that a request leaving them out gets."""
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
    app.add_middleware(Gate, config=config)
    install_error_handlers(app)
    reads = Depends(guard(config, write=False))
    writes = Depends(guard(config, write=True))
    gen = Generation(lmlm, batcher, config, model_name, dict(defaults or {}))
    _add_generate_routes(app, gen, reads)
    add_completions_route(app, gen, reads)
    _add_kb_routes(app, lmlm.kb, reads, writes)
    _add_page(app)
    return app


def _add_generate_routes(app: FastAPI, gen: Generation, reads: params.Depends) -> None:
    @app.get("/health")
    def health():
        return {"status": "ok", "model": gen.model_name, "engine_batches": gen.batcher.batches}

    @app.post("/v1/generate", dependencies=[reads])
    async def generate(body: GenerateRequest):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        cfg, _ = gen.plan(body, prompts)
        results = [result_json(r) for r in await gen.run(prompts, cfg, body)]
        return results[0] if isinstance(body.prompt, str) else {"results": results}


def _add_kb_routes(app: FastAPI, kb: KnowledgeBase, reads: params.Depends, writes: params.Depends) -> None:
    @app.get("/v1/kb/search", dependencies=[reads])
    def search(q: str, limit: int = Query(20, ge=1, le=200)):
        return {"results": [triplet_json(t) for t in kb.search(q, limit)]}

    @app.get("/v1/kb/entity/{name:path}", dependencies=[reads])  # a name may hold a "/" (AC/DC)
    def entity(name: str):
        return {"entity": name, "facts": [triplet_json(t) for t in kb.facts(name)]}

    @app.get("/v1/kb/stats", dependencies=[reads])
    def stats():
        return kb.stats()

    @app.post("/v1/kb/triplets", status_code=201, dependencies=[writes])
    def add(body: NewTriplet):
        return triplet_json(kb.add(body.entity, body.relation, body.value, source="serve"))

    @app.put("/v1/kb/triplets/{triplet_id}", dependencies=[writes])
    def update(triplet_id: int, body: NewValue):
        return triplet_json(kb.update(_existing_id(triplet_id), body.value))

    @app.delete("/v1/kb/triplets/{triplet_id}", dependencies=[writes])
    def delete(triplet_id: int):
        return triplet_json(kb.delete(_existing_id(triplet_id)))

    @app.post("/v1/kb/forget", dependencies=[writes])
    def forget(body: ForgetRequest):
        return {"entity": body.entity, "forgotten": kb.forget(body.entity)}


def _add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html")

    app.mount("/static", StaticFiles(directory=WEB), name="static")


def _existing_id(triplet_id: int) -> int:
    """Ids are SQLite rowids: one past their range names no triplet (and would overflow the query)."""
    if not 1 <= triplet_id <= SQLITE_ID_MAX:
        raise NotFound(f"no triplet with id {triplet_id}")
    return triplet_id


def serve(model: str, kb: str, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None,
          on_ready: Callable[[], None] | None = None, defaults: dict | None = None) -> None:
    """Load the model and KB, then serve them; ``on_ready`` runs once both are loaded, so a broken model
    or KB is reported alone, never after a "serving" line."""
    import uvicorn

    from lmlm.kb import open_kb
    from lmlm.kb.opening import is_shared, resolve_kb_spec

    if not is_shared(kb) and not Path(resolve_kb_spec(kb)).exists():
        raise LmlmError(f"{kb}: no such knowledge base (build one with lmlm kb build)")
    lmlm = LMLM.from_pretrained(model, kb=open_kb(kb, listen=True))  # a replica of a shared KB follows its changes
    lmlm.kb.embed()  # vectors and indexes now, not on the first request
    config = dataclasses.replace(config or ServeConfig(), bind_host=host)
    app = create_app(lmlm, config, model_name=Path(model).name, defaults=defaults)
    log.info("serving %s with %s on http://%s:%d", model, getattr(lmlm.kb, "path", kb), host, port)
    if on_ready is not None:
        on_ready()
    uvicorn.run(app, host=host, port=port, log_level="warning")
