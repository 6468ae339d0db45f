"""``lmlm experiment paper`` (``make paper``): every experiment of the paper at one CPU scale, and one report,
``report.md`` and ``report.json``, with all their tables and charts (``lmlm.experiments.paper_report``).

Stages, each run by the module that owns it:

1. world, annotate, kb, train: the demo's stages (``lmlm.demo``): an LMLM and a Standard model trained with the
   same budget on a synthetic world, both logging the value-token loss (so the memorization figure needs no
   second run);
2. evaluate: both models under both protocols (FactScore bios, T-REx completion; ``lmlm.evaluate``), and the LMLM
   with its database off;
3. memorization: the value-loss curves of those two trainings (``lmlm.experiments.memorization``);
4. offload: the offloading sweep (``lmlm.experiments.offload``);
5. unlearn: the TOFU-style panel (``lmlm.unlearn``).

A stage's result is kept in ``stages/NAME.json`` with its wall and CPU time and the options it read; a rerun skips
every stage that has one, unless a stage it depends on ran again or its options changed. CPU time (user + system,
this process and its children) is kept beside wall time because on a shared machine wall time measures the other
jobs too.
"""

from __future__ import annotations

import json
import logging
import random
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from lmlm.experiments.offload import OffloadConfig, parse_fractions, run_offload
from lmlm.files import atomic_write
from lmlm.unlearn.config import UnlearnConfig, check_lists

log = logging.getLogger(__name__)


def _option_of(config: type, name: str):
    """A field with the default, bounds and help of ``config``'s option ``name``: one source for both commands."""
    source = next(f for f in fields(config) if f.name == name)
    if source.default_factory is not MISSING:
        return field(default_factory=source.default_factory, metadata=source.metadata)
    return field(default=source.default, metadata=source.metadata)


@dataclass(kw_only=True)
class PaperConfig:
    out: str = field(default="runs/paper", metadata={"help": "write report.md, report.json, the charts and every stage's output here"})
    seed: int = field(default=0, metadata={"help": "the worlds', the samples' and the trainings' seed"})
    progress: bool = field(default=True, metadata={"help": "show a live line while the two main models train", "flag": "--no-progress"})
    # the LMLM and Standard models of the tables and of the memorization figure: the demo's recipe
    model: str = field(default="tiny", metadata={"help": "the main models' preset (lmlm.models)"})
    people: int = field(default=1500, metadata={"help": "people in the main models' world", "ge": 20})
    steps: int = field(default=800, metadata={"help": "training steps of each main model (the same budget for both)", "ge": 1})
    batch_size: int = field(default=16, metadata={"help": "blocks per step", "ge": 1})
    block_size: int = field(default=128, metadata={"help": "tokens per block: the main models' context", "ge": 64})
    lr: float = field(default=3e-3, metadata={"help": "the main models' peak learning rate", "gt": 0})
    vocab_size: int = field(default=640, metadata={"help": "the main tokenizer's vocabulary", "ge": 300})
    value_loss_every: int = field(default=40, metadata={"help": "log the value-token loss every N steps (the memorization figure)", "ge": 1})
    completion_prompts: int = field(default=400, metadata={"help": "T-REx-style prompts about train people", "ge": 1})
    bios: int = field(default=100, metadata={"help": "bios generated for FactScore", "ge": 1})
    # the offloading sweep and the unlearning panel: their commands' own options, under a prefix
    offload_fractions: str = _option_of(OffloadConfig, "fractions")
    offload_people: int = _option_of(OffloadConfig, "people")
    offload_steps: int = _option_of(OffloadConfig, "steps")
    offload_model: str = _option_of(OffloadConfig, "model")
    offload_completion_prompts: int = _option_of(OffloadConfig, "completion_prompts")
    offload_bios: int = _option_of(OffloadConfig, "bios")
    offload_ppl_docs: int = _option_of(OffloadConfig, "ppl_docs")
    unlearn_people: int = _option_of(UnlearnConfig, "people")
    unlearn_steps: int = _option_of(UnlearnConfig, "steps")
    unlearn_forget: list[float] = _option_of(UnlearnConfig, "forget")
    unlearn_methods: list[str] = _option_of(UnlearnConfig, "methods")
    unlearn_lrs: list[float] = _option_of(UnlearnConfig, "lrs")
    unlearn_epochs: float = _option_of(UnlearnConfig, "epochs")
    unlearn_utility_people: int = _option_of(UnlearnConfig, "utility_people")
    unlearn_world_fact_people: int = _option_of(UnlearnConfig, "world_fact_people")
    unlearn_heldout_docs: int = _option_of(UnlearnConfig, "heldout_docs")


# name: the stages whose output it reads (a stage that runs again makes these run again too)
STAGES = {"world": (), "annotate": ("world",), "kb": ("world",), "train": ("annotate",), "evaluate": ("kb", "train"),
          "memorization": ("train",), "offload": (), "unlearn": ()}
