"""Lookup keys: how entity and relation strings are compared exactly, and the name variants that
count as the same entity (a dropped parenthetical, "Last, First", a dropped middle name)."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['’`´\\]")  # removed, not spaced, so "Destiny\\'s" and "Destiny's" meet
_NON_WORD = re.compile(r"[\W_]+")
_PARENTHETICAL = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")


def normalize_key(text: str) -> str:
    """Case, Unicode NFKC, diacritics, whitespace, underscores and punctuation folded away."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def compact_key(text: str) -> str:
    """The key with spaces removed, so 'Birth Place' and 'Birthplace' meet."""
    return normalize_key(text).replace(" ", "")


def name_variants(name: str) -> set[str]:
    """Keys under which ``name`` may be asked for, the exact key included."""
    bare = _PARENTHETICAL.sub("", name).strip()
    if bare.count(",") == 1:
        last, first = (part.strip() for part in bare.split(","))
        if first and last and " " not in last:
            bare = f"{first} {last}"
    variants = {normalize_key(name), normalize_key(bare)}
    words = bare.split()
    if len(words) >= 3 and all(w[:1].isupper() for w in words):  # a person-like name: drop middle names
        variants.add(normalize_key(f"{words[0]} {words[-1]}"))
    variants.discard("")
    return variants


def key_tokens(text: str) -> frozenset[str]:
    return frozenset(normalize_key(_PARENTHETICAL.sub("", text)).split())
