"""The cue table of training text (``lmlm.cues``): what the relation prior compares a call's sentence with."""

import json

import pytest
from conftest import run_cli

from lmlm.cues import CUES_FILE, call_context, harvest, load
from lmlm.errors import LmlmError

DOCS = [
    "Ada Ashby works for <|db_entity|> Ada Ashby<|db_relationship|> Employer<|db_return|> Foxglove<|db_end|> Foxglove. "
    "In fact, she was born in <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|> Lyon<|db_end|> Lyon.",
    "Bram Oakley works for <|db_entity|> Bram Oakley<|db_relationship|> Employer<|db_return|> Redwing<|db_end|> Redwing. "
    "The company Bram Oakley works for is <|db_entity|> Bram Oakley<|db_relationship|> Employer<|db_return|> Redwing<|db_end|> Redwing.",
]


def test_a_call_context_is_its_sentence_up_to_the_call_without_its_entity():
    assert call_context("Her name is Ada. The company Ada Ashby works for is", "Ada Ashby") == "The company works for is"
    assert call_context("Ada Ashbyson works for", "Ada Ashby") == "Ada Ashbyson works for"  # a name ends where a word does
    assert call_context("She left. ", "Ada Ashby") == ""


def test_harvest_keeps_each_relations_sentences_most_frequent_first():
    assert harvest(DOCS) == {"Birth City": ["In fact, she was born in"], "Employer": ["works for", "The company works for is"]}
    assert harvest(DOCS, per_relation=1)["Employer"] == ["works for"]


def test_lmlm_cues_writes_the_table_into_the_checkpoint(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"annotated_text": d}) + "\n" for d in DOCS))
    (tmp_path / "model").mkdir()
    proc = run_cli("cues", "--model", tmp_path / "model", "--corpus", corpus, check=True)
    assert "3 cue sentences of 2 relations" in proc.stdout
    assert load(tmp_path / "model" / CUES_FILE) == harvest(DOCS)
    missing = run_cli("cues", "--model", tmp_path / "nothing", "--corpus", corpus)
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1) and "nothing: no such checkpoint folder" in missing.stderr


@pytest.mark.parametrize("text", ["[1, 2]", '{"Employer": "works for"}', "{not json"])
def test_a_damaged_table_is_refused_with_its_path(tmp_path, text):
    (tmp_path / CUES_FILE).write_text(text)
    with pytest.raises(LmlmError, match=CUES_FILE):
        load(tmp_path / CUES_FILE)
