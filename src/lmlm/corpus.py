"""Annotated corpus files: read and write the reference formats, check and convert their markup.

Formats (DESIGN.md section 2): the reference JSON ``{"examples": [...], "metadata": {...}}``,
and JSONL with one example object per line. Writes are atomic: a temp file is renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.files import atomic_write, reading


@dataclass
class Corpus:
    path: Path
    examples: list[dict]
    metadata: dict = field(default_factory=dict)
    jsonl: bool = False
    rejected: list[dict] = field(default_factory=list)  # lines an LLM annotator rejected: kept out of ``examples``


def read_corpus(path: str | os.PathLike, require: tuple[str, ...] = ("annotated_text",)) -> Corpus:
    """Read a reference JSON or JSONL corpus; every example must have the ``require`` string fields."""
    path = Path(path)
    with reading(path):
        raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl" or (raw.lstrip().startswith("{") and _looks_like_jsonl(raw)):
        corpus = Corpus(path, _parse_jsonl(path, raw), jsonl=True)
    else:
        corpus = _parse_reference_json(path, raw)
    examples, corpus.examples = corpus.examples, []
    for i, example in enumerate(examples):
        if isinstance(example, dict) and example.get("rejected"):
            corpus.rejected.append(example)
            continue
        _check_example(path, i, example, require)
        corpus.examples.append(example)
    return corpus


def _looks_like_jsonl(raw: str) -> bool:
    try:
        first = json.loads(raw.lstrip().split("\n", 1)[0])
    except json.JSONDecodeError:
        return False
    return isinstance(first, dict) and "examples" not in first


def _parse_reference_json(path: Path, raw: str) -> Corpus:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise LmlmError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if isinstance(data, list):
        return Corpus(path, data)
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise LmlmError(f'{path}: expected {{"examples": [...]}} or a JSON list of examples')
    return Corpus(path, data["examples"], data.get("metadata") or {})


def _parse_jsonl(path: Path, raw: str) -> list[dict]:
    examples = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise LmlmError(f"{path}:{lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    return examples


def _check_example(path: Path, index: int, example, require: tuple[str, ...]) -> None:
    where = f"{path}: example {index}" + (f" (id {example['id']!r})" if isinstance(example, dict) and "id" in example else "")
    if not isinstance(example, dict):
        raise LmlmError(f"{where}: expected a JSON object, got {type(example).__name__}")
    for key in require:
        if key not in example:
            raise LmlmError(f"{where}: missing {key!r}")
        if not isinstance(example[key], str):
            raise LmlmError(f"{where}: {key!r} must be a string, got {type(example[key]).__name__}")


def write_corpus(path: str | os.PathLike, examples: list[dict], metadata: dict | None = None) -> None:
    """Write JSONL if ``path`` ends in .jsonl, else the reference JSON layout."""
    with atomic_write(path) as f:
        if Path(path).suffix == ".jsonl":
            for example in examples:
                f.write(json.dumps(example, ensure_ascii=False) + "\n")
        else:
            json.dump({"examples": examples, "metadata": metadata or {}}, f, ensure_ascii=False, indent=2)


# --- check and convert ------------------------------------------------------------


def check_corpus(corpus: Corpus, show: int = 5) -> dict:
    """Markup statistics for one corpus: lookups, malformed pieces, repairs and text fidelity."""
    lookups = repaired = faithful = 0
    malformed: list[dict] = []
    for i, example in enumerate(corpus.examples):
        doc = markup.parse(example["annotated_text"])
        lookups += len(doc.lookups)
        repaired += sum(lk.repaired is not None for lk in doc.lookups)
        malformed += [{"example": i, "offset": m.offset, "reason": m.reason, "snippet": m.snippet} for m in doc.malformed]
        if "text" in example and markup.is_faithful(example["annotated_text"], example["text"]):
            faithful += 1
    n = len(corpus.examples)
    return {
        "file": str(corpus.path),
        "examples": n,
        "lookups": lookups,
        "malformed": len(malformed),
        "fidelity": round(faithful / n, 4) if n else None,
        "repaired": repaired,
        "malformed_first": malformed[:show],
    }


def convert_corpus(src: str | os.PathLike, form: markup.Form, out: str | os.PathLike) -> dict:
    """Write ``src`` to ``out`` with every ``annotated_text`` re-rendered in ``form``."""
    if Path(out).resolve() == Path(src).resolve():
        raise LmlmError(f"{out}: refusing to overwrite the input; choose another --out")
    corpus = read_corpus(src)
    dropped = 0
    for example in corpus.examples:
        doc = markup.parse(example["annotated_text"])
        dropped += len(doc.malformed)
        example["annotated_text"] = markup.render(doc.segments, form)
    write_corpus(out, corpus.examples, corpus.metadata)
    return {"file": str(out), "examples": len(corpus.examples), "malformed_dropped": dropped}
