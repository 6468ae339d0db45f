"""Knowledge-base edits (issue 24): counts that re-adds leave alone, edits that act on exactly one entity,
forgetting that holds for every read and every lookup mode, and writes that wait for, or report, another writer."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from lmlm.errors import Ambiguous, Busy, LmlmError, NotFound
from lmlm.kb import SqliteKB
from lmlm.kb.encoder import HashingEncoder
from lmlm.kb.sqlite_tables import count_pairs

PEOPLE = [
    ("Ada Maria Lovelace", {"Birth Date": "10 December 1815", "Birthplace": "London", "Employer": "Analytical Society"}),
    ("Liu Wen", {"Birth Date": "1 May 1990", "Birthplace": "Chengdu", "Occupation": "engineer"}),
]
ROWS = [(name, rel, val) for name, facts in PEOPLE for rel, val in facts.items()]


def _kb(path, rows=ROWS, **kwargs) -> SqliteKB:
    kb = SqliteKB(path, encoder=HashingEncoder(), create=True, **kwargs)
    kb.import_triplets(rows)
    return kb


def _backend_kb(make_kb, name, rows=ROWS):
    return make_kb(name, rows, encoder=HashingEncoder())


def test_readding_a_fact_leaves_relation_counts_alone(tmp_path):
    """A retried add must not count the fact again: three adds of one fact once made "Workplace" look like
    a relation entities hold beside "Employer", and the paraphrase lookup below stopped answering."""
    staff = [(f"Worker {i}", rel, val) for i in range(6) for rel, val in (("Employer", "Shell"), ("Employer City", "Lagos"))]
    with SqliteKB(tmp_path / "c.sqlite", create=True) as kb:  # the real MiniLM encoder: paraphrases need meaning
        kb.import_triplets(staff + [("Ada Maria Lovelace", "Employer", "Analytical Society")])
        kb.embed()
        first = kb.add("Worker 0", "Workplace", "Main office")
        assert [kb.add("Worker 0", "Workplace", "Main office") for _ in range(2)] == [first, first]
        pairs = dict(kb.store.conn.execute(
            "SELECT b.key, p.n FROM relation_pairs p JOIN relations a ON a.id=p.a JOIN relations b ON b.id=p.b WHERE a.key='workplace'"))
        assert pairs == {"workplace": 1, "employer": 1, "employer city": 1}
        assert kb.lookup("Ada Maria Lovelace", "Workplace").value == "Analytical Society"


def test_relation_pair_counts_are_those_of_the_live_facts(make_kb):
    """The recount after a bulk import: for two relations, how many entities hold both live (a relation held
    twice counts once, a deleted fact not at all)."""
    rows = [(f"P{i}", rel, "x") for i in range(7) for rel in ("A", "B", "C")[: 1 + i % 3]] + [("P0", "A", "y")]
    with _backend_kb(make_kb, "pairs", rows) as kb:
        kb.delete(kb.lookup("P5", "C").triplet.id)
        kb.import_triplets([("P7", "D", "z")])  # a newer fact: the next lookup's recount sees the deletion too
        kb.statistics.bring_up_to_date()
        assert sorted(kb.store.relation_cooccurrence("a")) == [("b", 4, 7, 4), ("c", 1, 7, 1)]
        assert sorted(kb.store.relation_cooccurrence("c")) == [("a", 1, 1, 7), ("b", 1, 1, 4)]
        assert kb.store.relation_cooccurrence("d") == []


def test_pair_counts_keep_each_entity_whole_across_read_chunks():
    """An entity whose rows straddle a chunk of the read (or fill several) still counts each of its pairs."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE er(e INTEGER, r INTEGER)")
    holds = {1: [3], 2: [3, 5, 8], 3: [5, 8], 4: [1, 3, 5, 8]}
    conn.executemany("INSERT INTO er VALUES (?, ?)", [(e, r) for e, rs in holds.items() for r in rs])
    want = {}
    for rs in holds.values():
        for a in rs:
            for b in rs:
                want[(a, b)] = want.get((a, b), 0) + 1
    for chunk in (1, 2, 3, 100):
        got = {(a, b): n for a, b, n in count_pairs(conn.execute("SELECT e, r FROM er ORDER BY e, r"), chunk=chunk)}
        assert got == want, chunk


