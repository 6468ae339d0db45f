"""The synthetic world: determinism, gold annotation, splits, evaluation sets."""

import json
import re

import pytest

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.world import LEADS, PHRASINGS, UNSEEN_CONFIRM_PHRASINGS, UNSEEN_PHRASINGS, bio_prompt, make_world, read_people


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
    assert len(files) == 8
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


@pytest.mark.parametrize("name, phrasings", [("unseen", UNSEEN_PHRASINGS), ("unseen_confirm", UNSEEN_CONFIRM_PHRASINGS)])
def test_unseen_phrasings_ask_every_fact_in_words_no_bio_has(world, name, phrasings):
    corpus_text = "\n".join(e["text"] for e in _jsonl(world / "corpus.jsonl"))
    for relation_phrasings in phrasings.values():
        for template in relation_phrasings:
            before, after = template.split("{N}")
            assert not re.search(re.escape(before) + r"[^.\n]{1,40}?" + re.escape(after), corpus_text, re.IGNORECASE), template
    completion = {(r["person"], r["relation"], r["answer"]) for r in _jsonl(world / "eval" / "completion.jsonl")}
    unseen = _jsonl(world / "eval" / f"completion_{name}.jsonl")
    assert {(r["person"], r["relation"], r["answer"]) for r in unseen} == completion
    assert not any(r["prompt"].startswith(r["person"]) for r in unseen)
    assert len({r["prompt"].replace(r["person"], "{N}") for r in unseen}) == sum(map(len, phrasings.values()))


def test_the_two_unseen_sets_share_no_opener_with_each_other_or_the_corpus():
    """The confirm set checks a choice made on the dev set only if its wording is new to both the corpus and the dev set."""
    def openers(phrasings):
        return {t.split(",")[0] if "," in t.split("{N}")[0] else " ".join(t.split()[:3]) for ts in phrasings.values() for t in ts}
    dev, confirm = openers(UNSEEN_PHRASINGS), openers(UNSEEN_CONFIRM_PHRASINGS)
    assert not dev & confirm
    assert not {lead.rstrip(", ") for lead in LEADS} & (dev | confirm)

def test_plain_phrasing_keeps_to_the_first_four_templates_and_varied_adds_openers_and_mid_sentence_names(tmp_path):
    texts = {}
    for phrasing in PHRASINGS:
        make_world(tmp_path / phrasing, people=120, seed=3, phrasing=phrasing)
        texts[phrasing] = "\n".join(e["text"] for e in _jsonl(tmp_path / phrasing / "corpus.jsonl"))
    assert any(lead in texts["varied"] for lead in LEADS) and not any(lead in texts["plain"] for lead in LEADS)
    assert "Records list the" in texts["varied"] and "Records list the" not in texts["plain"]
    assert _jsonl(tmp_path / "plain" / "people.jsonl") == _jsonl(tmp_path / "varied" / "people.jsonl")
    with pytest.raises(LmlmError, match="phrasing 'fancy'"):
        make_world(tmp_path / "fancy", people=10, phrasing="fancy")
