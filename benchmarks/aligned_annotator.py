"""The KB-aligned annotator: accuracy against gold on the synthetic world, agreement with GPT-4o on
real SQuAD passages, and throughput.

  synthetic  precision and recall of (triplet, position) against the world's gold annotation
  real       for each example of squad-train1k (GPT-4o, cleaned), re-annotate ``text`` with that
             example's own triplets; agreement = the same triplet placed within +-1 word of GPT-4o's
  speed      passages per second on the synthetic corpus

    python benchmarks/aligned_annotator.py [--people 2000] [--out benchmarks/results/aligned_annotator.json]
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm import markup  # noqa: E402
from lmlm.annotate.aligned import AlignedAnnotator  # noqa: E402
from lmlm.corpus import read_corpus  # noqa: E402
from lmlm.world import make_world  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SQUAD = REPO.parent / "shared" / "data" / "lmlm-annotated" / "squad-train1k_chatgpt_gpt4o-v7.1_cleaned.json"


def placements(annotated: str) -> list[tuple[tuple, int, int]]:
    """(triplet, character offset, word index) of each lookup in the plain text."""
    out, plain = [], ""
    for s in markup.parse(annotated).segments:
        if isinstance(s, str):
            plain += s
        else:
            offset = len(plain) + len(s.lead)
            out.append((s.triplet, offset, len((plain + s.lead).split())))
    return out


def synthetic(people: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        make_world(tmp, people=people, seed=0, phrasing="plain")
        kb = json.loads((Path(tmp) / "kb.json").read_text())["triplets"]
        corpus = [json.loads(line) for line in (Path(tmp) / "corpus.jsonl").read_text().splitlines()]
    annotator = AlignedAnnotator(map(tuple, kb))
    annotator.annotate(corpus[0]["text"])
    start = time.perf_counter()
    outputs = [annotator.annotate(example["text"]) for example in corpus]
    seconds = time.perf_counter() - start
    tp = fp = fn = 0
    for example, output in zip(corpus, outputs):
        gold = {(t, o) for t, o, _ in placements(example["annotated_text"])}
        mine = {(t, o) for t, o, _ in placements(output)}
        tp, fp, fn = tp + len(gold & mine), fp + len(mine - gold), fn + len(gold - mine)
    return {"people": people, "passages": len(corpus), "precision": round(tp / (tp + fp), 4), "recall": round(tp / (tp + fn), 4),
            "passages_per_second": round(len(corpus) / seconds)}


def word_map(src: list[str], dst: list[str]) -> list[int]:
    """For each word index of ``src``, the aligned word index of ``dst`` (nearest aligned one before it)."""
    mapping = [0] * (len(src) + 1)
    last = 0
    blocks = {}
    for a, b, size in difflib.SequenceMatcher(None, src, dst, autojunk=False).get_matching_blocks():
        for k in range(size):
            blocks[a + k] = b + k
    for i in range(len(src) + 1):
        last = blocks.get(i, last + (1 if i else 0))
        mapping[i] = last
    return mapping


def real(path: Path) -> dict:
    examples = read_corpus(path).examples
    annotator = AlignedAnnotator()
    gold_total = mine_total = agreed = 0
    start = time.perf_counter()
    for example in examples:
        gold = placements(example["annotated_text"])
        output = annotator.annotate(example["text"], [t for t, _, _ in gold])
        mine = placements(output)
        gold_plain = markup.strip(example["annotated_text"]).split()
        to_text = word_map(gold_plain, example["text"].split())
        gold_in_text = [(t, to_text[min(w, len(gold_plain))]) for t, _, w in gold]
        unmatched = list(gold_in_text)
        for t, _, w in mine:
            hit = next((g for g in unmatched if g[0] == t and abs(g[1] - w) <= 1), None)
            if hit:
                unmatched.remove(hit)
                agreed += 1
        gold_total += len(gold)
        mine_total += len(mine)
    seconds = time.perf_counter() - start
    return {"file": path.name, "examples": len(examples), "gpt4o_lookups": gold_total, "aligned_lookups": mine_total, "agreed": agreed,
            "agreement_of_gpt4o_lookups": round(agreed / gold_total, 4), "agreement_of_aligned_lookups": round(agreed / max(mine_total, 1), 4),
            "passages_per_second": round(len(examples) / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--real", type=Path, default=SQUAD)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "aligned_annotator.json")
    args = parser.parse_args()
    report = {"synthetic": synthetic(args.people), "real": real(args.real)}
    s = report["synthetic"]
    report["targets"] = {"precision>=0.98": s["precision"] >= 0.98, "recall>=0.98": s["recall"] >= 0.98, "passages/s>=1000": s["passages_per_second"] >= 1000}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{'':<10}{'passages':>9}{'precision':>10}{'recall':>8}{'passages/s':>11}")
    print(f"{'synthetic':<10}{s['passages']:>9}{s['precision']:>10.4f}{s['recall']:>8.4f}{s['passages_per_second']:>11}")
    r = report["real"]
    print(f"real ({r['file']}): {r['agreed']} of {r['gpt4o_lookups']} GPT-4o lookups placed alike within +-1 word "
          f"({r['agreement_of_gpt4o_lookups']:.3f}); {r['agreement_of_aligned_lookups']:.3f} of the aligned annotator's {r['aligned_lookups']}")
    print("targets:", report["targets"])


if __name__ == "__main__":
    main()
