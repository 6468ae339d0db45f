"""A tiny LMLM checkpoint and its knowledge base, made in seconds: a small synthetic world, a BPE
tokenizer with the lookup tokens, a 2-layer Llama trained briefly until it writes lookup calls.
Used by the serving tests and the serving load benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmlm import markup
from lmlm.data import PackedDataset, build_dataset
from lmlm.kb import SqliteKB
from lmlm.kb.io import read_reference_db
from lmlm.tokenizer import train_tokenizer
from lmlm.world import make_world


def make_tiny_lmlm(root: Path, people: int = 40, steps: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """(checkpoint directory, KB path) under ``root``."""
    make_world(root / "world", people=people, seed=seed)
    corpus = root / "world" / "corpus.jsonl"
    texts = [markup.convert(json.loads(line)["annotated_text"], "special") for line in corpus.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, vocab_size=600)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id))
    build_dataset([corpus], tokenizer, "lmlm", root / "data", block_size=96)
    data = PackedDataset(root / "data")
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(data), (16,), generator=generator).numpy()
        loss = model(input_ids=torch.tensor(data.ids[index].astype("int64")), labels=torch.tensor(data.labels[index].astype("int64"))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    checkpoint = root / "model"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    kb_path = root / "kb.sqlite"
    with SqliteKB(kb_path, create=True) as kb:
        kb.import_triplets(read_reference_db(root / "world" / "kb.json"))
        kb.embed()
    return checkpoint, kb_path


def train_people(root: Path) -> list[str]:
    """Names of the world's people seen in training, in file order."""
    rows = [json.loads(line) for line in (root / "world" / "people.jsonl").read_text().splitlines()]
    return [r["name"] for r in rows if r["split"] != "inject"]
