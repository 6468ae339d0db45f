"""TOFU-style unlearning (``lmlm.unlearn``): the scores against hand-computed values, the question sets, each
method's loss on a tiny model, the LMLM's answers through a real KB before and after ``forget``, and the
command end to end at a tiny scale."""

import argparse
import dataclasses
import json
import math
import random

import numpy as np
import pytest
import torch
from conftest import fails_cleanly, run_cli
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

from lmlm import cli
from lmlm.errors import LmlmError
from lmlm.kb import SqliteKB
from lmlm.kb.io import read_reference_db
from lmlm.tokenizer import train_tokenizer
from lmlm.unlearn import UnlearnConfig, metrics
from lmlm.unlearn.methods import METHODS, ForgetRetainPairs, pad, pair_collator, sequence_nll, unlearn
from lmlm.unlearn.questions import forget_people, person_questions, world_fact_questions
from lmlm.unlearn.report import best_runs
from lmlm.unlearn.scoring import _encode, answer_text, score
from lmlm.world import TEMPLATES, make_people, make_world, read_people

# --- the scores, by hand ------------------------------------------------------------------------------------------


def test_truth_ratio_is_the_geometric_mean_of_perturbed_over_paraphrased_probability():
    # question 1: paraphrase loss 0.5, perturbed 1 and 2 -> exp(-1.5) / exp(-0.5) = e^-1
    # question 2: paraphrase loss 1.0, perturbed 0 and 1 -> exp(-0.5) / exp(-1) = e^0.5
    ratios = metrics.truth_ratios(np.array([0.5, 1.0]), np.array([[1.0, 2.0], [0.0, 1.0]]))
    assert ratios == pytest.approx([math.exp(-1), math.exp(0.5)], rel=1e-6)
    # not the arithmetic mean of probabilities: (e^-1 + e^-2) / 2 / e^-0.5 = 0.4148 for question 1
    assert abs(ratios[0] - (math.exp(-1) + math.exp(-2)) / 2 / math.exp(-0.5)) > 0.04


def test_forget_quality_is_the_two_sample_ks_p_value():
    # fully separated samples of 3 and 3: D = 1, exact p = 2 / C(6, 3) = 0.1
    assert metrics.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    assert metrics.forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # only the order matters: TOFU's code tests 1/ratio and gets the same p-value
    a, b = np.array([0.2, 0.9, 1.3, 2.0]), np.array([0.5, 0.7, 3.0, 4.0, 5.0])
    assert metrics.forget_quality(a, b) == pytest.approx(metrics.forget_quality(1 / a, 1 / b))


def test_utility_parts_and_their_harmonic_mean_by_hand():
    assert metrics.true_better(np.array([0.25, 1.5])) == pytest.approx((0.75 + 0.0) / 2)
    assert metrics.closer_to_one(np.array([0.5, 4.0])) == pytest.approx((0.5 + 0.25) / 2)
    assert metrics.probability(np.array([0.0, math.log(4)])) == pytest.approx((1 + 0.25) / 2)
    # P(answer) = e^0 = 1, wrong: e^0 + e^-ln3 = 1 + 1/3 -> 1 / (7/3) = 3/7
    assert metrics.probability_with_options(np.array([0.0]), np.array([[0.0, math.log(3)]])) == pytest.approx(3 / 7)
    assert metrics.harmonic_mean([0.5, 1.0]) == pytest.approx(2 / 3)
    assert metrics.harmonic_mean([0.5, 0.0, 1.0]) == 0.0


def test_best_run_is_the_highest_forget_quality_that_keeps_utility_else_the_highest_utility():
    runs = [{"method": "GA", "lr": 1e-4, "forget_quality": 0.01, "model_utility": 0.50},
            {"method": "GA", "lr": 1e-3, "forget_quality": 0.20, "model_utility": 0.46},
            {"method": "GA", "lr": 1e-2, "forget_quality": 0.90, "model_utility": 0.10},
            {"method": "NPO", "lr": 1e-3, "forget_quality": 0.90, "model_utility": 0.20},
            {"method": "NPO", "lr": 1e-2, "forget_quality": 0.95, "model_utility": 0.10}]
    best = best_runs(runs, before=0.5, max_drop=0.05)
    assert (best["GA"]["lr"], best["GA"]["utility_kept"]) == (1e-3, True)
    assert (best["NPO"]["lr"], best["NPO"]["utility_kept"]) == (1e-3, False)


