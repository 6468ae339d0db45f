"""``Batcher``: the engine thread, and the gathering of concurrent generate requests into engine batches.

Generation runs on one engine thread. Requests that arrive within a short window, or while the engine is
busy, are gathered into one engine batch (one batch per distinct set of options, never more rows than
``max_batch``), so concurrent clients share forward passes. A sampled request with a seed runs alone: the
engine draws every row of a batch from one generator, so company would change its text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lmlm.engine import LMLM, GenerationConfig, GenerationResult

log = logging.getLogger(__name__)

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
        while True:
            jobs = await self._gather()
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.batch_key(), []).append(job)
            for group in groups.values():
                await self._run_group(group)

    async def _run_group(self, group: list[_Job]) -> None:
        """One engine batch; each job's future gets its own rows, or the failure."""
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.engine_thread, self._run, group)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the failure, the server goes on
            log.exception("engine batch failed")
            for job in group:
                if not job.future.done():
                    job.future.set_exception(e)
            return
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