# name: the options it reads itself, besides the seed (a stage whose options changed runs again)
STAGE_OPTIONS = {"world": ("people",), "annotate": (), "kb": (),
                 "train": ("model", "steps", "batch_size", "block_size", "lr", "vocab_size", "value_loss_every"),
                 "evaluate": ("completion_prompts", "bios"), "memorization": (),
                 "offload": tuple(f.name for f in fields(PaperConfig) if f.name.startswith("offload_")),
                 "unlearn": tuple(f.name for f in fields(PaperConfig) if f.name.startswith("unlearn_"))}


def cpu_seconds() -> float:
    """User and system CPU time of this process and of its children that have ended (the trainings' processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_paper(cfg: PaperConfig, echo: Callable[[str], None] = log.info) -> dict:
    """Every stage not done yet, then ``report.json`` and ``report.md``; returns the report."""
    from lmlm.experiments.paper_report import write_paper_report

    _check(cfg)
    out = Path(cfg.out)
    runner = _StageRunner(out, echo)
    results = {name: runner.run(name, _stage_options(cfg, name), lambda name=name: _STAGE_FUNCTIONS[name](cfg, out, echo)) for name in STAGES}
    report = {"config": asdict(cfg), "training": results["train"], "evaluate": results["evaluate"],
              "memorization": results["memorization"], "offload": results["offload"], "unlearn": results["unlearn"],
              "seconds": runner.times, "total_seconds": {kind: round(sum(t[kind] for t in runner.times.values()), 1) for kind in ("wall", "cpu")}}
    write_paper_report(report, out)
    report["summary"] = {"report": str(out / "report.md"), **report["total_seconds"]}
    echo(f"report: {out / 'report.md'}, {out / 'report.json'}; {report['total_seconds']['wall']:.0f}s wall, "
         f"{report['total_seconds']['cpu']:.0f}s CPU over all stages")
    return report


def _check(cfg: PaperConfig) -> None:
    """Options that a late stage would refuse, refused before the first stage runs."""
    from lmlm.errors import LmlmError
    from lmlm.models import check_preset

    for key in ("model", "offload_model"):
        check_preset(getattr(cfg, key), "--" + key.replace("_", "-"))
    try:
        parse_fractions(cfg.offload_fractions)
    except LmlmError as e:
        raise LmlmError(str(e).replace("--fractions", "--offload-fractions")) from None
    try:
        check_lists(_unlearn_config(cfg))
    except LmlmError as e:
        raise LmlmError(f"the unlearning options (--unlearn-*): {e}") from None


class _StageRunner:
    def __init__(self, out: Path, echo: Callable[[str], None]):
        self.out, self.echo, self.times, self.ran = out, echo, {}, set()

    def run(self, name: str, options: dict, fn: Callable[[], dict]) -> dict:
        n, path = list(STAGES).index(name) + 1, self.out / "stages" / f"{name}.json"
        saved = _saved_stage(path) if not self.ran & set(STAGES[name]) else None
        if saved is not None and saved.get("options") == options:
            self.times[name] = saved["seconds"]
            self.echo(f"[{n}/{len(STAGES)}] {name}: done in an earlier run, skipped ({path})")
            return saved["result"]
        self.echo(f"[{n}/{len(STAGES)}] {name} ..." + (" (its options changed since its earlier run)" if saved is not None else ""))
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = fn()
        self.times[name] = {"wall": round(time.perf_counter() - wall, 1), "cpu": round(cpu_seconds() - cpu, 1)}
        self.ran.add(name)
        with atomic_write(path) as f:
            json.dump({"options": options, "result": result, "seconds": self.times[name]}, f, indent=1, default=str)
        self.echo(f"      {name} done: {self.times[name]['wall']:.0f}s wall, {self.times[name]['cpu']:.0f}s CPU")
        return result


def _saved_stage(path: Path) -> dict | None:
    """A stage's kept result, or None where there is none or it cannot be read (the stage then runs again)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); the stage runs again", path, e)
        return None
    return saved if isinstance(saved, dict) and {"result", "seconds"} <= saved.keys() else None


def _stage_options(cfg: PaperConfig, name: str) -> dict:
    """The options ``name`` reads, as JSON would give them back."""
    return json.loads(json.dumps({key: getattr(cfg, key) for key in ("seed", *STAGE_OPTIONS[name])}))


def _plan(cfg: PaperConfig):
    from lmlm.demo import DemoPlan

    return DemoPlan(model=cfg.model, people=cfg.people, steps=cfg.steps, batch_size=cfg.batch_size, block_size=cfg.block_size, lr=cfg.lr,
                    vocab_size=cfg.vocab_size, value_loss_every=cfg.value_loss_every)


def _world(cfg: PaperConfig, out: Path, echo) -> dict:
    from lmlm.world import make_world

    shutil.rmtree(out / "main", ignore_errors=True)
    counts = make_world(out / "main" / "world", people=cfg.people, seed=cfg.seed, phrasing="plain")  # the wording its figures were measured on
    echo(f"      {counts['people']} people, {counts['bios']} bios")
    return counts


def _annotate(cfg: PaperConfig, out: Path, echo) -> dict:
    from lmlm.demo import annotate_world

    return annotate_world(out / "main", out / "main" / "world")


