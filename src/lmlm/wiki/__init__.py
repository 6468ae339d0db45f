"""A world more like Wikipedia: people, organizations, cities, countries, creative works and awards, whose facts
link them, mentioned across documents with a long tail of popularity, annotated with gold lookups that can be
made as noisy as a real LLM annotator's. ``lmlm world --profile wiki``; ``lmlm.world`` is the default profile."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lmlm.wiki.make import make_wiki_world, read_entities
from lmlm.wiki.noise import MEASURED, Noise, noise_for
from lmlm.wiki.render import make_extractor, template_pattern
from lmlm.wiki.templates import TEMPLATES

__all__ = ["MEASURED", "Noise", "fact_extractor", "make_wiki_world", "noise_for", "read_entities"]


@cache
def _patterns(kind: str) -> list:
    """A type's training templates as sentence patterns, those with more fixed words first: the more specific
    reading wins ("X is a city in Y" before "X is a Y")."""
    templates = sorted((t for ts in TEMPLATES[kind].values() for t in ts), key=lambda t: -len(t.replace("{", "").split()))
    return [template_pattern(t) for t in templates]


def fact_extractor(world: str | Path):
    """The wiki world's atomic-fact extractor for its articles (``lmlm.evaluate.metrics.FactExtractor``)."""
    type_of = {e["name"]: e["type"] for e in read_entities(world)}
    return make_extractor(_patterns, type_of.get)
