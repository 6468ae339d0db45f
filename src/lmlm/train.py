"""Pretraining an LMLM or a Standard baseline on a built dataset, with the HF ``Trainer``.

The mode is the dataset's: ``lmlm data build --mode lmlm|standard``. The loss is the model's own
causal-LM cross-entropy on the precomputed labels. The same command runs unchanged under
``torchrun`` or ``accelerate launch`` (DDP; FSDP with ``fsdp: "full_shard auto_wrap"``): the
Trainer reads the launcher's environment, and the only distributed code here is configuration.
Checkpoints are plain HF folders (config.json, model.safetensors, the tokenizer with the four
lookup tokens) that ``AutoModelForCausalLM`` and ``AutoTokenizer`` load as they are.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmlm.data import PackedDataset
from lmlm.errors import LmlmError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str = field(metadata={"help": "a dataset built by 'lmlm data build' (its mode decides LMLM or Standard)"})
    out: str = field(metadata={"help": "output folder: the final HF checkpoint, checkpoint-N folders, log.jsonl"})
    model: str = field(default="tiny", metadata={"help": "a preset (tiny, small, llama2-176m, llama2-382m, gpt2-124m, gpt2-355m)"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder; default: the one saved with the dataset"})
    eval_data: str | None = field(default=None, metadata={"help": "a dataset for evaluation (perplexity variants)"})
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps; the schedule spans them"})
    epochs: float = field(default=0.0, metadata={"help": "if > 0, train this many epochs instead of max_steps"})
    stop_after: int = field(default=0, metadata={"help": "stop (with a checkpoint) after this many steps of this run, counted from "
                                                          "the resumed step, keeping the schedule (0: run to the end)"})
    batch_size: int = field(default=16, metadata={"help": "blocks per device per micro-step"})
    grad_accum: int = field(default=1, metadata={"help": "micro-steps per optimizer step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW, cosine decay after warmup)"})
    warmup_steps: int = field(default=50)
    weight_decay: float = field(default=0.1)
    adam_beta2: float = field(default=0.95)
    max_grad_norm: float = field(default=1.0)
    precision: str = field(default="auto", metadata={"help": "auto (bf16 where the hardware has it), bf16, or fp32"})
    gradient_checkpointing: bool = field(default=False)
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps (0: at the end only)"})
    eval_blocks: int = field(default=64, metadata={"help": "blocks of eval_data used per evaluation"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: the final model only)"})
    log_every: int = field(default=10)
    tensorboard: bool = field(default=False)
    fsdp: str = field(default="", metadata={"help": 'FSDP options for the Trainer, e.g. "full_shard auto_wrap"'})
    seed: int = field(default=0)
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint-N in out"})


def _precision(setting: str) -> bool:
    import torch

    if setting not in ("auto", "bf16", "fp32"):
        raise LmlmError(f"config key 'precision': expected auto, bf16 or fp32, got {setting!r}")
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return setting == "bf16" or (setting == "auto" and has_bf16)


class _TrainBlocks:
    """The packed blocks as the model's inputs: ids and labels only."""

    def __init__(self, dataset: PackedDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        return {"input_ids": item["input_ids"], "labels": item["labels"]}


def train(cfg: TrainConfig):
    """Train and save; returns (final metrics, the trained model)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from lmlm.metrics import dataset_perplexities
    from lmlm.models import TokenIds, build_model, count_parameters
    from lmlm.tokenizer import load_tokenizer

    data = PackedDataset(cfg.data)
    tokenizer = load_tokenizer(cfg.tokenizer or Path(cfg.data) / "tokenizer")
    data.check_tokenizer(tokenizer)
    eval_data = PackedDataset(cfg.eval_data) if cfg.eval_data else None
    if eval_data:
        eval_data.check_tokenizer(tokenizer)
    tokens = TokenIds(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    try:
        model = build_model(cfg.model, tokens, context=data.meta["block_size"], seed=cfg.seed)
    except ValueError as e:
        raise LmlmError(f"config key 'model': {e}") from None
    log.info("%s model, %.1fM parameters, %s data (%d blocks of %d)", cfg.model, count_parameters(model) / 1e6,
             data.meta["mode"], len(data), data.meta["block_size"])
    out = Path(cfg.out)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * data.meta["block_size"]

    class LMLMTrainer(Trainer):
        def log(self, logs: dict, *args, **kwargs) -> None:
            logs = dict(logs)
            now = time.perf_counter()
            if "loss" in logs:
                last_step, last_time = self._speed_mark
                steps = self.state.global_step - last_step
                if steps > 0:
                    logs["tokens_per_second"] = round(steps * tokens_per_step * self.args.world_size / (now - last_time))
                self._speed_mark = (self.state.global_step, now)
            if self.is_world_process_zero():
                with open(out / "log.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")
            super().log(logs, *args, **kwargs)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            ppl = dataset_perplexities(self.model, eval_data, self.args.per_device_eval_batch_size, cfg.eval_blocks)
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in ppl.items()}
            self.log(metrics)
            self.model.train()
            return metrics

    class RunStart(TrainerCallback):
        """Counts speed and ``stop_after`` from the step this run starts at (the checkpoint's, on resume)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.first_step = state.global_step
            trainer._speed_mark = (state.global_step, time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if cfg.stop_after and state.global_step - self.first_step >= cfg.stop_after:
                control.should_save = control.should_training_stop = True

    out.mkdir(parents=True, exist_ok=True)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun and accelerate launch
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=-1 if cfg.epochs > 0 else cfg.max_steps,
        num_train_epochs=cfg.epochs if cfg.epochs > 0 else 1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        bf16=_precision(cfg.precision),
        eval_strategy="steps" if eval_data and cfg.eval_every else "no",
        eval_steps=cfg.eval_every or None,
        save_strategy="steps" if cfg.save_every else "no",  # stop_after saves through RunStart
        **{checkpointing: cfg.gradient_checkpointing},
        save_steps=cfg.save_every or 1,
        logging_steps=cfg.log_every,
        report_to=["tensorboard"] if cfg.tensorboard else [],
        seed=cfg.seed,
        data_seed=cfg.seed,
        ddp_backend="gloo" if distributed and not torch.cuda.is_available() else None,
        fsdp=cfg.fsdp,
        use_cpu=not torch.cuda.is_available(),
        dataloader_drop_last=True,
    )
    trainer = LMLMTrainer(model=model, args=args, train_dataset=_TrainBlocks(data), processing_class=tokenizer, callbacks=[RunStart()])
    resume = _last_checkpoint(out) if cfg.resume else None
    if cfg.resume and resume is None:
        raise LmlmError(f"{out}: nothing to resume (no checkpoint-N folder)")
    if resume and trainer.is_world_process_zero():
        _drop_log_after(out / "log.jsonl", _checkpoint_step(resume))
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step}
    if eval_data:
        metrics.update(trainer.evaluate())
    if trainer.state.global_step >= trainer.state.max_steps:
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            (out / "lmlm_training.json").write_text(json.dumps({"config": asdict(cfg), "data": data.meta, "metrics": metrics}, indent=1))
    return metrics, trainer.model


def _last_checkpoint(out: Path) -> str | None:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return str(out / f"checkpoint-{max(steps)}") if steps else None


def _checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def _drop_log_after(path: Path, step: int) -> None:
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



def launch_training(cfg: TrainConfig, log_path: Path) -> subprocess.Popen:
    """``lmlm train`` with ``cfg`` in a process of its own on one core, so two models train at once."""
    args = [sys.executable, "-m", "lmlm", "train"]
    for key, value in asdict(cfg).items():
        if value is not None and value != "":
            args += ["--" + key.replace("_", "-"), str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(args, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env)
