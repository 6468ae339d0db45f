"""Who may do what: the bearer key and read-only guard of each route, and the gate every request passes
first (the Host check against DNS rebinding, and the body cap).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from lmlm.serve.config import ServeConfig
from lmlm.serve.errors import error_response

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def guard(config: ServeConfig, write: bool):
    """A route dependency: refuses a write on a read-only server, and a request without the key where it is needed."""

    def check(request: Request) -> None:
        if write and config.read_only:
            raise HTTPException(403, "the knowledge base is read-only on this server (--read-only)")
        if config.api_key and (write or config.protect == "all"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
                raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer KEY)")

    return check


class Gate:
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
        if self.check_host and host_name(headers.get("host", "")) not in LOOPBACK:
            message = f"Host {headers.get('host', '')!r} is not served: without --api-key this server answers only localhost, 127.0.0.1 and [::1]"
            return await error_response(421, message)(scope, receive, send)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, self._too_large())(scope, receive, send)
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


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "127.0.0.1:8000" → "127.0.0.1", "[::1]:80" → "::1"."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
