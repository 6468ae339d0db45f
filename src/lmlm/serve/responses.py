"""The JSON of the native API's answers: triplets, and generation results with their text cut into fact
segments for the web page to highlight.
"""

from __future__ import annotations

from lmlm.engine import GenerationResult


def triplet_json(t) -> dict:
    return {"id": t.id, "entity": t.entity, "relation": t.relation, "value": t.value}


def result_json(result: GenerationResult) -> dict:
    return {**result.to_dict(), "segments": fact_segments(result)}


def fact_segments(result: GenerationResult) -> list[dict]:
    """The clean text in pieces, for display: ``{"text"}`` plain, or ``{"text", "fact": i}`` where lookup i's
    value is written (the model's copy right after the call), or ``{"text": "", "fact": i}`` for a lookup
    whose value the model did not copy (or whose call the token budget cut short). The engine says where
    each call stood in the text (``text_offsets``), so nothing is parsed again."""
    segments, start, fact = [], 0, None
    for i, offset in enumerate([*result.text_offsets, len(result.text)]):
        piece = result.text[start:offset]
        segments += [{"text": piece}] if fact is None else _after_call(piece, fact, result.lookups[fact].value)
        start, fact = offset, i
    return [s for s in segments if s["text"] or "fact" in s]


def _after_call(text: str, fact: int, value: str) -> list[dict]:
    """The segments of the text right after lookup ``fact``: its value marked where the model copied it."""
    body = text.lstrip()
    lead = text[: len(text) - len(body)]
    if value and body.startswith(value):
        return [{"text": lead}, {"text": value, "fact": fact}, {"text": body[len(value) :]}]
    return [{"text": "", "fact": fact}, {"text": text}]
