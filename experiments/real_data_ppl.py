"""The real-data experiment: train tiny LMLM and Standard models on the cleaned annotated corpora in
../shared (squad-train1k and dwiki-eval1k, GPT-4o and fine-tuned-annotator lookups), with the same
budget, and report every perplexity variant on the held-out squad-eval100 next to each other.

The KB for dynamic perplexity holds the lookups of every cleaned file. Call accuracy on the same held-out text
(``suites.call_accuracy``: the model writes each gold call's entity and relation) is scored unconstrained, under
each constraint, and under ``entity_relation`` with the demo's priors, which were chosen on the synthetic world,
so real text only checks them; the last two once more with the margin never ending a call, and the accuracy a
call would have that named one of its document's (entity, relation) pairs at random. Writes JSON and prints a table.

    python experiments/real_data_ppl.py [--steps 400] [--call-docs 100] [--out experiments/results/real_data_ppl.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.corpus import read_corpus  # noqa: E402
from lmlm.data import build_dataset, documents  # noqa: E402
from lmlm.demo import DemoPlan  # noqa: E402
from lmlm.engine import LMLM  # noqa: E402
from lmlm.engine.config import CONSTRAINTS  # noqa: E402
from lmlm.errors import LmlmError  # noqa: E402
from lmlm.evaluate import suites  # noqa: E402
from lmlm.files import atomic_write  # noqa: E402
from lmlm.kb import SqliteKB  # noqa: E402
from lmlm.kb.io import read_annotated  # noqa: E402
from lmlm.tokenizer import train_tokenizer  # noqa: E402
from lmlm.train import TrainConfig, launch_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lmlm-annotated"
TRAIN = ["squad-train1k_chatgpt_gpt4o-v7.1_cleaned.json", "dwiki-eval1k_annotator_llama-v6.1_cleaned.json"]
EVAL = "squad-eval100_chatgpt_gpt4o-v7.1_cleaned.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--dynamic-docs", type=int, default=30)
    parser.add_argument("--call-docs", type=int, default=100, help="held-out documents whose calls are scored")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "real_data_ppl.json")
    args = parser.parse_args()
    if args.steps < 1 or args.dynamic_docs < 1 or args.call_docs < 1:
        parser.error("--steps, --dynamic-docs and --call-docs must be at least 1")
    train_files = [args.shared / name for name in TRAIN]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer = train_tokenizer(documents(train_files, "lmlm") + documents(train_files, "standard"), vocab_size=4096)
        runs = {}
        for mode in ("lmlm", "standard"):
            build_dataset(train_files, tokenizer, mode, tmp / f"data-{mode}", block_size=256)
            cfg = TrainConfig(data=str(tmp / f"data-{mode}"), out=str(tmp / mode), model="tiny", max_steps=args.steps, batch_size=16,
                              lr=2e-3, warmup_steps=args.steps // 20, log_every=max(args.steps // 10, 1))
            runs[mode] = launch_training(cfg, tmp / f"train-{mode}.log")
        for mode, proc in runs.items():
            if proc.wait() != 0:
                sys.exit(f"training {mode} failed:\n" + (tmp / f"train-{mode}.log").read_text()[-2000:])
        kb = SqliteKB(tmp / "kb.sqlite", create=True)
        for path in sorted(args.shared.glob("*_cleaned.json")):
            kb.import_triplets(read_annotated(path))
        docs = read_corpus(args.shared / EVAL).examples
        lmlm = LMLM.from_pretrained(tmp / "lmlm", kb=kb)
        standard = LMLM.from_pretrained(tmp / "standard", use_lookups=False)
        report = {"train_files": TRAIN, "eval_file": EVAL, "steps": args.steps,
                  "lmlm": suites.perplexity(lmlm, docs, dynamic_docs=args.dynamic_docs)["metrics"],
                  "standard": suites.perplexity(standard, docs)["metrics"]}
        report["lmlm"]["dynamic_docs"] = min(args.dynamic_docs, len(docs))
        report["lmlm"]["calls"] = score_calls(lmlm, docs[: args.call_docs])
        kb.close()
    with atomic_write(args.out) as f:
        json.dump(report, f, indent=1)
    lm, st = report["lmlm"], report["standard"]
    print(f"held-out {EVAL} ({lm['t_org_tokens']} T_org tokens), tiny models, {args.steps} steps each")
    print(f"{'':<28}{'perplexity':>12}")
    for label, value in (("LMLM static (oracle)", lm["static"]), ("LMLM normalized", lm["normalized"]),
                         (f"LMLM dynamic ({lm['dynamic_docs']} docs)", lm["dynamic"]), ("Standard", st["standard"])):
        print(f"{label:<28}{value:>12.2f}")
    calls = report["lmlm"]["calls"]
    print(f"\n{calls['calls']} calls in {calls['documents']} held-out documents{'':<3}{'accuracy':>10}{'KB hit':>8}")
    for setting, m in calls["by_setting"].items():
        print(f"{setting:<48}{m['call_accuracy']:>10.3f}{m['call_hit_rate']:>8.3f}")
    print(f"{'a pair of its document drawn at random':<48}{calls['chance']:>10.3f}")


def score_calls(lmlm: LMLM, docs: list[dict]) -> dict:
    plan = DemoPlan()
    priors = {"relation_prior": plan.relation_prior, "mention_prior": plan.mention_prior}
    settings = {mode: {"constrain": mode} for mode in CONSTRAINTS}
    settings["entity_relation, the demo's priors"] = {"constrain": "entity_relation", **priors}
    # the margin's part in the hit rate, and the priors' part in what a call held to the KB gets right (1000 nats is
    # the option's bound; a call it still ended would show as a miss in the hit rate)
    settings["entity_relation, no margin"] = {"constrain": "entity_relation", "margin": 1000.0}
    settings["entity_relation, the demo's priors, no margin"] = {"constrain": "entity_relation", "margin": 1000.0, **priors}
    by_setting = {name: suites.call_accuracy(lmlm, docs, **options)["metrics"] for name, options in settings.items()}
    first = next(iter(by_setting.values()))
    return {"documents": first["documents"], "calls": first["calls"], "chance": first["chance"], "by_setting": by_setting}


if __name__ == "__main__":
    try:
        main()
    except LmlmError as e:  # an unreadable or malformed corpus in --shared
        print(f"real_data_ppl: {e}", file=sys.stderr)
        sys.exit(2)
