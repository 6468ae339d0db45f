"""Throughput of the openai annotation backend against a local OpenAI-compatible server that answers each
request after a fixed delay (as a loaded LLM endpoint would), on real passages from ../shared.

The server (tests/fake_openai.py) runs in its own process, so client and server do not share a GIL.
At concurrency C and delay D the latency-bound limit is C / D passages per second (64 / 0.2 s = 320/s).

    python benchmarks/annotate_throughput.py [--passages 1000] [--concurrency 64] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from live_server import free_port  # noqa: E402

from lmlm.annotate.llm import OpenAIBackend  # noqa: E402
from lmlm.annotate.run import annotate_llm  # noqa: E402
from lmlm.corpus import read_corpus  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "lmlm-annotated"


def real_answers(count: int) -> dict[str, str]:
    """Up to ``count`` distinct real passages and their annotations."""
    answers = {}
    for path in sorted(SHARED.glob("*_cleaned.json")):
        for example in read_corpus(path).examples:
            answers.setdefault(example["text"], example["annotated_text"])
    if len(answers) < count:
        raise SystemExit(f"only {len(answers)} distinct passages in {SHARED}, asked for {count}")
    return dict(list(answers.items())[:count])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the local server did not start on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "annotate_throughput.json")
    args = parser.parse_args()
    answers = real_answers(args.passages)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "answers.json").write_text(json.dumps(answers))
        corpus = tmp / "plain.jsonl"
        corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(answers)))
        port = free_port()
        server = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_openai.py"), str(tmp / "answers.json"),
                                   "--port", str(port), "--delay", str(args.delay)])
        try:
            wait_for_port(port)
            backend = OpenAIBackend("bench", base_url=f"http://127.0.0.1:{port}/v1", concurrency=args.concurrency, timeout=30)
            summary = annotate_llm(corpus, tmp / "out.jsonl", backend)
        finally:
            server.terminate()
            server.wait(timeout=10)
    limit = args.concurrency / args.delay
    report = {"passages": args.passages, "concurrency": args.concurrency, "delay_s": args.delay, "latency_bound_per_s": limit,
              "passages_per_s": summary["passages_per_second"], "fraction_of_bound": round(summary["passages_per_second"] / limit, 3),
              "seconds": summary["seconds"], "annotated": summary["annotated"], "repaired": summary["repaired"], "retried": summary["retried"],
              "rejected": summary["rejected"], "request_retries": summary["request_retries"], "target_per_s": 200}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{'passages':>9}{'conc':>6}{'delay':>7}{'bound/s':>9}{'passages/s':>12}{'of bound':>10}{'annotated':>11}{'repaired':>10}{'rejected':>10}")
    print(f"{args.passages:>9}{args.concurrency:>6}{args.delay:>7}{limit:>9.0f}{report['passages_per_s']:>12}"
          f"{report['fraction_of_bound']:>10}{summary['annotated']:>11}{summary['repaired']:>10}{sum(summary['rejected'].values()):>10}")


if __name__ == "__main__":
    main()
