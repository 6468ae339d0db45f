"""Would one calibrated decision beat the hand thresholds? A logistic regression over the features the resolver
already computes, fitted on natural queries only, against the default mode's rule on the same candidates.

For each query, ``explain`` gives the candidate entities and their facts; the candidate is the best fact that may
answer (no sibling, no fact of another kind), over the entities, by entity score times similarity. Its features:
similarity to the asked relation, lead over the entity's next relation, order-free word overlap of the two relation
names after light stemming, whether the asked relation names a kind, and the entity score. Its label: its value is
a right answer. The model is fitted on the cross-annotator fit half alone (the generated kinds come from a synonym
table written here, and a model fitted on them would learn that table), and the probability p it must reach is chosen
there: the most right answers at most 0.05 wrong. Both rules are then scored on sets that chose nothing: the confirm
half, the hand-written queries on the real KB, and the generated kinds of the synthetic KB. An exact-tier answer
stands under both rules.

    python experiments/relation_decision.py [--out experiments/results/relation_decision.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "experiments"))

import retrieval_quality as rq  # noqa: E402
from relation_ranking import overlap  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from lmlm.corpus import read_corpus  # noqa: E402
from lmlm.errors import LmlmError  # noqa: E402
from lmlm.evaluate.retrieval_sets import cross_annotator_queries, read_handwritten  # noqa: E402
from lmlm.files import atomic_write  # noqa: E402
from lmlm.kb.io import read_any  # noqa: E402
from lmlm.kb.value_types import relation_kind  # noqa: E402

FEATURES = ("similarity", "lead", "word_overlap", "kind_named", "entity_score")
CHECKS = ("cross_fit", "cross_confirm", "handwritten", "generated_check")
FITS = (("cross_fit",), ("cross_fit", "generated_fit"))
MAX_WRONG = 0.05


BLOCKED = ("none: the query names a forgotten entity", "none: the best fact was deleted", "none: facts of several entities")


def candidate_row(kb, query: dict) -> dict:
    """The query's candidate fact, its features, whether its value is right, and what the hand rule answered. Where
    the rule's entity-level checks (a forgotten entity named, a deleted fact, entities tied) refuse to answer, the
    model has no candidate either: only the relation decision is compared."""
    explained = kb.explain(query["entity"], query["relation"])
    best = None
    for entity in [] if explained["decision"].startswith(BLOCKED) else explained["entities"]:
        scored = [f for f in entity["facts"] if f["similarity"] is not None]
        top = next((f for f in scored if f["left_out"] is None), None)
        if entity["forgotten"] or top is None or (best and entity["entity_score"] * top["similarity"] <= best[0]):
            continue
        runner_up = next((f["similarity"] for f in scored if f["key"] != top["key"]), 0.0)
        features = [top["similarity"], top["similarity"] - runner_up, overlap(query["relation"], top["relation"]),
                    float(relation_kind(query["relation"]) is not None), entity["entity_score"]]
        best = (entity["entity_score"] * top["similarity"], top["value"], features)
    if best is not None and best[1] is None:  # a deleted fact is no answer
        best = None
    answer = explained["answer"]
    expected = query["expected"]
    return {"kind": query["kind"], "expected": expected, "exact": answer["tier"] == "exact", "rule_value": answer["value"],
            "value": best[1] if best else None, "features": best[2] if best else None,
            "right": bool(best and expected is not None and best[1] in expected)}


def figures(rows: list[dict], answers: list[bool], values: list[str | None]) -> dict:
    """Right / wrong over the answerable queries, abstention over the absent ones."""
    answerable = [(r, a, v) for r, a, v in zip(rows, answers, values) if r["expected"] is not None]
    absent = [a and v is not None for r, a, v in zip(rows, answers, values) if r["expected"] is None]
    right = sum(a and v is not None and v in r["expected"] for r, a, v in answerable)
    wrong = sum(a and v is not None for _, a, v in answerable) - right
    out = {"answerable": len(answerable), "absent": len(absent)}
    if answerable:
        out.update(right=round(right / len(answerable), 3), wrong=round(wrong / len(answerable), 3))
    if absent:
        out["absent_abstained"] = round(sum(not a for a in absent) / len(absent), 3)
    return out


def by_kind(rows: list[dict], answers: list[bool], values: list[str | None]) -> dict:
    """The figures of the whole set, and of each kind of query in it."""
    out = {"all": figures(rows, answers, values)}
    for kind in sorted({r["kind"] for r in rows}):
        chosen = [i for i, r in enumerate(rows) if r["kind"] == kind]
        out[kind] = figures([rows[i] for i in chosen], [answers[i] for i in chosen], [values[i] for i in chosen])
    return out


def rule_figures(rows: list[dict]) -> dict:
    return by_kind(rows, [r["rule_value"] is not None for r in rows], [r["rule_value"] for r in rows])


def model_answers(rows: list[dict], model, p: float) -> tuple[list[bool], list[str | None]]:
    answers = [r["exact"] or (r["features"] is not None and model.predict_proba([r["features"]])[0, 1] >= p) for r in rows]
    return answers, [r["rule_value"] if r["exact"] else r["value"] for r in rows]


def model_figures(rows: list[dict], model, p: float) -> dict:
    return by_kind(rows, *model_answers(rows, model, p))


def chosen_p(rows: list[dict], model) -> float:
    """The p with the most right answers at most MAX_WRONG wrong on ``rows``, then the most abstention, then the
    highest; p runs over the midpoints of the rows' own probabilities, and answering everything or nothing."""
    probabilities = sorted({float(model.predict_proba([r["features"]])[0, 1]) for r in rows if r["features"]})
    candidates = [0.0] + [(a + b) / 2 for a, b in zip(probabilities, probabilities[1:])] + [1.0 + 1e-6]

    def merit(p: float) -> tuple:
        f = figures(rows, *model_answers(rows, model, p))
        return f["wrong"] <= MAX_WRONG, f["right"], f.get("absent_abstained", 0.0), p
    return max(candidates, key=merit)


