"""The KB-aligned annotator: insert lookups where a text states a known fact, with no LLM.

Given plain text and known triplets (a whole KB, or an example's own triplets), it finds the mentions
of each entity (its name, a capitalized part of it, or a pronoun that follows it) and the occurrences
of each of its values (dates also in a few other formats). A lookup goes right before an occurrence
that comes after a mention of its entity; an occurrence belongs to the entity mentioned closest
before it, so several entities and repeated values are told apart.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from lmlm import markup
from lmlm.kb.normalize import normalize_key

PRONOUNS = frozenset("he she him his her hers they them their it its".split())
_CAPITALIZED_RUN = re.compile(r"[A-Z\u00C0-\u024F][\w'’.\-]*(?:\s+(?:[A-Z\u00C0-\u024F][\w'’.\-]*|of|de|del|da|van|von|der|the|la|le))*")
_WORD = re.compile(r"\w+")
_NON_SPACE = re.compile(r"\S+")
_POSSESSIVE = re.compile(r"['’]s$")
_name_key = lru_cache(maxsize=1 << 18)(normalize_key)
_MONTHS = "January February March April May June July August September October November December".split()
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2}) (" + "|".join(_MONTHS) + r") (\d{4})$")
_MONTH_DAY_YEAR = re.compile(r"^(" + "|".join(_MONTHS) + r") (\d{1,2}), (\d{4})$")


def date_variants(value: str) -> list[str]:
    """Other ways a text may write the date ``value`` (for '14 January 1987' and 'January 14, 1987')."""
    if m := _DAY_MONTH_YEAR.match(value):
        day, month, year = m.groups()
    elif m := _MONTH_DAY_YEAR.match(value):
        month, day, year = m.groups()
    else:
        return []
    d, mi = int(day), _MONTHS.index(month) + 1
    forms = {f"{d} {month} {year}", f"{month} {d}, {year}", f"{month} {d} {year}", f"{year}-{mi:02d}-{d:02d}", f"{d} {month[:3]} {year}", f"{month[:3]} {d}, {year}"}
    forms.discard(value)
    return sorted(forms, key=len, reverse=True)


@dataclass
class AlignStats:
    passages: int = 0
    lookups: int = 0
    facts_not_found: int = 0
    per_passage: list[int] = field(default_factory=list, repr=False)


class AlignedAnnotator:
    """Annotates plain text against known triplets; ``kb_triplets`` may be empty if every call passes its own."""

    def __init__(self, kb_triplets: Iterable[tuple[str, str, str]] = ()):
        self.facts: dict[str, list[tuple[str, str]]] = defaultdict(list)  # entity name -> [(relation, value)]
        self.names: dict[str, str] = {}  # normalized name -> entity name
        for entity, relation, value in kb_triplets:
            self.facts[entity].append((relation, value))
            self.names.setdefault(normalize_key(entity), entity)

    def annotate(self, text: str, triplets: Iterable[tuple[str, str, str]] | None = None, stats: AlignStats | None = None) -> str:
        """``text`` with legacy-form lookups inserted (``strip`` of the result gives ``text`` back)."""
        if triplets is not None:
            facts: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for entity, relation, value in triplets:
                facts[entity].append((relation, value))
            mentions = self._mentions_of(text, list(facts))
        else:
            mentions = self._kb_mentions(text)
            facts = {e: self.facts[e] for e in {e for _, e in mentions}}
        placed = self._place(text, facts, mentions, stats)
        if stats is not None:
            stats.passages += 1
            stats.lookups += len(placed)
        return markup.render(_insert(text, placed), "legacy")

    # --- mentions: (position, entity), sorted ---------------------------------------------

    def _kb_mentions(self, text: str) -> list[tuple[int, str]]:
        mentions = []
        for run in _CAPITALIZED_RUN.finditer(text):
            words = [(m.start() + run.start(), m.group()) for m in _NON_SPACE.finditer(run.group())]
            i = 0
            while i < len(words):
                for j in range(min(len(words), i + 6), i, -1):  # longest name first
                    candidate = " ".join(w for _, w in words[i:j])
                    entity = self.names.get(_name_key(_POSSESSIVE.sub("", candidate)))
                    if entity:
                        mentions.append((words[i][0], entity))
                        i = j
                        break
                else:
                    i += 1
        return _with_pronouns(text, mentions)

    def _mentions_of(self, text: str, entities: list[str]) -> list[tuple[int, str]]:
        mentions = []
        lowered = text.lower()
        for entity in entities:
            forms = {entity} | {w for w in re.split(r"[\s,()]+", entity) if len(w) >= 4 and w[:1].isupper()}
            for form in forms:
                for m in re.finditer(r"(?<!\w)" + re.escape(form.lower()) + r"(?!\w)", lowered):
                    mentions.append((m.start(), entity))
        return _with_pronouns(text, sorted(set(mentions)))

    # --- placement ------------------------------------------------------------------------------

    def _place(self, text: str, facts: dict, mentions: list[tuple[int, str]], stats: AlignStats | None) -> list[tuple[int, str, str, str]]:
        """(position, entity, relation, value) for each fact found in the text, at most one per position."""
        first_mention = {}
        for pos, entity in mentions:
            first_mention.setdefault(entity, pos)
        taken: set[int] = set()
        placed = []
        # longer values first, so "University of Lorwen" wins its span over "Lorwen"
        for entity, relation, value in sorted(((e, r, v) for e, fs in facts.items() for r, v in fs), key=lambda t: -len(t[2])):
            if entity not in first_mention:
                if stats is not None:
                    stats.facts_not_found += 1
                continue
            best = None
            for pos, end in _occurrences(text, value):
                if pos <= first_mention[entity] or any(p in taken for p in range(pos, end)):
                    continue
                owner = _owner(mentions, pos)
                rank = (owner != entity, pos)
                if best is None or rank < best[0]:
                    best = (rank, pos, end)
            if best is None:
                if stats is not None:
                    stats.facts_not_found += 1
                continue
            _, pos, end = best
            taken.update(range(pos, end))
            placed.append((pos, entity, relation, value))
        return sorted(placed)


def _with_pronouns(text: str, mentions: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Add a mention for each pronoun, resolved to the entity named most recently before it."""
    mentions = sorted(mentions)
    out = list(mentions)
    i, last = 0, None
    for m in _WORD.finditer(text):
        while i < len(mentions) and mentions[i][0] <= m.start():
            last = mentions[i][1]
            i += 1
        if last and m.group().lower() in PRONOUNS:
            out.append((m.start(), last))
    return sorted(out)


