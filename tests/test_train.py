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
    make_world(root / "world", people=80, seed=3, phrasing="plain")
    corpus = [root / "world" / "corpus.jsonl"]
    tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=700)
    for mode in ("lmlm", "standard"):
        build_dataset(corpus, tokenizer, mode, root / mode, block_size=64)
    return root


def _cfg(datasets, mode, out, **kw):
    settings = {"model": "tiny", "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "log_every": 5, **kw}
    return TrainConfig(data=str(datasets / mode), out=str(out), **settings)


def _tiny_trainer(tmp_path, **kw):
    from transformers import TrainingArguments

    from lmlm.models import build_model
    from lmlm.train.trainer import LMLMTrainer

    model = build_model("tiny", TokenIds(vocab_size=64, bos=1, eos=2, pad=0), context=16, seed=0)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)
    return LMLMTrainer(model=model, args=args, log_path=tmp_path / "log.jsonl", **kw)


def test_stop_after_counts_the_steps_from_where_the_run_starts():
    from transformers import TrainerControl, TrainerState

    from lmlm.train.trainer import StopAfter

    stop, state = StopAfter(4), TrainerState(global_step=6)  # resumed at step 6
    stop.on_train_begin(None, state, TrainerControl())
    decisions = {}
    for step in range(7, 12):
        state.global_step, control = step, TrainerControl()
        stop.on_step_end(None, state, control)
        decisions[step] = (control.should_training_stop, control.should_save)
    assert decisions == {7: (False, False), 8: (False, False), 9: (False, False), 10: (True, True), 11: (True, True)}
    never, control = StopAfter(0), TrainerControl()
    never.on_train_begin(None, TrainerState(global_step=0), control)
    never.on_step_end(None, TrainerState(global_step=10**6), control)
    assert not control.should_training_stop and not control.should_save


def test_trainer_logs_every_row_with_the_speed_since_the_last_loss(tmp_path, monkeypatch):
    from transformers import TrainerControl, TrainerState

    import lmlm.train.trainer

    ticks = iter(range(10**6))  # one second per clock reading
    monkeypatch.setattr(lmlm.train.trainer, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    trainer = _tiny_trainer(tmp_path, tokens_per_step=100)
    assert trainer.speed in trainer.callback_handler.callbacks
    trainer.speed.on_train_begin(trainer.args, TrainerState(global_step=4), TrainerControl())
    trainer.state.global_step = 6
    trainer.log({"loss": 2.5})  # two steps of 100 tokens in the one second since the run began at step 4
    trainer.log({"eval_static": 3.0})
    trainer.log({"loss": 2.0})  # no step since the last loss: no speed
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if k != "epoch"} for row in rows] == [
        {"step": 6, "loss": 2.5, "tokens_per_second": 200}, {"step": 6, "eval_static": 3.0}, {"step": 6, "loss": 2.0}]


def test_trainer_loss_is_the_models_own_on_the_unmasked_labels(tmp_path):
    trainer = _tiny_trainer(tmp_path, tokens_per_step=1)
    model = trainer.model.eval()
    ids = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :6] = -100  # the precomputed labels mask what the model must not learn to write
    with torch.no_grad():
        loss = trainer.compute_loss(model, {"input_ids": ids, "labels": labels})
        unmasked = trainer.compute_loss(model, {"input_ids": ids, "labels": ids})
        logits = model(ids).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)
    assert not torch.allclose(loss, unmasked, atol=1e-3), (loss, unmasked)


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
    import lmlm.train.trainer

    # one second per reading: on this shared machine real step times vary several-fold, which would hide the
    # error; with a steady clock every speed is exactly one log interval's tokens per second
    ticks = iter(range(10**6))
    monkeypatch.setattr(lmlm.train.trainer, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_training_record_says_whether_it_trained_in_bf16(datasets, tmp_path, precision):
    train(_cfg(datasets, "lmlm", tmp_path / "run", max_steps=2, log_every=1, precision=precision))
    record = json.loads((tmp_path / "run" / "lmlm_training.json").read_text())
    assert record["metrics"]["bf16"] is (precision == "bf16")


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


@pytest.mark.parametrize("native", [(), ("_is_avx512_bf16_supported",), ("_is_amx_tile_supported",)])
def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native):
    from lmlm.train.run import bf16_enabled

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda supported=check in native: supported, raising=False)
    assert bf16_enabled("auto") is bool(native)
    assert (bf16_enabled("bf16"), bf16_enabled("fp32")) == (True, False)
    with pytest.raises(LmlmError, match="precision"):
        bf16_enabled("half")
