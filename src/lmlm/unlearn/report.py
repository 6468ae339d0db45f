"""The experiment's report: the best learning rate of each method, ``report.json``, and the TOFU panel
(Forget Quality on a log scale against Model Utility), one point per method and forget size."""

from __future__ import annotations

import json
from pathlib import Path

from lmlm.files import atomic_write

FLOOR = 1e-30  # the plot's lowest forget quality: a p-value below it is drawn at it
MARKERS = {"original": "s", "deletion": "*", "retain": "D", "GA": "v", "GD": "^", "NPO": "o", "SimNPO": "P"}
TITLES = {"standard": "Standard model", "lmlm": "LMLM (weights, or deletion from the KB)"}


def best_runs(runs: list[dict], before: float, max_drop: float) -> dict[str, dict]:
    """Per method, the run with the highest Forget Quality among those whose Model Utility stays within
    ``max_drop`` of ``before``; when none does, the run with the highest utility."""
    best = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        kept = [r for r in mine if r["model_utility"] >= before - max_drop]
        choice = max(kept, key=lambda r: r["forget_quality"]) if kept else max(mine, key=lambda r: r["model_utility"])
        best[method] = {"lr": choice["lr"], "forget_quality": choice["forget_quality"], "model_utility": choice["model_utility"],
                        "utility_kept": bool(kept)}
    return best


def points(report: dict, kind: str) -> list[tuple[str, str, float, float]]:
    """(name, forget size, model utility, forget quality) of every point of ``kind``'s panel."""
    out = []
    for size, result in report["kinds"][kind]["forget"].items():
        out.append(("original", size, result["original"]["model_utility"], result["original"]["forget_quality"]))
        out.append(("retain", size, result["retain_model"]["model_utility"], 1.0))
        if "deletion" in result:
            out.append(("deletion", size, result["deletion"]["model_utility"], result["deletion"]["forget_quality"]))
        out += [(method, size, b["model_utility"], b["forget_quality"]) for method, b in result["best"].items()]
    return out


def write_report(report: dict, out: Path) -> None:
    with atomic_write(out / "report.json") as f:
        json.dump(report, f, indent=1)
    plot(report, out / "unlearn.png")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(report["kinds"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), sharey=True, squeeze=False)
    sizes = sorted({size for kind in kinds for _, size, _, _ in points(report, kind)}, key=float)
    colors = dict(zip(sizes, plt.get_cmap("viridis")([0.1 + 0.8 * i / max(len(sizes) - 1, 1) for i in range(len(sizes))])))
    for ax, kind in zip(axes[0], kinds):
        for name, size, utility, quality in points(report, kind):
            ax.scatter(utility, max(quality, FLOOR), marker=MARKERS[name], color=colors[size], s=90 if name == "deletion" else 45,
                       edgecolors="black", linewidths=0.5)
        ax.axhline(0.05, color="gray", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("Model Utility")
        ax.set_title(TITLES.get(kind, kind))
    axes[0][0].set_ylabel("Forget Quality (KS-test p-value, log)")
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="gray", label=n) for n, m in MARKERS.items()]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color=c, label=f"forget {float(s):.0%}") for s, c in colors.items()]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
