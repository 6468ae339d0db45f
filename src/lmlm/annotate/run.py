"""Running an annotator over a corpus file: read, annotate each example, write atomically."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from lmlm import markup
from lmlm.annotate.aligned import AlignedAnnotator, AlignStats
from lmlm.corpus import read_corpus, write_corpus


def _kb_triplets(kb: str | os.PathLike):
    path = Path(kb)
    if path.suffix in (".sqlite", ".db"):
        from lmlm.kb import SqliteKB

        with SqliteKB(path) as store:
            return [(e, r, v) for _, e, r, v, *_ in store.triplets()]
    from lmlm.kb.io import read_any

    return [row[:3] for row in read_any(path)]


def annotate_aligned(src: str | os.PathLike, out: str | os.PathLike, kb: str | os.PathLike | None = None) -> dict:
    """Annotate every example's ``text``: against a KB, or against the example's own lookups."""
    corpus = read_corpus(src, require=("text",))
    annotator = AlignedAnnotator(_kb_triplets(kb) if kb else ())
    stats = AlignStats()
    start = time.perf_counter()
    results = []
    for example in tqdm(corpus.examples, desc="annotating", unit="passage", disable=len(corpus.examples) < 1000):
        own = markup.triplets(example["annotated_text"]) if kb is None and "annotated_text" in example else None
        if kb is None and own is None:
            own = []
        results.append({**example, "annotated_text": annotator.annotate(example["text"], own, stats), "annotator": "aligned"})
    seconds = time.perf_counter() - start
    write_corpus(out, results, {**corpus.metadata, "annotator": "aligned"})
    return {"passages": stats.passages, "lookups": stats.lookups, "facts_not_found": stats.facts_not_found,
            "passages_per_second": round(stats.passages / max(seconds, 1e-9))}
