"""The end-to-end run: world -> aligned annotation -> KB -> tiny LMLM and Standard -> every suite ->
report -> live editing. ``lmlm demo [--quick] [--out DIR]``; ``--quick`` is a smoke test of the machinery."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from lmlm.annotate.clean import clean_examples
from lmlm.annotate.run import annotate_aligned
from lmlm.corpus import read_corpus, write_corpus
from lmlm.data import build_dataset, documents
from lmlm.engine import LMLM
from lmlm.engine.config import CONSTRAINTS
from lmlm.errors import LmlmError
from lmlm.evaluate import suites
from lmlm.evaluate.report import table, write_report
from lmlm.kb import SqliteKB
from lmlm.kb.io import build as build_kb
from lmlm.ngrams import NgramsConfig, build_ngrams
from lmlm.tokenizer import train_tokenizer
from lmlm.train import TrainConfig, launch_training
from lmlm.world import atomic_facts, make_world, read_people


@dataclass
class DemoPlan:
    model: str = "tiny"  # a preset of lmlm.models
    people: int = 1500  # many distinct names: copying a name into a call pays, memorizing names does not
    steps: int = 800
    batch_size: int = 16
    block_size: int = 128
    lr: float = 3e-3
    phrasing: str = "varied"  # how the world's bios are worded (lmlm.world.Phrasing)
    vocab_size: int = 640  # small enough that surnames split into shared pieces, so unseen names can be copied
    completion_per_split: int = 400
    bios: int = 100
    ppl_docs: int = 100
    dynamic_docs: int = 30
    forget_people: int = 40
    # The LMLM generates as it would be served: its calls held to the KB's entity names and their relations,
    # which catches a misspelt name before the lookup misses; the unconstrained figures are reported beside.
    constrain_lookups: str = "entity_relation"
    # the sentence encoder's say in a constrained call's relation (GenerationConfig.relation_prior): chosen on the
    # dev set of unseen phrasings, checked on the confirm set (experiments/unseen_phrasings.py, README)
    relation_prior: float = 20.0
    mention_prior: float = 5.0  # the pull of a call's entity toward names the text before it holds: chosen at seed 0, checked at 1
    # a restatement of a looked-up value, once begun, is finished (GenerationConfig.hold_value_repeat): tiny models miscopy
    # a value's later tokens, a year's digits most; chosen on injected people at seed 0 and on the wiki world's dev
    # phrasings, checked on its test phrasings (README)
    hold_value_repeat: bool = True
    # a call right after a looked-up value is weighed by whether the sentence asks for one of the value's relations
    # (GenerationConfig.chain_prior); it acts only where a value is itself an entity of the KB, as in the wiki world,
    # where it was chosen on the dev phrasings and checked on the test ones (README)
    chain_prior: bool = True
    value_loss_every: int = 0  # log the value-token loss every N steps (the memorization figure; 0: off)


# The smoke test: the same stages with the micro model, which passes the point where a model starts
# writing calls within ~100 steps, as tiny does, at a sixth of tiny's cost per step. It gets first names
# right but not yet every surname, so it shows the effect only in part.
SMOKE_NOTE = ("smoke test: the models train too briefly to copy every name into their calls; "
              "run 'lmlm demo' without --quick for the demo's figures")
# Its calls stay unconstrained: a model that has not learned every surname writes half a name, and the constraint
# completes it as another person's, whose facts the bio then states (README). It generates with the engine's
# defaults otherwise too, as its figures in the README were measured.
QUICK = DemoPlan(model="micro", people=1000, steps=300, lr=5e-3, completion_per_split=60, bios=16, ppl_docs=16, dynamic_docs=4,
                 forget_people=8, constrain_lookups="off", relation_prior=0.0, mention_prior=0.0, hold_value_repeat=False, chain_prior=False,
                 phrasing="plain")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0, echo: Callable[[str], None] = print,
             plan: DemoPlan | None = None, progress: bool = True, evaluate_only: bool = False) -> dict:
    """The whole run; ``echo`` takes the stage lines, and ``progress`` shows a live line while the models train.
    With ``evaluate_only``, the world and models a run of the same seed left in ``out`` are evaluated again with
    this version's settings (a run is deterministic for its seed, so the models are the ones it would train)."""
    plan = plan or (QUICK if quick else DemoPlan())
    if quick:
        echo(SMOKE_NOTE)
    out = Path(out)
    if evaluate_only:
        trained = check_trained(out, plan, seed)
    else:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    wall: dict[str, float] = {}
    rng = random.Random(seed)

    def stage(n: int, name: str, fn):
        echo(f"[{n}/7] {name} ...")
        start = time.perf_counter()
        result = fn()
        wall[name] = round(time.perf_counter() - start, 1)
        echo(f"      {name} done in {wall[name]:.1f}s")
        return result

    world = out / "world"
    if evaluate_only:
        echo(f"[1-4/7] world, annotate, kb, train: those of the run in {out}")
        training = trained
    else:
        training = _build_and_train(out, world, plan, seed, stage, echo, progress)
    report = stage(5, "evaluate", lambda: _evaluate(out, world, plan, rng, echo))
    report["evaluated_again"] = evaluate_only
    report["training"] = training
    report["plan"] = asdict(plan)
    report["wall_seconds"] = wall
    echo("\n" + table(report) + "\n")
    report["live_edit"] = stage(6, "live editing", lambda: _live_edit(out, world, echo))
    wall["total"] = round(sum(wall.values()), 1)
    stage(7, "report", lambda: write_report(report, out, title="lmlm demo: LMLM vs Standard on a synthetic world"))
    echo(f"report: {out / 'report.md'}, {out / 'report.json'}; total {wall['total']:.0f}s")
    if quick:
        echo(SMOKE_NOTE)
    return report