def _kb(cfg: PaperConfig, out: Path, echo) -> dict:
    from lmlm.kb.io import build as build_kb

    return build_kb([out / "main" / "world" / "kb.json"], out / "main" / "kb.sqlite")


def _train(cfg: PaperConfig, out: Path, echo) -> dict:
    from lmlm.demo import train_both

    return train_both(out / "main", _plan(cfg), cfg.seed, echo, cfg.progress)


def _evaluate(cfg: PaperConfig, out: Path, echo) -> dict:
    """Both models under both protocols; the LMLM's completion with its database off, under both."""
    from lmlm.engine import LMLM
    from lmlm.evaluate import suites
    from lmlm.kb import SqliteKB
    from lmlm.world import atomic_facts

    main, rng = out / "main", random.Random(cfg.seed)
    read = lambda path: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]  # noqa: E731
    prompts = _sample([p for p in read(main / "world" / "eval" / "completion.jsonl") if p["split"] != "inject"], cfg.completion_prompts, rng)
    bios = _sample([b for b in read(main / "world" / "eval" / "bio_prompts.jsonl") if b["split"] != "inject"], cfg.bios, rng)
    result, records = {"prompts": len(prompts), "bios": len(bios)}, {}
    with SqliteKB(main / "kb.sqlite") as kb:
        models = {"lmlm": LMLM.from_pretrained(main / "lmlm", kb=kb), "standard": LMLM.from_pretrained(main / "standard", use_lookups=False)}
        runs = [(name, protocol, suite, {}) for name in models for protocol in ("ours", "reference") for suite in ("factuality", "completion")]
        runs += [("lmlm", protocol, "completion", {"use_db": False}) for protocol in ("ours", "reference")]
        for name, protocol, suite, options in runs:
            label = f"{name} {suite}, {protocol} protocol" + (", database off" if options else "")
            echo(f"      {label}")
            if suite == "factuality":
                scored = suites.factuality(models[name], bios, extract_facts=atomic_facts, protocol=protocol, **options)
            else:
                scored = suites.completion(models[name], prompts, protocol=protocol, **options)
            key = "lmlm_db_off" if options else name
            result.setdefault(key, {}).setdefault(protocol, {})[suite] = scored["metrics"]
            records[label] = scored["records"][:20]
    with atomic_write(main / "evaluate-records.json") as f:
        json.dump(records, f, indent=1, ensure_ascii=False, default=str)
    return result


def _sample(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    return rows if len(rows) <= n else rng.sample(rows, n)


def _memorization(cfg: PaperConfig, out: Path, echo) -> dict:
    from lmlm.experiments.memorization import MemorizationConfig, run_memorization

    report = run_memorization(MemorizationConfig(lmlm=str(out / "main" / "lmlm"), standard=str(out / "main" / "standard"),
                                                 out=str(out / "memorization")))
    return {key: report[key] for key in ("first", "last", "curves")}


def _offload(cfg: PaperConfig, out: Path, echo) -> dict:
    shutil.rmtree(out / "offload", ignore_errors=True)
    report = run_offload(OffloadConfig(out=str(out / "offload"), seed=cfg.seed, **_prefixed(cfg, "offload")),
                         echo=lambda line: echo("      " + line))
    return {"rows": report["rows"]}


def _unlearn(cfg: PaperConfig, out: Path, echo) -> dict:
    """The panel's points: per kind of model, its utility before, and per forget size the original model, deletion
    (an LMLM), the retain-only model's utility and each method's best run (the full runs stay in unlearn/report.json)."""
    from lmlm.unlearn.run import run_unlearn

    report = run_unlearn(_unlearn_config(cfg, out), echo=lambda line: echo("      " + line))
    point = lambda r: {"forget_quality": r["forget_quality"], "model_utility": r["model_utility"]}  # noqa: E731
    panel = {}
    for kind, result in report["kinds"].items():
        sizes = {}
        for size, r in result["forget"].items():
            sizes[size] = {"people": r["people"], "questions": r["questions"], "original": point(r["original"]),
                           "retain_model_utility": r["retain_model"]["model_utility"], "best": r["best"],
                           **({"deletion": point(r["deletion"])} if "deletion" in r else {})}
        panel[kind] = {"before_utility": result["before"]["model_utility"], "forget": sizes}
    return {"forget_people": report["forget_people"], "kinds": panel}


def _unlearn_config(cfg: PaperConfig, out: Path | None = None):
    return UnlearnConfig(out=str((out or Path(cfg.out)) / "unlearn"), seed=cfg.seed, **_prefixed(cfg, "unlearn"))


def _prefixed(cfg: PaperConfig, stage: str) -> dict:
    """A sub-command's own options, from their ``STAGE_OPTIONS`` names under its prefix."""
    return {name.removeprefix(stage + "_"): getattr(cfg, name) for name in STAGE_OPTIONS[stage]}


_STAGE_FUNCTIONS = {"world": _world, "annotate": _annotate, "kb": _kb, "train": _train, "evaluate": _evaluate,
                    "memorization": _memorization, "offload": _offload, "unlearn": _unlearn}