def query_sets(args, workdir: Path) -> dict[str, tuple]:
    """Each set's name, the KB it is asked of, and its queries as dicts."""
    dev_triplets = [row[:3] for row in read_any(args.retrieval_dev / rq.CROSS_DATABASE)]
    cross, _ = cross_annotator_queries(read_corpus(args.retrieval_dev / rq.CROSS_CALLS).examples, dev_triplets)
    real = [row[:3] for path in sorted(args.shared.glob("*.json")) for row in read_any(path)]
    synthetic = rq.synthetic_triplets(2000, random.Random(0))
    dwiki_kb, real_kb, synthetic_kb = (rq.build_kb(n, t, workdir)[0] for n, t in
                                       (("dwiki", dev_triplets), ("real", real), ("synthetic", synthetic)))
    return {
        "cross_fit": (dwiki_kb, [q.to_json() for q in cross if q.set == "cross_fit"]),
        "cross_confirm": (dwiki_kb, [q.to_json() for q in cross if q.set == "cross_confirm"]),
        "handwritten": (real_kb, [q.to_json() for q in read_handwritten(args.handwritten)]),
        "generated_fit": (synthetic_kb, rq.make_queries(synthetic, random.Random(0), 100)),
        "generated_check": (synthetic_kb, rq.make_queries(synthetic, random.Random(1), 100)),
    }


def fitted_report(rows: dict[str, list[dict]], fit_sets: tuple[str, ...]) -> dict:
    """A model fitted on ``fit_sets``, its p chosen there, and its figures on every set."""
    fit = [r for name in fit_sets for r in rows[name]]
    train = [r for r in fit if r["features"] and not r["exact"]]
    if len({r["right"] for r in train}) < 2:
        raise LmlmError(f"{'+'.join(fit_sets)}: no right and wrong candidates both to fit a decision on")
    model = LogisticRegression(C=1.0, max_iter=1000).fit(np.array([r["features"] for r in train]), [r["right"] for r in train])
    p = chosen_p(fit, model)
    return {"coefficients": dict(zip(FEATURES, map(float, model.coef_[0]))), "intercept": float(model.intercept_[0]),
            "p_chosen_on_fit": p, "sets": {name: model_figures(rows[name], model, p) for name in (*fit_sets, *CHECKS)},
            "sweep": {name: {f"{q:.1f}": model_figures(rows[name], model, q)["all"] for q in np.arange(0.1, 1.0, 0.1)}
                      for name in CHECKS}}


def print_table(report: dict) -> None:
    models = list(report["models"])
    print(f"{'set':22s} {'kind':24s} {'n':>4s} " + " ".join(f"{m:>34s}" for m in ["hand rule", *models]))
    for name, rule in report["hand_rule"].items():
        for kind, figures_of_kind in rule.items():
            cells = [_cell(figures_of_kind)] + [_cell(report["models"][m]["sets"][name][kind]) for m in models]
            n = figures_of_kind["answerable"] + figures_of_kind["absent"]
            print(f"{name:22s} {kind:24s} {n:4d} " + " ".join(f"{c:>34s}" for c in cells))
    for m in models:
        print(f"model fitted on {m}: p = {report['models'][m]['p_chosen_on_fit']:.3f}, coefficients "
              + ", ".join(f"{k} {v:+.2f}" for k, v in report["models"][m]["coefficients"].items()))


def _cell(f: dict) -> str:
    parts = [f"{f['right']:.3f} / {f['wrong']:.3f}"] if f["answerable"] else []
    return ", ".join(parts + ([f"abstained {f['absent_abstained']:.3f}"] if f["absent"] else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--retrieval-dev", type=Path, default=rq.RETRIEVAL_DEV)
    parser.add_argument("--shared", type=Path, default=rq.SHARED)
    parser.add_argument("--handwritten", type=Path, default=rq.HANDWRITTEN)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "relation_decision.json")
    args = parser.parse_args()
    if args.out.is_dir():
        parser.error(f"--out: {args.out} is a directory; give a file")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sets = query_sets(args, Path(tmp))
        except (LmlmError, OSError) as e:
            parser.exit(2, f"relation_decision: {e}\n")
        rows = {name: [candidate_row(kb, q) for q in tqdm(queries, desc=name)] for name, (kb, queries) in sets.items()}
    report = {"command": "python experiments/relation_decision.py", "features": FEATURES, "max_wrong": MAX_WRONG,
              "hand_rule": {name: rule_figures(rows[name]) for name in CHECKS}, "models": {}}
    for fit_sets in FITS:
        try:
            report["models"]["+".join(fit_sets)] = fitted_report(rows, fit_sets)
        except LmlmError as e:
            parser.exit(2, f"relation_decision: {e}\n")
    print_table(report)
    with atomic_write(args.out) as f:
        f.write(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
