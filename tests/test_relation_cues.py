"""The relation prior's cue table (``lmlm cues``): what it counts from annotated text, the file, and bad input."""

import json

import pytest
from conftest import run_cli

from lmlm.errors import LmlmError
from lmlm.relation_cues import count_cues, cue_sentence, load_relation_cues

TEXTS = [
    "Ada Ashby was born in [dblookup('Ada Ashby', 'Birth City') -> Lyon] Lyon. "
    "She works for [dblookup('Ada Ashby', 'Employer') -> Foxglove Pharma] Foxglove Pharma, based in "
    "[dblookup('Foxglove Pharma', 'Headquarters') -> Oakhollow] Oakhollow.",
    "Bram Oakley was born in [dblookup('Bram Oakley', 'Birth City') -> Rome] Rome.",
    "[dblookup('Cora Dunn', 'Birth City') -> Paris] Paris is where Cora Dunn was born.",
]


def test_a_cue_is_the_last_sentence_before_the_call_without_its_entity_or_the_calls():
    assert count_cues(TEXTS, per_relation=5) == {
        "Birth City": {"was born in": 2},  # the call that opens a text has no cue
        "Employer": {"She works for": 1},
        "Headquarters": {"She works for , based in": 1},  # the bridge's name is the call's entity: left out
    }
    assert cue_sentence("It rained. Later, Ada Ashby's employer is", "Ada Ashby") == "Later, 's employer is"
    assert cue_sentence("Ada Ashbyson lives in", "Ada Ashby") == "Ada Ashbyson lives in"  # whole names only


def test_only_each_relations_most_frequent_cues_are_kept():
    texts = ["Ada Ashby was born in [dblookup('Ada Ashby', 'Birth City') -> Lyon] Lyon."] * 3 + \
            ["Ada Ashby hails from [dblookup('Ada Ashby', 'Birth City') -> Lyon] Lyon."]
    assert count_cues(texts, per_relation=1) == {"Birth City": {"was born in": 3}}


def test_cli_writes_the_table_into_the_checkpoint_and_refuses_bad_input(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"annotated_text": t}) + "\n" for t in TEXTS))
    model = tmp_path / "model"
    model.mkdir()
    proc = run_cli("cues", "--model", model, "--corpus", corpus, check=True)
    assert "3 relations" in proc.stdout
    assert load_relation_cues(model / "relation_cues.json") == count_cues(TEXTS, per_relation=64)
    for args, says in ((["--model", tmp_path / "none"], "not a checkpoint folder"), (["--model", model, "--per-relation", "0"], "at least 1")):
        proc = run_cli("cues", "--corpus", corpus, *args)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["[1, 2]", "{\"Birth City\": {\"was born in\": \"many\"}}", "{\"Birth City\": {\"was born in\": 0}}", "{"])
def test_a_table_that_is_not_a_cue_table_is_refused_by_name(tmp_path, content):
    path = tmp_path / "relation_cues.json"
    path.write_text(content)
    with pytest.raises(LmlmError, match="relation_cues.json"):
        load_relation_cues(path)