def _owner(mentions: list[tuple[int, str]], pos: int) -> str | None:
    owner = None
    for p, entity in mentions:
        if p >= pos:
            break
        owner = entity
    return owner


def _occurrences(text: str, value: str) -> list[tuple[int, int]]:
    """Where ``value`` (or a date form of it) stands in ``text`` as whole words: exact case first."""
    exact, folded = _value_patterns(value)
    spans = [m.span() for m in exact.finditer(text)]
    return spans or [m.span() for m in folded.finditer(text)]


@lru_cache(maxsize=1 << 16)
def _value_patterns(value: str) -> tuple[re.Pattern, re.Pattern]:
    forms = "|".join(re.escape(form) for form in [value] + date_variants(value))
    pattern = r"(?<!\w)(?:" + forms + r")(?!\w)"
    return re.compile(pattern), re.compile(pattern, re.IGNORECASE)


def _insert(text: str, placed: list[tuple[int, str, str, str]]) -> list[markup.Segment]:
    """Segments with a lookup right before each placed value; the space in front becomes the lookup's lead."""
    segments: list[markup.Segment] = []
    pos = 0
    for at, entity, relation, value in placed:
        lead = " " if at > 0 and text[at - 1] == " " else ""
        chunk = text[pos : at - len(lead)]
        if chunk:
            segments.append(chunk)
        segments.append(markup.Lookup(entity, relation, value, lead=lead))
        segments.append(lead)
        pos = at
    segments.append(text[pos:])
    return markup.join_segments(segments)
