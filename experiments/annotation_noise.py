"""How noisy are real LLM annotations? The rates behind the wiki world's noisy default (``lmlm.wiki.noise.MEASURED``).

    python experiments/annotation_noise.py [SHARED_DATA]      (default ../shared/data)

Two annotators on the same passages, paired by passage text: GPT-4o's dev half of dwiki-eval100
(``retrieval-dev/dwiki-eval100-devhalf_chatgpt_gpt4o-v7.1_cleaned.json``) against the fine-tuned Llama annotator's
``lmlm-annotated/dwiki-eval1k_annotator_llama-v6.1_cleaned.json``, and the raw GPT-4o and Llama outputs of
squad-eval100 (one passage in common). Only counted here, never trained on.
- relation: of the facts both annotated (the same value, entities sharing a word of 4+ letters), the share whose
  relation names differ (normalized). A KB built from one annotator's calls stores one name; the other
  annotator names the same fact another way this often.
- wrong entity: the share of calls whose entity the passage never names (no word of 4+ letters of it in the
  passage), over every annotated corpus in lmlm-annotated/.
- missing: of the values one annotator looked up that the other's text also states, the share the other
  states with no call.
Prints one JSON object; experiments/annotation_noise.md keeps the last run's figures.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from lmlm import markup
from lmlm.corpus import read_corpus
from lmlm.evaluate.metrics import _fold

PAIRS = [("retrieval-dev/dwiki-eval100-devhalf_chatgpt_gpt4o-v7.1_cleaned.json", "lmlm-annotated/dwiki-eval1k_annotator_llama-v6.1_cleaned.json"),
         ("lmlm-annotated/squad-eval100_chatgpt_gpt4o-v7.1.json", "lmlm-annotated/squad-eval100_llama-LMLM-Annotator_llama-v6.1.json")]


def _calls(example: dict) -> list[tuple[str, str, str]]:
    return [(_fold(e), _fold(r), _fold(v)) for e, r, v in markup.parse(example["annotated_text"]).triplets]


def _by_text(path: Path) -> dict[str, dict]:
    return {markup.normalize_whitespace(e["text"]): e for e in read_corpus(path).examples}


def _words(entity: str) -> set[str]:
    return {w for w in entity.split() if len(w) >= 4} or set(entity.split())


def relation_disagreement(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """Facts of ``a`` that ``b`` also looked up (same value, entities sharing a word), and how many ``b`` names otherwise."""
    same, differ = 0, 0
    for text in a.keys() & b.keys():
        calls_b = _calls(b[text])
        for e, r, v in set(_calls(a[text])):
            names = {rb for eb, rb, vb in calls_b if vb == v and _words(eb) & _words(e)}
            if names:
                same += r in names
                differ += r not in names
    return {"shared_facts": same + differ, "relation_differs": round(differ / max(same + differ, 1), 3)}


def missing_calls(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """Values ``a`` looked up that ``b``'s text states too, and how many of them ``b`` left without a call."""
    stated, uncalled = 0, 0
    for text in a.keys() & b.keys():
        plain_b = " " + _fold(markup.strip(b[text]["annotated_text"])) + " "
        values_b = {v for _, _, v in _calls(b[text])}
        for value in {v for _, _, v in _calls(a[text]) if v}:
            if f" {value} " in plain_b:
                stated += 1
                uncalled += value not in values_b
    return {"values_stated": stated, "stated_without_call": round(uncalled / max(stated, 1), 3)}


def entity_not_in_passage(path: Path) -> dict:
    calls, absent = 0, 0
    for example in read_corpus(path).examples:
        words = set(_fold(markup.strip(example["annotated_text"])).split())
        for e, _, _ in _calls(example):
            long_words = [w for w in e.split() if len(w) >= 4] or e.split()
            calls += 1
            absent += not any(w in words for w in long_words)
    return {"calls": calls, "entity_not_in_passage": round(absent / max(calls, 1), 3)}


def relation_names_per_fact(path: Path) -> dict:
    """Within one corpus: (entity, value) pairs looked up more than once, and how many of those carry several names."""
    names = defaultdict(set)
    for example in read_corpus(path).examples:
        for e, r, v in _calls(example):
            names[(e, v)].add(r)
    repeated = [n for n in names.values()]
    return {"facts": len(repeated), "facts_with_several_names": sum(len(n) > 1 for n in repeated)}


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    a, b = {}, {}
    for gpt4o, llama in PAIRS:
        pair_a, pair_b = _by_text(shared / gpt4o), _by_text(shared / llama)
        common = pair_a.keys() & pair_b.keys()
        a.update({t: pair_a[t] for t in common})
        b.update({t: pair_b[t] for t in common})
    result = {"passages_both": len(a), "relation_llama_vs_gpt4o": relation_disagreement(b, a),
              "relation_gpt4o_vs_llama": relation_disagreement(a, b),
              "missing_in_llama": missing_calls(a, b), "missing_in_gpt4o": missing_calls(b, a)}
    corpora = sorted(p for p in (shared / "lmlm-annotated").glob("*.json") if not p.name.endswith("database.json"))
    result["entity_not_in_passage"] = {p.name: entity_not_in_passage(p) for p in corpora}
    result["relation_names_per_fact"] = {p.name: relation_names_per_fact(p) for p in corpora}
    result["noisy_default"] = _pooled(result)
    print(json.dumps(result, indent=1))


def _pooled(result: dict) -> dict:
    """Each rate over both directions (or every corpus), weighted by what it counts."""
    def pool(parts: list[dict], count: str, rate: str) -> float:
        return round(sum(p[count] * p[rate] for p in parts) / max(sum(p[count] for p in parts), 1), 3)

    return {"relation": pool([result["relation_llama_vs_gpt4o"], result["relation_gpt4o_vs_llama"]], "shared_facts", "relation_differs"),
            "wrong_entity": pool(list(result["entity_not_in_passage"].values()), "calls", "entity_not_in_passage"),
            "missing": pool([result["missing_in_llama"], result["missing_in_gpt4o"]], "values_stated", "stated_without_call")}


if __name__ == "__main__":
    main()
