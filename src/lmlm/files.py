"""Reading input files, where every way a file can be unreadable is a one-line error that names it; and
atomic writes: a file or a folder is written aside and renamed into place only when whole, so a failed
or interrupted write leaves what was there before, and never half of something new."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmlm.errors import LmlmError


def _as_if_created(path: str | os.PathLike, mode: int) -> None:
    """mkstemp and mkdtemp make private files; the result should look like any other written file or folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator:
    """Open a temp file beside ``path`` for text; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    _as_if_created(tmp, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A temp folder beside ``path`` to fill; it replaces ``path`` (and whatever was there) only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    _as_if_created(tmp, 0o777)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """The ways a path can fail to be a readable UTF-8 file, as one-line errors that name it."""
    try:
        yield
    except FileNotFoundError:
        raise LmlmError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LmlmError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise LmlmError(f"{path}: permission denied") from None
    except UnicodeDecodeError as e:
        raise LmlmError(f"{path}: not UTF-8 text ({e.reason})") from None


def load_json(path: Path):
    """The JSON document in ``path``; a bad file is a one-line error that names it and where."""
    try:
        with reading(path):
            return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LmlmError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def read_jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file, each checked to be an object that
    holds the ``required`` keys."""
    with reading(path), path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LmlmError(f"{path}:{lineno}:{e.colno}: invalid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise LmlmError(f"{path}:{lineno}: expected a JSON object")
            if missing := [k for k in required if k not in row]:
                raise LmlmError(f"{path}:{lineno}: missing {', '.join(map(repr, missing))}")
            yield lineno, row
