"""Bad input to every ``lmlm kb`` command (issue 25): exit 2, one line on stderr naming what was wrong, no
traceback, nothing created or half-written; and rows or files that are refused one by one, keeping the rest."""

import json
import os
import subprocess
import sys

import pytest
from conftest import fails_cleanly, run_cli

from lmlm.kb import SqliteKB
from lmlm.kb.io import build

HUGE_ID = "99999999999999999999"
BAD_BYTE = os.fsdecode(b"Bad \xff")  # what Python makes of an argument that is not UTF-8: a lone surrogate


def _kb_file(kind: str, tmp_path):
    """A path given as KB: a missing file, an empty one, a text file, a directory."""
    path = tmp_path / f"{kind}.sqlite"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("my notes\n")
    elif kind == "directory":
        path.mkdir()
    return path


KB_COMMANDS = [
    ["export", "{kb}", "--out", "{tmp}/out.json"],
    ["query", "{kb}", "--entity", "Liu Wen", "--relation", "Birthplace"],
    ["add", "{kb}", "--entity", "Liu Wen", "--relation", "Hobby", "--value", "chess"],
    ["update", "{kb}", "1", "--value", "x"],
    ["delete", "{kb}", "1"],
    ["forget", "{kb}", "--entity", "Liu Wen"],
    ["stats", "{kb}"],
]
NOT_A_KB = {"missing": "no such knowledge base", "empty": "an empty file, not a knowledge base",
            "text": "not a readable lmlm knowledge base", "directory": "is a directory"}


@pytest.mark.parametrize("kind", sorted(NOT_A_KB))
@pytest.mark.parametrize("command", KB_COMMANDS, ids=[c[0] for c in KB_COMMANDS])
def test_every_kb_command_refuses_a_file_that_is_not_a_kb(tmp_path, command, kind):
    path = _kb_file(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    content = path.read_bytes() if path.is_file() else None
    args = [a.format(kb=path, tmp=tmp_path) for a in command]
    fails_cleanly(run_cli("kb", *args), path.name, NOT_A_KB[kind])
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made, no -wal or -shm beside it
    assert (path.read_bytes() if path.is_file() else None) == content


def _input_file(kind: str, tmp_path):
    """A file given to build or import: missing, binary, Latin-1 JSONL, Latin-1 JSON, a directory."""
    path = tmp_path / {"binary": "blob.json", "latin1_jsonl": "t.jsonl", "latin1_json": "db.json"}.get(kind, kind)
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "latin1_jsonl":
        path.write_bytes('{"entity": "Café", "relation": "Owner", "value": "Zoë"}\n'.encode("latin-1"))
    elif kind == "latin1_json":
        path.write_bytes(json.dumps({"triplets": [["Café", "Owner", "Zoë"]]}, ensure_ascii=False).encode("latin-1"))
    elif kind == "directory":
        path.mkdir()
    return path


INPUTS = {"missing": "no such file", "binary": "not UTF-8 text", "latin1_jsonl": "not UTF-8 text", "latin1_json": "not UTF-8 text",
          "directory": "is a directory"}


@pytest.mark.parametrize("kind", sorted(INPUTS))
@pytest.mark.parametrize("command", ["build", "import"])
def test_build_and_import_refuse_unreadable_input_and_leave_nothing(tmp_path, command, kind):
    src = _input_file(kind, tmp_path)
    out = tmp_path / "new" / "kb.sqlite"
    fails_cleanly(run_cli("kb", command, src, "--out", out, "--no-embed"), src.name, INPUTS[kind])
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.fixture
def good_kb(tmp_path):
    path = tmp_path / "good.sqlite"
    with SqliteKB(path, create=True) as kb:
        kb.import_triplets([("John Adam Smith", "Birthplace", "Leeds"), ("John Paul Smith", "Birthplace", "York"),
                            ("Liu Wen", "Child", "Mei"), ("Liu Wen", "Child", "Jun")])
    return path


BAD_EDITS = [
    (["add", "--entity", BAD_BYTE, "--relation", "Hobby", "--value", "chess"], "entity 'Bad \\udcff' is not valid Unicode"),
    (["add", "--entity", "Liu Wen", "--relation", BAD_BYTE, "--value", "chess"], "relation 'Bad \\udcff' is not valid Unicode"),
    (["add", "--entity", "Liu Wen", "--relation", "Hobby", "--value", BAD_BYTE], "value 'Bad \\udcff' is not valid Unicode"),
    (["update", "1", "--value", BAD_BYTE], "value 'Bad \\udcff' is not valid Unicode"),
    (["update", HUGE_ID, "--value", "x"], f"no triplet with id {HUGE_ID}"),
    (["delete", HUGE_ID], f"no triplet with id {HUGE_ID}"),
    (["forget", "--entity", "John Smith"], "fits 2 entities ('John Adam Smith', 'John Paul Smith')"),
    (["forget", "--entity", BAD_BYTE], "no entity named 'Bad \\udcff'"),
    (["update", "4", "--value", "Mei"], "already has the value 'Mei' (triplet 3)"),
]


@pytest.mark.parametrize("args, message", BAD_EDITS, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(BAD_EDITS)])
def test_bad_edits_are_refused_and_change_nothing(good_kb, args, message):
    before = good_kb.read_bytes()
    fails_cleanly(run_cli("kb", args[0], good_kb, *args[1:]), message)
    with SqliteKB(good_kb) as kb:
        assert [t[1:4] for t in kb.triplets()] == [("John Adam Smith", "Birthplace", "Leeds"), ("John Paul Smith", "Birthplace", "York"),
                                                   ("Liu Wen", "Child", "Mei"), ("Liu Wen", "Child", "Jun")]
    assert good_kb.read_bytes() == before


