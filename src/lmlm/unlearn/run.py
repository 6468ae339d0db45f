"""``run_unlearn``: the TOFU-style experiment on a synthetic world, stage by stage.

1. a world, one tokenizer, and for each kind of model (Standard, LMLM) a full model trained on every train
   person's bios and, for each forget size, a retain-only model trained from scratch on the others' bios
   with the same recipe and budget: the reference of Forget Quality;
2. a KB of every fact, and for each forget size a copy with the forget set's people forgotten (``kb.forget``):
   the retain-only LMLM's KB, and the deleting LMLM's;
3. per kind and forget size: the full model before unlearning, each gradient method at each learning rate
   on the full model's weights (an LMLM keeps its whole KB), and, for the LMLM, deletion from the KB with no
   weight changed; each scored for Forget Quality against the retain-only model and for Model Utility.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lmlm.data import build_dataset, documents, tokenize
from lmlm.errors import LmlmError
from lmlm.kb import SqliteKB
from lmlm.kb.io import read_reference_db
from lmlm.models import check_preset
from lmlm.tokenizer import train_tokenizer
from lmlm.train import TrainConfig, train
from lmlm.unlearn.config import UnlearnConfig, check_lists
from lmlm.unlearn.evaluation import UtilitySets, forget_quality, model_utility, truth_ratios
from lmlm.unlearn.questions import forget_people, questions_of, world_fact_questions
from lmlm.unlearn.report import best_runs, write_report
from lmlm.world import Person, make_world, read_people

log = logging.getLogger(__name__)
KINDS = ("standard", "lmlm")


@dataclass
class Setup:
    out: Path
    people: list[Person]
    tokenizer: object
    forget_sets: dict[float, list[Person]]
    utility: UtilitySets


def run_unlearn(cfg: UnlearnConfig, echo: Callable[[str], None] = log.info) -> dict:
    """The whole experiment; writes ``report.json`` and ``unlearn.png`` into ``cfg.out`` and returns the report."""
    import torch

    check_lists(cfg)
    check_preset(cfg.model)
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    setup = _prepare(cfg, echo)
    report = {"config": asdict(cfg), "forget_people": {str(f): len(s) for f, s in setup.forget_sets.items()}, "kinds": {}}
    for kind in KINDS:
        _train_models(cfg, setup, kind, echo)
        report["kinds"][kind] = _evaluate_kind(cfg, setup, kind, echo)
    shutil.rmtree(setup.out / "unlearn-tmp", ignore_errors=True)  # the unlearning Trainers' output_dir: nothing is saved there
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_report(report, setup.out)
    echo(f"report: {setup.out / 'report.json'}, {setup.out / 'unlearn.png'}; {report['wall_seconds']:.0f}s")
    return report


def _check_earlier_run(out: Path) -> None:
    """A run starts over in its folder; any other folder with something in it is refused, never emptied."""
    if not out.is_dir() or (any(out.iterdir()) and not (out / "world" / "kb.json").is_file()):
        raise LmlmError(f"{out}: exists and is not an earlier unlearning run's folder; give a new or empty --out")


def _prepare(cfg: UnlearnConfig, echo) -> Setup:
    out = Path(cfg.out)
    if out.exists():
        _check_earlier_run(out)
        shutil.rmtree(out)
    counts = make_world(out / "world", people=cfg.people, seed=cfg.seed, phrasing="plain")  # the wording its figures were measured on
    echo(f"world: {counts['people']} people ({counts['retain']} retain, {counts['forget']} forget, {counts['inject']} never trained on)")
    people = read_people(out / "world")
    corpus = [out / "world" / "corpus.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=cfg.vocab_size)
    forget_sets = {f: forget_people(people, f, cfg.people) for f in sorted(set(cfg.forget))}
    retain = sorted((p for p in people if p.split == "retain"), key=lambda p: p.name)[: cfg.utility_people]
    unseen = sorted((p for p in people if p.split == "inject"), key=lambda p: p.name)[: cfg.world_fact_people]
    retain_names = {p.name for p in retain}
    heldout = [d for d in _jsonl(out / "world" / "eval" / "heldout_bios.jsonl") if d["person"] in retain_names][: cfg.heldout_docs]
    utility = UtilitySets(questions_of(retain, cfg.seed), world_fact_questions(unseen, cfg.seed), heldout)
    _build_kbs(out, forget_sets)
    return Setup(out, people, tokenizer, forget_sets, utility)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _corpus_without(out: Path, forgotten: set[str], name: str) -> Path:
    """The world's corpus without the bios of ``forgotten`` people, as a file of its own."""
    path = out / "corpora" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [line for line in (out / "world" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
            if json.loads(line)["person"] not in forgotten]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _model_dir(out: Path, kind: str, fraction: float | None) -> Path:
    return out / "models" / (f"{kind}-full" if fraction is None else f"{kind}-retain-{fraction:g}")


def _kb_path(out: Path, fraction: float | None) -> Path:
    return out / "kb" / ("full.sqlite" if fraction is None else f"forget-{fraction:g}.sqlite")


def _build_kbs(out: Path, forget_sets: dict[float, list[Person]]) -> None:
    """Every fact (lookups are exact: the calls scored are the gold ones), and per forget size the same with
    its people forgotten: tombstones, so a lookup of them gets no answer."""
    triplets = list(read_reference_db(out / "world" / "kb.json"))
    for fraction in [None, *forget_sets]:
        path = _kb_path(out, fraction)
        path.parent.mkdir(parents=True, exist_ok=True)
        with SqliteKB(path, create=True) as kb:
            kb.import_triplets(triplets)
            for person in forget_sets.get(fraction, []):
                kb.forget(person.name, exact=True)


def _train_models(cfg: UnlearnConfig, setup: Setup, kind: str, echo) -> None:
    """The full model and one retain-only model per forget size, each from scratch with the same recipe."""
    for fraction in [None, *setup.forget_sets]:
        forgotten = {p.name for p in setup.forget_sets.get(fraction, [])}
        name = f"{kind}-full" if fraction is None else f"{kind}-retain-{fraction:g}"
        corpus = _corpus_without(setup.out, forgotten, name)
        data = setup.out / "data" / name
        build_dataset([corpus], setup.tokenizer, kind, data, block_size=cfg.block_size)
        started = time.perf_counter()
        metrics, _ = train(TrainConfig(data=str(data), out=str(_model_dir(setup.out, kind, fraction)), model=cfg.model, max_steps=cfg.steps,
                                       batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=max(cfg.steps // 20, 1),
                                       log_every=max(cfg.steps // 10, 1), seed=cfg.seed))
        echo(f"trained {name}: loss {metrics['train_loss']:.3f} after {metrics['steps']} steps, {time.perf_counter() - started:.0f}s")


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _open_kb(setup: Setup, kind: str, fraction: float | None):
    return SqliteKB(_kb_path(setup.out, fraction)) if kind == "lmlm" else None


def _evaluate_kind(cfg: UnlearnConfig, setup: Setup, kind: str, echo) -> dict:
    tok, full_kb = setup.tokenizer, _open_kb(setup, kind, None)
    before = model_utility(_load(_model_dir(setup.out, kind, None)), tok, setup.utility, full_kb)
    echo(f"{kind} before unlearning: model utility {before['model_utility']:.3f}")
    result = {"before": before, "forget": {}}
    for fraction, people in setup.forget_sets.items():
        result["forget"][f"{fraction:g}"] = _evaluate_fraction(cfg, setup, kind, fraction, people, before["model_utility"], echo)
    if full_kb is not None:
        full_kb.close()
    return result


def _evaluate_fraction(cfg, setup: Setup, kind: str, fraction: float, people: list[Person], before: float, echo) -> dict:
    questions = questions_of(people, cfg.seed)
    tok, forgot_kb, full_kb = setup.tokenizer, _open_kb(setup, kind, fraction), _open_kb(setup, kind, None)
    retain_model = _load(_model_dir(setup.out, kind, fraction))
    reference = truth_ratios(retain_model, tok, questions, forgot_kb)

    def scored(model, kb) -> dict:
        quality = forget_quality(model, tok, questions, kb, reference)
        quality["truth_ratios"] = [round(float(r), 6) for r in quality["truth_ratios"]]
        return {**quality, **model_utility(model, tok, setup.utility, kb)}

    full_dir = _model_dir(setup.out, kind, None)
    result = {"people": len(people), "questions": len(questions), "retain_model": model_utility(retain_model, tok, setup.utility, forgot_kb),
              "original": scored(_load(full_dir), full_kb), "runs": []}
    result["retain_model"]["reference_truth_ratios"] = [round(float(r), 6) for r in reference]
    _echo_point(echo, kind, fraction, "original", result["original"])
    if kind == "lmlm":
        result["deletion"] = scored(_load(full_dir), forgot_kb)
        _echo_point(echo, kind, fraction, "deletion", result["deletion"])
    result["runs"] = _gradient_runs(cfg, setup, kind, people, full_dir, scored, echo, fraction)
    result["best"] = best_runs(result["runs"], before, cfg.max_utility_drop)
    for kb in (forgot_kb, full_kb):
        if kb is not None:
            kb.close()
    return result


def _gradient_runs(cfg, setup: Setup, kind: str, people: list[Person], full_dir: Path, scored, echo, fraction: float) -> list[dict]:
    from lmlm.unlearn.methods import unlearn

    forget, retain = _sequences(setup, kind, {p.name for p in people})
    full_kb = _open_kb(setup, kind, None)
    runs = []
    for method in cfg.methods:
        for lr in cfg.lrs:
            started = time.perf_counter()
            model = unlearn(_load(full_dir).train(), method, forget, retain, setup.tokenizer.pad_token_id, lr=lr, epochs=cfg.epochs,
                            batch_size=cfg.unlearn_batch_size, out=str(setup.out / "unlearn-tmp"), seed=cfg.seed)
            run = {"method": method, "lr": lr, **scored(model, full_kb), "seconds": round(time.perf_counter() - started, 1)}
            _echo_point(echo, kind, fraction, f"{method} lr {lr:g}", run)
            runs.append(run)
    if full_kb is not None:
        full_kb.close()
    return runs


def _sequences(setup: Setup, kind: str, forgotten: set[str]) -> tuple[list[dict], list[dict]]:
    """The forget set's bios and the other train people's, tokenized with their training labels."""
    corpus = setup.out / "world" / "corpus.jsonl"
    rows = _jsonl(corpus)
    texts = documents([corpus], kind)
    is_forget = [row["person"] in forgotten for row in rows]
    tokenized = [{"input_ids": t.ids.tolist(), "labels": t.labels.tolist()} for t in tokenize(texts, setup.tokenizer)]
    return [t for t, f in zip(tokenized, is_forget) if f], [t for t, f in zip(tokenized, is_forget) if not f]


def _echo_point(echo, kind: str, fraction: float, name: str, point: dict) -> None:
    echo(f"{kind} forget {fraction:g} {name}: forget quality {point['forget_quality']:.3g}, model utility {point['model_utility']:.3f}")