# --- question sets ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlearn-world")
    make_world(root, people=40, seed=0, phrasing="plain")
    return root


def test_questions_paraphrase_in_another_template_and_perturb_with_other_values_of_the_relation(world):
    person = read_people(world)[0]
    questions = person_questions(person, seed=3)
    assert [q.relation for q in questions] == list(person.facts)
    for q in questions:
        value = person.facts[q.relation]
        assert q.answer.before + " {V}" + q.answer.after == TEMPLATES[q.relation][0].replace("{S}", person.name).replace("{P}", person.name + "'s")
        assert q.paraphrased.value == value and q.paraphrased.before != q.answer.before
        wrong = [a.value for a in q.perturbed]
        assert len(wrong) == 5 == len(set(wrong)) and value not in wrong
        assert {a.before for a in q.perturbed} == {q.paraphrased.before}
    assert person_questions(person, seed=3) == questions
    assert person_questions(person, seed=4) != questions


def test_world_facts_put_values_of_other_kinds_in_the_slot(world):
    person = read_people(world)[0]
    for q in world_fact_questions([person], seed=0):
        assert q.paraphrased == q.answer
        assert q.answer.value == person.facts[q.relation]
        assert all(a.before == q.answer.before and a.value != q.answer.value for a in q.perturbed)


def test_forget_sets_are_nested_and_a_size_past_the_forget_split_is_refused(world):
    people = read_people(world)  # 40 people: 4 in the forget split
    small, large = forget_people(people, 0.05, 40), forget_people(people, 0.1, 40)
    assert (len(small), len(large)) == (2, 4)
    assert small == large[:2] and all(p.split == "forget" for p in large)
    with pytest.raises(LmlmError, match="forget fraction 0.2"):
        forget_people(people, 0.2, 40)


@pytest.mark.parametrize("total", [25, 45, 205])
def test_a_forget_set_of_the_whole_split_fits_where_a_tenth_ends_in_a_half(total):
    people = make_people(total, random.Random(0))
    split = [p for p in people if p.split == "forget"]
    assert forget_people(people, 0.1, total) == sorted(split, key=lambda p: p.name)


# --- scoring an LMLM's answer through its KB -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(world):
    texts = [json.loads(line)["text"] for line in (world / "corpus.jsonl").read_text().splitlines()]
    return train_tokenizer(texts, vocab_size=400)


def test_an_lmlm_answer_carries_the_kbs_value_then_unknown_after_forget(world, tmp_path, tokenizer):
    person = next(p for p in read_people(world) if "Birth City" in p.facts)
    q = next(q for q in person_questions(person, 0) if q.relation == "Birth City")
    with SqliteKB(tmp_path / "kb.sqlite", create=True) as kb:
        kb.import_triplets(read_reference_db(world / "kb.json"))
        before = answer_text(q, q.perturbed[0], kb)
        kb.forget(person.name, exact=True)
        after = answer_text(q, q.perturbed[0], kb)
    call = f"<|db_entity|> {person.name}<|db_relationship|> Birth City<|db_return|>"
    assert f"{call} {person.facts['Birth City']}<|db_end|> {q.perturbed[0].value}" in before.text
    assert f"{call} unknown<|db_end|> {q.perturbed[0].value}" in after.text
    assert after.text[after.value[0]:after.value[1]] == q.perturbed[0].value
    ids, scored, value = _encode(tokenizer, after)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    scored_text = tokenizer.convert_tokens_to_string([t for t, s in zip(tokens, scored) if s])
    assert scored_text.strip() == (q.perturbed[0].before + " " + q.perturbed[0].value + ".")  # the call is context, not scored
    assert tokenizer.convert_tokens_to_string([t for t, v in zip(tokens, value) if v]).strip() == q.perturbed[0].value


# --- the methods on a tiny model ---------------------------------------------------------------------------------------


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                        max_position_embeddings=32, pad_token_id=0, bos_token_id=1, eos_token_id=2))


