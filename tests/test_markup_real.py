"""The markup module on the real annotated files in ../shared."""

import json
import re

from conftest import run_cli

from lmlm import markup
from lmlm.corpus import read_corpus

LEGACY_CALL = re.compile(r"\[dblookup\(")
DEBRIS = re.compile(r"(?<=[^\sA-Za-z])assistant\n")


def test_every_file_checks_and_counts_agree_with_a_regex(corpora):
    proc = run_cli("markup", "check", "--json", *corpora, check=True)
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in reports] == [str(p) for p in corpora]
    for path, report in zip(corpora, reports):
        assert set(report) >= {"file", "examples", "lookups", "malformed", "fidelity"}
        texts = [e["annotated_text"] for e in json.loads(path.read_text())["examples"]]
        calls = sum(len(LEGACY_CALL.findall(t)) for t in texts)
        debris = sum(len(DEBRIS.findall(t)) for t in texts)
        broken_calls = report["malformed"] - debris
        assert report["examples"] == len(texts)
        assert report["lookups"] == calls - broken_calls, path.name
        assert 0.0 <= report["fidelity"] <= 1.0


def test_raw_annotator_noise_is_reported(shared):
    proc = run_cli("markup", "check", "--json", shared / "squad-eval100_llama-LMLM-Annotator_llama-v6.1.json", check=True)
    report = json.loads(proc.stdout)
    assert report["malformed"] >= 100
    assert any("debris" in m["reason"] for m in report["malformed_first"])


def test_legacy_special_legacy_round_trips_every_well_formed_lookup(corpora):
    checked = 0
    for path in corpora:
        for example in read_corpus(path).examples:
            text = example["annotated_text"]
            for lookup in markup.parse(text).lookups:
                if lookup.repaired:
                    continue
                special = markup.render_lookup(lookup, "special")
                (again,) = markup.parse(special).lookups
                start, end = lookup.span
                assert lookup.lead + text[start:end] == markup.render_lookup(again, "legacy")
                checked += 1
    assert checked > 13_000


def test_convert_cli_round_trips_a_real_file(shared, tmp_path):
    src = shared / "squad-eval100_chatgpt_gpt4o-v7.1_cleaned.json"
    special, legacy = tmp_path / "special.jsonl", tmp_path / "legacy.json"
    run_cli("markup", "convert", src, "--to", "special", "--out", special, check=True)
    run_cli("markup", "convert", special, "--to", "legacy", "--out", legacy, check=True)
    original = read_corpus(src).examples
    converted = read_corpus(special).examples
    back = read_corpus(legacy).examples
    assert len(original) == len(converted) == len(back)
    assert not any("[dblookup" in e["annotated_text"] for e in converted)
    for o, s, b in zip(original, converted, back):
        assert markup.parse(s["annotated_text"]).triplets == markup.parse(o["annotated_text"]).triplets
        if not any(lk.repaired for lk in markup.parse(o["annotated_text"]).lookups):
            assert b["annotated_text"] == o["annotated_text"]
        assert {k: v for k, v in b.items() if k != "annotated_text"} == {k: v for k, v in o.items() if k != "annotated_text"}
