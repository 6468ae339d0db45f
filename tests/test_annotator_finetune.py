"""LoRA fine-tuning of an annotator on real annotated examples, and annotating with it through the hf backend."""

import json

import pytest
import torch
from conftest import run_cli
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from lmlm.annotate.finetune import AnnotatorConfig, sft_examples, train_annotator
from lmlm.annotate.llm import HFBackend
from lmlm.annotate.prompt import encode_prompt
from lmlm.annotate.run import annotate_llm
from lmlm.corpus import read_corpus
from lmlm.tokenizer import train_tokenizer

MAX_LENGTH = 768


@pytest.fixture(scope="module")
def seed_set(shared, tmp_path_factory):
    """Short real GPT-4o annotations, as the cleaned seed set an annotator is trained on."""
    examples = read_corpus(shared / "squad-train1k_chatgpt_gpt4o-v7.1_cleaned.json").examples
    short = sorted(examples, key=lambda e: len(e["annotated_text"]))[:48]
    path = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in short))
    return path


@pytest.fixture(scope="module")
def base(seed_set, tmp_path_factory):
    """A tiny Llama with the project tokenizer, briefly pretrained on the plain texts (LoRA adapts a language
    model; a random one's frozen output layer cannot express a peaked distribution), saved as an HF checkpoint."""
    examples = read_corpus(seed_set).examples
    tokenizer = train_tokenizer([e["text"] for e in examples] + [e["annotated_text"] for e in examples], vocab_size=800)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=128, max_position_embeddings=MAX_LENGTH, pad_token_id=tokenizer.pad_token_id,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    stream = torch.tensor([t for e in examples for t in tokenizer(e["text"]).input_ids])
    blocks = stream[: len(stream) // 128 * 128].view(-1, 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        batch = blocks[torch.randint(len(blocks), (8,))]
        model(batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    path = tmp_path_factory.mktemp("base")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def answer_loss(model, rows) -> float:
    """Mean cross-entropy over every example's answer tokens."""
    with torch.no_grad():
        losses = [model(torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss.item() for r in rows]
    return sum(losses) / len(losses)


def test_the_loss_is_on_the_answer_tokens_only(base, seed_set):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    rows, _ = sft_examples(tokenizer, [str(seed_set)], MAX_LENGTH)
    example = read_corpus(seed_set).examples[0]
    prompt = encode_prompt(tokenizer, example["text"])
    first = rows[0]
    assert first["labels"][: len(prompt)] == [-100] * len(prompt)
    answer = first["labels"][len(prompt) :]
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == example["annotated_text"]


def test_lora_training_lowers_the_loss_and_the_adapter_annotates_through_hf(base, seed_set, tmp_path):
    out = tmp_path / "annotator"
    result = train_annotator(AnnotatorConfig(base=str(base), data=[str(seed_set)], out=str(out), lr=1e-2, max_steps=24,
                                             batch_size=4, max_length=MAX_LENGTH))
    assert result["steps"] == 24 and len(result["losses"]) == 24
    assert (out / "adapter_config.json").is_file() and json.loads((out / "adapter_config.json").read_text())["r"] == 32

    # the adapter, reloaded by its directory alone, fits the answers better than the base it adapts
    backend = HFBackend(out, batch_size=4, max_new_tokens=24)
    rows, _ = sft_examples(backend.tokenizer, [str(seed_set)], MAX_LENGTH)
    before = answer_loss(AutoModelForCausalLM.from_pretrained(base).eval(), rows)
    after = answer_loss(backend.model, rows)
    assert after < 0.95 * before, (before, after)

    corpus = tmp_path / "plain.jsonl"
    texts = [e["text"] for e in read_corpus(seed_set).examples[:6]]
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    summary = annotate_llm(corpus, tmp_path / "out.jsonl", backend)
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in results) == list(range(6))
    assert summary["annotated"] + sum(summary["rejected"].values()) == 6
    assert all(r["annotator"] == str(out) for r in results)


def test_annotator_train_cli_names_a_missing_corpus(base, tmp_path):
    proc = run_cli("annotator", "train", "--base", base, "--data", tmp_path / "nope.json", "--out", tmp_path / "a")
    assert proc.returncode == 2 and "nope.json: no such file" in proc.stderr
