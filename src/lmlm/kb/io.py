"""Knowledge-base file formats: the reference database JSON, JSONL triplets, and annotated corpora
(whose lookups are the facts). Each reader yields (entity, relation, value, source, example_id)."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from lmlm import markup
from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError
from lmlm.files import atomic_write, load_json, read_jsonl, reading
from lmlm.kb.fields import row_problem

log = logging.getLogger(__name__)


def read_reference_db(path: str | os.PathLike) -> Iterator[tuple]:
    """``{"entities", "relationships", "return_values", "triplets": [[e, r, v], ...]}``."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("triplets"), list):
        raise LmlmError(f'{path}: expected a database object with a "triplets" list')
    return _reference_rows(path, data)


def _reference_rows(path: Path, data: dict) -> Iterator[tuple]:
    for i, triplet in enumerate(data["triplets"]):
        if not (isinstance(triplet, list) and len(triplet) == 3):
            raise LmlmError(f"{path}: triplet {i} is not an [entity, relation, value] list")
        yield _noted((*triplet, path.name, None), f"{path}: triplet {i}")


def _noted(row: tuple, where: str) -> tuple:
    """``row``, with a warning naming where it came from if the store will refuse it (it is skipped, the rest kept)."""
    if problem := row_problem(*row):
        log.warning("%s: %s; row skipped", where, problem)
    return row


def read_jsonl_triplets(path: str | os.PathLike) -> Iterator[tuple]:
    """One ``{"entity", "relation", "value"[, "source", "example_id"]}`` object per line."""
    path = Path(path)
    for lineno, row in read_jsonl(path, ("entity", "relation", "value")):
        fields = row["entity"], row["relation"], row["value"], row.get("source", path.name), _str_or_none(row.get("example_id"))
        yield _noted(fields, f"{path}:{lineno}")


def read_queries(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Lines of ``{"entity", "relation"}``, both strings."""
    queries = []
    for lineno, row in read_jsonl(Path(path), ("entity", "relation")):
        if wrong := [k for k in ("entity", "relation") if not isinstance(row[k], str)]:
            raise LmlmError(f"{path}:{lineno}: {' and '.join(wrong)} must be a string")
        queries.append((row["entity"], row["relation"]))
    return queries


def read_annotated(path: str | os.PathLike) -> Iterator[tuple]:
    """Every well-formed or repaired lookup of an annotated corpus; the example's id (or index) is its provenance."""
    corpus = read_corpus(path)
    for i, example in enumerate(corpus.examples):
        example_id = str(example.get("id", i))
        for entity, relation, value in markup.triplets(example["annotated_text"]):
            yield _noted((entity, relation, value, corpus.path.name, example_id), f"{corpus.path}: example {example_id}")


def read_any(path: str | os.PathLike) -> Iterator[tuple]:
    """A reference database JSON, JSONL triplets, or an annotated corpus, told apart by content."""
    path = Path(path)
    if path.suffix == ".jsonl":
        with reading(path), path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        return read_annotated(path) if '"annotated_text"' in first else read_jsonl_triplets(path)
    data = load_json(path)
    if isinstance(data, dict) and "triplets" in data:
        return read_reference_db(path)
    return read_annotated(path)


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def export(triplets: Iterator[tuple], out: str | os.PathLike) -> int:
    """Write live triplets as a reference database JSON (``.json``) or JSONL (``.jsonl``)."""
    out = Path(out)
    rows = list(triplets)
    with atomic_write(out) as f:
        if out.suffix == ".jsonl":
            for tid, entity, relation, value, source, example_id, created, updated in rows:
                record = {"id": tid, "entity": entity, "relation": relation, "value": value, "source": source, "example_id": example_id}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            db = {
                "entities": sorted({r[1] for r in rows}),
                "relationships": sorted({r[2] for r in rows}),
                "return_values": sorted({r[3] for r in rows}),
                "triplets": [[r[1], r[2], r[3]] for r in rows],
            }
            json.dump(db, f, ensure_ascii=False, indent=1)
    return len(rows)


def import_files(kb, paths: list[str | os.PathLike]) -> dict[str, dict]:
    """Import each file into ``kb``; one transaction per file. Returns per-file counts."""
    report = {}
    for path in paths:
        stats = kb.import_triplets(read_any(path))
        report[str(path)] = vars(stats)
    return report


def build(paths: list[str | os.PathLike], out: str | os.PathLike, encoder: str | None = None, embed: bool = True) -> dict:
    """Build a fresh KB from ``paths`` into a temp file and rename it over ``out`` only when complete."""
    from lmlm.kb.sqlite import SqliteKB

    out = Path(out)
    if out.is_dir():
        raise LmlmError(f"{out}: is a directory, expected a knowledge base file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.building")
    for stale in out.parent.glob(glob.escape(tmp.name) + "*"):
        stale.unlink()
    _remove_killed_builds(out)
    try:
        with SqliteKB(tmp, encoder=encoder, create=True) as kb:
            report = {"files": import_files(kb, paths)}
            if embed:
                report["embedded"] = kb.embed()
            report["stats"] = kb.stats()
        for suffix in ("-wal", "-shm"):
            Path(f"{out}{suffix}").unlink(missing_ok=True)
        for index_file in out.parent.glob(f"{glob.escape(tmp.name)}.*.faiss"):
            os.replace(index_file, out.parent / index_file.name.replace(tmp.name, out.name, 1))
        os.replace(tmp, out)
    finally:
        for leftover in out.parent.glob(glob.escape(tmp.name) + "*"):
            leftover.unlink()
    return report


def _remove_killed_builds(out: Path) -> None:
    """Remove the temp files (``.OUT.PID.building*``) of earlier builds into ``out`` whose process is gone."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(\d+)\.building")
    for leftover in out.parent.glob(f".{glob.escape(out.name)}.*.building*"):
        match = pattern.match(leftover.name)
        if match and not _process_alive(int(match.group(1))):
            log.info("removing %s, left by a build that was killed", leftover)
            leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or no pid at all: leave its files alone
        pass
    return True
