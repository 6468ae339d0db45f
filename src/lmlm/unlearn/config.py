"""``UnlearnConfig``: the options of ``lmlm experiment unlearn``; its fields' metadata makes the CLI's flags."""

from __future__ import annotations

from dataclasses import dataclass, field

METHOD_NAMES = ("GA", "GD", "NPO", "SimNPO")


@dataclass
class UnlearnConfig:
    """List fields are checked by ``check_lists`` (``lmlm.config`` bounds numbers, not lists)."""

    out: str = field(default="runs/unlearn", metadata={"help": "output folder: world, models, report.json, unlearn.png"})
    # TOFU's 200 authors: at the default steps the LMLM also sees each bio about TOFU's 5 times (the Standard model,
    # whose text has no calls, about 10); a smaller world is seen so often that the LMLM's weights learn its values
    # from the text after each call
    people: int = field(default=200, metadata={"help": "people in the unlearning world (10%% of them form its forget split)", "ge": 20})
    model: str = field(default="micro", metadata={"help": "model preset of every model trained (lmlm.models)"})
    steps: int = field(default=300, metadata={"help": "pretraining steps of each model: the full ones and the retain-only ones", "ge": 1})
    batch_size: int = field(default=16, metadata={"help": "pretraining blocks per step", "ge": 1})
    block_size: int = field(default=128, metadata={"help": "pretraining block length in tokens", "ge": 16})
    lr: float = field(default=5e-3, metadata={"help": "pretraining peak learning rate", "gt": 0})
    vocab_size: int = field(default=640, metadata={"help": "BPE vocabulary (the lookup tokens included)", "ge": 300})
    forget: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1], metadata={
        "help": "forget-set sizes as fractions of the people, each above 0 and at most 0.1 (the world's forget split)"})
    methods: list[str] = field(default_factory=lambda: list(METHOD_NAMES), metadata={
        "help": f"gradient unlearning methods to run, any of {', '.join(METHOD_NAMES)}"})
    lrs: list[float] = field(default_factory=lambda: [3e-4, 1e-3, 3e-3], metadata={
        "help": "the learning rates swept for each method (each above 0)"})
    epochs: float = field(default=5.0, metadata={"help": "unlearning epochs over the forget set", "gt": 0})
    unlearn_batch_size: int = field(default=8, metadata={"help": "forget sequences (and as many retain ones) per unlearning step", "ge": 1})
    utility_people: int = field(default=40, metadata={"help": "retain-split people asked for Model Utility", "ge": 1})
    world_fact_people: int = field(default=20, metadata={"help": "people no model was trained on, asked the world facts", "ge": 1})
    heldout_docs: int = field(default=40, metadata={"help": "held-out bios of retain-split people for the perplexity part", "ge": 1})
    max_utility_drop: float = field(default=0.05, metadata={
        "help": "a learning rate counts as a method's best only if Model Utility stays within this of the model before "
                "unlearning; the best is the one with the highest Forget Quality (if none stays within, the highest utility)", "ge": 0})
    threads: int = field(default=1, metadata={"help": "torch threads: these small models gain little from a second one, and "
                                                      "lose much when other jobs share the cores", "ge": 1})
    seed: int = field(default=0, metadata={"help": "the world, the models and the question sets follow it"})


def check_lists(cfg: UnlearnConfig) -> None:
    """An error naming the key when a list option holds a value out of its range."""
    from lmlm.errors import LmlmError

    for name, values, holds, wanted in (("forget", cfg.forget, lambda v: 0 < v <= 0.1, "in (0, 0.1]"),
                                        ("lrs", cfg.lrs, lambda v: v > 0, "above 0"),
                                        ("methods", cfg.methods, lambda v: v in METHOD_NAMES, "one of " + ", ".join(METHOD_NAMES))):
        bad = [v for v in values if not holds(v)]
        if bad or not values:
            raise LmlmError(f"config key {name!r}: each value must be {wanted}, got {bad[0] if bad else 'none'}")
