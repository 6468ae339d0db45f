"""Do KB-constrained calls and the relation prior carry over to the wiki world? Scores a trained side of
``lmlm demo --profile wiki`` (``OUT/noise_0``) again, its LMLM only, once per setting: calls unconstrained, held
to the KB's entities and relations (``entity_relation``), and that with each pair of ``--relation-prior`` and
``--mention-prior`` weights, with the chain prior off or on (``--chain-prior off on``), each value's restatement held
or not (``--hold-value-repeat``, for every setting).

    python experiments/wiki_constraints.py SIDE [--relation-prior 0 20] [--mention-prior 0 20] [--chain-prior off on]
        [--hold-value-repeat] [--per-bucket 80] [--per-hops 80]

For each setting and each split of held-out phrasings (``dev``, ``test``): completion accuracy by the subject's
mention bucket and over all, and multi-hop accuracy by hop count, on the same prompts the wiki demo samples. A
weight is chosen on ``dev``; ``test`` checks it. Writes SIDE/wiki_constraints.json and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

from lmlm.engine import LMLM, GenerationConfig
from lmlm.errors import LmlmError
from lmlm.evaluate import wiki as suites
from lmlm.files import atomic_write, read_jsonl
from lmlm.kb import SqliteKB

SPLITS = ("dev", "test")


def settings(relation: list[float], mention: list[float], chain: list[str], hold: bool) -> dict[str, dict]:
    constrained = {f"entity_relation, relation {r:g}, mention {m:g}, chain {c}":
                   {"constrain_lookups": "entity_relation", "relation_prior": r, "mention_prior": m, "chain_prior": c == "on"}
                   for r, m, c in itertools.product(relation, mention, chain)}
    return {name: {**options, "hold_value_repeat": hold} for name, options in {"off": {}, **constrained}.items()}


def prompts(world: Path, per_bucket: int, per_hops: int, seed: int) -> dict[str, dict[str, list[dict]]]:
    """The wiki demo's own samples: the same draws from a generator seeded the same way."""
    rng = random.Random(seed)

    def read(name, group):
        return [row for _, row in read_jsonl(world / "eval" / f"{name}.jsonl", required=("prompt", "answer", group))]

    completion = {s: suites.sample_by(read(f"completion_{s}", "bucket"), "bucket", per_bucket, rng) for s in SPLITS}
    multihop = {s: suites.sample_by(read(f"multihop_{s}", "hops"), "hops", per_hops, rng) for s in SPLITS}
    return {s: {"completion": completion[s], "multi_hop": multihop[s]} for s in SPLITS}


def score(model: LMLM, sets: dict, options: dict, completion_tokens: int, hop_tokens: int) -> dict:
    results = {}
    for split, chosen in sets.items():
        done = suites.completion_by_mentions(model, chosen["completion"], max_new_tokens=completion_tokens, **options)["metrics"]
        hops = suites.multi_hop(model, chosen["multi_hop"], max_new_tokens=hop_tokens, **options)["metrics"]
        results[split] = {"completion": round(done["accuracy"], 3), "by_bucket": done["by_bucket"], "multi_hop": hops["by_hops"]}
    return results


def main() -> None:
    from lmlm.wiki_run import WIKI_PLAN

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("side", type=Path, help="a trained side of the wiki demo, e.g. runs/wiki/noise_0")
    parser.add_argument("--relation-prior", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--mention-prior", type=float, nargs="+", default=[0.0, WIKI_PLAN.mention_prior])
    parser.add_argument("--chain-prior", nargs="+", choices=["off", "on"], default=["off"])
    parser.add_argument("--hold-value-repeat", action="store_true", help="hold each value's restatement in every setting")
    parser.add_argument("--per-bucket", type=int, default=WIKI_PLAN.per_bucket)
    parser.add_argument("--per-hops", type=int, default=WIKI_PLAN.per_hops)
    parser.add_argument("--seed", type=int, default=0, help="the seed the wiki demo ran with (it draws the prompts)")
    args = parser.parse_args()
    if args.per_bucket < 1 or args.per_hops < 1:
        parser.error("--per-bucket and --per-hops must be at least 1")
    try:
        run(args, WIKI_PLAN)
    except LmlmError as e:  # a side that is not a trained wiki side, a malformed prompts file, a weight out of range
        parser.exit(2, f"wiki_constraints: {e}\n")


def run(args: argparse.Namespace, plan) -> None:
    chosen = settings(args.relation_prior, args.mention_prior, args.chain_prior, args.hold_value_repeat)
    for options in chosen.values():  # every weight checked before minutes of scoring
        GenerationConfig(**options)
    for needed in (args.side / "lmlm", args.side / "kb.sqlite"):
        if not needed.exists():
            raise LmlmError(f"{args.side}: not a trained wiki side ({needed} does not exist)")
    sets = prompts(args.side / "world", args.per_bucket, args.per_hops, args.seed)
    model = LMLM.from_pretrained(args.side / "lmlm", kb=SqliteKB(args.side / "kb.sqlite"))
    results = {}
    for name, options in chosen.items():
        results[name] = score(model, sets, options, plan.completion_tokens, plan.hop_tokens)
        for split in SPLITS:
            r = results[name][split]
            print(f"{name:56s} {split:4s} completion {r['completion']:.3f} by bucket {r['by_bucket']} multi-hop {r['multi_hop']}")
    with atomic_write(args.side / "wiki_constraints.json") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
