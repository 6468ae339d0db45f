"""Scoring rules with no model in them: completion matching and atomic facts of synthetic bios."""

from __future__ import annotations

import re
import unicodedata

from lmlm.world import PRONOUNS, TEMPLATES

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


def _template_patterns() -> list[tuple[str, re.Pattern]]:
    """One regex per sentence template of the world, capturing subject and value."""
    patterns = []
    for relation, templates in TEMPLATES.items():
        for template in templates:
            regex = re.escape(template)
            for slot, group in (("{S}", r"(?P<subject>.+?)"), ("{P}", r"(?P<subject>.+?)(?:'s)?"), ("{s}", r"(?:he|she)"), ("{V}", r"(?P<value>.+?)")):
                regex = regex.replace(re.escape(slot), group, 1)
            patterns.append((relation, re.compile(r"^" + regex + r"$")))
    return patterns


_PATTERNS = _template_patterns()
_SUBJECT_PRONOUNS = {w for pair in PRONOUNS.values() for w in pair}


def atomic_facts(bio: str) -> list[tuple[str, str, str]]:
    """(subject, relation, value) for each complete sentence of a synthetic bio that states an attribute.
    A last sentence with no full stop was cut off by the token budget ("She was born on 1"): it states nothing yet."""
    facts = []
    for sentence in re.split(r"(?<=\.)\s+", bio.strip()):
        sentence = sentence.strip()
        for relation, pattern in _PATTERNS:
            m = pattern.match(sentence)
            if m:
                facts.append((m.group("subject").strip(), relation, m.group("value").strip()))
                break
    return facts


def fact_supported(fact: tuple[str, str, str], person: str, truth: dict[str, str]) -> bool:
    """Is a fact stated in a bio of ``person`` true of ``person``? A sentence about someone else is not."""
    subject, relation, value = fact
    about = subject.lower() in _SUBJECT_PRONOUNS or _fold(subject).removesuffix(" s") == _fold(person)
    return about and relation in truth and _fold(value) == _fold(truth[relation])
