"""``lmlm experiment offload``: the paper's offloading sweep on the synthetic world. For each fraction, that share
of the world's facts is annotated as lookups in the training text (everywhere the fact is stated) and the rest stay
plain text to be learned in the weights; a model of the same size trains for the same steps on each, and is scored
side by side.

Decisions: a fact is offloaded when a uniform draw seeded by (seed, person, relation) falls below the fraction, so
the offloaded sets grow with the fraction (each larger set holds the smaller). The knowledge base holds every fact
of the world, so a call is answered whenever the model makes one; the fraction changes only what training teaches.
The model at fraction 0 has no calls in its text: it is a Standard model (every token trained), evaluated as one.
Completion lets each model choose whether to look a fact up (no call is forced after the prefix), since that
choice is what the fraction teaches. Normalized perplexity is over held-out bios annotated at the model's own
fraction (at 0, the plain perplexity). Database-off completion runs the same prompts with lookups banned
(``use_db=False`` under our protocol): what the weights alone know.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.experiments.charts import line_chart
from lmlm.files import atomic_write
from lmlm.models import check_preset

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class OffloadConfig:
    out: str = field(default="runs/offload", metadata={"help": "write offload.json, offload.md, the charts and every run here"})
    fractions: str = field(default="0,0.25,0.5,0.75,1", metadata={"help": "comma-separated shares of the facts annotated as lookups"})
    people: int = field(default=1000, metadata={"help": "people in the sweep's world", "ge": 4})
    steps: int = field(default=300, metadata={"help": "training steps of each model (the same budget for all)", "ge": 1})
    model: str = field(default="micro", metadata={"help": "the model preset (lmlm.models)"})
    batch_size: int = field(default=16, metadata={"ge": 1, "help": "blocks per step"})
    block_size: int = field(default=128, metadata={"ge": 128, "help": "tokens per block: the models' context, which holds a bio's "
                                                                    "prompt and its 96 tokens"})
    lr: float = field(default=5e-3, metadata={"gt": 0, "help": "peak learning rate"})
    vocab_size: int = field(default=640, metadata={"ge": 300, "help": "the tokenizer's vocabulary"})
    completion_prompts: int = field(default=60, metadata={"ge": 1, "help": "completion prompts about train people"})
    bios: int = field(default=16, metadata={"ge": 1, "help": "bios generated for factual precision"})
    ppl_docs: int = field(default=16, metadata={"ge": 1, "help": "held-out bios for normalized perplexity"})
    value_loss_every: int = field(default=0, metadata={
        "ge": 0, "help": "log each run's value-token loss every N steps, for 'lmlm experiment memorization' on the runs at 1 and 0"})
    seed: int = field(default=0, metadata={"help": "the world's, the sampling's and the trainings' seed"})


METRICS = ("completion", "factual_precision", "normalized_perplexity", "completion_db_off")


def parse_fractions(text: str) -> list[float]:
    """The fractions of ``--fractions``, each in [0, 1], in the order given, without repeats."""
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LmlmError(f"--fractions: expected comma-separated numbers such as 0,0.5,1, got {text!r}") from None
    if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions) or len(set(fractions)) != len(fractions):
        raise LmlmError(f"--fractions: expected distinct numbers from 0 to 1, got {text!r}")
    return fractions


def offloaded(entity: str, relation: str, fraction: float, seed: int) -> bool:
    """Is the fact annotated as a lookup at ``fraction``? One draw per fact, whatever the fraction: the sets nest."""
    return random.Random(f"{seed}|{entity}|{relation}").random() < fraction


def annotate_at(annotated_text: str, fraction: float, seed: int) -> str:
    """The text with only the offloaded facts' lookups left (legacy markup); the others become plain text."""
    segments = markup.parse(annotated_text).segments
    kept = [s for s in segments if isinstance(s, str) or offloaded(s.entity, s.relation, fraction, seed)]
    return markup.render(kept, "legacy")


def run_offload(cfg: OffloadConfig, echo: Callable[[str], None] = log.info) -> dict:
    """The sweep: the world, one training per fraction, the evaluation of each, the report and the charts;
    ``echo`` takes a line per run."""
    from lmlm.kb.io import build as build_kb
    from lmlm.world import make_world

    fractions = parse_fractions(cfg.fractions)
    check_preset(cfg.model)
    out = Path(cfg.out)
    start = time.perf_counter()
    make_world(out / "world", people=cfg.people, seed=cfg.seed, phrasing="plain")  # the wording its figures were measured on
    build_kb([out / "world" / "kb.json"], out / "kb.sqlite")
    tokenizer = _tokenizer(out, cfg)
    rows = []
    for fraction in fractions:
        run = out / f"fraction-{fraction:g}"
        started = time.perf_counter()
        _train(run, out, tokenizer, fraction, cfg)
        rows.append({"fraction": fraction, **_evaluate(run, out, fraction, cfg)})
        echo(f"offload fraction {fraction:g}: " + ", ".join(f"{m} {rows[-1][m]:.3f}" for m in METRICS)
             + f"; {time.perf_counter() - started:.0f}s")
    report = {"rows": rows, "config": asdict(cfg), "wall_seconds": round(time.perf_counter() - start, 1)}
    report["summary"] = {"rows": rows, "out": str(out)}
    _write(out, report)
    return report


