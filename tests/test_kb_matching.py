"""Relation matching: the kind of value a relation's name asks for, what a value can be, the lookups that kinds
keep from answering with a fact of another kind, and ``explain``, which shows what a lookup weighed."""

import json

import pytest
from conftest import fails_cleanly, run_cli

from lmlm.kb import vectors
from lmlm.kb.protocol import Triplet
from lmlm.kb.resolver import JudgedFact, Thresholds, decide
from lmlm.kb.value_types import NUMBER, PERSON, PLACE, TIME, compatible, one_time_two_grains, relation_kind, value_fits


@pytest.mark.parametrize("relation, kind", [
    ("Date of Birth", TIME), ("Birth Year", TIME), ("Founded In Year", TIME), ("when founded", TIME),
    ("Number of Employees", NUMBER), ("Population", NUMBER), ("total_population", NUMBER),
    ("Place of Birth", PLACE), ("Birthplace", PLACE), ("Year of Birth", TIME), ("Birth Place", PLACE),
    ("Father", PERSON), ("Spouse", PERSON), ("City of the Founder", PLACE),
    ("Year Founded", TIME), ("Founders", PERSON), ("Cities", PLACE), ("Located In", PLACE),
    # a kind word that modifies another noun, or one after the preposition, names no kind (a time after it does)
    ("Weight Class", None), ("Country Code", None), ("Day Job", None), ("Goals for Country", None), ("Country Kitchen", None),
    ("Height (m)", NUMBER), ("Addresses", PLACE),
    ("Received Award In Year", TIME),
    ("Occupation", None), ("Employer", None), ("Born In", None), ("", None),
])
def test_a_relation_asks_for_the_kind_its_head_names(relation, kind):
    assert relation_kind(relation) == kind


@pytest.mark.parametrize("kind, value, fits", [
    (TIME, "10 December 1815", True), (TIME, "1990s", True), (TIME, "19th century", True), (TIME, "May", True),
    (TIME, "753 BC", True), (TIME, "c. 570", True), (TIME, "１９９０年", True), (TIME, "19th-century", True),
    (TIME, "12/05/90", True), (TIME, "Chengdu", False), (TIME, "370,000", False), (TIME, "12", False),
    (NUMBER, "370,000", True), (NUMBER, "three", True), (NUMBER, "fifteen", True), (NUMBER, "2850 m", True),
    (NUMBER, "London", False),
    (PLACE, "London", True), (PLACE, "Château Pèlerin", True), (PLACE, "Route 66", True), (PLACE, "1961", False),
    (PLACE, "3 March 1961", False), (PERSON, "William King", True), (PERSON, "April", True), (PERSON, "753 BC", False),
])
def test_what_a_value_can_be(kind, value, fits):
    assert value_fits(kind, value) is fits


def test_a_fact_of_another_kind_is_not_compatible_and_a_tombstone_is():
    assert not compatible(NUMBER, "Birthplace", "Lagos")  # the stored relation names another kind
    assert not compatible(NUMBER, "Residence", "Lagos")  # the value cannot be a number
    assert not compatible(TIME, "Annual Attendance", "1,990")  # a number that reads like a year, under a count
    assert compatible(NUMBER, "Elevation", "2850 m")
    assert compatible(None, "Birthplace", "Lagos")  # a relation that names no kind rules nothing out
    assert compatible(TIME, "Birth Date", None) and not compatible(TIME, "Birthplace", None)


@pytest.mark.parametrize("asked, stored, same", [
    ("year of birth", "birth date", True), ("release year", "release date", True), ("birth years", "birth date", True),
    ("year of the birth", "birth date", True),
    ("death date", "birth date", False), ("birth place", "birth date", False), ("birth date", "birth date", False),
    ("year", "date", False),  # nothing shared: not the same event
    ("award", "award date", False), ("release", "release date", False),  # one side names no time: another fact
])
def test_two_grains_of_one_time(asked, stored, same):
    assert one_time_two_grains(asked, stored) is same


def test_a_fact_of_another_kind_that_fits_better_lets_no_weaker_fact_answer():
    def fact(i, relation, similarity, left_out=None):
        return JudgedFact(Triplet(i, "Ada", relation, "x"), relation.lower(), similarity, left_out)
    spouse = fact(2, "Spouse", 0.70)
    top, rule = decide([fact(1, "Birthplace", 0.80, "of another kind"), spouse], Thresholds())
    assert top is spouse and rule is None  # 0.70 passes the threshold alone, but Birthplace fits "Mother" better
    assert decide([spouse, fact(1, "Birthplace", 0.60, "of another kind")], Thresholds())[1] is not None


PEOPLE = [
    ("Ada Maria Lovelace", {"Birth Date": "10 December 1815", "Birthplace": "London", "Employer": "Analytical Society",
                            "Spouse": "William King"}),
    ("Liu Wen", {"Birth Date": "1 May 1990", "Birthplace": "Chengdu", "Nationality": "Chinese", "Occupation": "engineer"}),
    ("Quito", {"Country": "Ecuador", "Elevation": "2850 m", "Mayor": "Pabel Muñoz"}),
]
ROWS = [(name, relation, value) for name, facts in PEOPLE for relation, value in facts.items()]


@pytest.fixture(scope="module")
def people_kb(make_module_kb):
    kb = make_module_kb("kinds", ROWS)
    kb.embed()
    yield kb
    kb.close()


