"""``lmlm experiment paper`` (``make paper``): the report's Markdown from a report dict, and the whole orchestrator
end to end at a tiny scale, resuming."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from conftest import fails_cleanly, run_cli

from lmlm.experiments.offload import OffloadConfig
from lmlm.experiments.paper import PaperConfig
from lmlm.experiments.paper_report import render
from lmlm.unlearn.config import UnlearnConfig

SECTIONS = ("## FactScore (bios)", "## T-REx-style completion", "## Database off", "## Memorization", "## Offloading sweep",
            "## Unlearning (TOFU-style)", "## Time")
CHARTS = ("](memorization/memorization.png)", "](offload/offload_accuracy.png)", "](offload/offload_perplexity.png)", "](unlearn/unlearn.png)")


def _factuality(precision: float) -> dict:
    return {"factual_precision": precision, "factscore": precision * 0.8, "factscore_without_penalty": precision * 0.9,
            "respond_ratio": 0.5, "facts_per_bio": 2.0}


def _side(completion: float, exact: float, factuality: float | None) -> dict:
    side = {"ours": {"completion": {"accuracy": completion}},
            "reference": {"completion": {"accuracy": completion, "exact_match": exact, "precision@1": 0.611, "precision@5": 0.722,
                                         "precision@10": 0.833, "lookup_success": 0.944}}}
    if factuality is not None:
        side["ours"]["factuality"], side["reference"]["factuality"] = _factuality(factuality), _factuality(factuality - 0.02)
    return side


def _size(original: float, deletion: float | None) -> dict:
    size = {"people": 6, "questions": 44, "original": {"forget_quality": original, "model_utility": 0.383}, "retain_model_utility": 0.377,
            "best": {"GA": {"lr": 1e-3, "forget_quality": 4.4e-14, "model_utility": 0.351, "utility_kept": True}}}
    if deletion is not None:
        size["deletion"] = {"forget_quality": deletion, "model_utility": 0.383}
    return size


@pytest.fixture
def report() -> dict:
    return {"config": {"model": "tiny", "steps": 800, "people": 1500, "offload_model": "micro", "offload_steps": 300,
                       "offload_people": 1000, "unlearn_people": 60, "unlearn_steps": 300, "seed": 0},
            "evaluate": {"prompts": 400, "bios": 100, "lmlm": _side(0.905, 0.871, 0.979), "standard": _side(0.048, 0.037, 0.042),
                         "lmlm_db_off": _side(0.061, 0.052, None)},
            "memorization": {"first": {"lmlm": 6.43, "standard": 6.41}, "last": {"lmlm": 5.87, "standard": 1.23}},
            "offload": {"rows": [{"fraction": f, "completion": 0.1 + f / 2, "factual_precision": 0.2 + f / 2, "normalized_perplexity": 3.5 - f,
                                  "completion_db_off": 0.3 - f / 4} for f in (0, 0.25, 0.5, 0.75, 1)]},
            "unlearn": {"forget_people": {"0.01": 1, "0.1": 6},
                        "kinds": {"standard": {"before_utility": 0.374, "forget": {"0.01": _size(0.087, None), "0.1": _size(2.3e-5, None)}},
                                  "lmlm": {"before_utility": 0.383, "forget": {"0.01": _size(2.5e-3, 0.087), "0.1": _size(4.1e-17, 0.012)}}}},
            "seconds": {"train": {"wall": 612.4, "cpu": 1190.2}, "unlearn": {"wall": 480.0, "cpu": 455.5}},
            "total_seconds": {"wall": 1092.4, "cpu": 1645.7}}


def test_the_report_page_holds_every_table_and_chart(report):
    md = render(report)
    positions = [md.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    for chart in CHARTS:
        assert chart in md
    # FactScore: each model under each protocol, with the length-penalized score and the respond ratio
    assert "| LMLM | ours | 0.979 | 0.783 | 0.881 | 0.500 | 2.0 |" in md
    assert "| Standard | reference | 0.022 | 0.018 | 0.020 | 0.500 | 2.0 |" in md
    # T-REx: our protocol has no exact match nor precision@k; the reference's has both
    assert "| LMLM | ours | 0.905 | – | – | – | – | – |" in md
    assert "| Standard | reference | 0.048 | 0.037 | 0.611 | 0.722 | 0.833 | 0.944 |" in md
    # the database-off row between the LMLM with its database and the Standard model
    db_off = md[md.index("## Database off"):md.index("## Memorization")]
    assert db_off.index("| LMLM, database on | 0.905 | 0.871 |") < db_off.index("| LMLM, database off | 0.061 | 0.052 |") \
        < db_off.index("| Standard | 0.048 | 0.037 |")
    assert "| Standard | 6.410 | 1.230 |" in md
    assert "| 0.25 | 0.225 | 0.325 | 3.25 | 0.237 |" in md
    # unlearning: the Standard model has no deletion; the target verdict reads the largest forget size
    assert "| 10% | LMLM | 4.1e-17 (0.383) | 0.012 (0.383) | 4.4e-14 (0.351) | 0.377 |" in md
    assert "| 1% | Standard | 0.087 (0.383) | – | 4.4e-14 (0.351) | 0.377 |" in md
    assert "Deletion at 10% forget: Forget Quality 0.012 (target ≥ 0.05)" in md and "target **missed**" in md
    assert "| train | 612 | 1190 |" in md and "| **total** | 1092 | 1646 |" in md


def test_deletion_that_reaches_the_target_reads_met(report):
    deletion = report["unlearn"]["kinds"]["lmlm"]["forget"]["0.1"]["deletion"]
    deletion["forget_quality"] = 0.3
    assert "utility change +0.000 (target within 0.02): target **met**" in render(report)
    deletion["model_utility"] -= 0.03
    assert "utility change -0.030 (target within 0.02): target **missed**" in render(report)


@pytest.mark.parametrize("prefix, config", [("offload_", OffloadConfig), ("unlearn_", UnlearnConfig)])
def test_the_sweep_and_unlearning_options_are_their_commands_own(prefix, config):
    paper = {f.name: f for f in fields(PaperConfig) if f.name.startswith(prefix)}
    own = {f.name: f for f in fields(config)}
    assert paper and all(name[len(prefix):] in own for name in paper)
    for name, option in paper.items():
        source = own[name[len(prefix):]]
        assert option.metadata == source.metadata, name
        assert getattr(PaperConfig(), name) == getattr(config(), source.name), name


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"result": {}}'])
def test_an_unreadable_stage_file_runs_its_stage_again(tmp_path, content):
    from lmlm.experiments.paper import _StageRunner

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "world.json").write_bytes(content)
    ran = []
    result = _StageRunner(tmp_path, lambda line: None).run("world", {"seed": 0}, lambda: ran.append(1) or {"people": 3})
    assert ran == [1] and result == {"people": 3}
    assert json.loads((tmp_path / "stages" / "world.json").read_text())["result"] == {"people": 3}


def test_bad_options_are_refused_before_any_stage_runs(tmp_path):
    fails_cleanly(run_cli("experiment", "paper", "--out", tmp_path / "p", "--offload-fractions", "0,2"), "--offload-fractions", "0,2")
    fails_cleanly(run_cli("experiment", "paper", "--out", tmp_path / "p", "--unlearn-forget", "0.5"), "--unlearn-", "forget", "0.5")
    fails_cleanly(run_cli("experiment", "paper", "--out", tmp_path / "p", "--model", "huge"), "--model", "huge")
    assert not (tmp_path / "p").exists()


TINY = ["--model", "micro", "--people", 40, "--steps", 4, "--batch-size", 4, "--value-loss-every", 2, "--completion-prompts", 8, "--bios", 3,
        "--offload-fractions", "0,1", "--offload-people", 20, "--offload-steps", 2, "--offload-completion-prompts", 4, "--offload-bios", 2,
        "--offload-ppl-docs", 2, "--unlearn-people", 20, "--unlearn-steps", 2, "--unlearn-forget", 0.1, "--unlearn-methods", "GA",
        "--unlearn-lrs", 1e-3, "--unlearn-epochs", 1, "--unlearn-utility-people", 2, "--unlearn-world-fact-people", 2,
        "--unlearn-heldout-docs", 2, "--no-progress"]
STAGES = ("world", "annotate", "kb", "train", "evaluate", "memorization", "offload", "unlearn")


@pytest.mark.slow  # about 100 s of CPU: a run of eight micro trainings of 2-4 steps and every evaluation, then a resumed run
def test_the_paper_end_to_end_at_a_tiny_scale_then_resumed(tmp_path):
    out = tmp_path / "paper"
    proc = run_cli("experiment", "paper", "--out", out, *TINY, check=True)
    for n, stage in enumerate(STAGES, 1):
        assert f"[{n}/8] {stage} ..." in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"report": str(out / "report.md"), **report["total_seconds"]}
    assert set(report["seconds"]) == set(STAGES)
    assert all(t["wall"] >= 0 and t["cpu"] >= 0 for t in report["seconds"].values())
    assert report["seconds"]["train"]["cpu"] > 0  # the two training processes' CPU counts
    evaluation = report["evaluate"]
    for side in ("lmlm", "standard"):
        for protocol in ("ours", "reference"):
            assert {"factual_precision", "factscore", "respond_ratio"} <= set(evaluation[side][protocol]["factuality"])
        assert {"exact_match", "precision@1", "precision@5", "precision@10"} <= set(evaluation[side]["reference"]["completion"])
    assert set(evaluation["lmlm_db_off"]) == {"ours", "reference"}
    assert [step for step, _ in report["memorization"]["curves"]["lmlm"]] == [0, 2, 4]
    assert [r["fraction"] for r in report["offload"]["rows"]] == [0, 1]
    assert set(report["unlearn"]["kinds"]["lmlm"]["forget"]["0.1"]) >= {"original", "deletion", "best"}
    md = (out / "report.md").read_text()
    for needle in SECTIONS + CHARTS:
        assert needle in md
    for chart in CHARTS:
        assert (out / chart[2:-1]).read_bytes()[:4] == b"\x89PNG"

    # a rerun skips every stage done; one whose result is gone runs again, and so do those that read its output
    (out / "stages" / "kb.json").unlink()
    again = run_cli("experiment", "paper", "--out", out, *TINY, check=True)
    rerun = [stage for stage in STAGES if f"] {stage} ..." in again.stderr]
    assert rerun == ["kb", "evaluate"]
    assert all(f"] {stage}: done in an earlier run, skipped" in again.stderr for stage in STAGES if stage not in rerun)
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["seconds"]["train"] == report["seconds"]["train"] and resumed["offload"] == report["offload"]

    # a stage whose own options changed runs again, not one whose results those options do not touch
    fewer_bios = [2 if previous == "--bios" else value for previous, value in zip(["", *TINY], TINY)]
    changed = run_cli("experiment", "paper", "--out", out, *fewer_bios, check=True)
    assert [stage for stage in STAGES if f"] {stage} ..." in changed.stderr] == ["evaluate"]
    assert "evaluate ... (its options changed since its earlier run)" in changed.stderr
    assert json.loads((out / "report.json").read_text())["evaluate"]["bios"] == 2
