"""The wiki world's suites, made of the general ones: completion by popularity bucket, multi-hop questions,
factual precision of articles by entity type, and the forgetting audit on linked facts.

Each prompt comes from the world's held-out phrasings (``lmlm.wiki.heldout``), never from a training template.
"""

from __future__ import annotations

import random

from lmlm.engine import LMLM
from lmlm.evaluate import suites
from lmlm.evaluate.metrics import FactExtractor
from lmlm.wiki.evalsets import BUCKETS


def sample_by(rows: list[dict], key: str, n: int, rng: random.Random) -> list[dict]:
    """Up to ``n`` rows of each value of ``key``, in the order of the values' first appearance."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return [row for group in groups.values() for row in (group if len(group) <= n else rng.sample(group, n))]


def _accuracy_by(records: list[dict], key: str, labels) -> dict[str, float | None]:
    out = {}
    for label in labels:
        hits = [r["correct"] for r in records if str(r[key]) == label]
        out[label] = sum(hits) / len(hits) if hits else None
    return out


def completion_by_mentions(model: LMLM, prompts: list[dict], **options) -> dict:
    """Completion accuracy per bucket of the subject's mention count ("1", "2-3", "4-10", "11-100", "100+")."""
    done = suites.completion(model, prompts, **options)
    labels = [label for label, _, _ in BUCKETS]
    counts = {label: sum(r["bucket"] == label for r in prompts) for label in labels}
    return {"metrics": {"by_bucket": _accuracy_by(done["records"], "bucket", labels), "n": counts,
                        "accuracy": done["metrics"]["accuracy"]}, "records": done["records"]}


def multi_hop(model: LMLM, prompts: list[dict], **options) -> dict:
    """Two- and three-hop questions ("The company that X works for is based in"), the answer in the text generated
    after the prompt (an LMLM may chain its calls: the first call's value is the next call's entity)."""
    done = suites.completion(model, prompts, **options)
    return {"metrics": {"by_hops": _accuracy_by(done["records"], "hops", ("2", "3")),
                        "n": {h: sum(str(r["hops"]) == h for r in prompts) for h in ("2", "3")}}, "records": done["records"]}


def factuality_by_type(model: LMLM, prompts: list[dict], extract_facts: FactExtractor, **options) -> dict:
    """Factual precision of articles ("Tell me about X. X is"), for each entity type, and over all of them."""
    by_type, records = {}, []
    for kind in dict.fromkeys(p["type"] for p in prompts):
        done = suites.factuality(model, [p for p in prompts if p["type"] == kind], extract_facts=extract_facts, **options)
        by_type[kind] = {k: done["metrics"][k] for k in ("factual_precision", "facts_per_bio")}
        records += done["records"]
    facts = [f for r in records for f in r["facts"]]
    overall = sum(f[-1] for f in facts) / len(facts) if facts else 0.0
    return {"metrics": {"by_type": by_type, "factual_precision": overall}, "records": records}


def linked_forgetting(model: LMLM, rows: list[dict], **options) -> dict:
    """Forget organizations; ask where their people's employers are based. The forget set goes through the
    forgotten organizations (each row's ``person`` is the organization, the entity forgotten), the retain set
    through the others, so the people's own facts stay in the KB and only the link's far end is gone."""
    forget = [r for r in rows if r["split"] == "forget"]
    retain = [r for r in rows if r["split"] == "retain"]
    return suites.forgetting(model, forget, retain, **options)
