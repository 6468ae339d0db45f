"""Annotation noise, as real LLM annotators make it: a relation named with a synonym the KB never stores, a call
naming the wrong entity, a fact stated with no call at all.

The rates of the noisy default were measured on the shared real annotations by
``experiments/annotation_noise.py`` (see its docstring and ``experiments/annotation_noise.md``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# relation -> names real annotators use for it; none of them is a relation the wiki world's KB stores
SYNONYMS: dict[str, list[str]] = {
    "Occupation": ["Profession", "Job", "Occupation Title", "Works As"],
    "Birth Date": ["Date of Birth", "Born On", "Birthday", "DOB"],
    "Birthplace": ["Place of Birth", "Born In", "Birth City", "Hometown"],
    "Alma Mater": ["Education", "Studied At", "University Attended", "Graduated From"],
    "Employer": ["Works For", "Employed By", "Company", "Workplace"],
    "Industry": ["Sector", "Business", "Industry Type", "Field of Business"],
    "Founding Year": ["Founded", "Year Founded", "Founded In", "Established In"],
    "Headquarters": ["Headquartered In", "Based In", "Head Office", "Location"],
    "Chief Executive": ["CEO", "Leader", "Led By", "Chief Executive Officer"],
    "Country": ["Located In Country", "Nation", "Country Located", "Part Of"],
    "Population": ["Number of Inhabitants", "Inhabitants", "Population Size", "Residents"],
    "Capital": ["Capital City", "Seat of Government", "Capital Is", "Governed From"],
    "Official Language": ["Language", "Spoken Language", "National Language", "Languages Spoken"],
    "Currency": ["Money", "Currency Used", "Legal Tender", "Currency Name"],
    "Genre": ["Type of Work", "Category", "Form", "Work Type"],
    "Author": ["Written By", "Writer", "Created By", "Creator"],
    "Publication Year": ["Published In", "Year Published", "Release Year", "First Published"],
    "Publisher": ["Published By", "Publishing House", "Released By", "Imprint"],
    "Field": ["Awarded For", "Subject Area", "Discipline", "Area"],
    "Established": ["Year Established", "First Awarded", "Founded", "Since"],
    "Presenter": ["Presented By", "Awarded By", "Given By", "Sponsor"],
    "First Recipient": ["First Winner", "Inaugural Recipient", "First Awarded To", "Initial Winner"],
}


@dataclass(frozen=True)
class Noise:
    relation: float = 0.0  # a call names its relation with a synonym
    wrong_entity: float = 0.0  # a call names another entity of the same type
    missing: float = 0.0  # a fact is stated with no call

    def __post_init__(self):
        for name in ("relation", "wrong_entity", "missing"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"noise rate {name} must be in [0, 1], got {value}")

    @property
    def any(self) -> bool:
        return self.relation > 0 or self.wrong_entity > 0 or self.missing > 0


# Measured on the shared annotations (experiments/annotation_noise.py; figures in experiments/annotation_noise.md):
# GPT-4o and the Llama annotator name the same fact (same value, same entity) with different relations 0.487 of the
# time; 0.006 of all calls name an entity the passage never does; of the values one annotator looked up that the
# other's text states too, the other left 0.43 without a call.
MEASURED = Noise(relation=0.487, wrong_entity=0.006, missing=0.43)


def noise_for(relation_noise: float) -> Noise:
    """``--relation-noise P``: synonyms at P, and the measured wrong-entity and missing rates once P > 0."""
    if relation_noise == 0:
        return Noise()
    return Noise(relation=relation_noise, wrong_entity=MEASURED.wrong_entity, missing=MEASURED.missing)


class NoisyCalls:
    """Decides, call by call, what a noisy annotator writes instead of the gold call; counts what it did."""

    def __init__(self, noise: Noise, rng: random.Random, other_entity: Callable[[str, random.Random], str]):
        self.noise, self.rng, self.other_entity = noise, rng, other_entity
        self.counts = {"calls": 0, "synonym": 0, "wrong_entity": 0, "missing": 0}

    def call(self, entity: str, relation: str, value: str) -> tuple[str, str, str] | None:
        """The call to write for a gold call, or None where the annotator left it out."""
        self.counts["calls"] += 1
        if not self.noise.any:
            return entity, relation, value
        if self.rng.random() < self.noise.missing:
            self.counts["missing"] += 1
            return None
        if self.rng.random() < self.noise.relation:
            relation = self.rng.choice(SYNONYMS[relation])
            self.counts["synonym"] += 1
        if self.rng.random() < self.noise.wrong_entity:
            entity = self.other_entity(entity, self.rng)
            self.counts["wrong_entity"] += 1
        return entity, relation, value
