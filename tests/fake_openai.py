"""A local OpenAI-compatible chat server that stands in for a paid LLM annotator.

It answers with real annotations (from ../shared) for the texts it knows, and injects the failures real
endpoints produce, chosen per text by ``FAULTS[index % len(FAULTS)]`` so that tests know what to expect:
  ok            the annotation
  rate_limit    first request: 429 with Retry-After
  server_error  first request: 500
  timeout       first request: no answer before the client's timeout
  broken        a lookup call cut short in the middle (repairable)
  changed       the text rewritten, every time (rejected as changed_text after one retry)
  flaky         the text rewritten at temperature 0 only (accepted on the retry)
  repeated      the answer, chat-template debris, then the answer again (repairable)
  empty         an empty answer, every time (rejected as empty)

``make_app(..., reply_fault=KIND, fault_times=N)`` instead gives every text the same broken reply on its
first N requests (REPLY_FAULTS: truncated_json, not_json, empty_choices, server_error, reset).

Run as a script to serve in its own process (the throughput benchmark does): see ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FAULTS = ("ok", "rate_limit", "server_error", "timeout", "broken", "changed", "flaky", "repeated", "empty", "ok")
TIMEOUT_SLEEP = 3.0  # longer than the client timeout the tests set
REPLY_FAULTS = ("truncated_json", "not_json", "empty_choices", "server_error", "reset")


def inject(fault: str, annotation: str, temperature: float, attempt: int) -> str | None:
    """The answer for a fault, or None where the fault is an HTTP failure on this attempt."""
    if fault in ("rate_limit", "server_error", "timeout") and attempt == 1:
        return None
    if fault == "broken":
        cut = annotation.index("[dblookup(")
        return annotation[:cut] + "[dblookup('Broken Call', " + annotation[cut:]
    if fault == "changed" or (fault == "flaky" and temperature == 0):
        return annotation.replace("e", "a")
    if fault == "repeated":
        return annotation + "<|eot_id|>assistant\n" + annotation
    if fault == "empty":
        return ""
    return annotation


def make_app(answers: dict[str, str], faults: bool = True, delay: float = 0.0, reply_fault: str | None = None,
             fault_times: int = 1) -> Starlette:
    """``answers`` maps a plain text to its annotation, in a fixed order that picks each text's fault."""
    fault_of = {text: FAULTS[i % len(FAULTS)] if faults else "ok" for i, text in enumerate(answers)}
    attempts: Counter = Counter()

    async def chat(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        if text not in answers:
            return JSONResponse({"error": {"message": "unknown text"}}, status_code=400)
        attempts[text] += 1
        if delay:
            await asyncio.sleep(delay)
        if reply_fault is not None and attempts[text] <= fault_times:
            return broken_reply(reply_fault)
        fault = "ok" if reply_fault is not None else fault_of[text]
        content = inject(fault, answers[text], body.get("temperature") or 0.0, attempts[text])
        if content is None:
            if fault == "rate_limit":
                return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0.2"})
            if fault == "server_error":
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=500)
            await asyncio.sleep(TIMEOUT_SLEEP)
            content = answers[text]
        return JSONResponse(completion(body["model"], content, attempts[text]))

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    app.state.attempts = attempts
    return app


def completion(model: str, content: str, n: int = 1, choices: list | None = None) -> dict:
    message = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [message] if choices is None else choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def broken_reply(kind: str):
    """A reply real endpoints and proxies sometimes give: the status says fine, the body does not."""
    if kind == "truncated_json":
        return Response('{"id": "x", "choices": [{"message": {"content": "', media_type="application/json")
    if kind == "not_json":
        return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
    if kind == "empty_choices":
        return JSONResponse(completion("m", "", choices=[]))
    if kind == "server_error":
        return JSONResponse({"error": {"message": "overloaded"}}, status_code=500)
    if kind == "reset":
        return _reset
    raise ValueError(f"unknown reply fault {kind!r}")


async def _reset(scope, receive, send) -> None:
    """Start a reply, then drop the connection halfway through its body."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
    await send({"type": "http.response.body", "body": b'{"id": "x", ', "more_body": True})
    raise ConnectionResetError("the fake server drops the connection")


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", help="JSON object mapping text to annotation")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--faults", action="store_true")
    args = parser.parse_args()
    with open(args.answers, encoding="utf-8") as f:
        answers = json.load(f)
    uvicorn.run(make_app(answers, args.faults, args.delay), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
