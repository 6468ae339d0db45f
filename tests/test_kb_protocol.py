"""The knowledge base's seams: SqliteKB is a KnowledgeBase, and asking which encoder a KB uses writes nothing."""

import inspect
import sqlite3

from lmlm.kb import KnowledgeBase, SqliteKB
from lmlm.kb.encoder import HashingEncoder

ROWS = [("Ada Maria Lovelace", "Birthplace", "London"), ("Liu Wen", "Occupation", "engineer")]
MEMBERS = {"lookup", "lookup_many", "add", "update", "delete", "forget", "facts", "search", "stats", "entity_names", "version"}


def test_each_backend_satisfies_the_knowledge_base_protocol(make_kb):
    members = {name for name, member in vars(KnowledgeBase).items() if inspect.isfunction(member) and not name.startswith("_")}
    assert members == MEMBERS
    with make_kb("p", encoder=HashingEncoder()) as kb:
        assert isinstance(kb, KnowledgeBase)
        for name in sorted(members):  # same parameters, defaults and annotations: the protocol cannot drift from the class
            assert inspect.signature(getattr(type(kb), name)) == inspect.signature(getattr(KnowledgeBase, name)), name
    assert not isinstance(object(), KnowledgeBase)


def _contents(path) -> tuple:
    """What a read must not change: the meta table and every stored vector, read over a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        meta = sorted(conn.execute("SELECT key, value FROM meta"))
        vectors = [conn.execute(f"SELECT count(vec), sum(length(vec)) FROM {t}").fetchone() for t in ("entities", "relations", "triplet_vec")]
        return meta, vectors
    finally:
        conn.close()


def test_reading_the_encoder_writes_nothing_to_the_kb(tmp_path):
    """Opening a KB with another encoder, or one never embedded, and asking for ``kb.encoder`` (as the engine's
    warm-up does) must leave the file alone; the encoder is recorded, and vectors remade, by the next embed."""
    embedded, bare = tmp_path / "embedded.sqlite", tmp_path / "bare.sqlite"
    with SqliteKB(embedded, encoder=HashingEncoder(), create=True) as kb:
        kb.import_triplets(ROWS)
        kb.embed(reference=True)
    with SqliteKB(bare, create=True) as kb:
        kb.import_triplets(ROWS)
    for path, encoder in ((embedded, None), (embedded, HashingEncoder()), (embedded, HashingEncoder(64)), (bare, HashingEncoder(64))):
        before = _contents(path)
        with SqliteKB(path, encoder=encoder) as kb:
            assert kb.encoder.name == (encoder or HashingEncoder()).name
            assert kb.store.conn.total_changes == 0, (path.name, kb.encoder.name)
        assert _contents(path) == before, (path.name, kb.encoder.name)
    with SqliteKB(embedded, encoder=HashingEncoder(64)) as kb:
        kb.embed()
        assert kb.stats()["encoder"] == "hashing-trigram-64"
        assert kb.lookup("Ada Lovelace", "Birthplace").value == "London"
    meta, vectors = _contents(embedded)
    assert vectors[0] == (2, 2 * 64 * 2)  # both entity vectors remade at the new width (float16)
