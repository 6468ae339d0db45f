"""Which world wording teaches a tiny LMLM to ask about facts in phrasings it never saw? The runs behind the demo's
``phrasing`` (``lmlm.world.Phrasing``).

    python experiments/unseen_phrasings.py OUT [--phrasing varied|plain] [--seed 0] [--steps 800] [--prompts 300]
        [--relation-prior W [W ...]] [--mention-prior W [W ...]] [--sets NAME [NAME ...]]

Makes a world in the given wording, annotates it and builds its KB as the demo does, trains only the LMLM with the
demo's recipe, and scores completion (calls held to the KB as the demo's are) on the training template, the dev set
of unseen phrasings and the confirm set, each on ``--prompts`` prompts of train people, and the training template
on injected people (their bios never trained on, their facts only in the KB). A wording is chosen on the dev set;
the confirm set checks the choice. ``--relation-prior`` and ``--mention-prior`` score the same model once per pair
of weights of the engine's priors (``GenerationConfig``), which are chosen the same way. Writes
OUT/unseen_phrasings.json: by pair of weights, the accuracy of each set, each phrasing's accuracy, and why each
miss missed (the call named another person, or another relation). A trained OUT is scored again without training.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections import Counter
from pathlib import Path

from lmlm.data import build_dataset, documents
from lmlm.demo import DemoPlan, annotate_world, train_config
from lmlm.engine import LMLM
from lmlm.evaluate import suites
from lmlm.kb import SqliteKB
from lmlm.kb.io import build as build_kb
from lmlm.tokenizer import train_tokenizer
from lmlm.train import launch_training
from lmlm.world import PHRASINGS, make_world

SETS = {"completion": ("completion", "train"), "completion_unseen": ("completion_unseen", "train"),
        "completion_unseen_confirm": ("completion_unseen_confirm", "train"), "completion_inject": ("completion", "inject")}


def train_lmlm(out: Path, plan: DemoPlan, seed: int) -> None:
    make_world(out / "world", people=plan.people, seed=seed, phrasing=plan.phrasing)
    annotate_world(out, out / "world")
    build_kb([out / "world" / "kb.json"], out / "kb.sqlite")
    corpus = [out / "train.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=plan.vocab_size)
    build_dataset(corpus, tokenizer, "lmlm", out / "data-lmlm", block_size=plan.block_size)
    if launch_training(train_config(out, plan, seed, "lmlm"), out / "train-lmlm.log").wait() != 0:
        raise SystemExit(f"training failed; see {out / 'train-lmlm.log'}")


def score(model: LMLM, out: Path, plan: DemoPlan, prompts: int, priors: dict, sets: list[str]) -> dict:
    results = {}
    for name in sets:
        file, people = SETS[name]
        rows = [json.loads(line) for line in (out / "world" / "eval" / f"{file}.jsonl").read_text().splitlines()]
        rows = [r for r in rows if (r["split"] == "inject") == (people == "inject")]
        random.Random(0).shuffle(rows)
        records = suites.completion(model, rows[:prompts], constrain_lookups=plan.constrain_lookups, **priors)["records"]
        results[name] = summarize(records)
    return results


def summarize(records: list[dict]) -> dict:
    by_phrasing: dict[str, list[bool]] = {}
    misses = Counter()
    for r in records:
        by_phrasing.setdefault(r["prompt"].replace(r["person"], "{N}"), []).append(r["correct"])
        if not r["correct"]:
            call = r["lookups"][0] if r["lookups"] else {}
            misses["another person" if call.get("entity") != r["person"] else
                   "another relation" if call.get("relation") != r["relation"] else "other"] += 1
    return {"accuracy": sum(r["correct"] for r in records) / max(len(records), 1), "n": len(records), "misses": dict(misses),
            "by_phrasing": {p: round(sum(v) / len(v), 3) for p, v in sorted(by_phrasing.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--phrasing", choices=list(PHRASINGS), default="varied")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DemoPlan.steps)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--relation-prior", type=float, nargs="+", default=[DemoPlan.relation_prior])
    parser.add_argument("--mention-prior", type=float, nargs="+", default=[DemoPlan.mention_prior])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    args = parser.parse_args()
    plan = DemoPlan(phrasing=args.phrasing, steps=args.steps)
    if not (args.out / "lmlm" / "model.safetensors").is_file():
        train_lmlm(args.out, plan, args.seed)
    model = LMLM.from_pretrained(args.out / "lmlm", kb=SqliteKB(args.out / "kb.sqlite"))
    results = {"phrasing": args.phrasing, "seed": args.seed, "steps": args.steps, "by_priors": {}}
    for relation, mention in itertools.product(args.relation_prior, args.mention_prior):
        priors = {"relation_prior": relation, "mention_prior": mention}
        scored = results["by_priors"][f"relation {relation:g}, mention {mention:g}"] = score(model, args.out, plan, args.prompts, priors, args.sets)
        for name in args.sets:
            print(f"relation {relation:<4g} mention {mention:<4g} {name:26s} {scored[name]['accuracy']:.3f}  misses: {scored[name]['misses']}")
    (args.out / "unseen_phrasings.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
