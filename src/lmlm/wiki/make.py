"""``lmlm world --profile wiki``: write a wiki world to a folder.

Output folder:
    corpus.jsonl                 id, kind, subjects, text, annotated_text (legacy markup, gold lookups, noisy if asked)
    kb.json                      reference database format: every fact, under the relation names the KB stores
    entities.jsonl               the ground truth: name, type, pronoun, popularity, mentions (documents naming it), facts
    noise.json                   the rates asked for and the calls each kind of noise changed
    eval/completion_{dev,test}.jsonl   one-hop prompts in held-out phrasings, with the subject's mention count and bucket
    eval/multihop_{dev,test}.jsonl     two- and three-hop prompts in held-out phrasings
    eval/article_prompts.jsonl         "Tell me about X. X is" for every entity, with the facts an article may state
    eval/forget_linked.jsonl           the forgetting audit on linked facts

The same seed gives the same bytes; the noise has a generator of its own, so a world's texts are the same at
every noise level and only its calls differ.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lmlm.files import atomic_write
from lmlm.wiki.documents import corpus, mention_counts
from lmlm.wiki.entities import TYPES, Entity, make_entities
from lmlm.wiki.evalsets import BUCKETS, article_prompts, bucket, forget_linked, question_sets
from lmlm.wiki.noise import Noise, NoisyCalls

ZIPF_EXPONENT = 2.0  # P(k) ~ k^-2: about 60% of entities drawn once, a few drawn hundreds of times
MOST_POPULAR = 1000


def _other_of_type(entities: list[Entity]):
    """A wrong-entity annotator's pick: another entity of the same type."""
    names: dict[str, list[str]] = {}
    for e in entities:
        names.setdefault(e.type, []).append(e.name)
    type_of = {e.name: e.type for e in entities}

    def other(name: str, rng: random.Random) -> str:
        pool = names[type_of[name]]
        pick = rng.choice(pool)
        return pick if pick != name or len(pool) == 1 else pool[(pool.index(pick) + 1) % len(pool)]

    return other


def make_wiki_world(out: str | Path, entities: int = 2000, seed: int = 0, noise: Noise = Noise(),
                    zipf_exponent: float = ZIPF_EXPONENT, most_popular: int = MOST_POPULAR) -> dict:
    """Write a wiki world to ``out`` and return its counts."""
    out, rng = Path(out), random.Random(seed)
    population = make_entities(entities, rng, zipf_exponent, most_popular)
    world = {e.name: e for e in population}
    calls = NoisyCalls(noise, random.Random(f"{seed}:noise"), _other_of_type(population))
    docs = corpus(population, world, rng, calls)
    mentions = mention_counts(docs)
    triplets = [[e.name, r, v] for e in population for r, v in e.facts.items()]
    kb = {"entities": sorted({t[0] for t in triplets}), "relationships": sorted({t[1] for t in triplets}),
          "return_values": sorted({t[2] for t in triplets}), "triplets": triplets}
    eval_rng = random.Random(f"{seed}:eval")
    sets = question_sets(population, world, mentions, eval_rng)
    _write_jsonl(out / "corpus.jsonl", (d.to_json() for d in docs))
    _write_jsonl(out / "entities.jsonl", ({**e.to_json(), "mentions": mentions.get(e.name, 0)} for e in population))
    for name, rows in sets.items():
        _write_jsonl(out / "eval" / f"{name}.jsonl", rows)
    _write_jsonl(out / "eval" / "article_prompts.jsonl", article_prompts(population, world, mentions))
    _write_jsonl(out / "eval" / "forget_linked.jsonl", forget_linked(population, world, eval_rng))
    with atomic_write(out / "kb.json") as f:
        json.dump(kb, f, ensure_ascii=False, indent=1)
    with atomic_write(out / "noise.json") as f:
        json.dump({"asked": noise.__dict__, "applied": calls.counts}, f, indent=1, sort_keys=True)
    by_bucket = {label: sum(bucket(mentions.get(e.name, 0)) == label for e in population) for label, _, _ in BUCKETS}
    return {"entities": len(population), **{t: sum(e.type == t for e in population) for t in TYPES}, "documents": len(docs),
            "triplets": len(triplets), "entities_by_mentions": by_bucket, "noise": calls.counts,
            **{name: len(rows) for name, rows in sets.items()}}


def _write_jsonl(path: Path, rows) -> None:
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_entities(world: str | Path) -> list[dict]:
    with open(Path(world) / "entities.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
