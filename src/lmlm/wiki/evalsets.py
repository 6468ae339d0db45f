"""The wiki world's evaluation sets, all in phrasings no training document uses (``lmlm.wiki.heldout``):
completion by popularity bucket, multi-hop questions, article prompts of every type, and the forgetting audit
on linked facts (forget a company, and its people's employer is no longer placed in its city)."""

from __future__ import annotations

import random

from lmlm.wiki.entities import ORGANIZATION, PERSON, Entity
from lmlm.wiki.heldout import HELDOUT, heldout_prompt, hops
from lmlm.wiki.render import resolve
from lmlm.wiki.templates import TEMPLATES

BUCKETS = (("1", 1, 1), ("2-3", 2, 3), ("4-10", 4, 10), ("11-100", 11, 100), ("100+", 101, float("inf")))
SPLITS = ("dev", "test")
FORGET_ORGANIZATIONS = 20


def bucket(mentions: int) -> str:
    return next(label for label, low, high in BUCKETS if low <= mentions <= high)


def _row(entity: Entity, path: str, template: str, answer: str, mentions: int, split: str) -> dict:
    return {"entity": entity.name, "type": entity.type, "relation": path, "hops": hops(path), "prompt": heldout_prompt(template, entity.name),
            "answer": answer, "mentions": mentions, "bucket": bucket(mentions), "split": split}


def question_sets(entities: list[Entity], world: dict[str, Entity], mentions: dict[str, int], rng: random.Random) -> dict[str, list[dict]]:
    """``completion_dev``, ``completion_test`` (one hop) and ``multihop_dev``, ``multihop_test``: for every entity and
    every held-out relation path it has, one phrasing of each split."""
    sets: dict[str, list[dict]] = {f"{kind}_{split}": [] for kind in ("completion", "multihop") for split in SPLITS}
    for entity in entities:
        for path, phrasings in HELDOUT[entity.type].items():
            calls = resolve(path, entity, world)
            if calls is None:
                continue
            kind = "multihop" if "." in path else "completion"
            for split in SPLITS:
                template = rng.choice(phrasings[split])
                sets[f"{kind}_{split}"].append(_row(entity, path, template, calls[-1][2], mentions.get(entity.name, 0), split))
    return sets


def article_prompts(entities: list[Entity], world: dict[str, Entity], mentions: dict[str, int]) -> list[dict]:
    """"Tell me about X. X is", with the facts an article of X may state: its own, and those one link or two away."""
    rows = []
    for entity in entities:
        facts = dict(entity.facts)
        for path in TEMPLATES[entity.type]:
            calls = resolve(path, entity, world)
            if calls is not None:
                facts[path] = calls[-1][2]
        rows.append({"person": entity.name, "type": entity.type, "prompt": f"Tell me about {entity.name}. {entity.name} is", "facts": facts,
                     "mentions": mentions.get(entity.name, 0)})
    return rows


def forget_linked(entities: list[Entity], world: dict[str, Entity], rng: random.Random) -> list[dict]:
    """Prompts for the place of people's employers: ``forget`` rows through the organizations to forget (their
    ``person`` field names the organization, the entity the audit forgets), ``retain`` rows through others."""
    staff: dict[str, list[Entity]] = {}
    for e in entities:
        if e.type == PERSON:
            staff.setdefault(e.facts["Employer"], []).append(e)
    employers = sorted(name for name in staff if world[name].type == ORGANIZATION)
    forgotten = set(rng.sample(employers, min(FORGET_ORGANIZATIONS, len(employers) // 2)))
    path, phrasings = "Employer.Headquarters", HELDOUT[PERSON]["Employer.Headquarters"]["test"]
    rows = []
    for org in employers:
        for person in staff[org][:3]:
            rows.append({"person": org, "via": person.name, "relation": path, "prompt": heldout_prompt(rng.choice(phrasings), person.name),
                         "answer": world[org].facts["Headquarters"], "split": "forget" if org in forgotten else "retain"})
    return rows
