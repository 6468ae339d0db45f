"""`lmlm demo --quick` end to end: every report field is present and well formed (the machinery, not the numbers)."""

import json
import math

import pytest
from conftest import run_cli


@pytest.mark.slow
def test_demo_quick(tmp_path):
    proc = run_cli("demo", "--quick", "--out", tmp_path / "demo", check=True)
    assert "[7/7] report" in proc.stdout
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    fraction = lambda x: isinstance(x, float) and 0.0 <= x <= 1.0  # noqa: E731
    for side in ("lmlm", "standard"):
        for key in ("completion_train", "completion_inject", "factual_precision"):
            assert fraction(report[side][key]), (side, key)
        assert isinstance(report[side]["ppl"], dict) and report[side]["ppl"]
    forget = report["lmlm"]["forget"]
    for key in ("forget_full", "forget_del_on", "forget_del_off", "retain_full", "retain_del_on"):
        assert fraction(forget[key]), key
    assert isinstance(forget["leaked_near_neighbour"], int) and forget["leaked_near_neighbour"] >= 0
    for key in ("static", "dynamic", "normalized"):
        assert math.isfinite(report["lmlm"]["ppl"][key]) and report["lmlm"]["ppl"][key] >= 1
    assert math.isfinite(report["standard"]["ppl"]["standard"])
    assert set(report["wall_seconds"]) >= {"world", "annotate", "kb", "train", "evaluate", "live editing", "total"}
    assert {"before", "after_edit", "after_forget", "other_after_forget"} <= set(report["live_edit"])
    assert (tmp_path / "demo" / "lmlm" / "ngram_drafts.json").is_file()  # the engine drafts from the training text's n-grams
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "| metric | LMLM | Standard |" in md
    for chart in ("accuracy.png", "forgetting.png", "perplexity.png"):
        assert (tmp_path / "demo" / chart).read_bytes()[:4] == b"\x89PNG"
