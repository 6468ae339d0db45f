"""TOFU-style question sets built from the synthetic world, deterministic per seed.

A question is a bio's opening about a person; its answers are single sentences of the world's templates:
the ``answer`` in the first template (TOFU's answer), the ``paraphrased`` answer in another template (the
same fact, other words), and ``perturbed`` answers in the paraphrase's template with wrong values drawn
from the relation's own vocabulary (TOFU's perturbed answers: the same form, another content).

World facts (TOFU's "world facts", knowledge outside the forget and retain sets) are here the kind of value
each relation takes, asked of people no model was trained on, with the lookups off: the right kind of value
against values of other relations. Such knowledge is in no knowledge base and the same for every person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.world import OPENINGS, PHRASINGS, PRONOUNS, VALUES, Person, share_of

TEMPLATES = PHRASINGS["plain"].templates  # the unlearning run's world is worded plainly (lmlm.unlearn.run)

PERTURBED = 5  # TOFU's count of perturbed answers per question


@dataclass(frozen=True)
class Answer:
    """One answer sentence: the text before the value, the value, the text after it, and the fact it is
    about (the call an LMLM writes before the value)."""

    before: str
    value: str
    after: str
    entity: str
    relation: str

    def text(self, returned: str | None = None) -> str:
        """The sentence in the special-token form, with the gold call before the value answered by ``returned``
        (what the KB gives, which for a perturbed answer is not the value stated), or plain with None."""
        stated = " " + self.value + self.after
        if returned is None:
            return self.before + stated
        return markup.render([self.before, markup.Lookup(self.entity, self.relation, returned), stated], "special")


@dataclass(frozen=True)
class Question:
    person: str
    relation: str
    question: str
    answer: Answer
    paraphrased: Answer
    perturbed: tuple[Answer, ...]


def sentence(template: str, person: Person, relation: str, value: str) -> Answer:
    """``template`` stated of ``person`` by name, cut at its value slot."""
    text = template.format(S=person.name, P=f"{person.name}'s", N=person.name, s=PRONOUNS[person.pronoun][0], V="\0")
    before, after = text.split("\0")
    if not before.endswith(" "):
        raise ValueError(f"template {template!r}: expected a space before the value")
    return Answer(before.rstrip(" "), value, after, person.name, relation)


def wrong_values(relation: str, truth: str, rng: random.Random, n: int = PERTURBED) -> list[str]:
    """``n`` distinct values of ``relation``'s vocabulary, none of them ``truth``."""
    chosen: list[str] = []
    for _ in range(1000):
        value = VALUES[relation](rng)
        if value != truth and value not in chosen:
            chosen.append(value)
            if len(chosen) == n:
                return chosen
    raise ValueError(f"relation {relation!r}: fewer than {n} other values to perturb with")


def opening(person: Person) -> str:
    return OPENINGS[0].format(N=person.name)


def person_questions(person: Person, seed: int) -> list[Question]:
    """One question per fact of ``person``; the same seed gives the same paraphrase templates and perturbations."""
    questions = []
    for relation, value in person.facts.items():
        rng = random.Random(f"{seed}:{person.name}:{relation}")  # str seeds hash the same in every process
        templates = TEMPLATES[relation]
        paraphrase = rng.choice(templates[1:])
        questions.append(Question(
            person.name, relation, opening(person),
            answer=sentence(templates[0], person, relation, value),
            paraphrased=sentence(paraphrase, person, relation, value),
            perturbed=tuple(sentence(paraphrase, person, relation, wrong) for wrong in wrong_values(relation, value, rng)),
        ))
    return questions


def questions_of(people: list[Person], seed: int) -> list[Question]:
    return [q for person in people for q in person_questions(person, seed)]


def world_fact_questions(people: list[Person], seed: int) -> list[Question]:
    """For each fact of ``people``: its sentence (the right kind of value) against the same sentence holding
    values of other relations, one from each of ``PERTURBED`` other relations (their own values, so no value
    is invented). The ``paraphrased`` answer is the answer itself: TOFU scores world facts' truth ratio
    against the answer, having no paraphrase of them."""
    questions = []
    for person in people:
        for relation, value in person.facts.items():
            rng = random.Random(f"{seed}:world:{person.name}:{relation}")
            others = rng.sample([r for r in VALUES if r != relation and not _same_kind(r, relation)], PERTURBED)
            template = TEMPLATES[relation][0]
            answer = sentence(template, person, relation, value)
            wrong = tuple(sentence(template, person, relation, VALUES[other](rng)) for other in others)
            questions.append(Question(person.name, relation, opening(person), answer, answer, wrong))
    return questions


def _same_kind(a: str, b: str) -> bool:
    """Relations whose values are of one kind (both cities): one is no wrong kind for the other."""
    return {a, b} == {"Birth City", "Employer City"}


def forget_people(people: list[Person], fraction: float, total: int) -> list[Person]:
    """The first ``fraction`` of ``total`` people, by name, from the world's forget split: the sets of the
    smaller fractions are inside those of the larger ones, as TOFU's forget01 < forget05 < forget10."""
    count = max(1, share_of(total, fraction))
    pool = sorted((p for p in people if p.split == "forget"), key=lambda p: p.name)
    if count > len(pool):
        raise LmlmError(f"forget fraction {fraction}: {count} people wanted, the world's forget split has {len(pool)}")
    return pool[:count]
