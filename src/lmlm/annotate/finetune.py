"""Fine-tuning an annotator with LoRA: plain text in, annotated text out (the reference's Llama-3.1-8B recipe).

The prompt is ``encode_prompt`` (the chat template where the base has one), the same the ``hf`` backend
uses; the loss is on the answer tokens only. The output directory holds the adapter and the tokenizer, and
its adapter_config.json names the base, so ``lmlm annotate --backend hf --model OUT`` loads it as it is.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmlm.annotate.prompt import encode_prompt
from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError

log = logging.getLogger(__name__)


@dataclass
class AnnotatorConfig:
    base: str = field(metadata={"help": "base causal LM: a model directory"})
    data: list[str] = field(metadata={"help": "annotated corpora (cleaned), reference JSON or JSONL"})
    out: str = field(metadata={"help": "output directory for the adapter"})
    r: int = 32
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048  # tokens of prompt + answer; longer examples are skipped, not cut (a cut answer teaches cutting)
    target_modules: str = "all-linear"
    seed: int = 0


def sft_examples(tokenizer, corpora: list[str], max_length: int) -> tuple[list[dict], int]:
    """Token ids and labels (prompt masked with -100) per example, and how many were too long."""
    rows, too_long = [], 0
    for path in corpora:
        for example in read_corpus(path, require=("text", "annotated_text")).examples:
            prompt = encode_prompt(tokenizer, example["text"])
            answer = tokenizer(example["annotated_text"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            if len(prompt) + len(answer) > max_length:
                too_long += 1
                continue
            rows.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return rows, too_long


def train_annotator(cfg: AnnotatorConfig) -> dict:
    """Train a LoRA adapter on ``cfg.data``; returns the training losses and counts."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    base = str(Path(cfg.base).resolve()) if os.path.isdir(cfg.base) else cfg.base
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.eos_token_id is None:
        raise LmlmError(f"{cfg.base}: the tokenizer has no EOS token, so the annotator could never learn to stop")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, too_long = sft_examples(tokenizer, cfg.data, cfg.max_length)
    if not rows:
        raise LmlmError(f"no training examples within {cfg.max_length} tokens in {', '.join(cfg.data)}")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
                                      task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=cfg.out, learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
                             per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
                             logging_steps=1, save_strategy="no", report_to=[], seed=cfg.seed)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    trainer.train()
    model.save_pretrained(cfg.out)
    tokenizer.save_pretrained(cfg.out)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    log.info("annotator adapter saved to %s (%d examples, %d too long)", cfg.out, len(rows), too_long)
    return {"examples": len(rows), "too_long": too_long, "steps": trainer.state.global_step, "losses": losses,
            "trainable_parameters": model.get_nb_trainable_parameters()[0], "config": asdict(cfg)}