FORGET = [{"input_ids": [1, 5, 6, 7, 8, 2], "labels": [1, 5, 6, 7, 8, 2]}, {"input_ids": [1, 9, 10, 11], "labels": [1, 9, -100, 11]}]
RETAIN = [{"input_ids": [1, 12, 13, 14, 2], "labels": [1, 12, 13, 14, 2]}]


def _trainer(method: str, model, tmp_path, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False)
    return METHODS[method](model=model, args=args, train_dataset=ForgetRetainPairs(FORGET, RETAIN), data_collator=pair_collator(0), **kwargs)


def _hand_nll(model, sequence: dict) -> torch.Tensor:
    """Summed NLL of one sequence's trained tokens, token by token."""
    logits = model(input_ids=torch.tensor([sequence["input_ids"]])).logits[0]
    total = torch.zeros(())
    for t, label in enumerate(sequence["labels"][1:]):
        if label != -100:
            total = total - torch.log_softmax(logits[t], -1)[label]
    return total


def _losses(method, tmp_path, **kwargs):
    model = _tiny_model()
    trainer = _trainer(method, model, tmp_path, **kwargs)
    batch = {"forget": pad(FORGET, 0), "retain": pad(RETAIN, 0)}
    nll = [_hand_nll(model, s) for s in FORGET]
    counts = [sum(label != -100 for label in s["labels"][1:]) for s in FORGET]
    retain = _hand_nll(model, RETAIN[0]) / 4
    return trainer, model, batch, nll, counts, retain


def test_sequence_nll_sums_trained_tokens_and_skips_padding():
    model = _tiny_model()
    with torch.no_grad():
        nll, count = sequence_nll(model, pad(FORGET, 0))
        assert count.tolist() == [5, 2]
        assert nll.numpy() == pytest.approx([float(_hand_nll(model, s)) for s in FORGET], rel=1e-5)


def test_ga_and_gd_losses_are_minus_the_forget_nll_plus_the_retain_nll(tmp_path):
    trainer, model, batch, nll, counts, retain = _losses("GA", tmp_path)
    forget_mean = sum(nll) / sum(counts)
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(-float(forget_mean), rel=1e-5)
    trainer, model, batch, nll, counts, retain = _losses("GD", tmp_path)
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(float(-forget_mean + retain), rel=1e-5)


def test_npo_starts_at_2_ln2_over_beta_with_the_gradient_of_ascent_on_summed_nll(tmp_path):
    trainer, model, batch, nll, counts, retain = _losses("NPO", tmp_path, beta=0.5)
    assert float(trainer.forget_loss(model, batch["forget"])) == pytest.approx(2 / 0.5 * math.log(2), rel=1e-5)
    # at the reference, d/dθ [-2/β log σ(-β r)] = 2 σ(0) dr/dθ = d log p / dθ, averaged over the sequences
    trainer.forget_loss(model, batch["forget"]).backward()
    npo_grad = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (sum(_hand_nll(model, s) for s in FORGET) / -len(FORGET)).backward()
    for got, want in zip(npo_grad, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, atol=1e-6)


def test_simnpo_loss_is_the_length_normalized_nll_through_log_sigmoid(tmp_path):
    trainer, model, batch, nll, counts, retain = _losses("SimNPO", tmp_path, beta=2.0, gamma=0.5, delta=0.1)
    per_token = [float(n) / c - 0.1 for n, c in zip(nll, counts)]
    want = 0.5 * np.mean([-math.log(1 / (1 + math.exp(-2.0 * x))) for x in per_token]) * 2 / 2.0
    assert float(trainer.forget_loss(model, batch["forget"])) == pytest.approx(want, rel=1e-5)
    assert float(trainer.compute_loss(model, batch)) == pytest.approx(want + float(retain), rel=1e-5)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_raises_the_forget_sets_nll(method, tmp_path):
    model = _tiny_model()
    before = float(sequence_nll(model, pad(FORGET, 0))[0].sum())
    unlearn(model, method, FORGET, RETAIN, pad_id=0, lr=1e-2, epochs=4, batch_size=2, out=str(tmp_path))
    with torch.no_grad():
        after = float(sequence_nll(model, pad(FORGET, 0))[0].sum())
    assert after > before + 0.1, (before, after)


