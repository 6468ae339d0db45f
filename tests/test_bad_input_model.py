"""A missing or damaged checkpoint folder, given to every command that loads one (generate, eval, serve):
exit 2 and one line that names the folder or the file, never a traceback; serve exits before it binds."""

import json
import shutil
import socket
import subprocess
import sys

import pytest
from tiny_lmlm import make_tiny_lmlm


def _truncate(path):
    path.write_bytes(path.read_bytes()[:5000])


BROKEN = {  # name: (how to break a good checkpoint folder, the file the error must name, what it must say)
    "missing": (lambda folder: shutil.rmtree(folder), "", "no such model folder"),
    "empty": (lambda folder: [p.unlink() for p in folder.iterdir()], "", "no config.json"),
    "truncated weights": (lambda folder: _truncate(folder / "model.safetensors"), "model.safetensors", "cannot load the model"),
    "garbage tokenizer": (lambda folder: (folder / "tokenizer.json").write_text("\x00garbage{"), "tokenizer.json", "not valid JSON"),
    "wrong tokenizer": (lambda folder: (folder / "tokenizer.json").write_text('{"model": 3}'), "tokenizer.json", "cannot load the tokenizer"),
    "garbage config": (lambda folder: (folder / "config.json").write_text("{"), "config.json", "not valid JSON"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("badmodel")
    checkpoint, kb = make_tiny_lmlm(root, people=8, steps=1)  # the weights' values do not matter here
    (root / "prompts.jsonl").write_text(json.dumps({"prompt": "Ada Ashby was born in", "answer": "Paris"}) + "\n")
    return root, checkpoint, kb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMANDS = {
    "generate": lambda model, kb, root: ["generate", "--model", model, "--kb", kb, "Ada Ashby was born in"],
    "eval": lambda model, kb, root: ["eval", "completion", "--model", model, "--kb", kb, "--data", root / "prompts.jsonl"],
    "serve": lambda model, kb, root: ["serve", "--model", model, "--kb", kb, "--port", str(_free_port())],
}


@pytest.mark.parametrize("broken", BROKEN)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_broken_model_folder_is_one_line_and_exit_2(good, tmp_path, broken, command):
    root, checkpoint, kb = good
    folder = tmp_path / "model"
    shutil.copytree(checkpoint, folder)
    breaks, file, says = BROKEN[broken]
    breaks(folder)
    proc = subprocess.run([sys.executable, "-m", "lmlm", *map(str, COMMANDS[command](folder, kb, root))],
                          capture_output=True, text=True, timeout=300)  # a server that binds would hang: the timeout fails the test
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # serve says "serving" only once the model has loaded
    assert lines[0].startswith(f"lmlm: error: {folder / file if file else folder}: {says}"), lines[0]
