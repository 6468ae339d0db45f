"""Throughput of the dataset builder (tokenize, label, pack, write) in both modes, on the real
annotated corpora in ../shared and on a 10,000-person synthetic world.

    python benchmarks/data_build.py [--out benchmarks/results/data_build.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.data import build_dataset, documents  # noqa: E402
from lmlm.tokenizer import train_tokenizer  # noqa: E402
from lmlm.world import make_world  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lmlm-annotated"


def measure(name: str, paths: list[Path], tmp: Path, vocab_size: int) -> dict:
    tokenizer = train_tokenizer(documents(paths, "lmlm") + documents(paths, "standard"), vocab_size=vocab_size)
    out = {}
    for mode in ("lmlm", "standard"):
        start = time.perf_counter()
        meta = build_dataset(paths, tokenizer, mode, tmp / f"{name}-{mode}")
        seconds = time.perf_counter() - start
        out[mode] = {**meta["counts"], "seconds": round(seconds, 2), "tokens_per_second": round(meta["counts"]["total"] / seconds)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_build.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_world(tmp / "world", people=args.people, seed=0, phrasing="plain")
        report = {
            "real (../shared, *_cleaned.json)": measure("real", sorted(SHARED.glob("*_cleaned.json")), tmp, 8192),
            f"world ({args.people} people)": measure("world", [tmp / "world" / "corpus.jsonl"], tmp, 4096),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{'corpus':<36}{'mode':<10}{'tokens':>10}{'T_org':>10}{'calls':>10}{'values':>9}{'tokens/s':>11}")
    for name, modes in report.items():
        for mode, r in modes.items():
            print(f"{name:<36}{mode:<10}{r['total']:>10}{r['t_org']:>10}{r['lookup_call']:>10}{r['value']:>9}{r['tokens_per_second']:>11}")


if __name__ == "__main__":
    main()
