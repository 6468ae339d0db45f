"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing half-written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fails_cleanly, run_cli


def _installed_script() -> list[str]:
    beside = Path(sys.executable).with_name("lmlm")
    found = str(beside) if beside.is_file() else shutil.which("lmlm")
    if found is None:
        pytest.skip("no installed lmlm script beside the interpreter or on PATH")
    return [found]


@pytest.mark.parametrize("entry_point", ["python -m lmlm", "lmlm script"])
@pytest.mark.parametrize("command, needles", [(["markup", "check", "{tmp}/nope.json"], ("nope.json", "no such file")),
                                              (["generate", "--model", "{tmp}/missing", "hello"], ("missing", "no such model folder"))])
def test_the_real_entry_points_refuse_in_one_line(tmp_path, entry_point, command, needles):
    """The other tests run the CLI in a forked process (conftest.run_cli); these run both entry points as installed,
    one with the model stack imported."""
    program = [sys.executable, "-m", "lmlm"] if entry_point == "python -m lmlm" else _installed_script()
    proc = subprocess.run([*program, *(part.format(tmp=tmp_path) for part in command)], capture_output=True, text=True)
    fails_cleanly(proc, *needles)


def test_missing_file(tmp_path):
    fails_cleanly(run_cli("markup", "check", tmp_path / "nope.json"), "nope.json", "no such file")


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("bad.json", '{"examples": [\n  {"text": "a", "annotated_text": "a"},\n  {"text": "b" "annotated_text": "b"}\n]}', ":3:16:"),
        ("bad.jsonl", '{"annotated_text": "a"}\n{"annotated_text": \n', ":2:20:"),
    ],
)
def test_invalid_json_names_line_and_column(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content)
    fails_cleanly(run_cli("markup", "check", path), f"{name}{where}", "invalid JSON")


def test_example_without_annotated_text_is_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"examples": [{"text": "a", "annotated_text": "a"}, {"text": "b"}]}))
    fails_cleanly(run_cli("markup", "check", path), "example 1", "missing 'annotated_text'")


def test_convert_never_overwrites_its_input(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"annotated_text": "[dblookup(\'E\', \'R\') -> V] V"}\n')
    fails_cleanly(run_cli("markup", "convert", path, "--to", "special", "--out", path), "overwrite")
    assert path.read_text() == '{"annotated_text": "[dblookup(\'E\', \'R\') -> V] V"}\n'


def test_failed_convert_leaves_no_output(tmp_path):
    src, out = tmp_path / "c.json", tmp_path / "out.json"
    src.write_text('{"examples": [{"text": "b"}]}')
    fails_cleanly(run_cli("markup", "convert", src, "--to", "special", "--out", out))
    assert list(tmp_path.iterdir()) == [src]


def test_usage_errors_exit_2(tmp_path):
    proc = run_cli("markup", "convert", tmp_path / "x.json", "--to", "xml", "--out", tmp_path / "y.json")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_a_call_in_the_sessions_own_environment_is_forked_from_the_preloaded_server(tmp_path):
    import torch._dynamo  # noqa: F401  (it sets TORCHINDUCTOR_CACHE_DIR as it loads, which is no test's setting)

    proc = run_cli("markup", "convert", tmp_path / "x.json", "--to", "xml", "--out", tmp_path / "y.json")
    assert proc.args[0] == "lmlm" and proc.returncode == 2  # not [python, -m, lmlm, ...]: no interpreter started afresh


@pytest.mark.parametrize("flag, value", [("--temperature", "0.7"), ("--top-p", "0.9"), ("--top-k", "5")])
def test_a_sampling_option_without_do_sample_is_refused_not_ignored(flag, value):
    fails_cleanly(run_cli("generate", "--model", "nowhere", flag, value, "x"), flag, "--do-sample")
    sampled = run_cli("generate", "--model", "nowhere", "--do-sample", flag, value, "x")
    fails_cleanly(sampled, "nowhere")  # past the options, to the missing model


def test_generation_options_on_the_ppl_suite_are_refused_not_ignored(tmp_path):
    fails_cleanly(run_cli("eval", "ppl", "--model", "nowhere", "--data", tmp_path / "d.jsonl", "--constrain-lookups", "relation"),
                  "--constrain-lookups", "ppl")


def test_an_invalid_choice_or_number_is_one_line():
    fails_cleanly(run_cli("generate", "--model", "m", "--constrain-lookups", "bogus", "x"), "--constrain-lookups", "bogus")
    fails_cleanly(run_cli("world", "--out", "w", "--people", "many"), "--people", "many")
