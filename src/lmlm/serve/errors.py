"""The one error shape of the API, ``{"error": {"message", "code"}}``, and the handlers that give every failure it.

Every refusal, from FastAPI's validation to the knowledge base's own errors, passes through here, so a
client never meets another shape, a traceback or a bare 500 page.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmlm.errors import Ambiguous, Busy, LmlmError, NotFound


def error_response(status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": error_body(status, message, **extra)}, status_code=status, headers=headers)


def error_body(status: int, message: str, **extra) -> dict:
    return {"message": message, "code": status, **extra}


def internal_message(exc: Exception) -> str:
    """What a client learns of an unexpected failure: its type only, the details stay in the server log."""
    return f"internal error ({type(exc).__name__}); the server log has the details"


def install_error_handlers(app: FastAPI) -> None:
    _install_http_handlers(app)
    _install_lmlm_handlers(app)


def _install_http_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
            problems.append("malformed JSON" if e["type"] == "json_invalid" else f"{where}: {e['msg']}")
        return error_response(400, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own too, and the router's 404 and 405
    async def http(request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            message = f"the body is not UTF-8: byte {exc.__cause__.start} ({exc.__cause__.reason}); send UTF-8 JSON"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {(exc.headers or {}).get('Allow', 'none')})"
        return error_response(exc.status_code, message, exc.headers)


def _install_lmlm_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def not_found(request, exc: NotFound):
        return error_response(404, str(exc))

    @app.exception_handler(Ambiguous)
    async def ambiguous(request, exc: Ambiguous):
        return error_response(409, str(exc), candidates=list(exc.candidates))

    @app.exception_handler(Busy)
    async def busy(request, exc: Busy):
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(LmlmError)
    async def bad(request, exc: LmlmError):
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        return error_response(500, internal_message(exc))  # Starlette raises it again after this answer, and uvicorn logs the traceback
