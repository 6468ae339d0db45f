"""Trial, not kept: contextual calibration (Zhao et al. 2021, "Calibrate before use") of a call's relation.

A model trained from scratch leans to the relations its corpus asks most, whatever the cue. Calibration subtracts
that lean: a relation scores log p(relation | the text, the call's entity) minus log p(relation | the call's entity
alone). This measures the idea on the relation choice alone, before building it into the engine: for each
completion prompt, the gold entity's call is teacher-forced up to <|db_relationship|>, and each relation the entity
holds in the KB is scored whole (its name and <|db_return|>, summed log-probabilities) four ways: the model, the
model with the relation prior (20 x the encoder's cosine between the call's sentence, read as the engine reads it, and
the relation's name), calibrated, and calibrated with the prior. Accuracy is how often the gold relation scores highest.
The engine instead chooses a relation token by token, each token with the prior of the best relation it leads to,
so these figures compare the four ways with one another, not with the engine's completion accuracy.

    python experiments/relation_calibration.py RUN:SPLIT[,SPLIT] ... [--prompts 300] [--out FILE]

RUN is a trained run with ``world/`` and ``lmlm/`` (a side of make wiki, or a demo run); SPLIT names a file in
``RUN/world/eval`` (completion_dev, completion_test; completion_unseen, completion_unseen_confirm).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmlm.engine.constrain import call_sentence, unit_vectors
from lmlm.errors import LmlmError
from lmlm.files import atomic_write, load_json, read_jsonl
from lmlm.kb.encoder import SentenceEncoder

RELATION_PRIOR = 20.0  # the demo's and make wiki's weight, chosen before this trial


class RelationScorer:
    def __init__(self, run: Path, encoder: SentenceEncoder):
        self.tokenizer = AutoTokenizer.from_pretrained(run / "lmlm")
        self.model = AutoModelForCausalLM.from_pretrained(run / "lmlm").eval()
        self.encoder = encoder
        self.held = relations_held(run / "world" / "kb.json")

    @torch.no_grad()
    def log_probs(self, prefix: str, continuations: list[str]) -> np.ndarray:
        """Each continuation's summed log-probability after ``prefix`` (opened with BOS, as training documents and
        the engine's prompts are), in one batch."""
        head = self.tokenizer(prefix)["input_ids"]
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        width = len(head) + max(map(len, tails))
        ids = torch.tensor([head + t + [0] * (width - len(head) - len(t)) for t in tails])
        logp = self.model(ids).logits.log_softmax(-1)
        return np.array([sum(logp[r, len(head) - 1 + k, token].item() for k, token in enumerate(t)) for r, t in enumerate(tails)])

    def scores(self, prompt: str, entity: str, relations: list[str]) -> dict[str, np.ndarray]:
        tails = [f" {r}<|db_return|>" for r in relations]
        in_text = self.log_probs(f"{prompt} <|db_entity|> {entity}<|db_relationship|>", tails)
        alone = self.log_probs(f"<|db_entity|> {entity}<|db_relationship|>", tails)
        sentence = call_sentence(prompt, entity)
        cosine = unit_vectors(self.encoder.encode(relations)) @ unit_vectors(self.encoder.encode([sentence]))[0]
        prior, calibrated = RELATION_PRIOR * cosine, in_text - alone
        return {"model": in_text, "model + prior": in_text + prior, "calibrated": calibrated, "calibrated + prior": calibrated + prior}


def relations_held(path: Path) -> dict[str, set[str]]:
    """Each entity's relations in a world's KB JSON (``{"triplets": [[entity, relation, value], ...]}``)."""
    document, held = load_json(path), {}
    triplets = document.get("triplets") if isinstance(document, dict) else None
    if not isinstance(triplets, list) or not all(isinstance(t, list) and len(t) == 3 for t in triplets):
        raise LmlmError(f"{path}: expected an object whose 'triplets' is a list of [entity, relation, value]")
    for entity, relation, _ in triplets:
        held.setdefault(entity, set()).add(relation)
    return held


def accuracy(scorer: RelationScorer, rows: list[dict]) -> dict[str, float]:
    hits: dict[str, int] = {}
    for row in rows:
        relations = sorted(scorer.held[row["entity"]])
        for way, score in scorer.scores(row["prompt"], row["entity"], relations).items():
            hits[way] = hits.get(way, 0) + int(relations[int(np.argmax(score))] == row["relation"])
    return {way: round(n / len(rows), 3) for way, n in hits.items()}


def prompts(run: Path, split: str, scorer: RelationScorer, count: int) -> list[dict]:
    """``count`` prompts drawn with a fixed seed, each about an entity that holds more than one relation."""
    path = run / "world" / "eval" / f"{split}.jsonl"
    rows = [row for _, row in read_jsonl(path, required=("prompt", "relation"))]
    for row in rows:
        row.setdefault("entity", row.get("person"))  # the default world's prompts name their subject "person"
        if not isinstance(row["entity"], str):
            raise LmlmError(f"{path}: a prompt without its 'entity' (or 'person')")
    random.Random(0).shuffle(rows)
    return [r for r in rows if len(scorer.held.get(r["entity"], ())) > 1][:count]


def parse_runs(specs: list[str]) -> list[tuple[Path, list[str]]]:
    """RUN:SPLIT[,SPLIT] specs, each run and split file checked before any model loads."""
    runs = []
    for spec in specs:
        run, colon, splits = spec.rpartition(":")
        if not colon or not run or not splits:
            raise LmlmError(f"{spec!r}: expected RUN:SPLIT[,SPLIT]")
        for needed in [Path(run) / "lmlm", Path(run) / "world" / "kb.json",
                       *(Path(run) / "world" / "eval" / f"{split}.jsonl" for split in splits.split(","))]:
            if not needed.exists():
                raise LmlmError(f"{spec!r}: {needed} does not exist")
        runs.append((Path(run), splits.split(",")))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="RUN:SPLIT[,SPLIT]")
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "relation_calibration_trial.json")
    args = parser.parse_args()
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")
    try:
        runs = parse_runs(args.runs)
        encoder, results = SentenceEncoder(), {}
        for run, splits in runs:
            scorer = RelationScorer(run, encoder)
            for split in splits:
                rows = prompts(run, split, scorer, args.prompts)
                results[f"{run}:{split}"] = {"prompts": len(rows), **accuracy(scorer, rows)}
                print(f"{run}:{split:28s}", "  ".join(f"{k} {v}" for k, v in results[f"{run}:{split}"].items()), flush=True)
                with atomic_write(args.out) as f:  # after each set, so a failure later keeps what was measured
                    json.dump({"command": "python experiments/relation_calibration.py " + " ".join(args.runs), "accuracy": results}, f, indent=1)
    except LmlmError as e:
        parser.exit(2, f"relation_calibration: {e}\n")


if __name__ == "__main__":
    main()