def test_score_takes_the_mean_nll_of_the_scored_tokens(world, tokenizer):
    from lmlm.unlearn.scoring import Text

    model = _tiny_model_for(tokenizer)
    text = Text("Here is a short biography of Ada. Ada was born in Calder.", start=len("Here is a short biography of Ada."),
                value=(len("Here is a short biography of Ada. Ada was born in "), len("Here is a short biography of Ada. Ada was born in Calder")))
    scores = score(model, tokenizer, [text, text])
    ids, scored, _ = _encode(tokenizer, text)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
    want = -sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)) if scored[t]) / int(scored.sum())
    assert scores.loss == pytest.approx([want, want], rel=1e-5)
    assert 0.0 <= scores.greedy[0] <= 1.0


def _tiny_model_for(tokenizer):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)).eval()


# --- the command ------------------------------------------------------------------------------------------------


def test_every_config_field_is_a_flag_with_the_dataclass_default():
    stages = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    experiments = next(a for a in stages.choices["experiment"]._actions if isinstance(a, argparse._SubParsersAction))
    parser = experiments.choices["unlearn"].declared()
    dests = {a.dest for a in parser._actions}
    from lmlm.cli.parsing import load_args

    assert {f.name for f in dataclasses.fields(UnlearnConfig)} <= dests
    assert load_args(UnlearnConfig, parser.parse_args([])) == UnlearnConfig()


def test_a_forget_size_past_the_forget_split_is_refused_in_one_line(tmp_path):
    fails_cleanly(run_cli("experiment", "unlearn", "--out", tmp_path / "u", "--forget", "0.5"), "forget")
    fails_cleanly(run_cli("experiment", "unlearn", "--out", tmp_path / "u", "--methods", "GA", "DPO"), "methods", "DPO")


@pytest.mark.slow  # about 35 s of CPU: eight trainings of 2 steps, four unlearning runs, their scoring
def test_the_command_end_to_end_at_a_tiny_scale(tmp_path):
    out = tmp_path / "u"
    proc = run_cli("experiment", "unlearn", "--out", out, "--people", 20, "--steps", 2, "--block-size", 64, "--vocab-size", 300,
                   "--forget", 0.05, 0.1, "--methods", "GA", "NPO", "--lrs", 1e-3, "--epochs", 1, "--utility-people", 2,
                   "--world-fact-people", 2, "--heldout-docs", 2, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert (out / "unlearn.png").stat().st_size > 10_000
    assert set(report["kinds"]) == {"standard", "lmlm"} and report["forget_people"] == {"0.05": 1, "0.1": 2}
    for kind, result in report["kinds"].items():
        assert 0 <= result["before"]["model_utility"] <= 1
        for size, r in result["forget"].items():
            assert [(run["method"], run["lr"]) for run in r["runs"]] == [("GA", 1e-3), ("NPO", 1e-3)]
            assert set(r["best"]) == {"GA", "NPO"}
            assert 0 < r["original"]["forget_quality"] <= 1
            assert len(r["original"]["truth_ratios"]) == r["questions"] == len(r["retain_model"]["reference_truth_ratios"])
            assert ("deletion" in r) == (kind == "lmlm")
            assert summary["forget_quality"][kind][size]["original"] == r["original"]["forget_quality"]
    lmlm = report["kinds"]["lmlm"]
    # deletion changes no weight and keeps the retain set's facts: its utility is the model's before
    assert lmlm["forget"]["0.1"]["deletion"]["model_utility"] == pytest.approx(lmlm["before"]["model_utility"])
    assert not (out / "unlearn-tmp").exists()


def test_an_out_folder_that_is_not_an_earlier_run_is_refused_and_left_alone(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "important.txt").write_text("precious")
    fails_cleanly(run_cli("experiment", "unlearn", "--out", keep, "--people", "20", "--steps", "1"), str(keep), "--out")
    assert (keep / "important.txt").read_text() == "precious"


@pytest.mark.parametrize("experiment", ["unlearn", "offload"])
def test_an_unknown_model_preset_is_refused_before_anything_is_made(experiment, tmp_path):
    out = tmp_path / "out"
    fails_cleanly(run_cli("experiment", experiment, "--out", out, "--model", "bogus"), "--model", "bogus")
    assert not out.exists()
