"""A draft model for the engine's speculative decoding: a small LMLM fine-tuned on the output of the
model it drafts for.

At batch 1 the engine verifies a draft model's proposed tokens in the model's next forward
(``LookupEngine(..., draft_model=...)``); how much that saves depends on how often the draft picks
the model's token. A small model trained on the same corpus agrees with the model too seldom to pay
for the draft's own steps on a CPU; fine-tuned on the model's greedy continuations of prompts like
those it will serve, with lookups answered by the knowledge base as at generation time, it agrees far
more often (``benchmarks/generate_speed.py`` measures it; the README quotes the figures).
The loss covers the tokens the model chose; the prompt and the forced values are context only.

    lmlm distill --model MODEL --draft SMALL_MODEL --kb KB --prompts prompts.jsonl --out DRAFT
    lmlm generate --model MODEL --draft-model DRAFT --kb KB "prompt"
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmlm.engine import LMLM, GenerationConfig, LookupEngine, LookupTokens, check_same_vocabulary
from lmlm.errors import LmlmError
from lmlm.files import atomic_directory

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    model: str = field(metadata={"help": "the checkpoint to draft for"})
    draft: str = field(metadata={"help": "a smaller checkpoint with the same tokenizer, to start from"})
    kb: str = field(metadata={"help": "the knowledge base that answers the model's lookups"})
    prompts: str = field(metadata={"help": 'JSONL of {"prompt": ...} lines like those the model will serve (not those you measure on)'})
    out: str = field(metadata={"help": "output folder: the draft model as an HF checkpoint"})
    new_tokens: int = field(default=48, metadata={"help": "tokens the model continues each prompt with"})
    steps: int = field(default=300)
    batch_size: int = field(default=32)
    lr: float = field(default=1e-3)
    seed: int = field(default=0)


def chosen_labels(generated: list[int], tokens: LookupTokens) -> list[int]:
    """The generated ids as labels, with the tokens the engine forced (a value and its ``<|db_end|>``) as -100."""
    labels, forced = [], False
    for t in generated:
        labels.append(-100 if forced else t)
        if t == tokens.ret:
            forced = True
        elif t == tokens.end:
            forced = False
    return labels


def model_outputs(model, tokenizer, kb, prompts: Sequence[str], new_tokens: int, batch_size: int = 32) -> list[dict]:
    """The model's greedy continuation of every prompt, lookups answered by ``kb``, as training examples:
    ``input_ids`` (prompt and continuation) and ``labels`` (the continuation's chosen tokens)."""
    from tqdm.auto import tqdm

    engine = LookupEngine(model, tokenizer, kb)
    cfg = GenerationConfig(max_new_tokens=new_tokens)
    examples = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="model outputs", unit="batch"):
        batch = prompts[start : start + batch_size]
        for prompt, result in zip(engine.encode_prompts(batch, cfg), engine.generate(batch, cfg)):
            examples.append({"input_ids": prompt + result.token_ids,
                             "labels": [-100] * len(prompt) + chosen_labels(result.token_ids, engine.tokens)})
    return examples


def _right_padded(pad: int):
    """Batches of examples padded on the right: positions then count from each example's first token, as in generation."""

    def collate(examples: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in examples)
        fill = lambda key, value: torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples])  # noqa: E731
        return {"input_ids": fill("input_ids", pad), "labels": fill("labels", -100),
                "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples])}

    return collate


def distill(model, draft, tokenizer, kb, prompts: Sequence[str], steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
            new_tokens: int = 48, seed: int = 0):
    """Fine-tune ``draft`` (in place) on ``model``'s output for ``prompts``; returns it, in eval mode."""
    from transformers import Trainer, TrainingArguments

    check_same_vocabulary(model, draft)
    if not prompts:
        raise LmlmError("no prompts to distill on")
    examples = model_outputs(model, tokenizer, kb, prompts, new_tokens, batch_size)
    log.info("distilling on %d continuations (%d chosen tokens)", len(examples), sum(sum(t != -100 for t in e["labels"]) for e in examples))
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer wants a folder; the caller saves the result
        args = TrainingArguments(output_dir=scratch, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
                                 lr_scheduler_type="cosine", warmup_steps=min(10, steps // 10), weight_decay=0.0, save_strategy="no",
                                 logging_steps=max(1, steps // 10), report_to=[], seed=seed, data_seed=seed,
                                 use_cpu=not torch.cuda.is_available(), remove_unused_columns=False)
        Trainer(model=draft.train(), args=args, train_dataset=examples, data_collator=_right_padded(tokenizer.pad_token_id)).train()
    return draft.eval()


def distill_checkpoints(cfg: DistillConfig) -> Path:
    """``lmlm distill``: load the checkpoints, the KB and the prompts; fine-tune the draft; save it to ``cfg.out``."""
    from lmlm.corpus import read_corpus

    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise LmlmError(f"{out}: exists and is not empty; give a new folder for the draft model")
    prompts = [row["prompt"] for row in read_corpus(cfg.prompts, require=("prompt",)).examples]
    lmlm = LMLM.from_pretrained(cfg.model, kb=cfg.kb, draft_model=cfg.draft)  # checks the tokenizer and the vocabularies
    draft = distill(lmlm.model, lmlm.engine.drafter.model, lmlm.tokenizer, lmlm.kb, prompts, cfg.steps, cfg.batch_size, cfg.lr,
                    cfg.new_tokens, cfg.seed)
    with atomic_directory(out) as tmp:  # out is empty, as checked first
        draft.save_pretrained(tmp)
        lmlm.tokenizer.save_pretrained(tmp)
    return out
