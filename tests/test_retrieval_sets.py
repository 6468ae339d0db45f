"""The retrieval dev-set labeler (lmlm.evaluate.retrieval_sets): value matching, entity resolution,
the passage split, and the sets built from the real data in ../shared."""

import json
import os
from pathlib import Path

import pytest

from lmlm.corpus import read_corpus
from lmlm.errors import LmlmError
from lmlm.evaluate.retrieval_sets import (
    EntityIndex,
    check_handwritten,
    cross_annotator_queries,
    match_value,
    passage_half,
    read_handwritten,
)
from lmlm.kb.io import read_any

REPO = Path(__file__).resolve().parents[1]
RETRIEVAL_DEV = Path(os.environ.get("LMLM_SHARED", REPO.parent / "shared")) / "data" / "retrieval-dev"
HANDWRITTEN = REPO / "benchmarks" / "data" / "retrieval_handwritten.jsonl"


@pytest.mark.parametrize("asked, stored, how", [
    ("Ottoman", "Ottoman", "equal"),
    ("Triple crown", "triple crown", "equal"),
    ("Epidemic of 1617", "1617 epidemic", "tokens"),
    ("Nilgiri Mountains, India", "India's Nilgiri Mountains", "tokens"),
    ("14th Dec 1977", "December 14, 1977", "date"),
    ("three children", "three", "number"),
    ("39900", "39,900", "number"),
    ("Mi'kmaq", "Mi'kmaq tribe", "contains"),
    ("Architectural Association, Chelsea School of Art, University of East London", "Chelsea School of Art, University of East London", "list_item"),
    ("European vice-champion", "vice-champion", "partial"),
    ("1990,1995", "1995", "list_item"),  # a comma between numbers separates them unless a thousands group follows
    ("10,000,20,000", "20,000", "list_item"),
])
def test_values_that_state_the_same_fact_match(asked, stored, how):
    assert match_value(asked, stored) == how


@pytest.mark.parametrize("asked, stored", [
    ("1864", "1865"),
    ("14 December 1977", "14 December 1978"),
    ("2 goals", "2 caps"),
    ("20 kilometers southeast of Haicheng, Liaoning", "20 kilometers"),  # a distance is not the location
    ("footballer", "football"),
    ("", "anything"),
    ("5", "5,000"),  # a number's separators do not split it: into words, list items or a larger part
    ("5,000", "5"),
    ("5", "1.5"),
])
def test_values_of_different_facts_do_not_match(asked, stored):
    assert match_value(asked, stored) is None


def test_entity_resolution_tiers():
    index = EntityIndex(["Beck (album)", "Atlit Naval Base", "Huỳnh Tịnh Của", "Deputy Governor of Lagos State", "Łęczyna"])
    assert index.resolve("Atlit Naval Base") == ("exact", ["Atlit Naval Base"])
    assert index.resolve("Atlit naval base") == ("folded", ["Atlit Naval Base"])
    assert index.resolve("Leczyna") == ("folded", ["Łęczyna"])
    assert index.resolve("Beck") == ("variant", ["Beck (album)"])
    assert index.resolve("Lagos State Deputy Governor") == ("variant", ["Deputy Governor of Lagos State"])
    assert index.resolve("Paulus Huỳnh Tịnh Của") == ("contained", ["Huỳnh Tịnh Của"])
    assert index.resolve("Darcy Frey") == (None, [])


def _passage(pid, calls):
    text = " ".join(f"[dblookup('{e}', '{r}') -> {v}] {v}." for e, r, v in calls)
    return {"annotated_text": text, "text": text, "original_dataset_ids": pid}


def test_cross_annotator_labels_by_value_and_splits_same_name_from_paraphrase():
    triplets = [
        ("Janne Salli", "Nationality", "Finnish"),
        ("Janne Salli", "Team Captained", "Finnish Under-21 team"),
        ("Janne Salli", "Club", "FC Haka"),
        ("Janne Salli", "Birth Date", "December 14, 1977"),
        ("Huỳnh Tịnh Của", "Employer", "French colonial government"),
        ("Pirmad", "Location", "Kerala, India"),
    ]
    passages = [_passage("61730633", [
        ("Janne Salli", "Nationality", "Finnish"),
        ("Janne Salli", "Played For", "FC Haka"),
        ("Janne Salli", "Born", "14 December 1977"),
        ("Janne Salli", "Injury", "knee injury"),
        ("Darcy Frey", "Nationality", "American"),
        ("Paulus Huỳnh Tịnh Của", "Employer", "French colonial government"),
        ("Pirmad cat snake", "Named After", "Peermade, Kerala, India"),
    ])]
    queries, stats = cross_annotator_queries(passages, triplets)
    labels = [(q.entity, q.kind, q.expected) for q in queries]
    assert labels == [
        # the nationality, not the under-21 team whose name also contains "Finnish"
        ("Janne Salli", "same_name", ["Finnish"]),
        ("Janne Salli", "paraphrase", ["FC Haka"]),
        ("Janne Salli", "paraphrase", ["December 14, 1977"]),
        ("Janne Salli", "absent", None),
        ("Darcy Frey", "absent", None),
        ("Paulus Huỳnh Tịnh Của", "same_name", ["French colonial government"]),
        # a contained name is another entity unless a value as good as equal confirms it
        ("Pirmad cat snake", "absent", None),
    ]
    assert stats["calls"] == 7
    assert stats["entity_match"] == {"exact": 4, "none": 1, "contained": 2}
    assert {q.set for q in queries} == {f"cross_{passage_half('61730633')}"}


