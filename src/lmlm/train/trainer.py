"""``LMLMTrainer``, the HF ``Trainer`` as lmlm runs it, and its callbacks ``TrainingSpeed`` and ``StopAfter``.

They live at module level, apart from ``train``, so that each can be built and tested alone. Both
callbacks count from the step a run starts at, which is the checkpoint's on a resume: a resumed run's
speed and its ``stop_after`` must not include the steps of the run before it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback

from lmlm.perplexity import dataset_perplexities


class TrainingSpeed(TrainerCallback):
    """Tokens per second between two logged steps of this run."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step  # of one process
        self.mark = (0, time.perf_counter())  # (step, clock) of the last measure, or of the run's start

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark = (state.global_step, time.perf_counter())

    def tokens_per_second(self, step: int, processes: int) -> int | None:
        """The speed since the last call (or the run's start); None when no step was made since."""
        last_step, last_time = self.mark
        now = time.perf_counter()
        self.mark = (step, now)
        if step <= last_step:
            return None
        return round((step - last_step) * self.tokens_per_step * processes / (now - last_time))


class StopAfter(TrainerCallback):
    """Stops, with a checkpoint, after ``steps`` optimizer steps of this run, keeping the schedule: the same
    command rerun with ``resume`` continues for as many more. 0 never stops."""

    def __init__(self, steps: int):
        self.steps = steps
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.steps and state.global_step - self.first_step >= self.steps:
            control.should_save = control.should_training_stop = True


class LMLMTrainer(Trainer):
    """The HF ``Trainer`` that appends every log row to ``log_path`` (with the speed on loss rows) and
    evaluates the perplexity variants of ``lmlm.perplexity`` on ``eval_data``."""

    def __init__(self, *args, log_path: Path, tokens_per_step: int, eval_data=None, eval_blocks: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_path, self.eval_data, self.eval_blocks = Path(log_path), eval_data, eval_blocks
        self.speed = TrainingSpeed(tokens_per_step)
        self.add_callback(self.speed)

    def log(self, logs: dict, *args, **kwargs) -> None:
        logs = dict(logs)
        if "loss" in logs and (speed := self.speed.tokens_per_second(self.state.global_step, self.args.world_size)) is not None:
            logs["tokens_per_second"] = speed
        if self.is_world_process_zero():
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        ppl = dataset_perplexities(self.model, self.eval_data, self.args.per_device_eval_batch_size, self.eval_blocks)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in ppl.items()}
        self.log(metrics)
        self.model.train()
        return metrics
