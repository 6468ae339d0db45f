"""The entity trie of KB-constrained decoding at scale: how long the first constrained call waits for it, and how
long the first call after an edit waits. Before the trie took only the names the KB gained, each edit cost a whole
new trie: a fresh build after the edits, in the same run, stands for that.

A SQLite KB of ``--entities`` people (kb_scale's names, one fact each, no vectors), a byte-level BPE trained on a
sample of the names, and the engine's ``CallConstraints``. Edits, each timed as the next ``entity_trie()`` call:
a fact added to a known entity, a fact updated, an entity forgotten, and a new entity added.

    python benchmarks/entity_trie.py [--entities 1000000] [--out benchmarks/results/entity_trie.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kb_scale import name  # noqa: E402

from lmlm.engine.config import LookupTokens  # noqa: E402
from lmlm.engine.constrain import CallConstraints  # noqa: E402
from lmlm.kb import SqliteKB  # noqa: E402
from lmlm.tokenizer import train_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 3)


def edits(kb: SqliteKB, n: int) -> dict:
    """Each edit, as a function, in the order they run."""
    added = {}
    return {
        "a fact added to a known entity": lambda: added.setdefault("t", kb.add(name(1), "Nickname", "Ace")),
        "a fact updated": lambda: kb.update(added["t"].id, "Ace of Spades"),
        "an entity forgotten": lambda: kb.forget(name(2), exact=True),
        "a new entity added": lambda: kb.add(name(n), "Birth Place", "Lyon"),
    }


def measure(entities: int, folder: Path) -> dict:
    kb = SqliteKB(folder / "kb.sqlite", create=True)
    t0 = time.perf_counter()
    kb.import_triplets((name(i), "Birth Place", f"City {i % 997}") for i in range(entities))
    report = {"entities": entities, "import_seconds": round(time.perf_counter() - t0, 1)}
    tokenizer = train_tokenizer((name(i) for i in range(0, entities, max(1, entities // 20_000))), vocab_size=4096)
    constraints = CallConstraints(kb, tokenizer, LookupTokens(tokenizer))
    report["first_build_seconds"] = timed(constraints.entity_trie)
    report["after_edit_seconds"] = {}
    for what, edit in edits(kb, entities).items():
        edit()
        report["after_edit_seconds"][what] = timed(constraints.entity_trie)
    report["fresh_build_after_edits_seconds"] = timed(CallConstraints(kb, tokenizer, LookupTokens(tokenizer)).entity_trie)
    kb.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "entity_trie.json")
    args = parser.parse_args()
    if args.entities < 3:
        parser.error("--entities must be at least 3")
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(args.entities, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{'entities':40s} {report['entities']:>12,}")
    print(f"{'first build (s)':40s} {report['first_build_seconds']:>12}")
    for what, seconds in report["after_edit_seconds"].items():
        print(f"{'after ' + what + ' (s)':40s} {seconds:>12}")
    print(f"{'a fresh build after the edits (s)':40s} {report['fresh_build_after_edits_seconds']:>12}")


if __name__ == "__main__":
    main()
