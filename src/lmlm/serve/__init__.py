"""HTTP serving: a JSON API (OpenAI-compatible completions too), KB editing, and a web page.

The package is split by job, so each piece can be read alone:

- ``app``: ``create_app`` and its routes, and ``serve`` (uvicorn);
- ``config``: ``ServeConfig``, the server's caps and protections;
- ``batcher``: the engine thread, and concurrent requests gathered into engine batches;
- ``generation``: what the native and OpenAI routes share (caps, options to engine config, the batcher);
- ``completions``: the OpenAI-compatible completions route and its server-sent events;
- ``schemas``: the request bodies, every field bounded;
- ``responses``: the JSON of triplets and results, and the fact segments of the web page;
- ``auth``: the bearer key, the read-only guard, the Host check and the body cap;
- ``errors``: the one error shape, and the handlers that give it to every failure.

The web page's files stay in ``lmlm/web`` (package data).
"""

from lmlm.serve.app import create_app, serve
from lmlm.serve.batcher import Batcher
from lmlm.serve.config import ServeConfig
from lmlm.serve.responses import fact_segments
from lmlm.serve.schemas import CompletionRequest, GenerateOptions, GenerateRequest

__all__ = ["Batcher", "CompletionRequest", "GenerateOptions", "GenerateRequest", "ServeConfig", "create_app", "fact_segments", "serve"]