def test_the_same_question_asked_twice_in_a_passage_is_one_query_with_every_asked_value():
    passages = [_passage("p", [("A", "Title Held", "Prince of Massa"), ("A", "Title Held", "Duke of Ferentillo")])]
    queries, stats = cross_annotator_queries(passages, [("A", "Title", "Duke of Ferentillo")])
    assert (stats["calls"], stats["queries"]) == (2, 1)
    assert queries[0].asked_values == ["Prince of Massa", "Duke of Ferentillo"]
    assert queries[0].expected == ["Duke of Ferentillo"]


def test_passage_split_is_deterministic_and_uses_both_halves():
    ids = [str(i) for i in range(200)]
    halves = [passage_half(i) for i in ids]
    assert halves == [passage_half(i) for i in ids]
    assert 60 <= halves.count("fit") <= 140
    assert set(halves) == {"fit", "confirm"}


def test_handwritten_reader_names_the_bad_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"kind": "relation_order", "entity": "A", "relation": "B", "expected": ["x"]}\n'
                    '{"kind": "absent_other_type", "entity": "A", "relation": "C", "expected": []}\n')
    with pytest.raises(LmlmError, match=r"q.jsonl:2: expected must be"):
        read_handwritten(path)


def test_handwritten_check_finds_queries_that_do_not_fit_the_kb(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"kind": "relation_synonym", "entity": "Ida Darling", "relation": "Job", "expected": ["actress"], "stored_relation": "Occupation"},
        {"kind": "relation_synonym", "entity": "Ida Darling", "relation": "Occupation", "expected": ["actress"], "stored_relation": "Occupation"},
        {"kind": "absent_other_type", "entity": "Ida Darling", "relation": "occupation", "expected": "absent"},
        {"kind": "entity_article", "entity": "Ida Darling", "relation": "Occupation", "expected": ["actor"],
         "stored_entity": "Ida Darling", "stored_relation": "Occupation"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = check_handwritten(read_handwritten(path), [("Ida Darling", "Occupation", "actress")])
    assert problems == [
        "relation_synonym ('Ida Darling', 'Occupation'): the relation is stored under this very name",
        "absent_other_type ('Ida Darling', 'occupation'): stored, not absent",
        "entity_article ('Ida Darling', 'Occupation'): expected ['actor'] not stored under 'Ida Darling'",
    ]


# --- on the real data in ../shared -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retrieval_dev() -> Path:
    if not RETRIEVAL_DEV.is_dir():
        pytest.fail(f"retrieval dev data not found at {RETRIEVAL_DEV}: put ../shared beside the repo or set LMLM_SHARED")
    return RETRIEVAL_DEV


def test_cross_annotator_set_from_the_real_dev_half(retrieval_dev):
    triplets = [row[:3] for row in read_any(retrieval_dev / "dwiki-eval100-annotator_database.json")]
    examples = read_corpus(retrieval_dev / "dwiki-eval100-devhalf_chatgpt_gpt4o-v7.1_cleaned.json").examples
    queries, stats = cross_annotator_queries(examples, triplets)
    assert (stats["passages"], stats["calls"]) == (34, 258)  # the shared README's counts
    kinds = stats["kinds"]
    for half in ("cross_fit", "cross_confirm"):
        for kind in ("same_name", "paraphrase", "absent"):
            assert kinds[f"{half}/{kind}"] >= 20, (half, kind, kinds)
    assert 0 < stats["entity_match"]["none"] < stats["entity_match"]["exact"]
    by_passage = {}
    for q in queries:
        assert by_passage.setdefault(q.passage, q.set) == q.set  # a passage is in one half only
        assert (q.expected is None) == (q.kind == "absent") == (not q.matches)


def test_handwritten_queries_fit_the_real_kb(shared):
    triplets = [row[:3] for path in sorted(shared.glob("*.json")) for row in read_any(path)]
    queries = read_handwritten(HANDWRITTEN)
    assert len(queries) >= 120
    assert check_handwritten(queries, triplets) == []
    kinds = {q.kind for q in queries}
    assert kinds == {"relation_order", "relation_synonym", "entity_article", "entity_initials",
                     "entity_transliteration", "entity_distinctive_part", "absent_other_type"}
