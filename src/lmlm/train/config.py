"""``TrainConfig``: the options of ``lmlm train``; its field help becomes the CLI's, and YAML configs fill it."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    precision: str = field(default="auto", metadata={"help": "auto (bf16 autocast where the hardware has native bf16: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX), bf16, or fp32"})
    gradient_checkpointing: bool = field(default=False)
    eval_every: int = field(default=0, metadata={"help": "evaluate every N steps (0: at the end only)"})
    eval_blocks: int = field(default=64, metadata={"help": "blocks of eval_data used per evaluation"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: the final model only)"})
    log_every: int = field(default=10)
    value_loss_every: int = field(default=0, metadata={
        "help": "log the loss on the facts' value tokens of a fixed batch of training documents every N steps, as "
                "value_loss in log.jsonl (memorization; 0: off)", "ge": 0})
    value_loss_docs: int = field(default=32, metadata={"help": "documents in that batch: the first with a lookup call", "ge": 1})
    value_loss_data: str | None = field(default=None, metadata={
        "help": "the annotated corpus they come from (default: the dataset's sources); a Standard model's corpus must "
                "still have its calls"})
    tensorboard: bool = field(default=False)
    fsdp: str = field(default="", metadata={"help": 'FSDP options for the Trainer, e.g. "full_shard auto_wrap"'})
    seed: int = field(default=0)
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint-N in out"})
