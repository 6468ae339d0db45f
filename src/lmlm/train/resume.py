"""Resuming a run: its last checkpoint, and a log that holds each step once across the runs that wrote it."""

from __future__ import annotations

import json
import os
from pathlib import Path


def last_checkpoint(out: Path) -> str | None:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return str(out / f"checkpoint-{max(steps)}") if steps else None


def checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def drop_log_after(path: Path, step: int) -> None:
    """Keep the log lines up to ``step``: the resumed run logs the later steps again. Temp file + rename, so a
    crash here leaves the old log whole."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if _logged_by(line, step)]
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("".join(kept), encoding="utf-8")
    os.replace(temp, path)


def _logged_by(line: str, step: int) -> bool:
    """Whether a log line was written at ``step`` or before; a line cut off by a crash was not."""
    try:
        return json.loads(line)["step"] <= step
    except (ValueError, KeyError, TypeError):
        return False


def logged_losses(out: str | Path) -> list[float]:
    """The logged training losses, in order (for tests and reports)."""
    path = Path(out) / "log.jsonl"
    return [row["loss"] for row in map(json.loads, path.read_text().splitlines()) if "loss" in row] if path.exists() else []
