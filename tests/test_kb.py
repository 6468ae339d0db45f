"""Knowledge base: real-data build and round trip, tiered lookup, edits, forgetting, crash safety, bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import run_cli

from lmlm.errors import LmlmError
from lmlm.kb import SqliteKB
from lmlm.kb import index as vindex
from lmlm.kb.encoder import HashingEncoder
from lmlm.kb.io import export, read_reference_db

PEOPLE = [
    ("Ada Maria Lovelace", {"Birth Date": "10 December 1815", "Birthplace": "London", "Employer": "Analytical Society", "Spouse": "William King"}),
    ("Marcus Okonkwo Adeyemi", {"Birth Date": "3 March 1961", "Birthplace": "Lagos", "Employer": "Shell", "University": "University of Ibadan"}),
    ("Liu Wen", {"Birth Date": "1 May 1990", "Birthplace": "Chengdu", "Nationality": "Chinese", "Occupation": "engineer"}),
]


@pytest.fixture(scope="module")
def small_kb(make_module_kb):
    """A small KB with the real MiniLM encoder, once per backend."""
    kb = make_module_kb("people")
    kb.import_triplets([(name, rel, val) for name, facts in PEOPLE for rel, val in facts.items()])
    kb.embed()
    yield kb
    kb.close()


def test_build_from_every_real_file_and_report(corpora, shared, tmp_path):
    out = tmp_path / "real.sqlite"
    proc = run_cli("kb", "build", *corpora, shared / "squad-eval100-Annotator_database.json", "--out", out, "--no-embed", check=True)
    stats = json.loads(run_cli("kb", "stats", out, "--json", check=True).stdout)
    print(proc.stdout, stats)
    assert stats["triplets"] > 13_000 and stats["entities"] > 5_000 and stats["relations"] > 8_000
    with SqliteKB(out) as kb:
        hit = kb.lookup("Beyoncé Giselle Knowles-Carter", "Birth Date")
        assert (hit.value, hit.tier) == ("September 4, 1981", "exact")
        assert kb.lookup("beyonce giselle knowles_carter", "birth-date").tier == "exact"


def test_reference_database_round_trips_exactly(shared, tmp_path):
    src = shared / "squad-eval100-Annotator_database.json"
    kb_path, out = tmp_path / "db.sqlite", tmp_path / "db.json"
    run_cli("kb", "import", src, "--out", kb_path, "--no-embed", check=True)
    run_cli("kb", "export", kb_path, "--out", out, check=True)
    original, exported = json.loads(src.read_text()), json.loads(out.read_text())
    assert sorted(map(tuple, exported["triplets"])) == sorted(map(tuple, original["triplets"]))
    for key in ("entities", "relationships", "return_values"):
        assert set(exported[key]) == set(original[key])
    jsonl = tmp_path / "db.jsonl"
    run_cli("kb", "export", kb_path, "--out", jsonl, check=True)
    again = tmp_path / "again.sqlite"
    run_cli("kb", "import", jsonl, "--out", again, "--no-embed", check=True)
    with SqliteKB(again) as kb:
        assert sorted((e, r, v) for _, e, r, v, *_ in kb.triplets()) == sorted(map(tuple, original["triplets"]))


def test_tiers(small_kb):
    assert small_kb.lookup("Ada Maria Lovelace", "Birthplace").tier == "exact"
    assert small_kb.lookup("ADA MARÍA  LOVELACE", " BIRTHPLACE.").tier == "exact"
    assert small_kb.lookup("Ada_Maria_Lovelace", "birth place").value == "London"
    for entity, relation in [("Lovelace, Ada Maria", "Birthplace"), ("Ada Lovelace", "Place of Birth"), ("Ada Maria Lovelace", "born in")]:
        result = small_kb.lookup(entity, relation)
        assert (result.value, result.tier) == ("London", "fuzzy"), (entity, relation, result)
    assert small_kb.lookup("Ada Maria Lovelace", "Favourite Colour").tier == "none"
    assert small_kb.lookup("Ada Maria Lovelock", "Birthplace").tier == "none"


def test_batch_equals_single(small_kb):
    pairs = [("Liu Wen", "Occupation"), ("Liu Wen", "job"), ("Nobody", "Birthplace"), ("Marcus Adeyemi", "alma mater")]
    assert small_kb.lookup_many(pairs) == [small_kb.lookup(*p) for p in pairs]
    assert small_kb.lookup_many([]) == []


def test_reference_mode_reproduces_threshold_top1(small_kb):
    hit = small_kb.lookup("ada maria lovelace", "birthplace", mode="reference")
    assert hit.value == "London" and hit.score > 0.9
    miss = small_kb.lookup("zebra", "quantum chromodynamics", mode="reference")
    assert miss.tier == "none" and miss.score < 0.6 and miss.nearest is not None


def test_delete_and_update_take_effect_without_rebuild(make_kb, tmp_path):
    with make_kb("e") as kb:
        kb.import_triplets([(name, rel, val) for name, facts in PEOPLE for rel, val in facts.items()])
        kb.embed()
        index_files = sorted(tmp_path.glob("*.faiss"))
        index = kb.indexes.loaded["entities"]
        deleted = kb.lookup("Liu Wen", "Birthplace").triplet
        updated = kb.lookup("Liu Wen", "Occupation").triplet
        kb.delete(deleted.id)
        kb.update(updated.id, "astronaut")
        assert kb.lookup("Liu Wen", "Birthplace").tier == "none"
        assert kb.lookup("Liu Wen", "place of birth").tier == "none"  # no near neighbour answers for it
        assert kb.lookup("Liu Wen", "Occupation").value == "astronaut"
        assert kb.lookup("Liu Wen", "profession").value == "astronaut"
        assert kb.indexes.loaded["entities"] is index and sorted(tmp_path.glob("*.faiss")) == index_files
        added = kb.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        assert kb.lookup("Zora Hurston", "born in").triplet == added
        with pytest.raises(LmlmError, match="no triplet with id 999"):
            kb.update(999, "x")


def test_relations_that_entities_hold_together_are_not_paraphrases(make_kb):
    """"Employer City" reads much like "Employer", but people who have both show they are different facts:
    a person without an Employer City gets none, not their employer; a paraphrase still finds its fact."""
    staff = [(f"Worker {i}", rel, val) for i in range(6) for rel, val in (("Employer", "Shell"), ("Employer City", "Lagos"))]
    with make_kb("c") as kb:
        kb.import_triplets(staff + [("Ada Maria Lovelace", "Employer", "Analytical Society")])
        kb.embed()
        assert kb.lookup("Ada Maria Lovelace", "Employer City").tier == "none"
        assert kb.lookup("Ada Maria Lovelace", "employed by").value == "Analytical Society"
        # an added fact keeps the counts current: a relation held beside another from now on is no paraphrase of it
        assert kb.lookup("Ada Maria Lovelace", "Workplace").value == "Analytical Society"
        for i in range(3):
            kb.add(f"Worker {i}", "Workplace", "Main office")
        assert kb.lookup("Ada Maria Lovelace", "Workplace").tier == "none"


PARAPHRASES = ["Birth Date", "date of birth", "born on", "birthday", "Birthplace", "place of birth", "born in", "Birth Place",
               "Employer", "works for", "employer name", "Spouse", "married to", "husband", "University", "alma mater"]
NAMES = ["Ada Maria Lovelace", "Ada Lovelace", "Lovelace, Ada Maria", "ada maria lovelace", "ADA MARIA LOVELACE", "Ada Maria Lovelace (mathematician)"]


def test_forgotten_entity_never_comes_back(make_kb):
    with make_kb("f") as kb:
        kb.import_triplets([(name, rel, val) for name, facts in PEOPLE for rel, val in facts.items()])
        kb.import_triplets([("Ada Byron King", "Birthplace", "London"), ("Ada Maria Lovell", "Birth Date", "10 December 1815")])
        kb.embed()
        assert kb.forget("Ada Maria Lovelace") == 4
        queries = [(n, r) for n in NAMES for r in PARAPHRASES][:50]
        assert len(queries) == 50
        assert [r.tier for r in kb.lookup_many(queries)] == ["none"] * 50
        assert kb.lookup("Liu Wen", "Birthplace").value == "Chengdu"
        with pytest.raises(LmlmError, match="no entity named"):
            kb.forget("Nobody At All")


def test_index_files_are_named_by_content(tmp_path):
    enc = HashingEncoder()
    names = {}
    for tag, people in (("a", ["Anna Berg", "Carl Dahl"]), ("b", ["Eva Fisk", "Gustav Holm"])):
        path = tmp_path / tag / "kb.sqlite"
        path.parent.mkdir()
        with SqliteKB(path, encoder=enc, create=True) as kb:
            kb.import_triplets([(p, "Birthplace", "Oslo") for p in people])
            kb.embed()
        names[tag] = [p.name.split(".", 2)[-1] for p in path.parent.glob("*.faiss")]
    assert names["a"] != names["b"]  # same counts, different content
    path = tmp_path / "a" / "kb.sqlite"
    with SqliteKB(path, encoder=enc) as kb:
        kb.import_triplets([("Ivar Lund", "Birthplace", "Bergen")])
        kb.embed()
    assert len(list(path.parent.glob("*.entities-*.faiss"))) == 1
    assert [p.name.split(".", 2)[-1] for p in path.parent.glob("*.faiss")] != names["a"]


def test_compressed_index_recall(tmp_path):
    enc = HashingEncoder()
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 7)) for _ in range(3000)]
    vectors = enc.encode([f"{rng.choice(words)} {rng.choice(words)} {i}" for i in range(30_000)])
    ids = np.arange(30_000, dtype=np.int64)
    batches = lambda: iter([(ids, vectors)])  # noqa: E731
    compressed = vindex.build_index(enc.dim, batches, len(ids), exact_max=10_000)
    exact = vindex.build_index(enc.dim, batches, len(ids))
    assert "SQ8" in vindex.describe(compressed) and "flat" in vindex.describe(exact)
    queries = vectors[:500] + 0.02 * rng.standard_normal((500, enc.dim)).astype(np.float32)
    _, got = vindex.search(compressed, queries, 1)
    _, want = vindex.search(exact, queries, 1)
    assert (got[:, 0] == want[:, 0]).mean() >= 0.95
    assert vindex.bytes_per_vector(compressed) < vindex.bytes_per_vector(exact) / 3


def test_killed_bulk_import_leaves_previous_contents(tmp_path):
    path = tmp_path / "k.sqlite"
    with SqliteKB(path, create=True) as kb:
        kb.import_triplets([(f"Person {i}", "Birthplace", f"Town {i}") for i in range(100)])
        before = list(kb.triplets())
    child = textwrap.dedent(
        f"""
        import sys, time
        from lmlm.kb import SqliteKB
        def rows():
            for i in range(10**7):
                if i == 50_000:
                    print("midway", flush=True)
                if i > 50_000:
                    time.sleep(0.0005)
                yield (f"Other {{i}}", "Birthplace", f"City {{i}}")
        SqliteKB({str(path)!r}).import_triplets(rows())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "midway"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with SqliteKB(path) as kb:
        assert list(kb.triplets()) == before


