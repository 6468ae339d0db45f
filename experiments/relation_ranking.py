"""How far can relation matching get on the cross-annotator sets, with the entity given?

For each query whose entity is in the Llama annotator's database (as the labeller matched it, or by the asked name
for an absent query; ``benchmarks/data/README.md``), that entity's stored relations are ranked by three scores: the
KB's own (MiniLM cosine of "What is their R?"), order-free word overlap after light stemming (Dice), and their sum. A paraphrase query is right at top 1 when the best
relation holds the labelled value. Then one threshold on the best score, chosen on the fit half for the most right
answers with at most 0.05 wrong, is applied to the confirm half: right / wrong on paraphrases and the share of absent
queries abstained on. The entity is given here, so these figures bound what a matcher with these signals can do.

    python experiments/relation_ranking.py [--retrieval-dev DIR] [--out experiments/results/relation_ranking.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.corpus import read_corpus  # noqa: E402
from lmlm.errors import LmlmError  # noqa: E402
from lmlm.evaluate.retrieval_sets import content_words, cross_annotator_queries, fold  # noqa: E402
from lmlm.files import atomic_write  # noqa: E402
from lmlm.kb.encoder import RELATION_TEMPLATE, SentenceEncoder  # noqa: E402
from lmlm.kb.fields import row_problem  # noqa: E402
from lmlm.kb.io import read_any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RETRIEVAL_DEV = REPO.parent / "shared" / "data" / "retrieval-dev"
DATABASE = "dwiki-eval100-annotator_database.json"
CALLS = "dwiki-eval100-devhalf_chatgpt_gpt4o-v7.1_cleaned.json"
SUFFIXES = ("ments", "ment", "ions", "ion", "ings", "ing", "ers", "er", "ed", "s")
MAX_WRONG = 0.05


def stems(relation: str) -> set[str]:
    """Content words with a common suffix taken off where three letters are left, so that "Founded" and "Founding",
    "Located" and "Location", "Established" and "Establishment" meet."""
    words = set()
    for word in content_words(fold(relation).split()):
        suffix = next((s for s in SUFFIXES if word.endswith(s) and len(word) - len(s) >= 3), "")
        words.add(word[: len(word) - len(suffix)])
    return words


def overlap(asked: str, stored: str) -> float:
    a, b = stems(asked), stems(stored)
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def scored_queries(queries, triplets, encoder) -> list[dict]:
    """Each query whose entity the database holds: its kind, half, whether each score's top relation is right, and
    the best score."""
    relations_of = defaultdict(set)
    for entity, relation, _ in triplets:
        relations_of[entity].add(relation)
    names = sorted({q.relation for q in queries} | {r for rs in relations_of.values() for r in rs})
    vectors = dict(zip(names, encoder.encode([RELATION_TEMPLATE.format(n) for n in names])))
    rows = []
    for q in queries:
        entity = q.matches[0]["entity"] if q.matches else q.entity
        candidates = sorted(relations_of.get(entity, ()))
        if not candidates:
            continue
        semantic = np.array([float(vectors[q.relation] @ vectors[c]) for c in candidates])
        lexical = np.array([overlap(q.relation, c) for c in candidates])
        right = {m["relation"] for m in q.matches if m["entity"] == entity}
        row = {"half": q.set, "kind": q.kind}
        for name, score in (("minilm", semantic), ("words", lexical + 1e-3 * semantic), ("both", semantic + lexical)):
            best = int(np.argmax(score))
            row[name] = {"right": candidates[best] in right, "score": float(score[best])}
        rows.append(row)
    return rows


def at_threshold(rows: list[dict], score: str, threshold: float) -> dict:
    paraphrase = [r[score] for r in rows if r["kind"] == "paraphrase"]
    absent = [r[score] for r in rows if r["kind"] == "absent"]
    answered = [r for r in paraphrase if r["score"] >= threshold]
    return {"top1": sum(r["right"] for r in paraphrase) / len(paraphrase), "right": sum(r["right"] for r in answered) / len(paraphrase), "wrong": sum(not r["right"] for r in answered) / len(paraphrase),
            "absent_abstained": sum(r["score"] < threshold for r in absent) / len(absent),
            "paraphrase": len(paraphrase), "absent": len(absent)}


def chosen_threshold(rows: list[dict], score: str) -> float:
    """The threshold with the most right paraphrase answers at most MAX_WRONG wrong, then the most absent queries
    abstained on, then the lowest. Thresholds lie halfway between neighbouring scores, never on one."""
    scores = sorted({r[score]["score"] for r in rows})
    thresholds = [scores[0] - 1.0] + [(a + b) / 2 for a, b in zip(scores, scores[1:])] + [scores[-1] + 1.0]

    def merit(t: float) -> tuple:
        figures = at_threshold(rows, score, t)
        return figures["wrong"] <= MAX_WRONG, figures["right"], figures["absent_abstained"], -t
    return max(thresholds, key=merit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--retrieval-dev", type=Path, default=RETRIEVAL_DEV)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "relation_ranking.json")
    args = parser.parse_args()
    if args.out.is_dir():
        parser.error(f"--out: {args.out} is a directory; give a file")
    try:
        triplets = [row[:3] for row in read_any(args.retrieval_dev / DATABASE) if not row_problem(*row[:3])]
        queries, _ = cross_annotator_queries(read_corpus(args.retrieval_dev / CALLS).examples, triplets)
    except (LmlmError, OSError) as e:  # a missing, unreadable or malformed file in --retrieval-dev
        parser.exit(2, f"relation_ranking: {e}\n")
    rows = scored_queries(queries, triplets, SentenceEncoder())
    halves = {half: [r for r in rows if r["half"] == half] for half in ("cross_fit", "cross_confirm")}
    if not all({"paraphrase", "absent"} <= {r["kind"] for r in half_rows} for half_rows in halves.values()):
        parser.exit(2, "relation_ranking: --retrieval-dev lacks paraphrase or absent queries in one of its halves\n")
    report = {"command": "python experiments/relation_ranking.py", "max_wrong": MAX_WRONG, "scores": {}}
    print(f"{'score':8s} {'half':14s} {'top-1':>6s} {'threshold':>9s} {'right':>6s} {'wrong':>6s} {'absent abstained':>17s}")
    for score in ("minilm", "words", "both"):
        threshold = chosen_threshold(halves["cross_fit"], score)
        report["scores"][score] = {"threshold_chosen_on_fit": threshold, "halves": {}}
        for half, half_rows in halves.items():
            figures = report["scores"][score]["halves"][half] = at_threshold(half_rows, score, threshold)
            print(f"{score:8s} {half:14s} {figures['top1']:6.2f} {threshold:9.3f} {figures['right']:6.2f} {figures['wrong']:6.2f} "
                  f"{figures['absent_abstained']:17.2f}")
    with atomic_write(args.out) as f:
        f.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