def _build_and_train(out: Path, world: Path, plan: DemoPlan, seed: int, stage, echo, progress: bool) -> dict:
    counts = stage(1, "world", lambda: make_world(world, people=plan.people, seed=seed, phrasing=plan.phrasing))
    echo(f"      {counts['people']} people ({counts['retain']} retain, {counts['forget']} forget, {counts['inject']} inject), {counts['bios']} bios")
    annotation = stage(2, "annotate", lambda: annotate_world(out, world))
    echo(f"      {annotation['lookups']} lookups in {annotation['passages']} passages, {annotation['passages_per_second']} passages/s; "
         f"{annotation['clean']['examples_out']} kept after cleaning")
    stage(3, "kb", lambda: build_kb([world / "kb.json"], out / "kb.sqlite"))
    return stage(4, "train", lambda: train_both(out, plan, seed, echo, progress))


def check_trained(out: Path, plan: DemoPlan | None = None, seed: int | None = None) -> dict:
    """The training metrics of the finished run in ``out``, by model; an error naming what is missing, or what
    differs from ``plan`` and ``seed`` (another seed or plan would evaluate other models on other prompts)."""
    needed = [out / "world" / "eval", out / "kb.sqlite", *(out / mode / "lmlm_training.json" for mode in ("lmlm", "standard"))]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise LmlmError(f"--evaluate-only needs a finished demo run in {out}; missing: {', '.join(missing)}")
    metrics = {}
    for mode in ("lmlm", "standard"):
        path = out / mode / "lmlm_training.json"
        try:
            record = json.loads(path.read_text())
            trained, metrics[mode] = record["config"], record["metrics"]
        except (ValueError, KeyError, TypeError) as e:
            raise LmlmError(f"--evaluate-only: {path} is not a finished training's record ({e})") from None
        asked = {"seed": seed, "model": plan and plan.model, "max_steps": plan and plan.steps}
        for key, value in asked.items():
            if value is not None and trained.get(key) != value:
                raise LmlmError(f"--evaluate-only: the run in {out} trained {mode} with {key} {trained.get(key)!r}, not {value!r}")
    return metrics


def annotate_world(out: Path, world: Path) -> dict:
    annotated = annotate_aligned(world / "corpus.jsonl", out / "annotated.jsonl", kb=world / "kb.json")
    kept, report = clean_examples(read_corpus(out / "annotated.jsonl").examples)
    write_corpus(out / "train.jsonl", kept)
    return {**annotated, "clean": report}


