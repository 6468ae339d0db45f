"""The reference's evaluation protocols beside ours (FactScore and T-REx as kilian-group/LMLM's eval scripts run
them), the database-off ablation, and the engine options they rest on: each difference on the shared tiny LMLM."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import fails_cleanly, run_cli
from live_server import tiny_lmlm_copy

from lmlm.engine import LMLM, GenerationConfig, LookupTokens, reference_loop, strip_calls
from lmlm.evaluate import suites
from lmlm.evaluate.metrics import completion_correct, factscore, reference_match
from lmlm.evaluate.protocols import REFERENCE_FACTUALITY, factuality_settings
from lmlm.evaluate.trex import CONTINUATION_TOKENS, answer_precision
from lmlm.kb import SqliteKB
from lmlm.world import atomic_facts, read_people


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    checkpoint, kb_path = tiny_lmlm_copy(tmp_path_factory)
    world = checkpoint.parent / "world"
    read = lambda name: [json.loads(line) for line in (world / "eval" / name).read_text().splitlines()]  # noqa: E731
    return checkpoint, kb_path, read("completion.jsonl"), read("bio_prompts.jsonl")


@pytest.fixture(scope="module")
def model(tiny):
    checkpoint, kb_path, _, _ = tiny
    lmlm = LMLM.from_pretrained(checkpoint, kb=SqliteKB(kb_path))
    yield lmlm
    lmlm.kb.close()


# --- scoring rules, by hand ----------------------------------------------------------------------------------------


def test_factscore_penalizes_short_bios_and_averages_over_bios_that_state_facts():
    scores = factscore([[True, True, False], [], None, [True] * 12, [True] * 10])
    short = (2 / 3) * math.exp(1 - 10 / 3)
    assert scores["factscore"] == pytest.approx((short + 1.0 + 1.0) / 3)  # 10 facts: exp(0), no penalty
    assert scores["factscore_without_penalty"] == pytest.approx((2 / 3 + 1.0 + 1.0) / 3)
    assert scores["respond_ratio"] == pytest.approx(3 / 4)  # the unjudged bio (None) counts in neither
    assert scores["facts_per_response"] == pytest.approx((3 + 12 + 10) / 3)
    assert factscore([[], None]) == {"factscore": 0.0, "factscore_without_penalty": 0.0, "respond_ratio": 0.0, "facts_per_response": 0.0}


@pytest.mark.parametrize("continuation, answer, reference, ours", [
    (" in paris, France", "Paris", False, True),  # case counts for the reference
    (" Parisian art", "Paris", True, False),  # a part of a word matches for the reference
    (" a b c d Paris", "Paris", True, True),
    (" a b c d e Paris", "Paris", False, False),  # the first 5 words only
    # a lookup token is followed by a space, as the reference writes it: Paris is the 6th word, not part of the 5th
    (" <|db_entity|> Ada Ashby<|db_relationship|> Birth City<|db_return|>Paris", "Paris", False, True),
    (" São Paulo", "Sao Paulo", False, True),  # accents count for the reference
])
def test_the_references_match_rule_beside_ours(continuation, answer, reference, ours):
    assert reference_match(continuation, answer) is reference
    assert completion_correct(continuation, answer) is ours


def test_factuality_presets_name_the_references_settings():
    ours = factuality_settings("ours", 12, 512, answers_calls=True)
    assert ours == {"max_new_tokens": 96, "fallback": "abstain"}
    ref = factuality_settings("reference", 12, 512, answers_calls=True)
    assert (ref["entity_bias"], ref["lookup_bias"], ref["max_lookups"], ref["lookup_free_budget"], ref["fallback"]) == (5.0, 2.0, 1000, 256, "abstain")
    assert ref["max_new_tokens"] == 500  # the raw text runs to the context, as the reference's to its 1024
    assert factuality_settings("reference", 12, 4096, answers_calls=True)["max_new_tokens"] == 1024
    off = factuality_settings("reference", 12, 512, answers_calls=False)
    assert (off["entity_bias"], off["lookup_bias"], off["max_new_tokens"], off.get("lookup_free_budget", 0)) == (0.0, 0.0, 256, 0)


# --- the engine options the protocols rest on ----------------------------------------------------------------------------


def test_lookup_free_budget_counts_the_prompt_and_not_the_calls(model, tiny):
    bios = [b["prompt"] for b in tiny[3][:8]]
    budget = 40
    results = model.generate(bios, max_new_tokens=300, lookup_free_budget=budget, max_lookups=1000)
    tokens = LookupTokens(model.tokenizer)
    counts = [len(strip_calls(model.tokenizer.encode(p) + r.token_ids, tokens)) for p, r in zip(bios, results)]
    assert all(c <= budget for c in counts), counts
    assert budget in counts, counts
    with_calls = [r for r, c in zip(results, counts) if c == budget and r.lookups]
    assert with_calls, "no bio reached the budget with a call in it"
    assert all(len(r.token_ids) > budget - len(model.tokenizer.encode(bios[0])) for r in with_calls)  # calls were not counted


def test_without_the_database_the_model_writes_its_own_values_as_the_naive_loop_does(model, tiny):
    prompts = [p["prompt"] + suites.FORCED_CALL for p in tiny[2][:4]]
    cfg = GenerationConfig(max_new_tokens=24, use_db=False, ngram_drafts=False)
    results = model.engine.generate(prompts, cfg)
    for prompt, result in zip(prompts, results):
        assert result.lookups == []
        assert result.token_ids == reference_loop(model.model, model.tokenizer, None, prompt, cfg)
    assert any("<|db_return|>" in r.raw for r in results)  # the calls were written, and nobody answered them
    with pytest.raises(Exception, match="no knowledge base"):
        LMLM(model.model, model.tokenizer, None).generate("x", use_db=True)


# --- the reference's T-REx run ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trex(model, tiny):
    prompts = [p for p in tiny[2] if p["split"] != "inject"][:10]
    return prompts, suites.completion(model, prompts, protocol="reference")


def test_reference_completion_writes_the_call_then_continues_to_the_next_return(model, trex):
    prompts, result = trex
    records, tokens = result["records"], LookupTokens(model.tokenizer)
    assert result["metrics"]["lookup_success"] > 0
    for r in records:
        ids = model.tokenizer.encode(r["continuation"], add_special_tokens=False)
        assert len(ids) <= CONTINUATION_TOKENS + 2  # decoded and encoded again: the same text, near the same tokens
        assert "<|db_return|>" not in r["continuation"] or r["continuation"].rstrip().endswith("<|db_return|>")
        assert r["looked_up"] == r["context"].endswith("<|db_end|>")
        assert r["exact_match"] == reference_match(r["continuation"], r["answer"])
    assert result["metrics"]["exact_match"] == pytest.approx(sum(r["exact_match"] for r in records) / len(records))
    assert tokens.ret is not None


def test_reference_completion_drops_a_call_the_kb_cannot_answer(tiny, tmp_path_factory):
    checkpoint, intact_kb_path, completion, _ = tiny
    _, kb_path = tiny_lmlm_copy(tmp_path_factory)
    prompts = [p for p in completion if p["split"] != "inject"][:6]
    with SqliteKB(intact_kb_path) as kb:  # the same prompts do look facts up while the KB holds them
        intact = suites.completion(LMLM.from_pretrained(checkpoint, kb=kb), prompts, protocol="reference")["records"]
    assert any(r["looked_up"] for r in intact)
    with SqliteKB(kb_path) as kb:
        # everyone, not only the prompts' people: a tiny model may name another person in its call ("Amara Lindworth
        # holds" asked about Teodor Mosswell), whose facts the KB could answer
        for person in read_people(checkpoint.parent / "world"):
            kb.forget(person.name, exact=True)
        records = suites.completion(LMLM.from_pretrained(checkpoint, kb=kb), prompts, protocol="reference")["records"]
    for p, r in zip(prompts, records):
        assert not r["looked_up"] and r["context"] == p["prompt"].strip(), r


def test_precision_at_k_ranks_each_answer_token_after_the_context(model, trex):
    record = next(r for r in trex[1]["records"] if r["looked_up"])
    got = answer_precision(model, record["context"], record["answer"])
    ids, context = model.tokenizer.encode(f"{record['context']} {record['answer']}"), model.tokenizer.encode(record["context"])
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([ids])).logits[0]
    ranks = [int((logits[i - 1] > logits[i - 1, ids[i]]).sum()) for i in range(len(context), len(ids))]
    for k in (1, 5, 10):
        assert got[f"precision@{k}"] == pytest.approx(sum(rank < k for rank in ranks) / len(ranks))
    assert record["precision@1"] <= record["precision@5"] <= record["precision@10"]


# --- the reference's FactScore run ------------------------------------------------------------------------------------


def test_reference_factuality_generates_with_the_references_settings_and_scores_both_ways(model, tiny):
    bios = [b for b in tiny[3] if b["split"] != "inject"][:6]
    result = suites.factuality(model, bios, extract_facts=atomic_facts, protocol="reference")
    longest = max(len(model.tokenizer.encode(b["prompt"])) for b in bios)
    expected = model.generate([b["prompt"] for b in bios], **{**REFERENCE_FACTUALITY, "max_new_tokens": 512 - longest})
    assert [r["raw"] for r in result["records"]] == [e.raw for e in expected]
    verdicts = [[f[-1] for f in r["facts"]] for r in result["records"]]
    assert {k: result["metrics"][k] for k in ("factscore", "respond_ratio")} == {k: factscore(verdicts)[k] for k in ("factscore", "respond_ratio")}
    facts = sum(len(v) for v in verdicts)
    assert result["metrics"]["factual_precision"] == (sum(sum(v) for v in verdicts) / facts if facts else 0.0)


def test_a_bio_stops_at_a_failed_lookup(tiny, tmp_path_factory):
    checkpoint, _, _, bios = tiny
    _, kb_path = tiny_lmlm_copy(tmp_path_factory)
    bios = [b for b in bios if b["split"] != "inject"][:4]
    with SqliteKB(kb_path) as kb:
        for b in bios:
            kb.forget(b["person"], exact=True)
        records = suites.factuality(LMLM.from_pretrained(checkpoint, kb=kb), bios, extract_facts=atomic_facts, protocol="reference")["records"]
    failed = [r for r in records if any(x["value"] == "" for x in r["lookups"])]
    assert failed, "no bio made a call about its person"
    for r in failed:  # the failed call is the bio's last thing
        assert [x["value"] == "" for x in r["lookups"]] == [False] * (len(r["lookups"]) - 1) + [True], r
        assert r["raw"].endswith("<|db_end|>"), r


# --- the database off, for any suite ------------------------------------------------------------------------------------


def test_without_the_database_our_protocol_scores_the_weights_as_del_off_does(model, tiny):
    """Ours: lookups banned and no call forced, the LMLM run as a Standard model is (the forgetting audit's DEL-OFF)."""
    weights_only = LMLM(model.model, model.tokenizer, None)
    prompts, bios = tiny[2][:6], tiny[3][:3]
    docs = [json.loads(line) for line in (tiny[0].parent / "world" / "eval" / "heldout_bios.jsonl").read_text().splitlines()][:3]
    off = suites.completion(model, prompts, use_db=False)
    assert [r["raw"] for r in off["records"]] == [r["raw"] for r in suites.completion(weights_only, prompts)["records"]]
    assert not any("<|db_entity|>" in r["raw"] for r in off["records"])
    off_bios = suites.factuality(model, bios, extract_facts=atomic_facts, use_db=False)["records"]
    assert [r["raw"] for r in off_bios] == [r["raw"] for r in suites.factuality(weights_only, bios, extract_facts=atomic_facts)["records"]]
    assert suites.perplexity(model, docs, use_db=False)["metrics"] == suites.perplexity(weights_only, docs)["metrics"]


def test_without_the_database_the_references_protocol_lets_calls_go_unanswered(model, tiny):
    """The reference's runs without --enable_dblookup: no call forced, calls written and left unanswered; its T-REx
    continuation stops at the model's own <|db_return|>."""
    records = suites.completion(model, tiny[2][:8], protocol="reference", use_db=False)["records"]
    assert not any(r["looked_up"] for r in records)
    assert any(r["continuation"].rstrip().endswith("<|db_return|>") for r in records)
    bios = suites.factuality(model, tiny[3][:3], extract_facts=atomic_facts, protocol="reference", use_db=False)["records"]
    assert all(r["lookups"] == [] for r in bios) and any("<|db_return|>" in r["raw"] for r in bios)


def test_eval_cli_takes_the_protocol_and_no_db(tiny, tmp_path):
    checkpoint, kb_path, completion, _ = tiny
    data = tmp_path / "completion.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in completion[:4]))
    proc = run_cli("eval", "completion", "--model", checkpoint, "--kb", kb_path, "--data", data, "--protocol", "reference", "--no-db",
                   "--out", tmp_path / "out", check=True)
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["lookup_success"] == 0.0 and set(metrics) >= {"exact_match", "precision@1", "precision@5", "precision@10"}
    assert "completion_no_db_reference" in json.loads((tmp_path / "out" / "report.json").read_text())["lmlm"]
    fails_cleanly(run_cli("eval", "ppl", "--model", checkpoint, "--data", data, "--protocol", "reference"), "--protocol reference", "ppl")
    fails_cleanly(run_cli("eval", "forget", "--model", checkpoint, "--kb", kb_path, "--data", data, "--no-db"), "--no-db", "forget")
