"""`lmlm demo`: the quick smoke test shows the LMLM effect in part, with progress and without library
logging; a run is determined by its seed; the training progress line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from lmlm.data import build_dataset, documents
from lmlm.demo import SMOKE_NOTE, DemoPlan, follow_training
from lmlm.errors import LmlmError
from lmlm.tokenizer import train_tokenizer
from lmlm.train import TrainConfig, launch_training
from lmlm.world import make_world

fraction = lambda x: isinstance(x, float) and 0.0 <= x <= 1.0  # noqa: E731


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "demo"
    proc = run_cli("demo", "--quick", "--out", out, check=True)
    return proc, json.loads((out / "report.json").read_text()), out


def test_quick_smoke_test_says_what_it_is_and_shows_the_effect_in_part(quick):
    proc, report, _ = quick
    assert proc.stdout.count(SMOKE_NOTE) == 2  # first and last line
    lmlm, standard = report["lmlm"], report["standard"]
    # bounds with room: a briefly trained model's figures move a lot from seed to seed (README)
    assert lmlm["completion_train"] >= 0.2 and lmlm["factual_precision"] >= 0.6, lmlm
    assert standard["completion_train"] <= 0.1 and standard["factual_precision"] <= 0.2, standard
    edit = report["live_edit"]
    assert edit["edit_shown"] and edit["forget_shown"] and edit["other_still_stated"], edit


def test_quick_demo_shows_training_progress_and_no_library_logging(quick):
    proc, _, _ = quick
    for mode in ("lmlm", "standard"):
        assert re.search(rf"{mode} \d+/\d+ loss \d+\.\d{{3}} [\d,]+ tok/s", proc.stderr), proc.stderr[-2000:]
    assert "INFO lmlm." not in proc.stdout + proc.stderr


def test_quick_demo_report_is_complete(quick):
    proc, report, out = quick
    assert "[7/7] report" in proc.stdout
    for side in ("lmlm", "standard"):
        for key in ("completion_train", "completion_inject", "completion_unseen", "completion_unseen_confirm", "factual_precision"):
            assert fraction(report[side][key]), (side, key)
    assert fraction(report["lmlm"]["completion_db_off"])
    forget = report["lmlm"]["forget"]
    for key in ("forget_full", "forget_del_on", "forget_del_off", "retain_full", "retain_del_on"):
        assert fraction(forget[key]), key
    assert isinstance(forget["leaked_near_neighbour"], int) and forget["leaked_near_neighbour"] >= 0
    for key in ("static", "dynamic", "normalized"):
        assert report["lmlm"]["ppl"][key] >= 1
    assert report["standard"]["ppl"]["standard"] >= 1
    assert set(report["wall_seconds"]) >= {"world", "annotate", "kb", "train", "evaluate", "live editing", "total"}
    assert (out / "lmlm" / "ngram_drafts.json").is_file()  # the engine drafts from the training text's n-grams
    assert "| metric | LMLM | Standard |" in (out / "report.md").read_text()
    for chart in ("accuracy.png", "forgetting.png", "perplexity.png"):
        assert (out / chart).read_bytes()[:4] == b"\x89PNG"


def _figures(report: dict) -> str:
    return json.dumps({k: v for k, v in report.items() if k not in ("wall_seconds", "evaluated_again")}, sort_keys=True)


def test_evaluate_only_scores_the_runs_own_models_again_to_the_same_figures(quick):
    _, report, out = quick
    weights = (out / "lmlm" / "model.safetensors").read_bytes()
    proc = run_cli("demo", "--quick", "--evaluate-only", "--out", out, check=True)
    again = json.loads((out / "report.json").read_text())
    assert "[4/7] train" not in proc.stdout and "[5/7] evaluate" in proc.stdout
    assert again["evaluated_again"] is True and report["evaluated_again"] is False
    assert _figures(again) == _figures(report)
    assert (out / "lmlm" / "model.safetensors").read_bytes() == weights
    # another seed would score other prompts than the run's: refused before anything is evaluated
    other_seed = run_cli("demo", "--quick", "--evaluate-only", "--seed", "3", "--out", out)
    assert other_seed.returncode == 2 and "seed 0, not 3" in other_seed.stderr, other_seed.stderr


def test_evaluate_only_refuses_a_folder_without_a_finished_run(tmp_path):
    (tmp_path / "half" / "world").mkdir(parents=True)
    proc = run_cli("demo", "--evaluate-only", "--out", tmp_path / "half")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "needs a finished demo run" in proc.stderr and "kb.sqlite" in proc.stderr
    assert (tmp_path / "half" / "world").is_dir()  # nothing of the folder was removed
    wiki = run_cli("demo", "--profile", "wiki", "--evaluate-only", "--out", tmp_path / "half")
    assert wiki.returncode == 2 and "noise_0" in wiki.stderr, wiki.stderr
    assert (tmp_path / "half" / "world").is_dir() and not (tmp_path / "half" / "noise_0").exists()


# A run small enough to repeat: the figures mean nothing, their equality does.
MICRO = DemoPlan(model="micro", people=40, steps=8, batch_size=4, completion_per_split=8, bios=3, ppl_docs=3, dynamic_docs=1,
                 forget_people=2)
RUN_MICRO = "import sys; from lmlm.demo import run_demo; from test_demo import MICRO; run_demo(sys.argv[1], plan=MICRO, seed=int(sys.argv[2]), progress=False)"


def _start_micro(out: Path, seed: int, hash_seed: str) -> subprocess.Popen:
    """A micro demo in a process of its own, with its own string-hash seed (set and dict orders differ). The three
    runs go side by side, each on one thread, so they share the cores instead of fighting over them."""
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, "-c", RUN_MICRO, str(out), str(seed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _report(out: Path, run: subprocess.Popen) -> dict:
    _, stderr = run.communicate()
    assert run.returncode == 0, stderr.decode()[-2000:]
    report = json.loads((out / "report.json").read_text())
    del report["wall_seconds"]
    return report


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_and_figures(tmp_path):
    runs = {name: _start_micro(tmp_path / name, seed, hash_seed) for name, seed, hash_seed in (("a", 1, "1"), ("b", 1, "2"), ("c", 2, "1"))}
    try:
        first, again, other = [_report(tmp_path / name, run) for name, run in runs.items()]
    finally:
        for run in runs.values():
            run.kill()
            run.wait()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert first["records"] != other["records"]
    for mode in ("lmlm", "standard"):
        weights = lambda run: (tmp_path / run / mode / "model.safetensors").read_bytes()  # noqa: E731
        assert weights("a") == weights("b")
        assert weights("a") != weights("c")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    make_world(root / "world", people=20, seed=5, phrasing="plain")
    corpus = [root / "world" / "corpus.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=400)
    for mode in ("lmlm", "standard"):
        build_dataset(corpus, tokenizer, mode, root / f"data-{mode}", block_size=32)
    return root


def _launch(datasets, out, mode, **kw):
    cfg = TrainConfig(data=str(datasets / f"data-{mode}"), out=str(out / mode), batch_size=2, warmup_steps=1, log_every=1, **kw)
    return launch_training(cfg, out / f"train-{mode}.log")


def test_progress_line_follows_both_trainings(datasets, tmp_path, capsys):
    runs = {mode: _launch(datasets, tmp_path, mode, max_steps=6) for mode in ("lmlm", "standard")}
    follow_training(runs, tmp_path, 6, poll=0.2)
    line = capsys.readouterr().err.split("\r")[-1]
    assert "12/12 steps" in line, line
    for mode in ("lmlm", "standard"):
        assert re.search(rf"{mode} 6/6 loss \d+\.\d{{3}} [\d,]+ tok/s", line), line


def test_a_failed_training_stops_the_other(datasets, tmp_path):
    runs = {"lmlm": _launch(datasets, tmp_path, "lmlm", max_steps=100000), "standard": _launch(datasets, tmp_path, "missing", max_steps=6)}
    with pytest.raises(LmlmError, match="training the standard model failed"):
        follow_training(runs, tmp_path, 6, show=False, poll=0.2)
    assert runs["lmlm"].returncode is not None and runs["lmlm"].returncode != 0
