"""Value-type compatibility: a relation's name says what kind of value it asks for, and a stored fact whose
relation names another kind, or whose value cannot be of that kind, does not answer it ("Population" is not
answered by a city, "Founding Date" by a name, "Father" by a birthplace).

Kinds: time (a date or a year), number, place and person. A relation gets a kind from the words of its head (the
part before its first preposition: "Date of Birth", "Number of Employees"), else from the rest ("Founded In Year").
Most relations name no kind, and then nothing is ruled out. Places and persons cannot be told from their values, so
for them the value is only checked not to be a bare date or number.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lmlm.kb.normalize import normalize_key

TIME, NUMBER, PLACE, PERSON = "time", "number", "place", "person"

_KIND_OF_WORD = {
    **dict.fromkeys("date year day birthday dob when".split(), TIME),
    **dict.fromkeys("number count population total amount height weight length width depth elevation altitude age "
                    "capacity attendance revenue budget salary price cost distance duration percentage votes".split(), NUMBER),
    **dict.fromkeys("place birthplace hometown location located city country town village residence address "
                    "headquarters region province county venue capital where situated".split(), PLACE),
    **dict.fromkeys("father mother parent parents son daughter child children sibling siblings brother sister spouse "
                    "wife husband founder cofounder successor predecessor coach mentor author composer director "
                    "ceo mom dad grandfather grandmother uncle aunt teacher".split(), PERSON),
}
_PREPOSITIONS = frozenset("of in at on for by from to as".split())
_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec").split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                 "hundred thousand million billion trillion dozen").split()
_YEAR = re.compile(r"(?<!\d)(1\d{3}|20\d{2})(?:s)?(?!\d)")
_CENTURY = re.compile(r"\b\d{1,2}(?:st|nd|rd|th) century\b")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[^\W\d_]+")
_NOT_A_NAME = frozenset(_MONTHS + _WEEKDAYS + _NUMBER_WORDS + "bc bce ad ce c ca circa st nd rd th s".split())


@lru_cache(maxsize=1 << 14)
def relation_kind(relation: str) -> str | None:
    """The kind of value a relation's name asks for, or None when its words name none."""
    words = normalize_key(relation).split()
    cut = next((i for i, w in enumerate(words) if w in _PREPOSITIONS), len(words))
    for part in (words[:cut], words[cut:]):
        kinds = [_KIND_OF_WORD[w] for w in part if w in _KIND_OF_WORD]
        if kinds:
            return kinds[-1]
    return None


def value_fits(kind: str, value: str) -> bool:
    """Can ``value`` be a value of that kind?"""
    text = value.casefold()
    if kind == TIME:
        words = set(_WORD.findall(text))
        return bool(_YEAR.search(text) or _CENTURY.search(text) or words & set(_MONTHS + _WEEKDAYS))
    if kind == NUMBER:
        return bool(_DIGIT.search(text) or set(_WORD.findall(text)) & set(_NUMBER_WORDS))
    return any(w not in _NOT_A_NAME for w in _WORD.findall(text))  # a place or a person: some word of a name


def one_time_two_grains(asked_key: str, stored_key: str) -> bool:
    """Do two relation keys differ only in the unit of a time ("year of birth" / "birth date", "release year" /
    "release date")? Then they ask for the same event, and unlike other sibling relations one may answer the other."""
    asked, stored = set(asked_key.split()) - _PREPOSITIONS, set(stored_key.split()) - _PREPOSITIONS
    differing = asked ^ stored
    return bool(asked & stored) and bool(differing) and all(_KIND_OF_WORD.get(w) == TIME for w in differing)


def compatible(asked_kind: str | None, stored_relation: str, value: str | None) -> bool:
    """May the stored fact answer a relation that asks for ``asked_kind``? A tombstone (no value) may, so that a
    deleted fact still blocks its neighbours."""
    if asked_kind is None:
        return True
    stored_kind = relation_kind(stored_relation)
    if stored_kind is not None and stored_kind != asked_kind:
        return False
    return value is None or value_fits(asked_kind, value)
