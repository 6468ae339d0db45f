"""Training throughput of ``lmlm train``: tokens/s for tiny and small, LMLM and Standard, on the same
documents in the same run, and the achieved FLOP/s against what torch.matmul reaches on this CPU; on a CPU
with native bf16 matmuls, also with bf16 autocast (what ``precision: auto`` picks there) against fp32.

Achieved FLOP/s = 6 x parameters x tokens/s (forward and backward). The matmul ceiling is the best
of several fp32 square products at a few sizes, measured here, now, with the same threads.

    python benchmarks/train_speed.py [--steps 30] [--out benchmarks/results/train_speed.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.data import build_dataset, documents  # noqa: E402
from lmlm.models import count_parameters  # noqa: E402
from lmlm.tokenizer import train_tokenizer  # noqa: E402
from lmlm.train import TrainConfig, train  # noqa: E402
from lmlm.train.run import bf16_enabled  # noqa: E402
from lmlm.world import make_world  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def matmul_flops(repeats: int = 5) -> float:
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def tokens_per_second(out: Path) -> float:
    """The median logged speed, leaving out the first interval (it includes start-up)."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_second"] for r in rows if "tokens_per_second" in r][1:]
    return float(sorted(speeds)[len(speeds) // 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps per run of tiny (small runs half as many)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per model and mode, alternating modes; the best is kept")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_speed.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # bf16 autocast only where the CPU has native bf16 matmuls: elsewhere it is emulated, and precision "auto" keeps fp32
    precisions = ("fp32", "bf16") if bf16_enabled("auto") else ("fp32",)
    report: dict = {"torch_threads": torch.get_num_threads(), "matmul_flops": matmul_flops(), "native_bf16": bf16_enabled("auto"), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_world(tmp / "world", people=400, seed=0, phrasing="plain")
        corpus = [tmp / "world" / "corpus.jsonl"]
        tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=4096)
        for mode in ("lmlm", "standard"):
            build_dataset(corpus, tokenizer, mode, tmp / mode, block_size=args.block_size)
        for preset, steps in (("tiny", args.steps), ("small", args.steps // 2)):
            for repeat in range(args.repeats):
                for mode, precision in [(m, p) for m in ("lmlm", "standard") for p in precisions]:
                    name = f"{preset}/{mode}" + (" bf16" if precision == "bf16" else "")
                    out = tmp / f"{preset}-{mode}-{precision}-{repeat}"
                    cfg = TrainConfig(data=str(tmp / mode), out=str(out), model=preset, max_steps=steps, batch_size=args.batch_size,
                                      log_every=4, warmup_steps=5, precision=precision)
                    _, model = train(cfg)
                    speed, params = tokens_per_second(out), count_parameters(model)
                    if speed > report["runs"].get(name, {}).get("tokens_per_second", 0):
                        report["runs"][name] = {"parameters": params, "tokens_per_second": round(speed), "achieved_flops": 6 * params * speed}
    runs = report["runs"]
    if "bf16" in precisions:
        report["bf16_over_fp32"] = {f"{p}/{m}": round(runs[f"{p}/{m} bf16"]["tokens_per_second"] / runs[f"{p}/{m}"]["tokens_per_second"], 3)
                                    for p in ("tiny", "small") for m in ("lmlm", "standard")}
    report["lmlm_over_standard"] = {p: round(runs[f"{p}/lmlm"]["tokens_per_second"] / runs[f"{p}/standard"]["tokens_per_second"], 3)
                                    for p in ("tiny", "small")}
    report["small_share_of_matmul"] = round(max(runs["small/lmlm"]["achieved_flops"], runs["small/standard"]["achieved_flops"])
                                            / report["matmul_flops"], 3)
    report["targets"] = {
        "lmlm/standard>=0.97": all(r >= 0.97 for r in report["lmlm_over_standard"].values()),
        "small_flops>=30%_of_matmul": report["small_share_of_matmul"] >= 0.30,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"matmul: {report['matmul_flops'] / 1e9:.1f} GFLOP/s on {report['torch_threads']} threads")
    print(f"{'run':<16}{'params':>12}{'tokens/s':>10}{'GFLOP/s':>9}")
    for name, r in runs.items():
        print(f"{name:<16}{r['parameters']:>12,}{r['tokens_per_second']:>10}{r['achieved_flops'] / 1e9:>9.1f}")
    print("lmlm/standard:", report["lmlm_over_standard"], " small / matmul:", report["small_share_of_matmul"])
    if "bf16_over_fp32" in report:
        print("bf16 autocast / fp32:", report["bf16_over_fp32"])
    print("targets:", report["targets"])


if __name__ == "__main__":
    main()
