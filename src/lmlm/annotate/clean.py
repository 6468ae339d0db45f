"""Cleaning filters for annotated corpora, as in the reference pipeline, each counting what it removed.

Example-level filters drop an example; lookup-level filters drop single lookups and keep the text.
Order: malformed lookups, redundant triplets (lookup level), then fidelity, length ratio, density.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lmlm import markup


@dataclass
class CleanConfig:
    min_length_ratio: float = 0.9  # words of annotated_text / words of text (the reference's filter_length)
    max_words: int = 750
    max_lookups_per_100_words: float = 12.0  # over the annotated text's words, as the reference's density filter
    min_lookups: int = 1
    require_fidelity: bool = True


def clean_examples(examples: list[dict], config: CleanConfig = CleanConfig()) -> tuple[list[dict], dict]:
    """Filtered copies of ``examples`` and a report: examples and lookups removed per filter."""
    removed_examples: Counter = Counter()
    removed_lookups: Counter = Counter()
    kept = []
    for example in examples:
        doc = markup.parse(example["annotated_text"])
        removed_lookups["malformed"] += sum(m.is_lookup for m in doc.malformed)
        segments = []
        for s in doc.segments:
            if isinstance(s, markup.Lookup) and _redundant(s):
                removed_lookups["redundant_triplet"] += 1
                segments.append(s.lead)
            else:
                segments.append(s)
        segments = markup.join_segments(segments)
        annotated = markup.render(segments, "special" if markup.DB_ENTITY in example["annotated_text"] else "legacy")
        reason = _reject(example.get("text"), annotated, segments, config)
        if reason:
            removed_examples[reason] += 1
            continue
        kept.append({**example, "annotated_text": annotated})
    report = {
        "examples_in": len(examples),
        "examples_out": len(kept),
        "examples_removed": dict(removed_examples),
        "lookups_removed": dict(removed_lookups),
    }
    return kept, report


def _redundant(lookup: markup.Lookup) -> bool:
    """The value repeats the entity or the relation (the reference's filter_redundant_triplets)."""
    return lookup.entity in lookup.value or lookup.relation in lookup.value


def _reject(text: str | None, annotated: str, segments: list, config: CleanConfig) -> str | None:
    lookups = sum(isinstance(s, markup.Lookup) for s in segments)
    if text is not None:
        if config.require_fidelity and not markup.is_faithful(annotated, text):
            return "fidelity"
        words = len(text.split())
        if words > config.max_words:
            return "too_long"
        if words and len(annotated.split()) / words < config.min_length_ratio:
            return "length_ratio"
    annotated_words = len(annotated.split())
    if lookups < config.min_lookups:
        return "no_lookups"
    if annotated_words and 100 * lookups / annotated_words > config.max_lookups_per_100_words:
        return "lookup_density"
    return None
