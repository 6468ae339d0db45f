"""Pretraining: both modes learn, checkpoints load in plain transformers, exact resume, DDP, configs."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from lmlm.config import load_config
from lmlm.data import build_dataset, documents
from lmlm.errors import LmlmError
from lmlm.models import PRESETS, TokenIds, model_config
from lmlm.tokenizer import train_tokenizer
from lmlm.train import TrainConfig, logged_losses, train
from lmlm.world import make_world

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_world(root / "world", people=80, seed=3)
    corpus = [root / "world" / "corpus.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=700)
    for mode in ("lmlm", "standard"):
        build_dataset(corpus, tokenizer, mode, root / mode, block_size=64)
    return root


def _cfg(datasets, mode, out, **kw):
    settings = {"model": "tiny", "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "log_every": 5, **kw}
    return TrainConfig(data=str(datasets / mode), out=str(out), **settings)


@pytest.mark.parametrize("mode", ["lmlm", "standard"])
def test_tiny_learns_and_reloads_in_plain_transformers(datasets, tmp_path, mode):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics, model = train(_cfg(datasets, mode, tmp_path / mode, max_steps=40, eval_data=str(datasets / mode)))
    losses = logged_losses(tmp_path / mode)
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0, losses  # nats
    assert metrics["eval_static"] > 1 and metrics["eval_normalized"] >= metrics["eval_static"] * (mode == "standard")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / mode)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / mode)
    assert tokenizer.convert_tokens_to_ids("<|db_return|>") != tokenizer.unk_token_id
    ids = torch.tensor([tokenizer.encode("Ada Ashby was born on <|db_entity|> Ada Ashby<|db_relationship|> Birth Date<|db_return|>")])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert not list((tmp_path / mode).glob("checkpoint-*"))


def test_resume_is_exact(datasets, tmp_path):
    _, _ = train(_cfg(datasets, "lmlm", tmp_path / "straight", max_steps=16, log_every=1))
    _, _ = train(_cfg(datasets, "lmlm", tmp_path / "split", max_steps=16, log_every=1, stop_after=8))
    assert not (tmp_path / "split" / "model.safetensors").exists()
    _, _ = train(_cfg(datasets, "lmlm", tmp_path / "split", max_steps=16, log_every=1, resume=True))
    straight, split = logged_losses(tmp_path / "straight"), logged_losses(tmp_path / "split")
    assert len(straight) == 16 and len(split) == 16
    assert abs(straight[-1] - split[-1]) <= 1e-5, (straight[-3:], split[-3:])


def _log_rows(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_speed_after_resume_counts_only_the_resumed_steps(datasets, tmp_path, monkeypatch):
    import lmlm.train

    # one second per reading: on this shared machine real step times vary several-fold, which would hide the
    # error; with a steady clock every speed is exactly one log interval's tokens per second
    ticks = iter(range(10**6))
    monkeypatch.setattr(lmlm.train, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    out = tmp_path / "run"
    train(_cfg(datasets, "lmlm", out, max_steps=12, log_every=3, stop_after=6))
    train(_cfg(datasets, "lmlm", out, max_steps=12, log_every=3, resume=True))
    speeds = {row["step"]: row["tokens_per_second"] for row in _log_rows(out) if "loss" in row}
    assert speeds == dict.fromkeys([3, 6, 9, 12], 3 * 8 * 64)  # counted from step 0, step 9's would be 9 steps' tokens


def test_resume_after_a_crash_logs_each_step_once(datasets, tmp_path):
    out = tmp_path / "run"
    train(_cfg(datasets, "lmlm", out, max_steps=12, log_every=1, save_every=4, stop_after=10))
    # as if the run had died after logging step 10 (mid-line) but before checkpointing it: the last checkpoint is 8
    shutil.rmtree(out / "checkpoint-10")
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 11, "lo')
    train(_cfg(datasets, "lmlm", out, max_steps=12, log_every=1, save_every=4, resume=True))
    assert [row["step"] for row in _log_rows(out) if "loss" in row] == list(range(1, 13))
    assert not list(out.glob("*.tmp"))


def test_stop_after_counts_the_steps_of_this_run(datasets, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(datasets, "lmlm", out, max_steps=10, log_every=1, stop_after=4)
    assert train(cfg)[0]["steps"] == 4
    again = dataclasses.replace(cfg, resume=True)  # the same command rerun continues for 4 more steps
    assert train(again)[0]["steps"] == 8
    assert (out / "checkpoint-8").is_dir() and not (out / "model.safetensors").exists()
    assert train(again)[0]["steps"] == 10 and (out / "model.safetensors").exists()
    assert [row["step"] for row in _log_rows(out) if "loss" in row] == list(range(1, 11))


def test_two_processes_with_torchrun(datasets, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import hashlib, os, torch
        from lmlm.train import TrainConfig, train
        cfg = TrainConfig(data={str(datasets / "lmlm")!r}, out={str(tmp_path / "ddp")!r}, model="tiny", batch_size=4, max_steps=4, log_every=1, warmup_steps=1)
        metrics, model = train(cfg)
        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
        open(os.path.join(cfg.out, "rank%s.sum" % os.environ["RANK"]), "w").write(digest + " " + str(metrics["train_loss"]))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", str(script)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "ddp"
    sums = [(out / f"rank{r}.sum").read_text().split() for r in (0, 1)]
    assert sums[0][0] == sums[1][0]
    assert all(torch.isfinite(torch.tensor(float(loss))) for _, loss in sums)
    assert len(list(out.glob("**/model.safetensors"))) == 1 and not list(out.glob("checkpoint-*"))


# kilian-group/LMLM scripts/train/pretrain.sh on its 2 GPUs, with the HF TrainingArguments defaults it keeps
REFERENCE_RUN = {"lr": 5e-4, "warmup_steps": 2000, "epochs": 8, "weight_decay": 0.0, "adam_beta2": 0.999, "max_grad_norm": 1.0,
                 "batch_size": 128, "grad_accum": 1, "gradient_checkpointing": True, "seed": 42, "save_every": 5000, "log_every": 50}


@pytest.mark.parametrize("name, size", [("llama2-176m", 176e6), ("llama2-382m", 382e6)])
def test_reference_configs_are_the_reference_run(name, size):
    path = os.path.join(REPO, "configs", f"{name}.yaml")
    cfg = load_config(TrainConfig, path, {"data": "d", "out": "o"})
    assert cfg.model == name
    assert {key: getattr(cfg, key) for key in REFERENCE_RUN} == REFERENCE_RUN
    header = open(path, encoding="utf-8").read()
    assert "--nproc_per_node 2 " in header and "32,000-token tokenizer" in header  # 128 x 2 = the reference's 256 a step
    from transformers import AutoModelForCausalLM

    llama2_vocab = TokenIds(vocab_size=32000, bos=1, eos=2, pad=0)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(cfg.model, llama2_vocab, context=1024))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - size) / size < 0.02, (name, count)


def test_gpt2_presets_have_gpt2_dropout():
    from transformers import AutoModelForCausalLM

    tokens = TokenIds(vocab_size=32000, bos=1, eos=2, pad=0)
    for name in ("gpt2-124m", "gpt2-355m"):
        config = model_config(name, tokens, use_preset_vocab=True)
        assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.1, 0.1, 0.1)  # the reference's GPT2Config
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert type(model).__name__ == "GPT2LMHeadModel"
    assert set(PRESETS) >= {"tiny", "small", "llama2-176m", "llama2-382m", "gpt2-124m", "gpt2-355m"}


def test_bad_configs(tmp_path, datasets):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\nlearning_rate: 0.1\n")
    with pytest.raises(LmlmError, match="unknown config key 'learning_rate'"):
        load_config(TrainConfig, path, {"data": "d", "out": "o"})
    path.write_text("model: tiny\nmax_steps: lots\n")
    with pytest.raises(LmlmError, match="config key 'max_steps': expected int"):
        load_config(TrainConfig, path, {"data": "d", "out": "o"})
    other = train_tokenizer(["a completely different corpus with other words"], vocab_size=300)
    other.save_pretrained(tmp_path / "other_tok")
    with pytest.raises(LmlmError, match="another tokenizer"):
        train(_cfg(datasets, "lmlm", tmp_path / "x", max_steps=2, tokenizer=str(tmp_path / "other_tok")))


def test_train_cli_rejects_bad_keys(tmp_path):
    from conftest import run_cli

    proc = run_cli("train", "--data", tmp_path, "--out", tmp_path / "o", "--max-steps", "ten")
    assert proc.returncode == 2 and "max_steps" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "c.yaml").write_text("modell: tiny\n")
    proc = run_cli("train", "--config", tmp_path / "c.yaml", "--data", tmp_path, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "'modell'" in proc.stderr
