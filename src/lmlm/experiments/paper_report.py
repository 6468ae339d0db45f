"""The report of ``lmlm experiment paper``: ``report.json`` as given and ``report.md``, the paper's tables and the
charts the stages drew (linked by their paths under the report's folder)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lmlm.files import atomic_write

CHARTS = {"memorization": ["memorization/memorization.png"],
          "offload": ["offload/offload_accuracy.png", "offload/offload_perplexity.png"],
          "unlearn": ["unlearn/unlearn.png"]}
MODELS = {"lmlm": "LMLM", "standard": "Standard"}
FORGET_TARGET = 0.05  # the paper's deletion: forget quality above it at 10% forget, utility kept within 0.02
UTILITY_TOLERANCE = 0.02


def write_paper_report(report: dict, out: Path) -> None:
    with atomic_write(out / "report.json") as f:
        json.dump(report, f, indent=1, ensure_ascii=False, default=str)
    with atomic_write(out / "report.md") as f:
        f.write(render(report))


def render(report: dict) -> str:
    sections = [_header(report), _factscore(report["evaluate"]), _trex(report["evaluate"]), _db_off(report["evaluate"]),
                _memorization(report["memorization"]), _offload(report["offload"]), _unlearn(report["unlearn"]), _times(report)]
    return "\n\n".join(sections) + "\n"


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _header(report: dict) -> str:
    cfg = report["config"]
    return (f"# The paper's experiments at CPU scale\n\nLMLM and Standard: `{cfg['model']}` models, {cfg['steps']} steps each on a world "
            f"of {cfg['people']} people ({report['evaluate']['prompts']} completion prompts, {report['evaluate']['bios']} bios); "
            f"offloading sweep: `{cfg['offload_model']}`, {cfg['offload_steps']} steps per fraction, {cfg['offload_people']} people; "
            f"unlearning: {cfg['unlearn_people']} people, {cfg['unlearn_steps']} steps per model; seed {cfg['seed']}.")


def _factscore(evaluation: dict) -> str:
    rows = []
    for model, name in MODELS.items():
        for protocol in ("ours", "reference"):
            m = evaluation[model][protocol]["factuality"]
            rows.append([name, protocol, _num(m["factual_precision"]), _num(m["factscore"]), _num(m["factscore_without_penalty"]),
                         _num(m["respond_ratio"]), _num(m["facts_per_bio"], 1)])
    return "## FactScore (bios)\n\n" + _table(
        ["model", "protocol", "factual precision", "FactScore (length penalty)", "FactScore without penalty", "respond ratio",
         "facts per bio"], rows)


def _trex_row(label: str, protocol: str, m: dict) -> list[str]:
    return [label, protocol, _num(m.get("accuracy")), _num(m.get("exact_match")), *(_num(m.get(f"precision@{k}")) for k in (1, 5, 10)),
            _num(m.get("lookup_success"))]


def _trex(evaluation: dict) -> str:
    rows = [_trex_row(name, protocol, evaluation[model][protocol]["completion"]) for model, name in MODELS.items()
            for protocol in ("ours", "reference")]
    return ("## T-REx-style completion\n\naccuracy: our match (the answer's whole words in the first 5 words, calls removed); "
            "exact match: the reference's (case-sensitive substring of the first 5 raw words); precision@k teacher-forced "
            "(reference protocol only).\n\n"
            + _table(["model", "protocol", "accuracy", "exact match", "precision@1", "precision@5", "precision@10", "lookup success"], rows))


def _db_off(evaluation: dict) -> str:
    sides = [("LMLM, database on", evaluation["lmlm"]), ("LMLM, database off", evaluation["lmlm_db_off"]), ("Standard", evaluation["standard"])]
    rows = [[label, _num(side["ours"]["completion"]["accuracy"]), _num(side["reference"]["completion"]["exact_match"]),
             _num(side["reference"]["completion"]["precision@1"])] for label, side in sides]
    return ("## Database off\n\nThe same LMLM with its database off (ours: lookups banned; reference: calls left unanswered) "
            "next to the Standard model: what the weights know.\n\n"
            + _table(["model", "completion accuracy (ours)", "exact match (reference)", "precision@1 (reference)"], rows))


def _memorization(memorization: dict) -> str:
    rows = [[MODELS[m], _num(memorization["first"][m]), _num(memorization["last"][m])] for m in MODELS]
    return ("## Memorization\n\nLoss (nats) on the facts' value tokens of a fixed batch of training documents, over training.\n\n"
            + _table(["model", "value loss at the start", "at the end"], rows) + "\n\n" + _images("memorization"))


def _offload(offload: dict) -> str:
    rows = [[f"{r['fraction']:g}", _num(r["completion"]), _num(r["factual_precision"]), _num(r["normalized_perplexity"], 2),
             _num(r["completion_db_off"])] for r in offload["rows"]]
    return ("## Offloading sweep\n\n"
            + _table(["share of facts as lookups", "completion", "factual precision", "normalized perplexity", "completion, database off"], rows)
            + "\n\n" + _images("offload"))


def _quality(value: float) -> str:
    return f"{value:.2g}"


def _point(p: dict) -> str:
    return f"{_quality(p['forget_quality'])} ({p['model_utility']:.3f})"


def _unlearn(unlearn: dict) -> str:
    methods = list(dict.fromkeys(m for kind in unlearn["kinds"].values() for size in kind["forget"].values() for m in size["best"]))
    rows = []
    for kind, panel in unlearn["kinds"].items():
        for size, r in panel["forget"].items():
            rows.append([f"{float(size):.0%}", MODELS[kind], _point(r["original"]), _point(r["deletion"]) if "deletion" in r else "–",
                         *(_point(r["best"][m]) if m in r["best"] else "–" for m in methods), f"{r['retain_model_utility']:.3f}"])
    before = ", ".join(f"{MODELS[k]} {p['before_utility']:.3f}" for k, p in unlearn["kinds"].items())
    return ("## Unlearning (TOFU-style)\n\nForget Quality (Model Utility in brackets); each gradient method at its best learning "
            f"rate. Model Utility before unlearning: {before}.\n\n"
            + _table(["forget", "model", "original", "deletion", *methods, "retain-only model's utility"], rows)
            + "\n\n" + _deletion_verdict(unlearn) + "\n\n" + _images("unlearn"))


def _deletion_verdict(unlearn: dict) -> str:
    lmlm = unlearn["kinds"].get("lmlm")
    if not lmlm or not lmlm["forget"]:
        return "No LMLM deletion was run."
    size, r = max(lmlm["forget"].items(), key=lambda item: float(item[0]))
    quality = r["deletion"]["forget_quality"]
    change = round(r["deletion"]["model_utility"] - lmlm["before_utility"], 3) + 0.0  # + 0.0: no "-0.000"
    met = quality >= FORGET_TARGET and -change <= UTILITY_TOLERANCE
    return (f"Deletion at {float(size):.0%} forget: Forget Quality {_quality(quality)} (target ≥ {FORGET_TARGET}), utility change "
            f"{change:+.3f} (target within {UTILITY_TOLERANCE}): target **{'met' if met else 'missed'}**.")


def _images(section: str) -> str:
    return "\n".join(f"![{Path(path).stem}]({path})" for path in CHARTS[section])


def _times(report: dict) -> str:
    rows = [[name, f"{t['wall']:.0f}", f"{t['cpu']:.0f}"] for name, t in report["seconds"].items()]
    rows.append(["**total**", f"{report['total_seconds']['wall']:.0f}", f"{report['total_seconds']['cpu']:.0f}"])
    return ("## Time\n\nWall and CPU seconds (user + system, the training processes included) per stage; a stage done in an "
            "earlier run keeps its times.\n\n" + _table(["stage", "wall s", "CPU s"], rows))
