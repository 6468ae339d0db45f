"""The paper's experiments at CPU scale: the value-token loss logged while a model trains and the memorization
chart drawn from two runs' logs; the offloading sweep on a tiny world."""

from __future__ import annotations

import json

import pytest
from conftest import fails_cleanly, run_cli

from lmlm import markup
from lmlm.data import build_dataset, documents
from lmlm.errors import LmlmError
from lmlm.experiments.offload import OffloadConfig, annotate_at, parse_fractions, run_offload
from lmlm.tokenizer import lookup_token_ids, train_tokenizer
from lmlm.train import TrainConfig, train
from lmlm.train.value_loss import value_positions
from lmlm.world import make_world

DOC = "Ada Ashby was born in [dblookup('Ada Ashby', 'Birth City') -> Lyon] Lyon. She studied [dblookup('Ada Ashby', 'Major') -> Law] Law."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    make_world(root / "world", people=20, seed=3, phrasing="plain")
    corpus = [root / "world" / "corpus.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard") + [markup.convert(DOC, "special")], vocab_size=400)
    return root, corpus, tokenizer


def test_value_positions_score_the_masked_value_for_an_lmlm_and_the_stated_value_for_a_standard_model(world):
    _, _, tokenizer = world
    ids = tokenizer.encode(markup.convert(DOC, "special"))
    special, space = lookup_token_ids(tokenizer), tokenizer.encode(" ", add_special_tokens=False)[0]
    values = [tokenizer.encode(" Lyon", add_special_tokens=False), tokenizer.encode(" Law", add_special_tokens=False)]
    lmlm_ids, lmlm_positions = value_positions(ids, special, space, "lmlm")
    assert lmlm_ids == ids
    assert [lmlm_ids[p] for p in lmlm_positions] == values[0] + values[1]
    assert all(lmlm_ids[p - 1] == special[markup.DB_RETURN] or lmlm_ids[p - 1] in values[0] + values[1] for p in lmlm_positions)
    std_ids, std_positions = value_positions(ids, special, space, "standard")
    assert std_ids == tokenizer.encode(markup.strip(DOC))  # the text the Standard model trains on
    assert [std_ids[p] for p in std_positions] == values[0] + values[1]


@pytest.fixture(scope="module")
def runs(world):
    root, corpus, tokenizer = world
    for mode in ("lmlm", "standard"):
        build_dataset(corpus, tokenizer, mode, root / f"data-{mode}", block_size=32)
        train(TrainConfig(data=str(root / f"data-{mode}"), out=str(root / mode), model="micro", max_steps=4, batch_size=2, warmup_steps=1,
                          log_every=1, value_loss_every=2, value_loss_docs=4, value_loss_data=str(corpus[0])))
    return root


def test_training_logs_the_value_loss_every_n_steps(runs):
    for mode in ("lmlm", "standard"):
        rows = [json.loads(line) for line in (runs / mode / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "value_loss" in r] == [0, 2, 4]
        assert all(r["value_loss"] > 0 for r in rows if "value_loss" in r)


def test_memorization_draws_both_runs_from_their_logs(runs, tmp_path):
    proc = run_cli("experiment", "memorization", "--lmlm", runs / "lmlm", "--standard", runs / "standard", "--out", tmp_path, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "memorization.json").read_text())
    assert [step for step, _ in report["curves"]["lmlm"]] == [0, 2, 4] and summary["last"] == report["last"]
    assert (tmp_path / "memorization.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    fails_cleanly(run_cli("experiment", "memorization", "--lmlm", tmp_path / "plain", "--standard", runs / "standard", "--out", tmp_path),
                  "no value_loss rows", "value_loss_every")
    fails_cleanly(run_cli("experiment", "memorization", "--lmlm", tmp_path / "none", "--standard", runs / "standard"), "no training log")


def test_offloaded_facts_nest_as_the_fraction_grows():
    texts = {f: annotate_at(DOC, f, seed=0) for f in (0.0, 0.5, 1.0)}
    assert markup.triplets(texts[0.0]) == [] and texts[1.0] == DOC
    assert set(markup.triplets(texts[0.5])) <= set(markup.triplets(texts[1.0]))
    assert all(markup.strip(t) == markup.strip(DOC) for t in texts.values())
    with pytest.raises(LmlmError, match="--fractions"):
        parse_fractions("0,1.5")


def test_offload_sweep_at_tiny_scale(tmp_path):
    cfg = OffloadConfig(out=str(tmp_path), fractions="0,1", people=12, steps=3, batch_size=2,
                        completion_prompts=3, bios=2, ppl_docs=2)
    report = run_offload(cfg)
    assert [r["fraction"] for r in report["rows"]] == [0.0, 1.0]
    for row in report["rows"]:
        for key in ("completion", "factual_precision", "completion_db_off"):
            assert 0.0 <= row[key] <= 1.0, row
        assert row["normalized_perplexity"] >= 1.0
    assert json.loads((tmp_path / "offload.json").read_text())["rows"] == report["rows"]
    assert "| 1 |" in (tmp_path / "offload.md").read_text()
    for chart in ("offload_accuracy.png", "offload_perplexity.png"):
        assert (tmp_path / chart).read_bytes()[:4] == b"\x89PNG"
    train_text = (tmp_path / "fraction-0" / "train.jsonl").read_text()
    assert "dblookup" not in train_text and "dblookup" in (tmp_path / "fraction-1" / "train.jsonl").read_text()


def test_offload_refuses_bad_fractions_in_one_line(tmp_path):
    fails_cleanly(run_cli("experiment", "offload", "--fractions", "0,x", "--out", tmp_path), "--fractions", "0,x")
