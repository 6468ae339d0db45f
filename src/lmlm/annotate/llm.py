"""LLM annotators: any OpenAI-compatible chat endpoint, or a local transformers model (base + LoRA adapter).

A backend streams ``(key, output)`` pairs for an async iterable of ``(key, text)`` items as they finish;
``output`` is the raw annotation, or the exception that ended the request. Items may arrive while earlier
ones run (retries do), so neither backend waits for the whole input. Validation, caching and writing are
the runner's job.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from lmlm.annotate.prompt import PROMPT_ID, chat_messages, encode_prompt
from lmlm.errors import LmlmError

log = logging.getLogger(__name__)

Items = AsyncIterable[tuple[str, str]]


class RequestFailed(Exception):
    """A request that cannot succeed for this text (a 4xx other than auth or rate limit, or retries exhausted).

    ``transient`` failures (retries exhausted) say more about the endpoint than about the text.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class InvalidReply(Exception):
    """An HTTP 200 whose body is no chat completion: cut short, a proxy's error page, no choices."""


class OpenAIBackend:
    """Chat completions with bounded concurrency, timeouts, and retries with backoff on 429, 5xx, timeouts and
    invalid replies. The run stops with an LmlmError when the endpoint cannot be reached at all, or when
    ``stop_after_failures`` requests in a row failed for good (the endpoint went down: asking on only loses time).
    """

    def __init__(self, model: str, base_url: str | None = None, concurrency: int = 16, timeout: float = 120.0,
                 max_retries: int = 6, backoff: float = 1.0, max_backoff: float = 60.0, max_tokens: int | None = None,
                 stop_after_failures: int = 8):
        import openai

        api_key = os.environ.get("OPENAI_API_KEY")
        if api_key is None and base_url is None:
            raise LmlmError("the openai backend needs OPENAI_API_KEY in the environment (or --base-url for a local server)")
        self.client = openai.AsyncOpenAI(api_key=api_key or "none", base_url=base_url, timeout=timeout, max_retries=0)
        self.model_id, self.prompt_id = model, PROMPT_ID
        self.max_retries = max_retries
        self.backoff, self.max_backoff, self.max_tokens = backoff, max_backoff, max_tokens
        self.retries = 0  # transient failures retried, over the backend's life
        self.reached = False  # has the endpoint answered anything yet?
        self.stop_after_failures, self.failures_in_row = stop_after_failures, 0
        self.gate = asyncio.Semaphore(concurrency)  # shared by concurrent streams (first tries and retries)

    async def stream(self, items: Items, temperature: float) -> AsyncIterator[tuple[str, str | Exception]]:
        results: asyncio.Queue = asyncio.Queue()

        async def one(key: str, text: str) -> None:
            try:
                await results.put((key, await self._outcome(text, temperature)))
            finally:
                self.gate.release()

        async def feed() -> None:
            running: set[asyncio.Task] = set()
            async for key, text in items:
                await self.gate.acquire()  # at most `concurrency` requests exist at once, however long the input
                task = asyncio.create_task(one(key, text))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)

        feeder = asyncio.create_task(feed())
        # the end mark follows every result, also when the feed itself failed: the loop below never waits forever
        feeder.add_done_callback(lambda _: results.put_nowait(None))
        while (result := await results.get()) is not None:
            if isinstance(result[1], LmlmError):  # a refused key or a dead endpoint ends the whole stream
                feeder.cancel()
                raise result[1]
            yield result
        await feeder  # raises what ended the feed early, if anything did

    async def _outcome(self, text: str, temperature: float) -> str | Exception:
        """The answer, or the exception that ended the request: nothing one request raises escapes it."""
        try:
            answer = await self._request(text, temperature)
        except LmlmError as e:
            return e
        except RequestFailed as e:
            failure = e
        except Exception as e:  # unforeseen, so not retried; it ends this text, never the run
            log.warning("request failed unexpectedly: %r", e)
            failure = RequestFailed(f"{type(e).__name__}: {_one_line(str(e))}", transient=True)
        else:
            self.failures_in_row = 0
            return answer
        if failure.transient:
            self.failures_in_row += 1
            if self.failures_in_row >= self.stop_after_failures:
                return LmlmError(f"the last {self.failures_in_row} requests to {self.client.base_url} all failed (the last: "
                                 f"{failure}); stopping: rerun with --resume when the endpoint works again")
        return failure

    async def _request(self, text: str, temperature: float) -> str:
        import openai
        from openai.types.chat import ChatCompletion

        for attempt in itertools.count():
            try:
                # client.post with a plain body, not chat.completions.create: the typed-parameter transform of
                # the few-shot messages costs CPU on every request, enough to cap throughput at high concurrency
                # (benchmarks/annotate_throughput.py)
                body = {"model": self.model_id, "messages": chat_messages(text), "temperature": temperature}
                if self.max_tokens:
                    body["max_tokens"] = self.max_tokens
                response = await self.client.post("/chat/completions", cast_to=ChatCompletion, body=body)
                self.reached = True
                return _content(response)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
                raise LmlmError(f"annotation endpoint refused the run: {e}") from None
            except openai.APIStatusError as e:
                self.reached = True
                if e.status_code != 429 and e.status_code < 500:
                    raise RequestFailed(f"HTTP {e.status_code}: {e.message}") from None
                failure, wait = f"HTTP {e.status_code}", _retry_after(e.response.headers)
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                if not self.reached and _refused(e):
                    raise LmlmError(f"cannot reach the annotation endpoint {self.client.base_url}: "
                                    f"{_one_line(str(e.__cause__)) or 'connection refused'}") from None
                failure, wait = type(e).__name__, None
            except (InvalidReply, ValueError) as e:  # ValueError: a body that is not JSON, or not text
                failure, wait = f"invalid reply ({_one_line(str(e))[:120]})", None
            if attempt == self.max_retries:
                raise RequestFailed(f"{failure} after {self.max_retries} retries", transient=True)
            self.retries += 1
            # full jitter keeps many clients that failed together from retrying together
            delay = wait if wait is not None else random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
            log.debug("%s; retry %d in %.2fs", failure, attempt + 1, delay)
            await asyncio.sleep(delay)


