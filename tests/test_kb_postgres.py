"""The shared (PostgreSQL) knowledge base beyond the behaviour both backends share (those tests run on both,
parametrized): replicas that see each other's edits, the schema made and migrated by the tool, URLs from the
environment that never show a password, `lmlm kb migrate` resuming after a kill, `serve-check`, and two
`lmlm serve` replicas under load that never answer with a fact after its forget or update returned."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from conftest import fails_cleanly, run_cli

from lmlm.errors import Busy, LmlmError
from lmlm.kb import SqliteKB, open_kb, pg_schema, pg_store
from lmlm.kb.encoder import HashingEncoder
from lmlm.kb.pg_schema import SCHEMA_VERSION
from lmlm.kb.pg_store import PgStore
from lmlm.kb.postgres import PostgresKB

ROWS = [("Ada Maria Lovelace", "Birthplace", "London"), ("Ada Maria Lovelace", "Birth Date", "10 December 1815"),
        ("Liu Wen", "Occupation", "engineer"), ("Liu Wen", "Birthplace", "Chengdu")]


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def url(postgres_server):
    return postgres_server.new_database()


def test_replicas_see_each_others_edits_before_the_writer_returns(url):
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as a, PostgresKB(url, encoder=HashingEncoder(), listen=True) as b:
        a.import_triplets(ROWS)
        a.embed()
        b.embed()
        before = b.lookup("Ada Maria Lovelace", "Birthplace")
        assert before.value == "London"
        a.forget("Ada Maria Lovelace")
        gone = b.lookup("Ada Maria Lovelace", "Birthplace")
        assert (gone.value, gone.tier) == (None, "none") and gone.kb_version > before.kb_version
        assert b.lookup("Ada Lovelace", "Birth Date").value is None  # no rewrite or neighbour answers for it either
        a.update(b.lookup("Liu Wen", "Occupation").triplet.id, "astronaut")
        assert b.lookup("Liu Wen", "Occupation").value == "astronaut"
        added = a.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        # the listener puts the new entity's vector into b's in-memory index: a shortened name finds it through faiss
        assert _until(lambda: b.replica.applied == a.store.current_version())
        assert b.indexes.loaded["entities"].ntotal == 3
        assert b.lookup("Zora Hurston", "Birthplace").triplet == added


def test_a_migration_held_up_by_an_open_transaction_gives_up_in_one_line(url, monkeypatch):
    PgStore(url, create=True, target_schema=2).close()
    monkeypatch.setattr(pg_schema, "MIGRATION_LOCK_TIMEOUT_S", 0.2)
    with psycopg.connect(url) as reader:
        reader.execute("SELECT version FROM kb_state")  # a replica's snapshot, still open
        with pytest.raises(LmlmError, match="could not be migrated: another session held its tables past 0.2 s"):
            PostgresKB(url)
    with PostgresKB(url) as kb:  # the next open, with the reader gone, migrates
        assert kb.store.schema_version() == SCHEMA_VERSION


def test_the_names_version_moves_when_any_replica_adds_an_entity_and_only_then(url):
    PgStore(url, create=True, target_schema=2).close()  # a KB made by an lmlm of schema 2, before the names version
    with PostgresKB(url, encoder=HashingEncoder()) as a, PostgresKB(url, encoder=HashingEncoder()) as b:
        a.import_triplets(ROWS)
        seen = b.version()
        a.update(a.lookup("Liu Wen", "Occupation").triplet.id, "astronaut")
        a.add("Liu Wen", "Hobby", "go")
        a.delete(a.lookup("Liu Wen", "Hobby").triplet.id)
        assert b.version() == seen  # facts edited, no name added: the entity trie need not read the names again
        a.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        assert b.version() != seen and "Zora Neale Hurston" in b.entity_names()


def test_a_replica_catches_up_before_answering_without_its_listener(url):
    """The per-batch check alone: a replica that hears no notification applies the changes it is behind on
    before it answers (here: an added entity's vector goes into its in-memory faiss index)."""
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as a, PostgresKB(url, encoder=HashingEncoder(), listen=False) as b:
        a.import_triplets(ROWS)
        a.embed()
        b.embed()
        added = a.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        assert b.replica.applied < a.store.current_version()
        found = b.lookup("Zora Hurston", "Birthplace")
        assert (found.triplet, found.tier) == (added, "fuzzy")
        assert b.replica.applied == found.kb_version == a.store.current_version()
        assert b.indexes.loaded["entities"].ntotal == 3


def test_a_replica_behind_the_pruned_change_log_builds_its_memory_again(url, monkeypatch):
    """The change log keeps the last CHANGES_KEPT versions; a replica that missed an older one cannot replay it,
    so it drops its in-memory indexes and builds them again from the stored vectors."""
    monkeypatch.setattr(pg_store, "CHANGES_KEPT", 2)
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as a, PostgresKB(url, encoder=HashingEncoder(), listen=False) as b:
        a.import_triplets(ROWS)
        a.embed()
        b.embed()
        assert b.indexes.loaded["entities"].ntotal == 2
        added = a.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        liu = a.lookup("Liu Wen", "Occupation").triplet.id
        for job in ("astronaut", "pilot", "teacher"):
            a.update(liu, job)
        assert [v for v, _ in a.store.changes_between(0, a.store.current_version())] == [a.store.current_version() - 1,
                                                                                          a.store.current_version()]
        found = b.lookup("Zora Hurston", "Birthplace")
        assert (found.triplet, found.tier) == (added, "fuzzy")
        assert b.vectors.index("entities").ntotal == 3  # the added entity's vector, whose change was pruned
        assert b.lookup("Liu Wen", "Occupation").value == "teacher"


def test_a_replica_replays_the_log_it_still_has_and_skips_its_own_pruned_writes(url, monkeypatch):
    """Behind by no more than the log keeps, or only by its own writes, a replica keeps its in-memory index."""
    monkeypatch.setattr(pg_store, "CHANGES_KEPT", 4)  # what one add and one update log
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as a, PostgresKB(url, encoder=HashingEncoder(), listen=False) as b:
        a.import_triplets(ROWS)
        a.embed()
        b.embed()
        assert b.lookup("Liu Wen", "Occupation").kb_version == b.replica.applied  # b is up to date
        index = b.vectors.index("entities")
        a.add("Zora Neale Hurston", "Birthplace", "Notasulga")
        a.update(a.lookup("Liu Wen", "Occupation").triplet.id, "pilot")
        assert b.lookup("Zora Hurston", "Birthplace").value == "Notasulga"  # the changes, replayed
        assert b.indexes.loaded["entities"] is index and index.ntotal == 3
        for city in ("Paris", "Rome", "Lyon"):  # b's own writes, the first of them pruned before b reads the log
            b.add("Liu Wen", f"Home {city}", city)
        assert b.lookup("Liu Wen", "Home Lyon").value == "Lyon"
        assert b.indexes.loaded["entities"] is index and not b.store.written


def test_each_lookup_reports_the_version_it_answered_from(url):
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(ROWS)
        kb.embed()
        first = kb.lookup_many([("Liu Wen", "Occupation"), ("Liu Wen", "Birthplace")])
        assert {r.kb_version for r in first} == {kb.store.current_version()}
        assert first[0].to_dict()["kb_version"] == first[0].kb_version
        kb.add("Liu Wen", "Hobby", "chess")
        assert kb.lookup("Liu Wen", "Hobby").kb_version > first[0].kb_version
        with PostgresKB(url, encoder=HashingEncoder(), listen=False) as other:
            assert kb.lookup("Ada Lovelace", "born in").kb_version == kb.store.current_version()  # the fuzzy tiers' snapshot too
            other.add("Liu Wen", "Hobby", "go")  # a lookup's snapshot leaves no version behind: the next read is current
            assert kb.store.current_version() == other.store.current_version() == kb.lookup("Liu Wen", "Hobby").kb_version


def test_schema_is_created_and_migrated_by_the_tool(url, postgres_server):
    with pytest.raises(LmlmError, match="no lmlm knowledge base in this database"):
        PostgresKB(postgres_server.new_database())
    PgStore(url, create=True, target_schema=1).close()  # a KB made by an lmlm of schema 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('replicas')").fetchone()[0] is None
    with PostgresKB(url) as kb:
        assert kb.store.schema_version() == SCHEMA_VERSION == 3
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(LmlmError, match="schema 99, this lmlm reads up to 3"):
        PostgresKB(url)


def test_url_from_the_environment_and_no_password_in_messages(url, tmp_path):
    db = tmp_path / "db.json"
    db.write_text(json.dumps({"triplets": [list(r) for r in ROWS]}))
    env = {**os.environ, "LMLM_TEST_KB": url}
    proc = subprocess.run([sys.executable, "-m", "lmlm", "kb", "import", db, "--out", "env:LMLM_TEST_KB", "--no-embed"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stats = subprocess.run([sys.executable, "-m", "lmlm", "kb", "stats", "env:LMLM_TEST_KB", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(stats.stdout)["triplets"] == 4
    query = run_cli("kb", "query", url, "--entity", "liu wen", "--relation", "occupation", "--json")
    assert json.loads(query.stdout)["value"] == "engineer"
    secret = url.replace("postgres@", "postgres:hunter2@").replace(url.rsplit(":", 1)[1].split("/")[0], "1")  # a closed port
    refused = run_cli("kb", "stats", secret)
    fails_cleanly(refused, "postgres:***@127.0.0.1:1/")
    assert "hunter2" not in refused.stderr
    fails_cleanly(run_cli("kb", "stats", "env:LMLM_NO_SUCH_VARIABLE"), "LMLM_NO_SUCH_VARIABLE is not set")


def _source_kb(path) -> None:
    with SqliteKB(path, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets([(f"Person {i}", f"Relation {i % 7}", f"Value {i}", "gen.json", str(i)) for i in range(4000)])
        kb.embed(reference=True)
        kb.forget("Person 3", exact=True)
        kb.delete(kb.lookup("Person 5", "Relation 5").triplet.id)
        kb.update(kb.lookup("Person 6", "Relation 6").triplet.id, "changed")


def _contents(spec) -> tuple:
    with open_kb(spec) as kb:
        rows = list(kb.triplets(live_only=False))
        forgotten = sorted(n for n in ("Person 3", "Person 4") if not kb.store.holds_live_entity(n))
        vectors = tuple(kb.store.vector_count(t) for t in ("entities", "relations", "triplet_vec"))
        return rows, forgotten, vectors, kb.store.get_meta("encoder")


def test_migrate_resumes_after_a_kill_to_the_same_result(tmp_path, postgres_server):
    src = tmp_path / "src.sqlite"
    _source_kb(src)
    killed, clean = postgres_server.new_database(), postgres_server.new_database()
    proc = subprocess.Popen([sys.executable, "-m", "lmlm", "kb", "migrate", src, killed, "--batch", "20"], stderr=subprocess.PIPE)

    def copying() -> bool:
        with psycopg.connect(killed) as conn:
            if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
                return False
            state = conn.execute("SELECT value FROM meta WHERE key LIKE 'migrated_from:%'").fetchone()
            return state is not None and json.loads(state[0])["after"] > 0
    assert _until(copying, 120)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-copy, not finished
    partial = len(_contents(killed)[0])
    assert 0 < partial < 4000
    run_cli("kb", "migrate", src, killed, "--batch", "20", check=True)  # resumes
    run_cli("kb", "migrate", src, clean, check=True)
    expected = _contents(src)
    assert _contents(killed) == _contents(clean) == expected
    assert expected[1] == ["Person 3"] and expected[2] == (4000, 7, 4000)
    back, out = tmp_path / "back.sqlite", tmp_path / "out.json"
    run_cli("kb", "migrate", clean, back, check=True)
    assert _contents(back) == expected
    run_cli("kb", "migrate", clean, out, check=True)
    with open_kb(clean) as kb:
        assert kb.lookup("Person 6", "Relation 6").value == "changed" and kb.lookup("Person 3", "Relation 3").value is None
    assert len(json.loads(out.read_text())["triplets"]) == 4000 - 2  # the forgotten and the deleted fact are not exported


def test_migrate_reference_json_into_postgres(tmp_path, url, shared):
    src = shared / "squad-eval100-Annotator_database.json"
    run_cli("kb", "migrate", src, url, check=True)
    out = tmp_path / "again.json"
    run_cli("kb", "migrate", url, out, check=True)
    assert sorted(map(tuple, json.loads(out.read_text())["triplets"])) == sorted(map(tuple, json.loads(src.read_text())["triplets"]))


def test_migrate_and_serve_check_refuse_bad_input(tmp_path, url):
    fails_cleanly(run_cli("kb", "migrate", tmp_path / "missing.sqlite", url), "missing.sqlite: no such knowledge base")
    (tmp_path / "a.json").write_text("{}")
    fails_cleanly(run_cli("kb", "migrate", tmp_path / "a.json", tmp_path / "b.json"), "both sides are JSON")
    fails_cleanly(run_cli("kb", "migrate", url, url), "the same knowledge base")
    fails_cleanly(run_cli("kb", "migrate", tmp_path / "a.json", url, "--batch", "0"), "--batch 0")
    fails_cleanly(run_cli("kb", "serve-check", tmp_path / "x.sqlite"), "serve-check reads a shared")
    with SqliteKB(tmp_path / "full.sqlite", encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(ROWS)
    run_cli("kb", "migrate", tmp_path / "full.sqlite", url, check=True)
    other = tmp_path / "other.sqlite"
    with SqliteKB(other, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(ROWS[:1])
    fails_cleanly(run_cli("kb", "migrate", other, url), "already holds triplets")


def test_serve_check_reports_each_replica_and_its_lag(url):
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as writer, PostgresKB(url, encoder=HashingEncoder(), listen=True) as replica:
        writer.import_triplets(ROWS)
        assert _until(lambda: replica.replica.applied == writer.store.current_version())

        def seen():
            report = json.loads(run_cli("kb", "serve-check", url, "--json", check=True).stdout)
            return report if any(r["id"] == replica.replica.id and r["lag"] == 0 for r in report["replicas"]) else None
        assert _until(seen, 20)
        report = seen()
        assert (report["schema_version"], report["triplets"], report["kb_version"]) == (SCHEMA_VERSION, 4, writer.store.current_version())
    gone = json.loads(run_cli("kb", "serve-check", url, "--json", check=True).stdout)
    assert gone["replicas"] == []  # a replica that closed takes its row with it


@pytest.mark.slow
def test_two_serve_replicas_never_answer_with_a_fact_after_its_edit_returned(tmp_path_factory, postgres_server):
    """A forget or update sent to one replica: no generate sent afterwards, to any replica, looks up the old value.
    Bounded: 240 generates from 6 clients and 24 edits, on 127.0.0.1."""
    from live_server import free_port, tiny_lmlm_copy
    from replicas import kb_facts, run_load, start_replica, stop_replicas

    model, kb_file = tiny_lmlm_copy(tmp_path_factory)
    url = postgres_server.new_database()
    run_cli("kb", "migrate", kb_file, url, check=True)
    with open_kb(url) as kb:
        facts = kb_facts(kb)
    # lmlm generate takes the URL too (from the environment here), and reports the version its lookup read
    fact = facts[0]
    prompt = f"Fact: <|db_entity|> {fact['entity']}<|db_relationship|> {fact['relation']}<|db_return|>"
    proc = subprocess.run([sys.executable, "-m", "lmlm", "generate", "--model", model, "--kb", "env:LMLM_TEST_KB", "--json",
                           "--max-new-tokens", "2", prompt], env={**os.environ, "LMLM_TEST_KB": url}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    generated = json.loads(proc.stdout.strip().splitlines()[-1])
    assert generated["lookups"][0]["value"] == fact["value"] and generated["kb_version"] >= 1
    procs = []
    try:
        for _ in range(2):
            procs.append(start_replica(model, url, free_port()))
        urls = [f"http://127.0.0.1:{p.args[p.args.index('--port') + 1]}" for p in procs]
        report = run_load(urls, facts, generates=240, edits=24, clients=6)
    finally:
        stop_replicas(procs)
    print(report)
    assert report["errors"] == 0 and report["edits"] == 24
    assert report["checked"] >= 24  # every edit was checked on the other replica at once, besides the load's own lookups
    assert report["stale"] == 0
    assert report["versions"] > 1
    # the control: replicas on copies of one SQLite file (the hole a shared KB closes) do answer with old facts,
    # so the check above can see a stale answer when there is one
    copies = [tmp_path_factory.mktemp("copy") / "kb.sqlite" for _ in range(2)]
    for copy in copies:
        shutil.copyfile(kb_file, copy)
    procs = []
    try:
        for copy in copies:
            procs.append(start_replica(model, str(copy), free_port()))
        urls = [f"http://127.0.0.1:{p.args[p.args.index('--port') + 1]}" for p in procs]
        control = run_load(urls, facts, generates=40, edits=6, clients=2)
    finally:
        stop_replicas(procs)
    assert control["stale"] > 0 and control["versions"] == 0


def test_a_database_that_goes_away_is_reported_as_busy_not_a_crash(postgres_server):
    """A lookup on a replica whose database went down raises Busy (HTTP 503 with Retry-After), naming the
    database without its password, instead of a driver error (a 500)."""
    from postgres_server import PostgresServer

    own = PostgresServer().start()  # stopped mid-test: not the session's server
    try:
        kb = PostgresKB(own.new_database(), encoder=HashingEncoder(), create=True)
        kb.import_triplets(ROWS)
        own.stop()
        with pytest.raises(Busy, match=r"kb_\d+: the database is unreachable"):
            kb.lookup("Liu Wen", "Occupation")
        kb.close()
    finally:
        own.stop()


def test_the_forgetting_audit_copies_a_shared_kb_and_never_edits_it(url, tmp_path):
    from lmlm.evaluate.suites import _private_copy

    with PostgresKB(url, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(ROWS)
        kb.embed()
        with _private_copy(kb, tmp_path) as copy:
            assert sorted(t[1:4] for t in copy.triplets()) == sorted(ROWS)
            assert copy.forget("Liu Wen", exact=True) == 2
        assert kb.lookup("Liu Wen", "Occupation").value == "engineer"


def test_a_migration_whose_source_cannot_be_read_leaves_no_destination(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    target = tmp_path / "target.sqlite"
    fails_cleanly(run_cli("kb", "migrate", garbage, target), "garbage.sqlite")
    assert not target.exists()


def test_annotate_reads_its_known_facts_from_a_shared_kb(url, tmp_path):
    """`annotate --kb URL` aligns against the shared KB's facts as it does against the same facts in a file."""
    run_cli("world", "--out", tmp_path / "w", "--people", "20", "--seed", "1", check=True)
    rows = json.loads((tmp_path / "w" / "kb.json").read_text())["triplets"]
    with PostgresKB(url, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(rows)
    for name, spec in (("file", tmp_path / "w" / "kb.json"), ("shared", url)):
        run_cli("annotate", tmp_path / "w" / "corpus.jsonl", "--kb", spec, "--out", tmp_path / f"{name}.jsonl", check=True)
    annotated = {name: (tmp_path / f"{name}.jsonl").read_text() for name in ("file", "shared")}
    assert annotated["shared"] == annotated["file"] and "[dblookup(" in annotated["shared"]
