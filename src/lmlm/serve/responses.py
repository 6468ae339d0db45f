"""The JSON of the native API's answers: triplets, and generation results with their text cut into fact
segments for the web page to highlight.
"""

from __future__ import annotations

from lmlm import markup
from lmlm.generate import GenerationResult


def triplet_json(t) -> dict:
    return {"id": t.id, "entity": t.entity, "relation": t.relation, "value": t.value}


def result_json(result: GenerationResult) -> dict:
    return {**result.to_dict(), "segments": fact_segments(result)}


def fact_segments(result: GenerationResult) -> list[dict]:
    """The clean text in pieces, for display: ``{"text"}`` plain, or ``{"text", "fact": i}`` where lookup i's
    value is written (the model's copy right after the call), or ``{"text": "", "fact": i}`` for a lookup
    whose value the model did not copy (or whose call the token budget cut short)."""
    segments, pending = [], list(enumerate(result.lookups))
    doc = markup.parse(result.raw)
    fact = None
    for seg in doc.segments:
        if isinstance(seg, markup.Lookup):
            if fact is not None:
                segments.append({"text": "", "fact": fact})
            fact = _match(seg, pending)
            continue
        if fact is not None:
            segments += _after_call(seg, fact, result.lookups[fact].value)
            fact = None
        else:
            segments.append({"text": seg})
    if fact is not None:
        segments.append({"text": "", "fact": fact})
    segments += [{"text": "", "fact": i} for i, _ in pending]  # calls cut short by max_new_tokens
    return [s for s in segments if s["text"] or "fact" in s]


def _after_call(text: str, fact: int, value: str) -> list[dict]:
    """The segments of the text right after lookup ``fact``: its value marked where the model copied it."""
    body = text.lstrip()
    lead = text[: len(text) - len(body)]
    if value and body.startswith(value):
        return [{"text": lead}, {"text": value, "fact": fact}, {"text": body[len(value) :]}]
    return [{"text": "", "fact": fact}, {"text": text}]


def _match(lookup: markup.Lookup, pending: list) -> int | None:
    """The index of the provenance record of a call parsed from the raw text (the next one with its value)."""
    value = markup.normalize_whitespace(lookup.value)
    for k, (i, p) in enumerate(pending):
        if markup.normalize_whitespace(p.value) == value:
            del pending[: k + 1]
            return i
    return None