def _refused(error: Exception) -> bool:
    """Did the connection fail to open (nothing listens, no such host), rather than drop or time out?"""
    # by name: the openai client runs on httpx or on its fork httpx2, depending on its version
    return any(cls.__name__ == "ConnectError" for cls in type(error.__cause__).__mro__)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _content(response) -> str:
    """The answer in a chat completion; InvalidReply when the body is something else."""
    from openai.types.chat import ChatCompletion

    if not isinstance(response, ChatCompletion):  # the client hands back the text of a non-JSON body
        raise InvalidReply(f"not a chat completion: {str(response)[:80]!r}")
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as e:
        raise InvalidReply(f"no answer in the completion: {e}") from None
    if content is not None and not isinstance(content, str):
        raise InvalidReply(f"the answer is a {type(content).__name__}, not text")
    return content or ""


def _retry_after(headers) -> float | None:
    try:
        return max(0.0, float(headers.get("retry-after")))
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: fall back to backoff


class HFBackend:
    """A local causal LM, optionally with a LoRA adapter, generating greedily (or sampling on retries) in batches."""

    def __init__(self, model: str | os.PathLike, adapter: str | os.PathLike | None = None, batch_size: int = 8,
                 max_new_tokens: int | None = None, device: str = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, adapter = _base_and_adapter(Path(model), adapter)
        self.tokenizer = AutoTokenizer.from_pretrained(adapter or model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        net = AutoModelForCausalLM.from_pretrained(model)
        if adapter is not None:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, adapter)
        self.model = net.to(device).eval()
        self.model_id = str(adapter or model)
        self.prompt_id = PROMPT_ID
        self.batch_size, self.max_new_tokens, self.device = batch_size, max_new_tokens, device
        self.retries = 0
        self.turn = asyncio.Lock()

    async def stream(self, items: Items, temperature: float) -> AsyncIterator[tuple[str, str | Exception]]:
        batch = []
        async for item in items:
            batch.append(item)
            if len(batch) == self.batch_size:
                for result in await self._run(batch, temperature):
                    yield result
                batch = []
        for result in await self._run(batch, temperature) if batch else []:
            yield result

    async def _run(self, batch: list[tuple[str, str]], temperature: float) -> list[tuple[str, str]]:
        async with self.turn:  # first tries and retries stream at once; the model runs one batch at a time
            outputs = await asyncio.to_thread(self.annotate, [text for _, text in batch], temperature)
        return [(key, output) for (key, _), output in zip(batch, outputs)]

    def annotate(self, texts: list[str], temperature: float = 0.0) -> list[str]:
        import torch

        prompts = [encode_prompt(self.tokenizer, t) for t in texts]
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # an annotation is the text plus its lookups: about twice its tokens
        budget = self.max_new_tokens or 2 * max(len(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts) + 32
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, pad_token_id=pad, **sampling)
        return [self._decode(row[width:].tolist()) for row in out]

    def _decode(self, ids: list[int]) -> str:
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos)]
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _base_and_adapter(model: Path, adapter) -> tuple[str, str | None]:
    """A directory holding only an adapter names its base in adapter_config.json."""
    config = model / "adapter_config.json"
    if adapter is None and config.is_file():
        return json.loads(config.read_text())["base_model_name_or_path"], str(model)
    return str(model), str(adapter) if adapter else None