def test_a_row_sqlite_cannot_store_is_skipped_and_named_the_rest_kept(tmp_path):
    src = tmp_path / "rows.jsonl"
    rows = [{"entity": "Liu Wen", "relation": "Birthplace", "value": "Chengdu"},
            {"entity": "Liu Wen", "relation": "Hobby", "value": "\ud800"},
            {"entity": "Ada Maria Lovelace", "relation": "Birthplace", "value": "London"}]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # json.dumps writes the surrogate as the escape \ud800
    for command in ("build", "import"):
        out = tmp_path / f"{command}.sqlite"
        proc = run_cli("kb", command, src, "--out", out, "--no-embed")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "rows.jsonl:2: value '\\ud800' is not valid Unicode" in proc.stderr
        assert "2 added, 0 duplicates, 1 invalid" in proc.stdout
        run_cli("kb", "import", src, "--out", out, "--no-embed", check=True)  # into the existing KB this time
        with SqliteKB(out) as kb:
            assert [t[3] for t in kb.triplets()] == ["Chengdu", "London"]


def test_a_failed_import_into_an_existing_kb_keeps_it(tmp_path, good_kb):
    before = good_kb.read_bytes()
    bad = _input_file("latin1_jsonl", tmp_path)
    fails_cleanly(run_cli("kb", "import", bad, "--out", good_kb, "--no-embed"), "t.jsonl", "not UTF-8 text")
    assert good_kb.read_bytes() == before


def test_build_removes_temp_files_of_killed_builds(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        out = tmp_path / "kb.sqlite"
        suffixes = ("", "-wal", "-shm", ".entities-0123456789abcdef.faiss")
        stale = [tmp_path / f".kb.sqlite.{dead.pid}.building{suffix}" for suffix in suffixes]
        running = [tmp_path / f".kb.sqlite.{alive.pid}.building{suffix}" for suffix in ("", "-wal")]
        other = tmp_path / f".other.sqlite.{dead.pid}.building"
        for path in stale + running + [other]:
            path.write_bytes(b"partial")
        src = tmp_path / "t.jsonl"
        src.write_text(json.dumps({"entity": "Liu Wen", "relation": "Birthplace", "value": "Chengdu"}) + "\n")
        build([src], out, embed=False)
        assert [p.exists() for p in stale] == [False] * 4
        assert [p.exists() for p in running + [other]] == [True] * 3
    finally:
        alive.kill()
        alive.wait()