def _tokenizer(out: Path, cfg: OffloadConfig):
    """One tokenizer for every run: trained on the world's text with all its lookups and without any."""
    from lmlm.data import documents
    from lmlm.tokenizer import train_tokenizer

    corpus = [out / "world" / "corpus.jsonl"]
    return train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=cfg.vocab_size)


def _train(run: Path, out: Path, tokenizer, fraction: float, cfg: OffloadConfig) -> None:
    from lmlm.corpus import read_corpus, write_corpus
    from lmlm.data import build_dataset
    from lmlm.train import TrainConfig, train

    examples = [{**e, "annotated_text": annotate_at(e["annotated_text"], fraction, cfg.seed)}
                for e in read_corpus(out / "world" / "corpus.jsonl").examples]
    write_corpus(run / "train.jsonl", examples)
    mode = "lmlm" if fraction > 0 else "standard"
    build_dataset([run / "train.jsonl"], tokenizer, mode, run / "data", block_size=cfg.block_size)
    train(TrainConfig(data=str(run / "data"), out=str(run / "model"), model=cfg.model, max_steps=cfg.steps, batch_size=cfg.batch_size,
                      lr=cfg.lr, warmup_steps=max(cfg.steps // 20, 1), log_every=max(cfg.steps // 20, 1), seed=cfg.seed,
                      value_loss_every=cfg.value_loss_every, value_loss_data=str(out / "world" / "corpus.jsonl")))


def _evaluate(run: Path, out: Path, fraction: float, cfg: OffloadConfig) -> dict:
    from lmlm.engine import LMLM
    from lmlm.evaluate import suites
    from lmlm.kb import SqliteKB
    from lmlm.world import atomic_facts

    rng = random.Random(cfg.seed)
    read = lambda path: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]  # noqa: E731
    prompts = _sample([p for p in read(out / "world" / "eval" / "completion.jsonl") if p["split"] != "inject"], cfg.completion_prompts, rng)
    bios = _sample([b for b in read(out / "world" / "eval" / "bio_prompts.jsonl") if b["split"] != "inject"], cfg.bios, rng)
    heldout = [{**d, "annotated_text": annotate_at(d["annotated_text"], fraction, cfg.seed)}
               for d in _sample(read(out / "world" / "eval" / "heldout_bios.jsonl"), cfg.ppl_docs, rng)]
    with SqliteKB(out / "kb.sqlite") as kb:
        model = LMLM.from_pretrained(run / "model", kb=kb if fraction > 0 else None, use_lookups=fraction > 0)
        completion = suites.completion(model, prompts, force_call=False)["metrics"]["accuracy"]
        db_off = suites.completion(model, prompts, force_call=False, **({"use_db": False} if fraction > 0 else {}))["metrics"]["accuracy"]
        precision = suites.factuality(model, bios, extract_facts=atomic_facts)["metrics"]["factual_precision"]
        ppl = suites.perplexity(model, heldout, dynamic=False)["metrics"]
    return {"completion": completion, "factual_precision": precision, "normalized_perplexity": ppl.get("normalized", ppl.get("standard")),
            "completion_db_off": db_off}


def _sample(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    return rows if len(rows) <= n else rng.sample(rows, n)


def _write(out: Path, report: dict) -> None:
    rows = report["rows"]
    with atomic_write(out / "offload.json") as f:
        json.dump(report, f, indent=1)
    lines = ["| fraction offloaded | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    lines += [f"| {r['fraction']:g} | " + " | ".join(f"{r[m]:.3f}" for m in METRICS) + " |" for r in rows]
    charts = ["offload_accuracy.png", "offload_perplexity.png"]
    with atomic_write(out / "offload.md") as f:
        f.write("# The offloading sweep\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"![{c}]({c})" for c in charts) + "\n")
    points = lambda metric: [(r["fraction"], r[metric]) for r in rows]  # noqa: E731
    line_chart(out / charts[0], {"completion": points("completion"), "factual precision": points("factual_precision"),
                                 "completion, database off": points("completion_db_off")},
               "share of facts annotated as lookups", "accuracy", "offloading facts to the database")
    line_chart(out / charts[1], {"normalized perplexity": points("normalized_perplexity")}, "share of facts annotated as lookups",
               "perplexity over T_org", "offloading facts to the database")