def test_forget_with_a_name_that_fits_several_entities_erases_nothing(make_kb):
    rows = [("John Adam Smith", "Birthplace", "Leeds"), ("John Paul Smith", "Birthplace", "York")]
    with _backend_kb(make_kb, "a", ROWS + rows) as kb:
        with pytest.raises(Ambiguous, match="'John Adam Smith', 'John Paul Smith'") as raised:
            kb.forget("John Smith")
        assert raised.value.candidates == ["John Adam Smith", "John Paul Smith"]
        assert [kb.lookup(name, "Birthplace").value for name in ("John Adam Smith", "John Paul Smith")] == ["Leeds", "York"]
        assert kb.forget("John Paul Smith") == 1
        assert [kb.lookup(name, "Birthplace").value for name in ("John Adam Smith", "John Paul Smith")] == ["Leeds", None]
        assert kb.forget("Ada Lovelace") == 3  # a shortened name that fits one entity still acts on it
        with pytest.raises(NotFound):
            kb.forget("Liu", exact=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lmlm import make_tiny_lmlm

    return make_tiny_lmlm(tmp_path_factory.mktemp("tiny"), people=20, steps=40)


def test_forgetting_suite_acts_on_exact_entities(tiny, tmp_path):
    """The forget set names "John Smith"; the KB holds only the retain-set "John Adam Smith". The audit must
    not erase him in John Smith's place: it says the forget-set person is not in the KB."""
    from lmlm.engine import LMLM
    from lmlm.evaluate import suites

    checkpoint, kb_path = tiny
    with SqliteKB(kb_path) as kb:
        kb.add("John Adam Smith", "Birthplace", "Leeds")
    lmlm = LMLM.from_pretrained(checkpoint, kb=kb_path)
    forget = [{"person": "John Smith", "prompt": "John Smith was born in", "answer": "Leeds"}]
    retain = [{"person": "John Adam Smith", "prompt": "John Adam Smith was born in", "answer": "Leeds"}]
    with pytest.raises(NotFound, match="John Smith"):
        suites.forgetting(lmlm, forget, retain)


def test_a_forgotten_entity_stays_forgotten_until_added_again(make_kb):
    with _backend_kb(make_kb, "f") as kb:
        tombstone = kb.lookup("Ada Maria Lovelace", "Birthplace").triplet
        kb.forget("Ada Maria Lovelace")
        with pytest.raises(LmlmError, match="forgotten entity 'Ada Maria Lovelace'"):
            kb.update(tombstone.id, "Paris")
        assert kb.store.triplet(tombstone.id).value is None
        assert kb.search("Paris") == [] and kb.facts("Ada Maria Lovelace") == []
        assert kb.stats()["triplets"] == 3 and kb.stats()["forgotten_entities"] == 1
        assert "Paris" not in {value for _, _, _, value, *_ in kb.triplets()}
        assert "Ada Maria Lovelace" in kb.entity_names()  # a constrained call can still name it, and be refused
        kb.delete(tombstone.id)  # erasing an erased fact changes nothing
        added = kb.add("Ada Maria Lovelace", "Birthplace", "Paris")
        assert kb.lookup("Ada Maria Lovelace", "Birthplace").triplet == added
        assert kb.lookup("Ada Maria Lovelace", "Birth Date").tier == "none"  # only what was added again comes back
        assert kb.stats()["forgotten_entities"] == 0


def test_update_to_a_value_the_entity_and_relation_already_have(make_kb):
    with _backend_kb(make_kb, "u") as kb:
        mei, jun = (kb.add("Liu Wen", "Child", name) for name in ("Mei", "Jun"))
        assert kb.update(mei.id, "Mei") == mei  # its own value: nothing to do
        with pytest.raises(LmlmError, match=rf"already has the value 'Mei' \(triplet {mei.id}\)"):
            kb.update(jun.id, "Mei")
        assert kb.store.triplet(jun.id).value == "Jun"


def test_reference_mode_honours_tombstones_and_edits(make_kb):
    rows = ROWS + [("Ada Maria Lovell", "Birth Date", "10 December 1816")]
    with _backend_kb(make_kb, "r", rows) as kb:
        kb.embed(reference=True)
        assert kb.lookup("Ada Maria Lovelace", "Birth Date", mode="reference").value == "10 December 1815"
        kb.forget("Ada Maria Lovelace")
        forgotten = kb.lookup("Ada Maria Lovelace", "Birth Date", mode="reference")
        assert (forgotten.value, forgotten.tier, forgotten.nearest) == (None, "none", None)
        kb.delete(kb.lookup("Liu Wen", "Birthplace").triplet.id)
        assert kb.lookup("Liu Wen", "Birthplace", mode="reference").value is None
        kb.update(kb.lookup("Liu Wen", "Occupation").triplet.id, "astronaut")
        assert kb.lookup("Liu Wen", "Occupation", mode="reference").value == "astronaut"
        added = kb.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        assert kb.lookup("Zora Neale Hurston", "Birthplace", mode="reference").triplet == added


def test_add_after_an_import_without_vectors_encodes_only_its_own_rows(make_kb):
    """A CLI import --no-embed from another process leaves thousands of rows without vectors; the next
    add must encode its own entity, relation and reference string, not that backlog."""
    with _backend_kb(make_kb, "n") as kb:
        kb.embed(reference=True)
        with make_kb("n", create=False) as other:
            other.import_triplets([(f"Person {i}", f"Relation {i % 50}", f"Value {i}") for i in range(2000)])
        before = kb.store.vector_count("triplet_vec"), kb.indexes.loaded["entities"].ntotal
        added = kb.add("Zora Neale Hurston", "Hometown", "Eatonville")
        missing = {t: dict(kb.store.missing_vectors(t)) for t in ("entities", "relations", "triplet_vec")}
        assert [len(m) for m in missing.values()] == [2000, 50, 2000]
        assert "Zora Neale Hurston" not in missing["entities"].values() and "Hometown" not in missing["relations"].values()
        after = kb.store.vector_count("triplet_vec"), kb.indexes.loaded["entities"].ntotal
        assert after == (before[0] + 1, before[1] + 1)
        assert kb.lookup("Zora Neale Hurston", "Hometown", mode="reference").triplet == added


def test_rows_the_store_cannot_hold_are_refused(make_kb):
    with _backend_kb(make_kb, "s") as kb:
        for fields in (("Bad \ud800", "Birthplace", "x"), ("Liu Wen", "Birth\udcffplace", "x"), ("Liu Wen", "Birthplace", "\ud800")):
            with pytest.raises(LmlmError, match="not valid Unicode"):
                kb.add(*fields)
        with pytest.raises(LmlmError, match="value '\\\\ud800' is not valid Unicode"):
            kb.update(1, "\ud800")
        with pytest.raises(LmlmError, match="source"):
            kb.add("Liu Wen", "Birthplace", "x", source="\ud800")
        assert kb.lookup("\ud800", "Birthplace").tier == "none" and kb.search("\ud800") == []
        stats = kb.import_triplets([("Liu Wen", "Hobby", "\ud800"), ("Liu Wen", "Hobby", "chess")])
        assert (stats.added, stats.invalid) == (1, 1)


def test_ids_past_int64_are_not_found(make_kb):
    with _backend_kb(make_kb, "i") as kb:
        for edit in (lambda i: kb.update(i, "x"), kb.delete):
            with pytest.raises(NotFound, match="no triplet with id 99999999999999999999"):
                edit(99999999999999999999)
        assert kb.store.triplet(2**63) is None and kb.store.set_value(-(2**63) - 1, "x") is False


def test_a_write_while_another_connection_writes_raises_busy(tmp_path):
    path = tmp_path / "b.sqlite"
    _kb(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with SqliteKB(path, encoder=HashingEncoder(), busy_timeout=0.2) as kb:
            with pytest.raises(Busy, match="another process is writing") as raised:
                kb.add("Liu Wen", "Hobby", "chess")
            assert raised.value.retry_after > 0
            holder.execute("ROLLBACK")
            assert kb.add("Liu Wen", "Hobby", "chess").value == "chess"
    finally:
        holder.close()


def test_a_write_waits_out_an_import_longer_than_five_seconds(tmp_path):
    """SQLite's default wait is 5 s; a bulk import holds the write lock for longer than that."""
    path = tmp_path / "w.sqlite"
    _kb(path).close()
    child = textwrap.dedent(f"""
        import sqlite3, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("holding", flush=True)
        time.sleep(6.5)
        conn.execute("COMMIT")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with SqliteKB(path, encoder=HashingEncoder()) as kb:
            assert kb.add("Liu Wen", "Hobby", "chess").value == "chess"
    finally:
        proc.wait(timeout=30)
