"""The synthetic world: determinism, gold annotation, splits, evaluation sets."""

import json
import re

import pytest

from lmlm import markup
from lmlm.world import UNSEEN_PHRASINGS, bio_prompt, make_world, read_people


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    make_world(out, people=300, seed=7)
    return out


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_bytes(world, tmp_path):
    make_world(tmp_path / "again", people=300, seed=7)
    make_world(tmp_path / "other", people=300, seed=8)
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert len(files) == 7
    for rel in files:
        assert (tmp_path / "again" / rel).read_bytes() == (world / rel).read_bytes(), rel
    assert (tmp_path / "other" / "corpus.jsonl").read_bytes() != (world / "corpus.jsonl").read_bytes()


def test_gold_annotation(world):
    corpus = _jsonl(world / "corpus.jsonl")
    assert len(corpus) == 3 * 270
    for example in corpus:
        text, annotated = example["text"], example["annotated_text"]
        assert markup.strip(annotated) == text
        doc = markup.parse(annotated)
        assert doc.malformed == [] and 6 <= len(doc.lookups) <= 8
        for lookup in doc.lookups:
            after = annotated[lookup.span[1]:]
            assert after.startswith(" " + lookup.value), (lookup, after[:40])
            assert lookup.entity == example["person"]


def test_splits_and_eval_sets(world):
    people = read_people(world)
    by_split = {s: {p.name for p in people if p.split == s} for s in ("retain", "forget", "inject")}
    assert len(by_split["inject"]) == 30 and len(by_split["forget"]) == 30 and len(by_split["retain"]) == 240
    corpus_text = " ".join(e["text"] for e in _jsonl(world / "corpus.jsonl"))
    assert not any(name in corpus_text for name in by_split["inject"])
    assert all(name in corpus_text for name in by_split["forget"] | by_split["retain"])
    kb = {tuple(t) for t in json.loads((world / "kb.json").read_text())["triplets"]}
    assert len(kb) == sum(len(p.facts) for p in people)
    completion = _jsonl(world / "eval" / "completion.jsonl")
    assert len(completion) == len(kb)
    for row in completion:
        assert (row["person"], row["relation"], row["answer"]) in kb
        assert row["prompt"].startswith(row["person"]) and not row["prompt"].endswith(" ")
    bios = _jsonl(world / "eval" / "bio_prompts.jsonl")
    assert bios[0]["prompt"] == bio_prompt(bios[0]["person"]) == f"Tell me a bio of {bios[0]['person']}. {bios[0]['person']} is"
    heldout = _jsonl(world / "eval" / "heldout_bios.jsonl")
    assert {h["person"] for h in heldout} == by_split["forget"] | by_split["retain"]
    order = lambda e: [lk.relation for lk in markup.parse(e["annotated_text"]).lookups]  # noqa: E731
    seen = {}
    for e in _jsonl(world / "corpus.jsonl"):
        seen.setdefault(e["person"], []).append(order(e))
    assert all(order(h) not in seen[h["person"]] for h in heldout)


def test_unseen_phrasings_ask_every_fact_in_words_no_bio_has(world):
    corpus_text = "\n".join(e["text"] for e in _jsonl(world / "corpus.jsonl"))
    for phrasings in UNSEEN_PHRASINGS.values():
        for template in phrasings:
            before, after = template.split("{N}")
            assert not re.search(re.escape(before) + r"[^.\n]{1,40}?" + re.escape(after), corpus_text), template
    completion = {(r["person"], r["relation"], r["answer"]) for r in _jsonl(world / "eval" / "completion.jsonl")}
    unseen = _jsonl(world / "eval" / "completion_unseen.jsonl")
    assert {(r["person"], r["relation"], r["answer"]) for r in unseen} == completion
    assert not any(r["prompt"].startswith(r["person"]) for r in unseen)
    assert len({r["prompt"].replace(r["person"], "{N}") for r in unseen}) == sum(map(len, UNSEEN_PHRASINGS.values()))
