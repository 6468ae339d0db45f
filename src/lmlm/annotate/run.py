"""Running an annotator over a corpus file.

The aligned annotator is fast and deterministic: it reads, annotates and writes atomically. LLM annotators are
slow and fail in many ways: each result is appended to a JSONL file as it arrives, so a killed run resumes
where it stopped; raw outputs are cached; invalid answers are repaired, asked once more, or rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from lmlm import markup
from lmlm.annotate.aligned import AlignedAnnotator, AlignStats
from lmlm.annotate.validate import Verdict, check_annotation
from lmlm.corpus import read_corpus, write_corpus
from lmlm.errors import LmlmError

log = logging.getLogger(__name__)


def _kb_triplets(kb: str | os.PathLike):
    from lmlm.kb.opening import open_kb, resolve_kb_spec
    from lmlm.kb.pg_schema import is_url

    target = resolve_kb_spec(kb)
    if is_url(target) or Path(target).suffix in (".sqlite", ".db"):
        with open_kb(target) as store:
            return [(e, r, v) for _, e, r, v, *_ in store.triplets()]
    from lmlm.kb.io import read_any

    return [row[:3] for row in read_any(target)]


def annotate_aligned(src: str | os.PathLike, out: str | os.PathLike, kb: str | os.PathLike | None = None) -> dict:
    """Annotate every example's ``text``: against a KB, or against the example's own lookups."""
    corpus = read_corpus(src, require=("text",))
    annotator = AlignedAnnotator(_kb_triplets(kb) if kb else ())
    stats = AlignStats()
    start = time.perf_counter()
    results = []
    for example in tqdm(corpus.examples, desc="annotating", unit="passage", disable=len(corpus.examples) < 1000):
        own = markup.triplets(example["annotated_text"]) if kb is None and "annotated_text" in example else None
        if kb is None and own is None:
            own = []
        results.append({**example, "annotated_text": annotator.annotate(example["text"], own, stats), "annotator": "aligned"})
    seconds = time.perf_counter() - start
    write_corpus(out, results, {**corpus.metadata, "annotator": "aligned"})
    return {"passages": stats.passages, "lookups": stats.lookups, "facts_not_found": stats.facts_not_found,
            "passages_per_second": round(stats.passages / max(seconds, 1e-9))}


# --- LLM backends: resumable, cached, appended as results arrive ---------------------------------------------

RETRY_TEMPERATURE = 0.7  # a second try that repeats the first answer word for word would be no try


class AnnotationCache:
    """Raw annotator outputs on disk, keyed by (model, prompt version, text)."""

    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, output TEXT NOT NULL)")
        self.pending = 0

    @staticmethod
    def key(model: str, prompt_id: str, text: str) -> str:
        return hashlib.sha256(json.dumps([model, prompt_id, text]).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT output FROM outputs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, output: str) -> None:
        # committed in groups: a kill loses at most the last few outputs, which are then asked again
        self.db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?)", (key, output))
        self.pending += 1
        if self.pending >= 64:
            self.db.commit()
            self.pending = 0

    def close(self) -> None:
        self.db.commit()
        self.db.close()


@dataclass
class RunSummary:
    inputs: int = 0
    already_done: int = 0  # skipped by --resume
    annotated: int = 0
    repaired: int = 0  # annotated after a safe repair
    retried: int = 0  # invalid first answers asked again
    from_cache: int = 0
    request_retries: int = 0  # transient HTTP failures retried
    rejected: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        done = self.annotated + sum(self.rejected.values())
        return {**asdict(self), "rejected": dict(self.rejected), "repairs": dict(self.repairs), "seconds": round(self.seconds, 2),
                "passages_per_second": round(done / max(self.seconds, 1e-9), 1)}


def example_ids(examples: list[dict]) -> list[str]:
    """Each example's ``id`` field, or its position in the file; they must be unique to resume by."""
    ids = [str(e.get("id", i)) for i, e in enumerate(examples)]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise LmlmError(f"example id {dup!r} occurs more than once: ids must be unique to resume")
    return ids