@pytest.mark.parametrize("entity, relation", [
    ("Liu Wen", "Population"), ("Liu Wen", "Founding Date"), ("Ada Maria Lovelace", "Father"), ("Quito", "Population"),
    # Birthplace, the best fit, is of another kind; it stays a rival, so Spouse does not slip through the margin
    ("Ada Maria Lovelace", "Mother"),
])
def test_no_fact_of_another_kind_answers(people_kb, entity, relation):
    assert people_kb.lookup(entity, relation).tier == "none"


@pytest.mark.parametrize("entity, relation, value", [
    ("Ada Maria Lovelace", "Place of Birth", "London"), ("Quito", "Altitude", "2850 m"), ("Liu Wen", "Hometown", "Chengdu"),
    ("Ada Maria Lovelace", "Husband", "William King"), ("Ada Maria Lovelace", "Year of Birth", "10 December 1815"),
])
def test_a_fact_of_the_asked_kind_still_answers(people_kb, entity, relation, value):
    result = people_kb.lookup(entity, relation)
    assert (result.value, result.tier) == (value, "fuzzy")


QUERIES = [("Liu Wen", "Population"), ("Ada Maria Lovelace", "Place of Birth"), ("Quito", "Altitude"),
           ("Ada Lovelace", "Husband"), ("Ada Maria Lovelace", "Mother"), ("Nobody Known", "Birthplace"), ("Liu Wen", "Birthplace")]


@pytest.mark.parametrize("entity, relation", QUERIES)
def test_explain_agrees_with_the_lookup(people_kb, entity, relation):
    explained, result = people_kb.explain(entity, relation), people_kb.lookup(entity, relation)
    assert explained["answer"] == result.to_dict()
    passing = [e["passes"]["fact"] for e in explained["entities"] if e["passes"]]
    assert explained["decision"].startswith(result.tier)
    if result.tier == "fuzzy":
        assert result.triplet.id in passing



def test_explain_says_why_the_entities_left_no_answer(make_kb):
    with make_kb("decisions") as kb:
        kb.import_triplets([("John Adam Smith", "Birthplace", "Leeds"), ("John Paul Smith", "Birthplace", "York"),
                            ("Liu Wen", "Birthplace", "Chengdu"), ("Liu Wen", "Occupation", "engineer"),
                            ("Ada Maria Lovelace", "Birthplace", "London")])
        kb.embed()
        kb.delete(next(t.id for t in kb.facts("Liu Wen") if t.relation == "Birthplace"))
        kb.forget("Ada Maria Lovelace")
        cases = {("John Smith", "Place of Birth"): "none: facts of several entities",
                 ("Liu Wen", "Hometown"): "none: the best fact was deleted",
                 ("Ada Maria Lovelace", "Place of Birth"): "none: the query names a forgotten entity",
                 ("John Adam Smith", "Birthplace"): "exact: the keys match a stored fact",
                 ("Liu Wen", ""): "none: the entity or the relation is empty"}
        for (entity, relation), decision in cases.items():
            explained = kb.explain(entity, relation)
            assert explained["decision"].startswith(decision), (entity, relation, explained["decision"])
            assert explained["answer"] == kb.lookup(entity, relation).to_dict()
        assert kb.lookup("John Adam Smith", "Place of Birth").value == "Leeds"  # each alone does answer


def test_a_full_query_cache_loses_no_text_it_is_asked_for(people_kb, monkeypatch):
    monkeypatch.setattr(vectors, "CACHED_QUERIES_MAX", 3)
    people_kb.lookup_many([(f"Nobody {i}", f"Relation {i}") for i in range(4)])
    assert people_kb.lookup("Nobody 0", "Relation never asked").tier == "none"  # one cached text, one new


def test_explain_names_why_a_fact_cannot_answer(people_kb):
    explained = people_kb.explain("Liu Wen", "Population")
    assert explained["relation_kind"] == "number" and explained["answer"]["tier"] == "none"
    [liu] = explained["entities"]
    birthplace = next(f for f in liu["facts"] if f["relation"] == "Birthplace")
    assert birthplace["left_out"] == "of another kind" and birthplace["similarity"] is not None
    assert liu["passes"] is None
    place = people_kb.explain("Ada Maria Lovelace", "Place of Birth")
    [ada] = place["entities"]
    assert ada["passes"]["fact"] == next(f["id"] for f in ada["facts"] if f["relation"] == "Birthplace")
    assert ada["facts"][0]["relation"] == "Birthplace"  # best first


def test_kb_query_explain_on_the_command_line(tmp_path):
    from lmlm.kb import SqliteKB

    path = tmp_path / "people.sqlite"
    with SqliteKB(path, create=True) as kb:
        kb.import_triplets(ROWS)
        kb.embed()
    shown = run_cli("kb", "query", path, "--entity", "Liu Wen", "--relation", "Population", "--explain", check=True).stdout
    assert "the asked relation's kind: number" in shown and "Birthplace = Chengdu  (of another kind)" in shown
    record = json.loads(run_cli("kb", "query", path, "--entity", "Liu Wen", "--relation", "Hometown", "--explain", "--json",
                                check=True).stdout)
    assert record["answer"]["value"] == "Chengdu" and record["entities"][0]["passes"] is not None
    fails_cleanly(run_cli("kb", "query", path, "--entity", "Liu Wen", "--relation", "x", "--explain", "--mode", "reference"),
                  "--explain", "--mode reference")
    batch = tmp_path / "queries.jsonl"
    batch.write_text('{"entity": "Liu Wen", "relation": "Hometown"}\n{"entity": 5, "relation": "Birthplace"}\n')
    for explain in ([], ["--explain"]):
        fails_cleanly(run_cli("kb", "query", path, "--batch", batch, *explain), "queries.jsonl:2", "entity must be a string")
