"""Lookup calls in token ids: reading a call's query, answering it from the knowledge base (with the
fallback when the KB has no match, decided here and nowhere else), and the tokens that force the answer."""

from __future__ import annotations

from dataclasses import dataclass

from lmlm.engine.config import GenerationConfig, LookupTokens, Provenance
from lmlm.kb.protocol import NO_ANSWER


@dataclass(frozen=True)
class ChosenValue:
    """The value a call gets: the KB's match, or what the fallback puts in its place."""
    value: str  # "" for an abstention
    triplet: object | None  # the KB triplet the value comes from (none for "unknown" and an abstention)
    tier: str
    abstains: bool  # the row closes its call and stops


def choose_value(result, fallback: str) -> ChosenValue:
    """The value for a KB ``LookupResult``. With no match: ``top1_anyway`` takes the nearest fact below the
    thresholds (or writes "unknown" when there is none), ``unknown`` writes "unknown", ``abstain`` writes nothing."""
    if result.value is not None:
        return ChosenValue(result.value, result.triplet, result.tier, False)
    if fallback == "top1_anyway" and result.nearest is not None:
        return ChosenValue(result.nearest.value, result.nearest, "nearest", False)
    if fallback == "abstain":
        return ChosenValue("", None, result.tier, True)
    return ChosenValue("unknown", None, result.tier, False)


@dataclass
class ForcedAnswer:
    """The knowledge base's answer to one call, to force into a row."""
    lookup: Provenance  # its token span is set when the answer is forced
    start: int  # the index of the call's <|db_entity|> in the row's tokens
    forced: list[int]  # " VALUE" and <|db_end|> (only <|db_end|> for an abstention)
    repeat: list[int]  # the draft of the value's repeat after <|db_end|> (none for "unknown" or an abstention)
    abstains: bool  # the row closes its call and stops


def answer_calls(calls: list[list[int]], kb, tokenizer, tokens: LookupTokens, cfg: GenerationConfig,
                 misses: list[bool] | None = None) -> list[ForcedAnswer]:
    """Read the query of each call (token ids that end with its <|db_return|>), look all of them up at once.
    A call that constrained decoding gave up on (``misses``) is not asked: it gets no match."""
    queries = [query_of(ids, tokens, tokenizer) for ids in calls]
    misses = misses or [False] * len(calls)
    asked = iter(kb.lookup_many([(q[0], q[1]) for q, miss in zip(queries, misses) if not miss], mode=cfg.lookup_mode))
    results = [NO_ANSWER if miss else next(asked) for miss in misses]
    answers = []
    for (entity, relation, start), result in zip(queries, results):
        chosen = choose_value(result, cfg.fallback)
        value_ids = encode_text(tokenizer, " " + chosen.value) if chosen.value else []
        found = chosen.triplet is not None and not set(value_ids) & tokens.calls
        lookup = Provenance(entity, relation, chosen.value, chosen.triplet.id if chosen.triplet else None, float(result.score),
                            chosen.tier, (0, 0), result.kb_version)
        answers.append(ForcedAnswer(lookup, start, forced=value_ids + [tokens.end], repeat=value_ids if found else [],
                                    abstains=chosen.abstains))
    return answers


def encode_text(tokenizer, text: str) -> list[int]:
    """The ids of ``text`` as plain text: a special token's string in it (a KB value holding "<|db_end|>")
    is spelled in ordinary tokens, never read as the token itself, which would close a call early."""
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def query_of(ids: list[int], tokens: LookupTokens, tokenizer) -> tuple[str, str, int]:
    """(entity, relation, index of <|db_entity|>) of the call that ends ``ids`` with <|db_return|>.
    A missing piece reads as "" and gets no answer from the KB, so the fallback decides."""
    ret = len(ids) - 1
    start = next((i for i in range(ret - 1, -1, -1) if ids[i] in (tokens.entity, tokens.end, tokens.ret)), -1)
    if start < 0 or ids[start] != tokens.entity:
        return "", "", ret
    rel = next((i for i in range(start + 1, ret) if ids[i] == tokens.relationship), None)
    if rel is None:
        return "", "", start
    decode = lambda part: tokenizer.decode(part, skip_special_tokens=False).strip()  # noqa: E731
    return decode(ids[start + 1 : rel]), decode(ids[rel + 1 : ret]), start


def inside_call(prompt: list[int], tokens: LookupTokens) -> bool:
    """Does the prompt end inside a lookup call (a forced ``<|db_entity|>``)?"""
    last_entity = max((i for i, t in enumerate(prompt) if t == tokens.entity), default=-1)
    last_end = max((i for i, t in enumerate(prompt) if t == tokens.end), default=-1)
    return last_entity > last_end


def strip_calls(ids: list[int], tokens: LookupTokens, in_call: bool = False) -> list[int]:
    """The ids with every lookup call removed (and the lone space in front of it), as the clean text."""
    out: list[int] = []
    for t in ids:
        if t == tokens.entity:
            if out and out[-1] == tokens.space:
                out.pop()
            in_call = True
        elif in_call:
            in_call = t != tokens.end
        else:
            out.append(t)
    return out
