"""Alias rewrites of entity names: the keys under which a stored entity may also be asked for, and the
rewrites of a queried name that may reach a stored key. Both sides are rewritten into the same key space,
so one indexed SQLite lookup finds them (no scan over all entities).

Rewrites: transliteration of letters that Unicode does not decompose (Ł, Ø, ß, Æ: ``anyascii``), a leading
article dropped, given names as initials ("John Robert Smith" / "J. R. Smith"), and a long title's
distinctive part (a subtitle after a colon, a name before its "of ..." tail), and a quoted title without the
words around it ('Book "The Story of a Sound"' / "The Story of a Sound").
"""

from __future__ import annotations

import re
from functools import lru_cache

from anyascii import anyascii

from lmlm.kb.normalize import name_variants, normalize_key, query_forms, without_parenthetical

_ARTICLES = ("the ", "a ", "an ")
_SUBTITLE = re.compile(r"\s*[:–—]\s+|\s+-\s+")
_OF_TAIL = re.compile(r"\s+of\s+", re.IGNORECASE)
# a quoted title, each kind of quote closed by its own; a straight quote after a digit is an inch mark, not a quote
_QUOTED = re.compile(r'(?<!\d)"([^"]+)"|“([^“”]+)”|„([^“”„]+)[“”]|«([^«»]+)»|‘([^‘’]+)’')
_DESCRIPTOR_WORDS = 2  # 'Book "X"', 'the novel "X"'; "Remix of "X"" names another thing
_PREPOSITIONS = frozenset("of in on at by for from with to about after before like versus vs".split())
_FUNCTION_WORDS = frozenset("the a an of and de la le von van der".split())  # not given names
DISTINCTIVE_MIN_WORDS = 2  # a one-word part ("University") names too many things


@lru_cache(maxsize=1 << 16)
def transliterated_key(text: str) -> str:
    """The key of ``text`` with every letter written in ASCII ("Łódź" -> "lodz", "Weiß" -> "weiss")."""
    return normalize_key(anyascii(text))


def without_article(key: str) -> str:
    """A key with a leading article dropped ("the wall" -> "wall"); the key itself if it has none."""
    for article in _ARTICLES:
        if key.startswith(article) and len(key) > len(article):
            return key[len(article):]
    return key


def initials_key(key: str) -> str | None:
    """Every word but the last cut to its initial ("john robert smith" -> "j r smith"), for names of 2-4 words."""
    words = key.split()
    if not 2 <= len(words) <= 4 or not all(w.isalpha() and w not in _FUNCTION_WORDS for w in words):
        return None
    return " ".join([w[0] for w in words[:-1]] + [words[-1]])


def distinctive_parts(name: str) -> set[str]:
    """The distinctive part of a long title: what follows a colon or dash ("Zelda: Twilight Princess"),
    and what precedes an "of ..." tail ("Cholistan University of Veterinary Sciences")."""
    bare = without_parenthetical(name).strip()
    parts = set()
    pieces = _SUBTITLE.split(bare)
    if len(pieces) == 2:
        parts.update(pieces)
    head = _OF_TAIL.split(bare, maxsplit=1)
    if len(head) == 2:
        parts.add(head[0])
    parts.update(quoted_titles(bare))
    # both ways round: a letter that NFKD decomposes (й) romanizes otherwise than its decomposed form
    keys = {without_article(key) for p in parts for key in (transliterated_key(p), transliterated_key(normalize_key(p)))}
    return {k for k in keys if len(k.split()) >= DISTINCTIVE_MIN_WORDS and k != transliterated_key(bare)}


def quoted_titles(name: str) -> list[str]:
    """The title a name quotes, when the words before it only say what kind of thing it is: at most two words, no
    preposition among them ('Remix of "X"' names another thing) and nothing after the quote."""
    match = _QUOTED.search(name)
    if match is None or name[match.end():].strip(" .,;:!?)]") or _QUOTED.search(name, match.end()):
        return []
    descriptor = normalize_key(name[: match.start()]).split()
    if len(descriptor) > _DESCRIPTOR_WORDS or set(descriptor) & _PREPOSITIONS:
        return []
    title = next(group for group in match.groups() if group).strip()
    return [title] if title else []


def _rewrites(key: str, initials: bool) -> set[str]:
    """A key, transliterated already, with its article dropped and (if asked) its given names as initials."""
    out = {key, without_article(key)}
    if initials:
        out.update(k for k in (initials_key(form) for form in tuple(out)) if k)
    return out


def stored_alias_keys(name: str) -> set[str]:
    """Keys a stored entity is also found under: the name variants of ``normalize``, and the rewrites above."""
    keys = set(name_variants(name))
    for form in {transliterated_key(name), transliterated_key(without_parenthetical(name))}:
        keys |= _rewrites(form, initials=True)
    keys |= distinctive_parts(name)
    keys.discard("")
    return keys


def query_alias_keys(name: str, initials: bool) -> set[str]:
    """Keys a queried name is looked up under: the lossless forms of ``normalize``, as they are and transliterated, without
    an article, and with ``initials`` its given names as initials. Initials are matched against stored names
    only, never against stored aliases, so that one side is truly written in initials ("John Smith" must not
    reach "Jane Smith" through "j smith")."""
    keys = set(query_forms(name))  # as they are too: a script anyascii romanizes must still meet its own key
    for form in query_forms(name):
        keys |= _rewrites(transliterated_key(form), initials)
    for title in quoted_titles(name):  # the words around a quoted title only say what kind of thing it is
        if len(without_article(transliterated_key(title)).split()) >= DISTINCTIVE_MIN_WORDS:
            keys |= _rewrites(transliterated_key(title), initials=False)
    keys.discard("")
    return keys
