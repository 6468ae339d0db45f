"""Reports: JSON with everything, a Markdown page with the side-by-side table, PNG charts (matplotlib)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lmlm.files import atomic_write

ROWS = [  # (label, path in the report, kind, the chart it is drawn in or None)
    ("completion, train people", ("completion_train",), "acc", "accuracy"),
    ("completion, train people, database off", ("completion_db_off",), "acc", "accuracy"),
    ("completion, injected people", ("completion_inject",), "acc", "accuracy"),
    ("completion, unseen phrasings (dev set)", ("completion_unseen",), "acc", "accuracy"),
    ("completion, unseen phrasings (confirm set)", ("completion_unseen_confirm",), "acc", "accuracy"),
    ("factual precision of bios", ("factual_precision",), "acc", "accuracy"),
    ("factual precision, nearest fact on a miss (top1_anyway)", ("factual_precision_top1_anyway",), "acc", "accuracy"),
    ("forget set, KB intact (FULL)", ("forget", "forget_full"), "acc", "forgetting"),
    ("forget set, deleted, lookups on (DEL-ON)", ("forget", "forget_del_on"), "acc", "forgetting"),
    ("forget set, deleted, lookups off (DEL-OFF)", ("forget", "forget_del_off"), "acc", "forgetting"),
    ("retain set, KB intact", ("forget", "retain_full"), "acc", "forgetting"),
    ("retain set, after deletion", ("forget", "retain_del_on"), "acc", "forgetting"),
    ("answers leaked via near neighbours", ("forget", "leaked_near_neighbour"), "count", None),
    ("perplexity, static (oracle)", ("ppl", "static"), "ppl", "perplexity"),
    ("perplexity, dynamic", ("ppl", "dynamic"), "ppl", "perplexity"),
    ("perplexity, normalized", ("ppl", "normalized"), "ppl", "perplexity"),
]


def _get(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "count":
        return str(int(value))
    return f"{value:.3f}" if kind == "acc" else f"{value:.2f}"


def _standard(report: dict, path: tuple[str, ...]):
    """A Standard model has one perplexity, over T_org: it stands next to each LMLM variant."""
    return _get(report.get("standard", {}), ("ppl", "standard") if path[0] == "ppl" else path)


def table(report: dict) -> str:
    """The side-by-side Markdown table of LMLM and Standard."""
    lines = ["| metric | LMLM | Standard |", "|---|---:|---:|"]
    for label, path, kind, _ in ROWS:
        lmlm, std = _get(report.get("lmlm", {}), path), _standard(report, path)
        if lmlm is None and std is None:
            continue
        lines.append(f"| {label} | {_fmt(lmlm, kind)} | {_fmt(std, kind)} |")
    return "\n".join(lines)


def charts(report: dict, out: Path) -> list[str]:
    """Bar charts, LMLM next to Standard: accuracies, forgetting, perplexities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for chart in dict.fromkeys(row[3] for row in ROWS if row[3]):
        name = f"{chart}.png"
        rows = [row for row in ROWS if row[3] == chart]
        labels = [label.replace(", ", ",\n") for label, *_ in rows]
        lmlm = [_get(report.get("lmlm", {}), path) or 0 for _, path, *_ in rows]
        std = [_standard(report, path) or 0 for _, path, *_ in rows]
        fig, ax = plt.subplots(figsize=(1.9 * len(rows) + 2, 3.6), dpi=110)
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], lmlm, width=0.4, label="LMLM", color="#2b6cb0")
        ax.bar([x + 0.2 for x in xs], std, width=0.4, label="Standard", color="#a0aec0")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False)
        ax.set_title(chart)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(name)
    return written


def write_report(report: dict, out: str | Path, title: str = "LMLM vs Standard") -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "report.json") as f:
        json.dump(report, f, indent=1, ensure_ascii=False, default=float)
    images = charts(report, out)
    notes = "\n".join(f"- {n}" for n in report.get("notes", []))
    md = f"# {title}\n\n{table(report)}\n\n" + (f"## Notes\n\n{notes}\n\n" if notes else "")
    md += "\n".join(f"![{i}]({i})" for i in images) + "\n"
    if "wall_seconds" in report:
        md += "\n## Wall time\n\n| stage | seconds |\n|---|---:|\n" + "\n".join(f"| {k} | {v:.1f} |" for k, v in report["wall_seconds"].items()) + "\n"
    with atomic_write(out / "report.md") as f:
        f.write(md)
