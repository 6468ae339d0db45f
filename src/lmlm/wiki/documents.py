"""The wiki world's documents: an article for each entity (a bio, an organization, city or country article, a
note on a work or an award), and short news items for its further mentions, so that an entity's popularity is
the number of documents about it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lmlm import markup
from lmlm.wiki.entities import Entity
from lmlm.wiki.render import Builder, render, resolve
from lmlm.wiki.templates import NEWS_FRAMES, NEWS_HEADLINES, OPENINGS, TEMPLATES

ARTICLE_KINDS = {"person": "bio", "organization": "organization article", "city": "city article", "country": "country article",
                 "creative work": "work article", "award": "award article"}
BY_NAME = 0.4  # share of an article's later sentences that name the subject rather than say "she" or "it"
LINKED_SENTENCE = 0.5  # share of articles with one more sentence about a linked entity's fact (a multi-hop path)


@dataclass
class Document:
    id: str
    kind: str
    subjects: list[str]
    segments: list[markup.Segment]
    mentions: set[str] = field(default_factory=set)

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "subjects": self.subjects, "text": markup.Document(self.segments, []).plain,
                "annotated_text": markup.render(self.segments, "legacy")}


def _mentioned(doc: Document, world: dict[str, Entity]) -> set[str]:
    """The subjects, and the linked entities (one or two links away) whose names the text has: a bridge looked up
    silently is named only in a call, so it is not mentioned. Read from the text, so the same with or without noise."""
    text = markup.Document(doc.segments, []).plain
    near = {v for s in doc.subjects for v in world[s].facts.values() if v in world}
    near |= {v for n in near for v in world[n].facts.values() if v in world}
    return set(doc.subjects) | {n for n in near if n in text}


def _say(builder: Builder, key: str, entity: Entity, world: dict[str, Entity], rng: random.Random, by_name: bool,
         frame: str | None = None) -> bool:
    """One sentence filed under ``key`` about ``entity`` (a random template), in a news ``frame`` if given."""
    templates = TEMPLATES[entity.type][key]
    for template in rng.sample(templates, len(templates)):
        if frame is None:
            if render(builder, template, entity, world, by_name=by_name):
                return True
            continue
        before, after = frame.replace("{x}", "{X}").split("{X}")
        lower = "{x}" in frame and not template.startswith("{")
        probe = Builder()
        if render(probe, template, entity, world):  # a template whose every slot has a value here
            builder.text(before)
            render(builder, template.removesuffix("."), entity, world, lower_start=lower)
            builder.text(after)
            return True
    return False


def article(entity: Entity, world: dict[str, Entity], rng: random.Random, calls=None) -> list[markup.Segment]:
    """Every fact of the entity, in a random order, the first by name; sometimes one linked fact more."""
    builder = Builder(calls)
    if rng.random() < 0.5:
        builder.text(rng.choice(OPENINGS[entity.type]).format(N=entity.name) + " ")
    relations = list(entity.facts)
    rng.shuffle(relations)
    for n, relation in enumerate(relations):
        if n:
            builder.text(" ")
        _say(builder, relation, entity, world, rng, by_name=n == 0 or rng.random() < BY_NAME)
    linked = [key for key in TEMPLATES[entity.type] if "." in key and resolve(key, entity, world)]
    if linked and rng.random() < LINKED_SENTENCE:
        builder.text(" ")
        _say(builder, rng.choice(linked), entity, world, rng, by_name=rng.random() < BY_NAME)
    return builder.done()


def news_item(entities: list[Entity], world: dict[str, Entity], rng: random.Random, calls=None) -> list[markup.Segment]:
    """A short item: a fact or two about each of its entities, each sentence in a frame, names anywhere."""
    builder = Builder(calls)
    headline = rng.choice(NEWS_HEADLINES)
    builder.text(headline + " " if headline else "")
    first = True
    for entity in entities:
        keys = list(TEMPLATES[entity.type])
        for key in rng.sample(keys, min(len(keys), rng.randint(1, 2))):
            builder.text("" if first else " ")
            first = not _say(builder, key, entity, world, rng, by_name=True, frame=rng.choice(NEWS_FRAMES)) and first
    return builder.done()


def corpus(entities: list[Entity], world: dict[str, Entity], rng: random.Random, calls=None) -> list[Document]:
    """An article per entity and ``popularity - 1`` news mentions more, one or two entities to an item."""
    docs = [Document(f"{e.name}#article", ARTICLE_KINDS[e.type], [e.name], article(e, world, rng, calls)) for e in entities]
    mentions = [e for e in entities for _ in range(e.popularity - 1)]
    rng.shuffle(mentions)
    at = 0
    while at < len(mentions):
        group = mentions[at: at + (2 if rng.random() < 0.3 else 1)]
        group = group[:1] if group[-1] is group[0] else group  # an item names an entity once
        docs.append(Document(f"news#{len(docs) - len(entities)}", "news", [e.name for e in group], news_item(group, world, rng, calls)))
        at += len(group)
    for doc in docs:
        doc.mentions = _mentioned(doc, world)
    rng.shuffle(docs)
    return docs


def mention_counts(docs: list[Document]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in docs:
        for name in doc.mentions:
            counts[name] = counts.get(name, 0) + 1
    return counts