def train_both(out: Path, plan: DemoPlan, seed: int, echo: Callable[[str], None], progress: bool, corpus: Path | None = None) -> dict:
    """Both models at once, one core each (small matmuls gain little from a second thread), on ``corpus``
    (default: the cleaned annotations in ``out/train.jsonl``), with a tokenizer trained on it."""
    corpus = [corpus or out / "train.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=plan.vocab_size)
    runs = {}
    for mode in ("lmlm", "standard"):
        build_dataset(corpus, tokenizer, mode, out / f"data-{mode}", block_size=plan.block_size)
        runs[mode] = launch_training(train_config(out, plan, seed, mode), out / f"train-{mode}.log")
    follow_training(runs, out, plan.steps, show=progress)
    metrics = {}
    for mode in runs:
        metrics[mode] = json.loads((out / mode / "lmlm_training.json").read_text())["metrics"]
        echo(f"      {mode}: final train loss {metrics[mode]['train_loss']:.3f} after {metrics[mode]['steps']} steps")
    build_ngrams(NgramsConfig(model=str(out / "lmlm"), corpus=[str(c) for c in corpus]))  # the engine drafts from it
    return metrics


PROGRESS_UPDATES = 100  # log rows per training: the progress line moves about once per 1% of the steps


def train_config(out: Path, plan: DemoPlan, seed: int, mode: str) -> TrainConfig:
    """The demo's training of one model (``mode``: lmlm or standard) on the dataset in ``out/data-{mode}``."""
    return TrainConfig(data=str(out / f"data-{mode}"), out=str(out / mode), model=plan.model, max_steps=plan.steps,
                       batch_size=plan.batch_size, lr=plan.lr, warmup_steps=max(plan.steps // 20, 1),
                       log_every=max(plan.steps // PROGRESS_UPDATES, 1), seed=seed, value_loss_every=plan.value_loss_every)


def follow_training(runs: dict[str, subprocess.Popen], out: Path, steps: int, show: bool = True, poll: float = 0.5) -> None:
    """Wait for the trainings, showing one line for all of them (step/total, loss, tokens/s, ETA), read
    from each checkpoint folder's ``log.jsonl`` as the Trainer appends to it."""
    total = steps * len(runs)
    with tqdm(total=total, unit="step", disable=not show, bar_format="      {desc} | {n_fmt}/{total_fmt} steps, {elapsed} elapsed, ETA {remaining}") as bar:
        while True:
            _stop_if_one_failed(runs, out)
            finished = all(proc.poll() is not None for proc in runs.values())
            latest = {mode: _last_logged(out / mode / "log.jsonl") for mode in runs}
            bar.update(sum(row.get("step", 0) for row in latest.values()) - bar.n)
            bar.set_description_str(" | ".join(_progress_text(mode, row, steps) for mode, row in latest.items()))
            if finished:
                return
            time.sleep(poll)


def _stop_if_one_failed(runs: dict[str, subprocess.Popen], out: Path) -> None:
    """A failed training ends the others at once: the demo cannot go on without both models."""
    failed = [mode for mode, proc in runs.items() if proc.poll() not in (None, 0)]
    if failed:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise LmlmError(f"training the {failed[0]} model failed; see {out / f'train-{failed[0]}.log'}")


def _last_logged(path: Path) -> dict:
    """The last complete training-loss row of a log.jsonl that is still being written ({} before the first)."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # a line without its newline is being written
    except FileNotFoundError:
        return {}
    rows = (json.loads(line) for line in reversed(lines) if line)
    return next((row for row in rows if "loss" in row), {})


def _progress_text(mode: str, row: dict, steps: int) -> str:
    if not row:
        return f"{mode} starting"
    speed = f" {row['tokens_per_second']:,} tok/s" if "tokens_per_second" in row else ""
    return f"{mode} {row['step']}/{steps} loss {row['loss']:.3f}{speed}"


def _sample(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    return rows if len(rows) <= n else rng.sample(rows, n)


def _evaluate(out: Path, world: Path, plan: DemoPlan, rng: random.Random, echo) -> dict:
    kb = SqliteKB(out / "kb.sqlite")
    models = {"lmlm": LMLM.from_pretrained(out / "lmlm", kb=kb), "standard": LMLM.from_pretrained(out / "standard", use_lookups=False)}
    completion = _jsonl(world / "eval" / "completion.jsonl")
    by_split = {s: [p for p in completion if p["split"] == s] for s in ("retain", "forget", "inject")}
    train_prompts = _sample(by_split["retain"] + by_split["forget"], plan.completion_per_split, rng)
    inject_prompts = _sample(by_split["inject"], plan.completion_per_split, rng)
    forget_people = sorted({p["person"] for p in by_split["forget"]})[: plan.forget_people]
    forget_prompts = [p for p in by_split["forget"] if p["person"] in forget_people]
    retain_prompts = _sample(by_split["retain"], plan.completion_per_split, rng)
    bios = _sample([b for b in _jsonl(world / "eval" / "bio_prompts.jsonl") if b["split"] != "inject"], plan.bios, rng)
    heldout = _sample(_jsonl(world / "eval" / "heldout_bios.jsonl"), plan.ppl_docs, rng)
    unseen = {f"completion_{name}": _sample([p for p in _jsonl(world / "eval" / f"completion_{name}.jsonl") if p["split"] != "inject"],
                                            plan.completion_per_split, rng) for name in ("unseen", "unseen_confirm")}

    lmlm_options = call_options(plan)
    report: dict = {"lmlm": dict(lmlm_options), "standard": {}, "records": {}}
    options = {"lmlm": lmlm_options, "standard": {}}
    for name, model in models.items():
        r = report[name]
        echo(f"      {name}: completion")
        r["completion_train"] = suites.completion(model, train_prompts, **options[name])["metrics"]["accuracy"]
        r["completion_inject"] = suites.completion(model, inject_prompts, **options[name])["metrics"]["accuracy"]
        for key, prompts in unseen.items():
            r[key] = suites.completion(model, prompts, **options[name])["metrics"]["accuracy"]
        echo(f"      {name}: factuality")
        fact = suites.factuality(model, bios, extract_facts=atomic_facts, **options[name])
        r["factual_precision"] = fact["metrics"]["factual_precision"]
        r["facts_per_bio"] = fact["metrics"]["facts_per_bio"]
        report["records"][f"{name}_bios"] = fact["records"][:20]
        if name == "lmlm":  # top1_anyway states the nearest fact instead; shown for comparison
            r["factual_precision_top1_anyway"] = suites.factuality(model, bios, fallback="top1_anyway", extract_facts=atomic_facts,
                                                                   **options[name])["metrics"]["factual_precision"]
            r["completion_unconstrained"] = {split: suites.completion(model, prompts)["metrics"]["accuracy"]
                                             for split, prompts in (("train", train_prompts), ("inject", inject_prompts))}
            r["completion_db_off"] = suites.completion(model, train_prompts, use_db=False)["metrics"]["accuracy"]  # the paper's database-off row
        echo(f"      {name}: perplexity")
        r["ppl"] = suites.perplexity(model, heldout, dynamic_docs=plan.dynamic_docs)["metrics"]
    echo("      lmlm: forgetting audit")
    calls = {mode: suites.call_accuracy(models["lmlm"], heldout[: plan.dynamic_docs], mode)["metrics"] for mode in CONSTRAINTS}
    report["lmlm"]["call_accuracy"] = {mode: m["call_accuracy"] for mode, m in calls.items()}
    report["lmlm"]["call_hit_rate"] = {mode: m["call_hit_rate"] for mode, m in calls.items()}
    forget = suites.forgetting(models["lmlm"], forget_prompts, retain_prompts, **options["lmlm"])
    report["lmlm"]["forget"] = forget["metrics"]
    report["records"]["forget"] = forget["records"][:40]
    report["notes"] = _notes(report)
    kb.close()
    return report


def call_options(plan) -> dict:
    """How a plan's LMLM writes its calls and their values (a DemoPlan's or a WikiPlan's): the constraint, the priors
    on a call's relation, entity and chaining, and the held restatement of each value."""
    return {"constrain_lookups": plan.constrain_lookups, "relation_prior": plan.relation_prior, "mention_prior": plan.mention_prior,
            "hold_value_repeat": plan.hold_value_repeat, "chain_prior": plan.chain_prior}


def _notes(report: dict) -> list[str]:
    lmlm, std = report["lmlm"], report["standard"]
    notes = []
    if lmlm["ppl"]["normalized"] > std["ppl"]["standard"]:
        notes.append(f"At this scale LMLM normalized perplexity ({lmlm['ppl']['normalized']:.2f}) is above Standard's "
                     f"({std['ppl']['standard']:.2f}); the paper reports the opposite for 176M-382M models on Wikipedia.")
    return notes


def _live_edit(out: Path, world: Path, echo) -> dict:
    """The model states a fact; the fact is changed in the KB; the model states the new value; the entity is
    forgotten and its facts are no longer stated, while another person's still are."""
    live = out / "kb-live.sqlite"
    for stale in out.glob("kb-live.sqlite*"):  # an earlier run's WAL would be replayed onto the fresh copy
        stale.unlink()
    shutil.copy(out / "kb.sqlite", live)
    for index_file in out.glob("kb.sqlite.*.faiss"):
        shutil.copy(index_file, out / index_file.name.replace("kb.sqlite", "kb-live.sqlite", 1))
    kb = SqliteKB(live)
    model = LMLM.from_pretrained(out / "lmlm", kb=kb)
    people = {p.name: p for p in read_people(world) if p.split == "retain"}
    prompt_of = {p["person"] + p["relation"]: p["prompt"] for p in _jsonl(world / "eval" / "completion.jsonl")}

    def say(p: str) -> str:
        return model.generate(p + suites.FORCED_CALL, max_new_tokens=24).text.strip()

    # the first two people (by name) whose birth city the model looks up, so that the edit changes what it
    # states: a model that names a wrong person can state the right city by chance, and an edit then shows
    # nothing; a model too briefly trained to look any up shows the first two people anyway
    relation = "Birth City"
    with_city = [n for n in sorted(people) if relation in people[n].facts]

    def looks_up_own_fact(name: str) -> bool:
        result = model.generate(prompt_of[name + relation] + suites.FORCED_CALL, max_new_tokens=24)
        return bool(result.lookups) and result.lookups[0].triplet_id == kb.lookup(name, relation).triplet.id

    stating = list(islice((n for n in with_city[:50] if looks_up_own_fact(n)), 2))
    person, other = (people[n] for n in (stating + [n for n in with_city if n not in stating])[:2])
    prompt, other_prompt = prompt_of[person.name + relation], prompt_of[other.name + relation]
    steps = {"prompt": prompt, "before": say(prompt)}
    triplet = kb.lookup(person.name, relation).triplet
    new_value = next(v for v in sorted({p.facts.get(relation) for p in people.values()} - {person.facts[relation], None}))
    kb.update(triplet.id, new_value)
    steps["edited_to"] = new_value
    steps["after_edit"] = say(prompt)
    kb.forget(person.name)
    steps["after_forget"] = say(prompt)
    steps["other_prompt"], steps["other_after_forget"] = other_prompt, say(other_prompt)
    steps["edit_shown"] = new_value in steps["after_edit"]
    steps["forget_shown"] = person.facts[relation] not in steps["after_forget"] and new_value not in steps["after_forget"]
    steps["other_still_stated"] = other.facts[relation] in steps["other_after_forget"]
    echo(f"      {prompt}  ->  {steps['before']}")
    echo(f"      KB: {person.name} / {relation} := {new_value}")
    echo(f"      {prompt}  ->  {steps['after_edit']}")
    echo(f"      KB: forget {person.name}")
    echo(f"      {prompt}  ->  {steps['after_forget']}")
    echo(f"      {other_prompt}  ->  {steps['other_after_forget']}")
    kb.close()
    return steps
