"""The gradient unlearning baselines as HF ``Trainer``s, after open-unlearning (``src/trainer/unlearn``):

    GA      gradient ascent on the forget set: loss = -NLL(forget)                   (Jang et al. 2023)
    GD      gradient difference: -NLL(forget) + NLL(retain)                          (Liu et al. 2022)
    NPO     -2/β · log σ(-β (log p(forget) - log p_ref(forget))) + NLL(retain),
            log p summed over a sequence's trained tokens, the reference the model before unlearning, β 0.1
                                                                                     (Zhang et al. 2024)
    SimNPO  -2/β · log σ(β (NLL(forget)/length - δ)) weighted by γ + NLL(retain), no reference model,
            β 4.5, γ 0.125, δ 0                                                      (Fan et al. 2024)

NPO and SimNPO keep open-unlearning's retain term (α = 1). Each batch pairs forget sequences with as many
retain sequences drawn at random (open-unlearning's ``ForgetRetainDataset``); the loss is taken on the
sequences' own labels, so on an LMLM's weights the looked-up values stay untrained, as in pretraining.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

IGNORE = -100


def sequence_nll(model, batch: dict) -> torch.Tensor:
    """Summed NLL of each sequence's trained tokens (labels != -100), and its count of them: [b], [b]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=IGNORE, reduction="none")
    return nll.sum(dim=1), (labels != IGNORE).sum(dim=1)


def mean_nll(model, batch: dict) -> torch.Tensor:
    """The causal-LM loss of a batch: mean NLL over all its trained tokens."""
    total, count = sequence_nll(model, batch)
    return total.sum() / count.sum().clamp(min=1)


class UnlearnTrainer(Trainer):
    """The Trainer with a forget batch and a retain batch per step; subclasses define ``forget_loss``."""

    uses_retain = True

    def __init__(self, *args, alpha: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.forget_loss(model, inputs["forget"])
        if self.uses_retain:
            loss = loss + self.alpha * mean_nll(model, inputs["retain"])
        return (loss, None) if return_outputs else loss

    def forget_loss(self, model, forget: dict) -> torch.Tensor:
        raise NotImplementedError


class GradAscent(UnlearnTrainer):
    uses_retain = False

    def forget_loss(self, model, forget):
        return -mean_nll(model, forget)


class GradDiff(UnlearnTrainer):
    def forget_loss(self, model, forget):
        return -mean_nll(model, forget)


class NPO(UnlearnTrainer):
    def __init__(self, *args, beta: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)

    def forget_loss(self, model, forget):
        nll, _ = sequence_nll(model, forget)
        with torch.no_grad():
            reference_nll, _ = sequence_nll(self.reference, forget)
        log_ratio = reference_nll - nll  # log p(forget) - log p_ref(forget)
        return -2 / self.beta * F.logsigmoid(-self.beta * log_ratio).mean()


class SimNPO(UnlearnTrainer):
    def __init__(self, *args, beta: float = 4.5, gamma: float = 0.125, delta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta, self.gamma, self.delta = beta, gamma, delta

    def forget_loss(self, model, forget):
        nll, count = sequence_nll(model, forget)
        normalized = nll / count.clamp(min=1) - self.delta
        return self.gamma * -F.logsigmoid(self.beta * normalized).mean() * 2 / self.beta


METHODS: dict[str, type[UnlearnTrainer]] = {"GA": GradAscent, "GD": GradDiff, "NPO": NPO, "SimNPO": SimNPO}


class ForgetRetainPairs(torch.utils.data.Dataset):
    """Each forget sequence with a retain sequence drawn at random (seeded)."""

    def __init__(self, forget: list[dict], retain: list[dict], seed: int = 0):
        self.forget, self.retain = forget, retain
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        return {"forget": self.forget[i], "retain": self.retain[int(self.rng.integers(len(self.retain)))]}


def pad(sequences: list[dict], pad_id: int) -> dict:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    width = max(len(s["input_ids"]) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        n = len(s["input_ids"])
        ids[row, :n] = torch.as_tensor(s["input_ids"])
        labels[row, :n] = torch.as_tensor(s["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pair_collator(pad_id: int):
    def collate(items: list[dict]) -> dict:
        return {part: pad([item[part] for item in items], pad_id) for part in ("forget", "retain")}

    return collate


def unlearn(model, method: str, forget: list[dict], retain: list[dict], pad_id: int, lr: float, epochs: float, batch_size: int,
            out: str, seed: int = 0, **method_args):
    """Runs ``method`` on ``model`` in place and returns it: AdamW, weight decay 0.01, linear decay after
    one epoch of warmup (open-unlearning's TOFU recipe: ``warmup_epochs: 1.0``)."""
    from transformers import TrainingArguments

    steps_per_epoch = -(-len(forget) // batch_size)
    args = TrainingArguments(output_dir=out, learning_rate=lr, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                             warmup_steps=steps_per_epoch, weight_decay=0.01, lr_scheduler_type="linear", save_strategy="no",
                             report_to=[], logging_strategy="no", remove_unused_columns=False, use_cpu=True, seed=seed,
                             data_seed=seed, disable_tqdm=True)
    trainer = METHODS[method](model=model, args=args, train_dataset=ForgetRetainPairs(forget, retain, seed),
                              data_collator=pair_collator(pad_id), **method_args)
    trainer.train()
    return trainer.model.eval()
