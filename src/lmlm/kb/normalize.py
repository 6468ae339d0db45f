"""Lookup keys: how entity and relation strings are compared exactly, and the name variants that
count as the same entity (a dropped parenthetical, "Last, First", a dropped middle name)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_APOSTROPHES = re.compile(r"['’`´\\]")  # removed, not spaced, so "Destiny\\'s" and "Destiny's" meet
_NON_WORD = re.compile(r"[\W_]+")
_PARENTHETICAL = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")


@lru_cache(maxsize=1 << 16)
def normalize_key(text: str) -> str:
    """Case, Unicode NFKC, diacritics, whitespace, underscores and punctuation folded away."""
    if text.isascii():
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def without_parenthetical(text: str) -> str:
    """The text with parenthesised or bracketed asides taken out ("Beck (album)" -> "Beck", "Height (m)" -> "Height")."""
    return _PARENTHETICAL.sub("", text)


def compact_key(text: str) -> str:
    """The key with spaces removed, so 'Birth Place' and 'Birthplace' meet."""
    return normalize_key(text).replace(" ", "")


def query_forms(name: str) -> set[str]:
    """Lossless rewrites of a queried name: its key, without a parenthetical, "Last, First" turned round."""
    bare = _PARENTHETICAL.sub("", name).strip()
    forms = {normalize_key(name), normalize_key(bare)}
    if bare.count(",") == 1:
        last, first = (part.strip() for part in bare.split(","))
        if first and last and " " not in last:
            forms.add(normalize_key(f"{first} {last}"))
    forms.discard("")
    return forms


def name_variants(name: str) -> set[str]:
    """Keys under which a stored entity may be asked for: its query forms, and for a person-like name
    of three or more capitalized words, first and last name alone."""
    variants = query_forms(name)
    words = _PARENTHETICAL.sub("", name).split()
    if len(words) >= 3 and all(w[:1].isupper() for w in words):
        variants.add(normalize_key(f"{words[0]} {words[-1]}"))
    return variants


def key_tokens(text: str) -> frozenset[str]:
    return frozenset(normalize_key(_PARENTHETICAL.sub("", text)).split())


def shortened_name(query: str, name: str) -> bool:
    """Is ``query`` ``name`` with middle words left out? Its words must all be in the name, and include
    a word of the name's first and of its last word (so "Ada Lovelace" fits "Ada Maria Lovelace",
    but "Ada Maria" does not)."""
    words = _PARENTHETICAL.sub("", name).split()
    asked = key_tokens(query)
    if not words or len(asked) < 2 or not asked <= key_tokens(name):
        return False
    return bool(asked & key_tokens(words[0])) and bool(asked & key_tokens(words[-1]))


_STOPWORDS = frozenset("a an the of in on at by to for from with and or is its their s".split())


def sibling_relations(asked: str, stored: str) -> bool:
    """Do two relation keys share a content word while each has one the other lacks?
    ("death date" / "birth date", "birth place" / "birth date"): related, but different facts."""
    a, b = relation_words(asked), relation_words(stored)
    return bool(a & b) and bool(a - b) and bool(b - a)


def relation_words(key: str) -> set[str]:
    """Content words with a plural -s taken off, so "birth dates" and "birth date" are not siblings."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in key.split()} - _STOPWORDS
