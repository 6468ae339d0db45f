"""Value-type compatibility: a relation's name says what kind of value it asks for, and a stored fact whose
relation names another kind, or whose value cannot be of that kind, does not answer it ("Population" is not
answered by a city, "Founding Date" by a name, "Father" by a birthplace).

Kinds: time (a date or a year), number, place and person. A relation gets a kind from its head: the last word before
its first preposition ("Date of Birth", "Number of Employees", "Birth Place"), or a kind word followed there only by
a participle ("Year Founded"). A kind word that modifies another noun names no kind ("Weight Class", "Country Code",
"Day Job"). After the preposition only a time counts ("Received Award In Year"): "Goals for Country" asks for a
number, not a place. Most relations name no kind, and then nothing is ruled out. Places and persons cannot be told
from their values, so for them the value is only checked not to be a bare date or number.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from lmlm.kb.normalize import normalize_key, relation_words, without_parenthetical

TIME, NUMBER, PLACE, PERSON = "time", "number", "place", "person"

_KIND_OF_WORD = {
    **dict.fromkeys("date year day birthday dob when".split(), TIME),
    **dict.fromkeys("number count population total amount height weight length width depth elevation altitude age "
                    "capacity attendance revenue budget salary price cost distance duration percentage votes".split(), NUMBER),
    **dict.fromkeys("place birthplace hometown location city country town village residence address headquarters "
                    "region province county venue capital where located situated".split(), PLACE),
    **dict.fromkeys("father mother parent son daughter child children sibling brother sister spouse wife husband "
                    "founder cofounder successor predecessor coach mentor author composer director ceo mom dad "
                    "grandfather grandmother uncle aunt teacher".split(), PERSON),
}
_PREPOSITIONS = frozenset("of in at on for by from to as".split())
_PARTICIPLES = frozenset("born built held won made given chosen written taken begun".split())  # and longer words in -ed
_MONTHS = ("january february march april may june july august september october november december "
           "jan feb mar apr jun jul aug sep sept oct nov dec").split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
                 "million billion trillion dozen none").split()
_YEAR = re.compile(r"(?<![\d.,])\d{3,4}(?:s)?(?![\d]|[.,]\d)")  # 570, 1815, 1990s; not 370,000 or 2.5
_ERA = re.compile(r"\b\d{1,4}\s*(?:bc|bce|ad|ce)\b|\b(?:ad|c|ca|circa)\.?\s*\d{1,4}\b")  # 753 BC, AD 79, c. 570
_NUMERIC_DATE = re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b")  # 12/05/90, 1990-05-12
_CENTURY = re.compile(r"\b\d{1,2}(?:st|nd|rd|th)[\s-]+(?:century|millennium)\b")
_WORDS_OF_DATES_AND_NUMBERS = frozenset(_MONTHS + _WEEKDAYS + _NUMBER_WORDS + "bc bce ad ce c ca circa st nd rd th s".split())
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=1 << 14)
def relation_kind(relation: str) -> str | None:
    """The kind of value a relation's name asks for, or None when its words name none."""
    words = normalize_key(without_parenthetical(relation)).split()  # "Height (m)": the unit is no head
    cut = next((i for i, w in enumerate(words) if w in _PREPOSITIONS), len(words))
    head = _head_kind(words[:cut])
    if head is not None:
        return head
    return TIME if any(_kind_of(w) == TIME for w in words[cut:]) else None


def _head_kind(words: list[str]) -> str | None:
    for i in range(len(words) - 1, -1, -1):
        if (kind := _kind_of(words[i])) is not None:
            return kind
        if not _participle(words[i]):
            return None  # the head noun names no kind: a kind word before it only modifies it
    return None


def _kind_of(word: str) -> str | None:
    """The kind a word names, in the singular or the plural ("founders", "cities")."""
    singulars = {word[:-3] + "y", word[:-2], word[:-1]} if len(word) > 4 and word.endswith("s") else set()
    return _KIND_OF_WORD.get(word) or next((_KIND_OF_WORD[w] for w in sorted(singulars) if w in _KIND_OF_WORD), None)


def _participle(word: str) -> bool:
    return word in _PARTICIPLES or (len(word) > 5 and word.endswith("ed"))  # founded, formed; not "creed"


def value_fits(kind: str, value: str) -> bool:
    """Can ``value`` be a value of that kind?"""
    text = unicodedata.normalize("NFKC", value).casefold()
    words = set(_WORD.findall(text))
    if kind == TIME:
        return bool(_YEAR.search(text) or _ERA.search(text) or _NUMERIC_DATE.search(text) or _CENTURY.search(text)
                    or words & set(_MONTHS + _WEEKDAYS))
    if kind == NUMBER:
        return bool(_DIGIT.search(text) or words & set(_NUMBER_WORDS))
    return not _DIGIT.search(text) or bool(words - _WORDS_OF_DATES_AND_NUMBERS)  # a place or a person: no bare date or number


def one_time_two_grains(asked_key: str, stored_key: str) -> bool:
    """Do two relation keys differ only in the unit of a time ("year of birth" / "birth date", "release year" /
    "release date")? Then they ask for the same event, and unlike other sibling relations one may answer the other."""
    asked, stored = relation_words(asked_key), relation_words(stored_key)
    asked_only, stored_only = asked - stored, stored - asked  # each side names its unit: "award" is no "award date"
    return bool(asked & stored and asked_only and stored_only) and all(_KIND_OF_WORD.get(w) == TIME for w in asked_only | stored_only)


def compatible(asked_kind: str | None, stored_relation: str, value: str | None) -> bool:
    """May the stored fact answer a relation that asks for ``asked_kind``? A tombstone (no value) may, so that a
    deleted fact still blocks its neighbours."""
    if asked_kind is None:
        return True
    stored_kind = relation_kind(stored_relation)
    if stored_kind is not None and stored_kind != asked_kind:
        return False
    return value is None or value_fits(asked_kind, value)
