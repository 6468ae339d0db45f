"""How long should ``make wiki`` train? Trains the models of one side of the wiki demo (``OUT/noise_0`` or
``OUT/noise_default`` of ``lmlm demo --profile wiki``: its world and KB are reused) again at each ``--steps``,
LMLM and Standard with the same budget as ``make wiki`` trains them, each into ``DEST/<side>-<steps>``; then scores
each LMLM as ``make wiki`` generates (``WikiPlan``'s call options) on the same prompts the demo samples.

    python experiments/wiki_steps.py SIDE --steps 800 1600 3200 [--dest runs/wiki-steps] [--per-bucket 80] [--per-hops 80]

The budget is chosen on the noise-0 side's dev phrasings; its test phrasings, and the noisy side, check it.
Writes DEST/wiki_steps.json (one entry per side and budget, kept across runs) and prints a line per budget and split.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from wiki_constraints import SPLITS, prompts, score

from lmlm.demo import call_options, train_both
from lmlm.engine import LMLM
from lmlm.files import atomic_write
from lmlm.kb import SqliteKB
from lmlm.wiki_run import WIKI_PLAN


def train_side(side: Path, dest: Path, steps: int) -> dict:
    """The side's world and KB copied into ``dest``, both models trained there for ``steps``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(side / "world", dest / "world")
    for kb_file in side.glob("kb.sqlite*"):
        shutil.copy2(kb_file, dest / kb_file.name)
    plan = replace(WIKI_PLAN, steps=steps).training()
    return train_both(dest, plan, seed=0, echo=print, progress=True, corpus=dest / "world" / "corpus.jsonl")


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number}: must be at least 1")
    return number


def read_results(path: Path) -> dict:
    """The results written so far (another side's run may have written some), or a clear error."""
    try:
        results = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        refuse(f"{path} is not a results file this script wrote ({e})")
    if not isinstance(results, dict):
        refuse(f"{path} is not a results file this script wrote (not a JSON object)")
    return results


def refuse(message: str) -> None:
    print(f"wiki_steps.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("side", type=Path, help="a trained side of the wiki demo, e.g. runs/wiki/noise_0")
    parser.add_argument("--steps", type=positive, nargs="+", required=True)
    parser.add_argument("--dest", type=Path, default=Path("runs/wiki-steps"))
    parser.add_argument("--per-bucket", type=positive, default=WIKI_PLAN.per_bucket)
    parser.add_argument("--per-hops", type=positive, default=WIKI_PLAN.per_hops)
    args = parser.parse_args()
    missing = [str(p) for p in (args.side / "kb.sqlite", args.side / "world" / "corpus.jsonl") if not p.exists()]
    if missing:
        parser.error(f"{args.side} is no trained side of the wiki demo; missing: {', '.join(missing)}")
    destinations = {steps: args.dest / f"{args.side.name}-{steps}" for steps in args.steps}
    for dest in destinations.values():  # each destination is emptied first: it must not hold the side itself
        if dest.resolve() == args.side.resolve() or dest.resolve() in args.side.resolve().parents:
            refuse(f"--dest {args.dest}: {dest} would be emptied, and it holds the side {args.side}")
    results_file = args.dest / "wiki_steps.json"
    read_results(results_file)  # a bad file is refused before hours of training, not after
    sets = prompts(args.side / "world", args.per_bucket, args.per_hops, seed=0)
    for steps, dest in destinations.items():
        losses = train_side(args.side, dest, steps)
        model = LMLM.from_pretrained(dest / "lmlm", kb=SqliteKB(dest / "kb.sqlite"))
        scored = score(model, sets, call_options(WIKI_PLAN), WIKI_PLAN.completion_tokens, WIKI_PLAN.hop_tokens)
        results = read_results(results_file)
        results[f"{args.side.name}, {steps} steps"] = {"train_loss": losses, **scored}
        for split in SPLITS:
            r = scored[split]
            print(f"{args.side.name} {steps:5d} steps {split:4s} completion {r['completion']:.3f} by bucket {r['by_bucket']} "
                  f"multi-hop {r['multi_hop']}")
        with atomic_write(results_file) as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
