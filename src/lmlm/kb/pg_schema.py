"""The PostgreSQL schema of a shared KB, created and migrated by the tool, how each connection is set up, and
how a connection URL is named in messages (never with its password).

Tables mirror the SQLite file (``storage``): entities and relations once each under their normalized key, with
float16 vectors as bytea; triplets with provenance, timestamps and tombstones (a NULL value). Keys are unique
through an index on their md5 (a btree entry cannot hold every 2,000-character key), and entity keys carry a
trigram index (``pg_trgm``) for the resolver's candidates. ``kb_state`` holds the KB version: every committed
edit raises it by one and logs what it changed in ``changes``, which replicas read to catch up; an edit that adds
entities also raises its ``names_version``, on which constrained decoding's trie of entity names keys. ``replicas``
records each serving replica's applied version (its lag, for ``lmlm kb serve-check``).
"""

from __future__ import annotations

import re

from lmlm.errors import LmlmError

SCHEMA_VERSION = 3
_LOCK_KEY = 0x6C6D6C6D  # advisory lock held while the schema is created or migrated: two tools never race
# A migration that alters a table waits for every open transaction that read it, and every later read queues behind
# it: past this wait, the migration gives up (and is tried again by the next open) rather than stall each replica.
MIGRATION_LOCK_TIMEOUT_S = 5.0

MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE kb_state(id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)",
        "INSERT INTO kb_state VALUES (1, 0)",
        "CREATE TABLE changes(version bigint PRIMARY KEY, detail jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE entities(id bigserial PRIMARY KEY, key text NOT NULL, name text NOT NULL,"
        " forgotten boolean NOT NULL DEFAULT false, vec bytea)",
        "CREATE UNIQUE INDEX entities_key ON entities(md5(key))",
        "CREATE INDEX entities_key_trgm ON entities USING gin (key gin_trgm_ops)",
        "CREATE TABLE relations(id bigserial PRIMARY KEY, key text NOT NULL, name text NOT NULL, vec bytea)",
        "CREATE UNIQUE INDEX relations_key ON relations(md5(key))",
        "CREATE TABLE aliases(key text NOT NULL, entity_id bigint NOT NULL)",
        "CREATE UNIQUE INDEX aliases_key ON aliases(md5(key), entity_id)",
        "CREATE TABLE triplets(id bigserial PRIMARY KEY, entity_id bigint NOT NULL, relation_id bigint NOT NULL,"
        " entity text NOT NULL, relation text NOT NULL, value text, source text, example_id text,"
        " created double precision NOT NULL, updated double precision NOT NULL)",
        "CREATE UNIQUE INDEX triplets_fact ON triplets(entity_id, relation_id, md5(value))",
        "CREATE TABLE triplet_vec(triplet_id bigint PRIMARY KEY, vec bytea NOT NULL)",
        "CREATE TABLE relation_pairs(a bigint NOT NULL, b bigint NOT NULL, n bigint NOT NULL, PRIMARY KEY (a, b))",
    ],
    2: [
        "CREATE TABLE replicas(id text PRIMARY KEY, applied_version bigint NOT NULL, seen timestamptz NOT NULL DEFAULT now())",
    ],
    3: [
        "ALTER TABLE kb_state ADD COLUMN names_version bigint NOT NULL DEFAULT 0",
    ],
}


TRIGRAM_THRESHOLD = 0.5


def configure_connection(conn) -> None:
    """Each pooled connection: trigram candidates must share half their trigrams (a looser bar makes the index
    return, and recheck, far more rows)."""
    conn.execute(f"SET pg_trgm.similarity_threshold = {TRIGRAM_THRESHOLD}")


def is_url(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``: what messages and logs show."""
    return re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", r"\1:***@", url)


def schema_version(conn) -> int:
    """The schema version of the database (0: no lmlm KB in it)."""
    if conn.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


def prepare(conn, where: str, create: bool, target: int = SCHEMA_VERSION) -> int:
    """Check the database holds an lmlm KB (made when ``create``), and migrate it to ``target``; one transaction."""
    import psycopg

    if conn.execute("SHOW server_encoding").fetchone()[0] != "UTF8":
        raise LmlmError(f"{where}: the database must use the UTF8 encoding (createdb -E UTF8)")
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            have = schema_version(conn)
            if have == 0 and not create:
                raise LmlmError(f"{where}: no lmlm knowledge base in this database (make one with lmlm kb import FILE --out URL)")
            if have > SCHEMA_VERSION:
                raise LmlmError(f"{where}: knowledge base schema {have}, this lmlm reads up to {SCHEMA_VERSION}")
            conn.execute(f"SET LOCAL lock_timeout = {int(MIGRATION_LOCK_TIMEOUT_S * 1000)}")
            for version in range(have + 1, target + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                             (str(version),))
            return max(have, target)
    except psycopg.errors.LockNotAvailable:
        raise LmlmError(f"{where}: the knowledge base's schema could not be migrated: another session held its tables"
                        f" past {MIGRATION_LOCK_TIMEOUT_S:g} s; try again when it ends") from None
    except psycopg.errors.InsufficientPrivilege as e:
        raise LmlmError(f"{where}: not allowed to create the knowledge base's schema ({str(e).splitlines()[0]})") from None