def done_ids(out: Path) -> set[str]:
    """Ids already written to ``out``. A last line cut short by a kill is removed first, and so are the
    results of failed requests: an outage ended those, not the text, so they are asked again."""
    if not out.exists():
        return set()
    raw = out.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if len(keep) < len(raw):
        log.warning("%s: dropping a last line cut short (%d bytes) before resuming", out, len(raw) - len(keep))
    lines = keep.decode("utf-8").splitlines()
    ids, kept = set(), []
    for n, line in enumerate(lines, 1):
        try:
            result = json.loads(line)
            key = str(result["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise LmlmError(f"{out}:{n}: not an annotation result line; refusing to resume into it") from None
        if str(result.get("rejected", "")).startswith("request_failed"):
            continue
        ids.add(key)
        kept.append(line + "\n")
    if failed := len(lines) - len(kept):
        log.warning("%s: asking again for the %d passages whose requests failed", out, failed)
    if failed or len(keep) < len(raw):
        _replace(out, "".join(kept))
    return ids


def _replace(path: Path, text: str) -> None:
    """Rewrite ``path`` whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Appender:
    """Result lines appended to ``path``, which is created by the first one: a run that stops before any
    result (a refused key, an unreachable endpoint) leaves no file that the rerun would refuse."""

    def __init__(self, path: Path):
        self.path, self.file = path, None

    def write(self, line: str) -> None:
        if self.file is None:
            self.file = open(self.path, "a", encoding="utf-8")
        self.file.write(line)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def annotate_llm(src: str | os.PathLike, out: str | os.PathLike, backend, resume: bool = False,
                 cache: str | os.PathLike | None = None) -> dict:
    """Annotate every example of ``src`` with ``backend``, one JSONL line per example in ``out``."""
    out = Path(out)
    if out.suffix != ".jsonl":
        raise LmlmError(f"{out}: LLM annotation appends results as they arrive, so --out must be a .jsonl file")
    if out.exists() and not resume:
        raise LmlmError(f"{out} exists: pass --resume to continue it, or remove it")
    corpus = read_corpus(src, require=("text",))
    ids = example_ids(corpus.examples)
    finished = done_ids(out)
    todo = [(key, example) for key, example in zip(ids, corpus.examples) if key not in finished]
    summary = RunSummary(inputs=len(ids), already_done=len(ids) - len(todo))
    store = AnnotationCache(cache or out.with_name(out.name + ".cache.sqlite"))
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sink = _Appender(out)
    try:
        with tqdm(total=len(todo), desc="annotating", unit="passage") as bar:
            run = _Run(backend, store, sink, bar, summary, dict(todo))
            asyncio.run(run.all())
    finally:
        sink.close()
        store.close()
        summary.request_retries = backend.retries
        summary.seconds = time.perf_counter() - start
    return summary.to_dict()


@dataclass
class _Run:
    backend: object
    cache: AnnotationCache
    sink: _Appender
    bar: tqdm
    summary: RunSummary
    examples: dict[str, dict]

    async def all(self) -> None:
        """First tries stream from the backend; an invalid answer is queued for a retry at once."""
        retries: asyncio.Queue = asyncio.Queue()

        async def first_tries() -> None:
            async for key, output in self._first_outputs():
                if not self._finish(key, output, final=False):
                    self.summary.retried += 1
                    await retries.put((key, self.examples[key]["text"]))
            await retries.put(None)

        async def retried():
            while (item := await retries.get()) is not None:
                yield item

        async def second_tries() -> None:
            async for key, output in self.backend.stream(retried(), RETRY_TEMPERATURE):
                self._finish(key, output, final=True)

        await asyncio.gather(first_tries(), second_tries())

    async def _first_outputs(self):
        fresh = []
        for key, example in self.examples.items():
            cached = self.cache.get(self._cache_key(example))
            if cached is None:
                fresh.append((key, example["text"]))
            else:
                self.summary.from_cache += 1
                yield key, cached

        async def items():
            for item in fresh:
                yield item

        async for key, output in self.backend.stream(items(), 0.0):
            if not isinstance(output, Exception):
                self.cache.put(self._cache_key(self.examples[key]), output)
            yield key, output

    def _cache_key(self, example: dict) -> str:
        return AnnotationCache.key(self.backend.model_id, self.backend.prompt_id, example["text"])

    def _finish(self, key: str, output, final: bool) -> bool:
        """Write the result line if ``output`` is acceptable or this was the last try; False to try again."""
        example = self.examples[key]
        if isinstance(output, Exception):
            verdict = Verdict(None, reason=f"request_failed: {output}")
        else:
            verdict = check_annotation(example["text"], output)
        if not verdict.ok and not final:
            return False
        line = {**example, "id": example.get("id", key), "annotator": self.backend.model_id, "prompt_id": self.backend.prompt_id}
        if verdict.ok:
            line.update(annotated_text=verdict.annotated, repairs=verdict.repairs)
            self.summary.annotated += 1
            self.summary.repaired += bool(verdict.repairs)
            self.summary.repairs.update(verdict.repairs)
        else:
            line["rejected"] = verdict.reason
            self.summary.rejected[verdict.reason.split(":")[0]] += 1
        self.sink.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.bar.update()
        return True
