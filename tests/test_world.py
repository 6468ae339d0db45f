"""The synthetic world: determinism, gold annotation, splits, evaluation sets."""

import hashlib
import json
import re

import pytest
from conftest import fails_cleanly, run_cli

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.world import (
    LEADS,
    OPENINGS,
    PHRASINGS,
    UNSEEN_CONFIRM_PHRASINGS,
    UNSEEN_PHRASINGS,
    atomic_facts,
    bio_prompt,
    make_world,
    read_people,
)


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
    """The confirm set checks a choice made on the dev set only if its openers are new to both the corpus and the dev set."""
    def openers(phrasings):
        return {t.split("{N}")[0].split(",")[0].strip() for ts in phrasings.values() for t in ts}
    dev, confirm = openers(UNSEEN_PHRASINGS), openers(UNSEEN_CONFIRM_PHRASINGS)
    for ours, theirs in ((dev, UNSEEN_CONFIRM_PHRASINGS), (confirm, UNSEEN_PHRASINGS)):
        assert not any(t.startswith(opener) for opener in ours for ts in theirs.values() for t in ts)
    corpus_openers = [lead.rstrip(", ") for lead in LEADS] + [o.split("{N}")[0].strip() for o in OPENINGS]
    unseen = [t for phrasings in (UNSEEN_PHRASINGS, UNSEEN_CONFIRM_PHRASINGS) for ts in phrasings.values() for t in ts]
    assert not any(t.startswith(opener) for opener in corpus_openers for t in unseen)


# What the unseen phrasings shared with the bios' templates, leads and openings when the phrasings were written: their
# words, and their runs of four words (a name as one word). Templates added since widen a relation's cue words, but
# may bring no more of the unseen phrasings into the corpus: "payroll" in a bio, or "the nationality of X is", would
# make a phrasing of those sets one the model was taught.
WORDS_SHARED_WHEN_THE_UNSEEN_SETS_WERE_WRITTEN = set(
    "a alma an as at birth birthday born by citizenship city commutes day degree earned earns employer few field for from holds "
    "hometown in into is it job located mater nationality occupation of office on our passport people records show study "
    "subject that the this to university us was work world years".split())
FOUR_WORDS_SHARED_WHEN_THE_UNSEEN_SETS_WERE_WRITTEN = {("xname", "was", "born", "on"), ("into", "the", "world", "on"),
                                                      ("the", "employer", "of", "xname")}


def _words(text: str) -> list[str]:
    """Lower-case words, the person's name or pronoun as the one word "xname" and the value left out."""
    return re.findall(r"[a-z]+", re.sub(r"\{[NSPs]\}", " xname ", text.replace("{V}", " ")).lower())


def test_the_corpus_wording_takes_nothing_new_from_the_unseen_phrasings():
    corpus = [t for p in PHRASINGS.values() for ts in p.templates.values() for t in ts] + LEADS + OPENINGS
    unseen = [t for phrasings in (UNSEEN_PHRASINGS, UNSEEN_CONFIRM_PHRASINGS) for ts in phrasings.values() for t in ts]
    shared_words = {w for t in corpus for w in _words(t)} & {w for t in unseen for w in _words(t)} - {"xname"}
    new_words = shared_words - WORDS_SHARED_WHEN_THE_UNSEEN_SETS_WERE_WRITTEN
    assert not new_words, sorted(new_words)

    def runs_of_four(texts):
        return {tuple(w[i : i + 4]) for w in map(_words, texts) for i in range(len(w) - 3)}
    shared_runs = runs_of_four(corpus) & runs_of_four(unseen)
    new_runs = shared_runs - FOUR_WORDS_SHARED_WHEN_THE_UNSEEN_SETS_WERE_WRITTEN
    assert not new_runs, sorted(new_runs)
    assert len(PHRASINGS["varied"].templates["Employer"]) > len(PHRASINGS["plain"].templates["Employer"]) + 2


# The plain wording is the world's first: these digests are of files the generator wrote before it had a phrasing
PLAIN_DIGESTS = {"corpus.jsonl": "d5edfd17d11e23eac2349144461a66b57a0f2e06c5e0227fd75cc4c70b8961d1",
                 "eval/completion.jsonl": "ffd47b6d7721782c4a14e6dcc2c7e672a6c41d848964bc340b2913d3d3d19910",
                 "eval/heldout_bios.jsonl": "f759d7e309b13e605355d9cf709842aef8535ce002f61bfe5dd5c9ca21a7d5a4"}


def test_plain_phrasing_writes_the_bytes_of_the_first_wording(tmp_path):
    make_world(tmp_path, people=50, seed=9, phrasing="plain")
    assert {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in PLAIN_DIGESTS} == PLAIN_DIGESTS


def test_the_world_command_refuses_a_phrasing_it_cannot_use(tmp_path):
    fails_cleanly(run_cli("world", "--out", tmp_path / "w", "--profile", "wiki", "--phrasing", "plain"), "--phrasing")
    fails_cleanly(run_cli("world", "--out", tmp_path / "w", "--phrasing", "fancy"), "--phrasing", "fancy")
    fails_cleanly(run_cli("world", "--out", tmp_path / "w", "--bios", "0"), "bios per person 0")
    fails_cleanly(run_cli("world", "--out", tmp_path / "w", "--people", "-3"), "people -3")
    assert not (tmp_path / "w").exists()


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


@pytest.mark.parametrize("phrasing", list(PHRASINGS))
def test_the_fact_extractor_reads_every_bio_back_to_its_gold_lookups(tmp_path, phrasing):
    """Each sentence is read by the template that wrote it, whatever its wording: the scorer of generated bios
    (factual precision) would otherwise count right facts as wrong."""
    make_world(tmp_path, people=300, seed=5, phrasing=phrasing)
    for e in _jsonl(tmp_path / "corpus.jsonl"):
        gold = [(lk.entity, lk.relation, lk.value) for lk in markup.parse(e["annotated_text"]).lookups]
        read = atomic_facts(e["text"])
        assert [(r, v) for _, r, v in read] == [(r, v) for _, r, v in gold], e["text"]
        assert all(subject in (e["person"], "He", "She", "His", "Her") for subject, _, _ in read), e["text"]