def test_bad_input(tmp_path, small_kb):
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LmlmError, match="not a readable lmlm knowledge base"):
        SqliteKB(corrupt)
    proc = run_cli("kb", "stats", corrupt)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "corrupt.sqlite" in proc.stderr
    proc = run_cli("kb", "query", tmp_path / "missing.sqlite", "--entity", "a", "--relation", "b")
    assert proc.returncode == 2 and "no such knowledge base" in proc.stderr
    for entity, relation in [("", "Birthplace"), ("Liu Wen", ""), ("   ", "x"), ("x" * 10_000, "Birthplace"), ("Liu Wen", "r" * 10_000), ("!!!", "???")]:
        assert small_kb.lookup(entity, relation).tier == "none"
        reference = small_kb.lookup(entity, relation, mode="reference")  # the nearest string may pass its threshold
        answered = reference.triplet is not None
        assert (reference.tier, reference.value) == (("fuzzy", reference.triplet.value) if answered else ("none", None))
    with pytest.raises(LmlmError, match="entity is empty"):
        small_kb.add("", "Birthplace", "x")
    with pytest.raises(LmlmError, match="longer than"):
        small_kb.add("x" * 10_000, "Birthplace", "x")


def test_missing_index_is_rebuilt_from_stored_vectors(tmp_path):
    path = tmp_path / "m.sqlite"
    with SqliteKB(path, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets([("Anna Maria Berg", "Birthplace", "Oslo")])
        kb.embed()
    for index_file in tmp_path.glob("*.faiss"):
        index_file.unlink()
    with SqliteKB(path, encoder=HashingEncoder()) as kb:
        assert kb.lookup("Anna Berg", "Birthplace").value == "Oslo"


def test_query_batch_cli(tmp_path, shared):
    kb_path = tmp_path / "q.sqlite"
    run_cli("kb", "import", shared / "squad-eval100-Annotator_database.json", "--out", kb_path, check=True)
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"entity": "Beyoncé Giselle Knowles-Carter", "relation": "Birthplace"},
        {"entity": "Nobody", "relation": "Birthplace"},
        {"entity": "beyonce giselle knowles-carter", "relation": "place of birth"},
    ]) + "\n")
    lines = run_cli("kb", "query", kb_path, "--batch", queries, "--json", check=True).stdout.splitlines()
    results = [json.loads(line) for line in lines]
    assert [r["tier"] for r in results] == ["exact", "none", "fuzzy"]
    assert results[0]["value"] == results[2]["value"] and results[1]["value"] is None
    assert all(set(r) >= {"value", "entity", "relation", "score", "tier"} for r in results)


def test_export_of_reader_rows(tmp_path, shared):
    rows = list(read_reference_db(shared / "squad-eval100-Annotator_database.json"))
    n = export(((i, e, r, v, s, x, 0, 0) for i, (e, r, v, s, x) in enumerate(rows)), tmp_path / "o.json")
    assert n == len(rows) == 33
