"""Scoring rules with no model in them: completion matching, and whether a fact stated of a person is true."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_NON_WORD = re.compile(r"[^\w\s]")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", text).split())


def first_words(text: str, n: int = 5) -> str:
    return " ".join(text.split()[:n])


def completion_correct(generated: str, answer: str, n_words: int = 5) -> bool:
    """T-REx-style: the gold answer appears in the first ``n_words`` words generated after the prefix
    (case, accents and punctuation ignored; whole words only)."""
    window, gold = _fold(first_words(generated, n_words)), _fold(answer)
    return bool(gold) and f" {gold} " in f" {window} "


# Words that stand for a text's subject: exact factuality counts a fact stated of one of them as stated of the person.
SUBJECT_PRONOUNS = frozenset({"he", "his", "she", "her", "they", "their"})

FactExtractor = Callable[[str], list[tuple[str, str, str]]]
"""Reads the facts a text states, as (subject, relation, value). Exact factuality needs one that knows how the text
states its facts: the synthetic world supplies ``lmlm.world.atomic_facts`` for its bios; real text needs a judge."""


def fact_supported(fact: tuple[str, str, str], person: str, truth: dict[str, str]) -> bool:
    """Is a fact stated in a bio of ``person`` true of ``person``? A sentence about someone else is not."""
    subject, relation, value = fact
    about = subject.lower() in SUBJECT_PRONOUNS or _fold(subject).removesuffix(" s") == _fold(person)
    return about and relation in truth and _fold(value) == _fold(truth[relation])
