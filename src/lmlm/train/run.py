"""``train``: loads the data and builds the model, runs ``LMLMTrainer`` on them, and saves the result;
``launch_training`` runs ``lmlm train`` in a process of its own.

torch and transformers are imported inside the functions, so that importing ``lmlm.train`` stays light.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from lmlm.data import PackedDataset
from lmlm.errors import LmlmError
from lmlm.train.config import TrainConfig
from lmlm.train.resume import checkpoint_step, drop_log_after, last_checkpoint

log = logging.getLogger(__name__)


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
    from lmlm.train.trainer import LMLMTrainer, StopAfter

    data, eval_data, tokenizer = _load_data(cfg)
    model = _build_model(cfg, data, tokenizer)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = LMLMTrainer(model=model, args=_training_arguments(cfg, evaluates=bool(eval_data)), train_dataset=_TrainBlocks(data),
                          processing_class=tokenizer, callbacks=[StopAfter(cfg.stop_after)], log_path=out / "log.jsonl",
                          tokens_per_step=cfg.batch_size * cfg.grad_accum * data.meta["block_size"], eval_data=eval_data,
                          eval_blocks=cfg.eval_blocks)
    if cfg.value_loss_every:
        trainer.add_callback(_value_loss(cfg, data, tokenizer, trainer.log))
    resume = _resume_point(cfg, out, trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step, "bf16": trainer.args.bf16}
    if eval_data:
        metrics.update(trainer.evaluate())
    if trainer.state.global_step >= trainer.state.max_steps:
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            (out / "lmlm_training.json").write_text(json.dumps({"config": asdict(cfg), "data": data.meta, "metrics": metrics}, indent=1))
    # without accelerate's autocast wrapper, which bf16 training leaves on the model's forward
    return metrics, trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def _value_loss(cfg: TrainConfig, data: PackedDataset, tokenizer, log):
    from lmlm.train.value_loss import ValueLoss, ValueProbe

    sources = [cfg.value_loss_data] if cfg.value_loss_data else data.meta["sources"]
    probe = ValueProbe.from_corpus(sources, tokenizer, data.meta["mode"], cfg.value_loss_docs)
    return ValueLoss(probe, cfg.value_loss_every, log)


def _load_data(cfg: TrainConfig):
    """The training data, the eval data (or None) and the tokenizer, checked to be the one both were built with."""
    from lmlm.tokenizer import load_tokenizer

    data = PackedDataset(cfg.data)
    tokenizer = load_tokenizer(cfg.tokenizer or Path(cfg.data) / "tokenizer")
    data.check_tokenizer(tokenizer)
    eval_data = PackedDataset(cfg.eval_data) if cfg.eval_data else None
    if eval_data:
        eval_data.check_tokenizer(tokenizer)
    return data, eval_data, tokenizer


def _build_model(cfg: TrainConfig, data: PackedDataset, tokenizer):
    from lmlm.models import TokenIds, build_model, count_parameters

    tokens = TokenIds(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    try:
        model = build_model(cfg.model, tokens, context=data.meta["block_size"], seed=cfg.seed)
    except ValueError as e:
        raise LmlmError(f"config key 'model': {e}") from None
    log.info("%s model, %.1fM parameters, %s data (%d blocks of %d)", cfg.model, count_parameters(model) / 1e6,
             data.meta["mode"], len(data), data.meta["block_size"])
    return model


def _training_arguments(cfg: TrainConfig, evaluates: bool):
    import torch
    from transformers import TrainingArguments

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun and accelerate launch
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
    return TrainingArguments(
        output_dir=str(Path(cfg.out)),
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
        bf16=bf16_enabled(cfg.precision),
        eval_strategy="steps" if evaluates and cfg.eval_every else "no",
        eval_steps=cfg.eval_every or None,
        save_strategy="steps" if cfg.save_every else "no",  # stop_after saves through StopAfter
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


def bf16_enabled(setting: str) -> bool:
    """Whether a run with ``precision: setting`` trains under bf16 autocast on this machine."""
    import torch

    if setting not in ("auto", "bf16", "fp32"):
        raise LmlmError(f"config key 'precision': expected auto, bf16 or fp32, got {setting!r}")
    if torch.cuda.is_available():
        try:
            has_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.3 reports native support only
            has_bf16 = torch.cuda.is_bf16_supported()
    else:  # without native bf16 matmuls (AVX512-BF16, AMX) autocast emulates them, slower than fp32
        has_bf16 = any(getattr(torch.cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return setting == "bf16" or (setting == "auto" and has_bf16)


def _resume_point(cfg: TrainConfig, out: Path, trainer) -> str | None:
    """The checkpoint to resume from (None without ``resume``); the log loses the lines it will write again."""
    if not cfg.resume:
        return None
    resume = last_checkpoint(out)
    if resume is None:
        raise LmlmError(f"{out}: nothing to resume (no checkpoint-N folder)")
    if trainer.is_world_process_zero():
        drop_log_after(out / "log.jsonl", checkpoint_step(resume))
    return resume


def launch_training(cfg: TrainConfig, log_path: Path) -> subprocess.Popen:
    """``lmlm train`` with ``cfg`` in a process of its own on one core, so two models train at once."""
    import yaml

    # the config goes as a file, not as flags, so that every field type (bools, lists) reads back as it was
    config_file = log_path.with_suffix(".yaml")
    config_file.write_text(yaml.safe_dump(asdict(cfg), sort_keys=False), encoding="utf-8")
    args = [sys.executable, "-m", "lmlm", "train", "--config", str(config_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(args, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env)
