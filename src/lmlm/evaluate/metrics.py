"""Scoring rules with no model in them: completion matching, and whether a fact stated of a person is true."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

from lmlm import markup

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


def reference_match(continuation: str, answer: str, n_words: int = 5) -> bool:
    """The reference's T-REx rule (``eval_trex.py``, ``exact_match``): the answer, as it is, is a substring of the first
    ``n_words`` words of the raw continuation (lookup tokens and all, each followed by a space as the reference
    writes them): case, accents and punctuation count, and a part of a word matches."""
    return answer in first_words(_spaced_lookup_tokens(continuation), n_words)


def _spaced_lookup_tokens(text: str) -> str:
    """The reference's ``normalize_db_format``: one space after each lookup token."""
    for token in markup.SPECIAL_TOKENS:
        text = re.sub(re.escape(token) + r"\s*", token + " ", text)
    return text


def factscore(bios: list[list[bool] | None], gamma: int = 10) -> dict:
    """The reference's FactScore (``factscorer.py``, after Min et al. 2023) from each bio's verdicts, one per atomic
    fact (None: not judged). A bio with facts scores its precision, times the length penalty exp(1 - gamma / n)
    when it has n <= gamma facts; the score is the mean over the bios with facts, and ``respond_ratio`` the share
    of judged bios that have any."""
    judged = [b for b in bios if b is not None]
    scored = [b for b in judged if b]
    precision = [sum(b) / len(b) for b in scored]
    penalized = [p * (1.0 if len(b) > gamma else math.exp(1 - gamma / len(b))) for p, b in zip(precision, scored)]
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {"factscore": mean(penalized), "factscore_without_penalty": mean(precision),
            "respond_ratio": len(scored) / len(judged) if judged else 0.0, "facts_per_response": mean([len(b) for b in scored])}
