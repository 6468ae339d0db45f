"""``lmlm experiment memorization``: the paper's memorization figure. Both models log the loss on the facts' value
tokens of the same fixed batch of training documents while they train (``value_loss_every`` in ``TrainConfig``;
``lmlm.train.value_loss``); this reads both logs and draws LMLM against Standard. An LMLM never trains on the
values, so its loss should stay high while the Standard model's falls as it memorizes them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lmlm.errors import LmlmError
from lmlm.experiments.charts import line_chart
from lmlm.files import atomic_write


@dataclass(kw_only=True)
class MemorizationConfig:
    lmlm: str = field(metadata={"help": "the LMLM's training folder, trained with value_loss_every > 0 (its log.jsonl)"})
    standard: str = field(metadata={"help": "the Standard model's training folder, trained the same way"})
    out: str = field(default="runs/memorization", metadata={"help": "write memorization.json and memorization.png here"})


def value_losses(folder: str | Path) -> list[tuple[int, float]]:
    """(step, value loss) of each ``value_loss`` row of ``folder/log.jsonl``, in step order."""
    path = Path(folder) / "log.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LmlmError(f"{path}: no training log; give the folder 'lmlm train' wrote") from None
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise LmlmError(f"{path}, line {n}: not JSON") from None
        if isinstance(row, dict) and "value_loss" in row:
            rows.append((int(row["step"]), float(row["value_loss"])))
    if not rows:
        raise LmlmError(f"{path}: no value_loss rows; train with value_loss_every > 0")
    return sorted(rows)


def run_memorization(cfg: MemorizationConfig) -> dict:
    """Writes ``memorization.json`` (both curves, and each model's first and last value loss) and the chart."""
    curves = {"lmlm": value_losses(cfg.lmlm), "standard": value_losses(cfg.standard)}
    report = {"curves": {name: [list(point) for point in points] for name, points in curves.items()},
              "first": {name: points[0][1] for name, points in curves.items()},
              "last": {name: points[-1][1] for name, points in curves.items()},
              "runs": {"lmlm": cfg.lmlm, "standard": cfg.standard}}
    report["summary"] = {"first": report["first"], "last": report["last"], "out": str(cfg.out)}
    out = Path(cfg.out)
    with atomic_write(out / "memorization.json") as f:
        json.dump(report, f, indent=1)
    line_chart(out / "memorization.png", {"LMLM": curves["lmlm"], "Standard": curves["standard"]}, "training step",
               "loss on the value tokens (nats)", "memorization of the facts' values")
    return report
