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


def make_tiny_lmlm(root: Path, people: int = 40, steps: int = 600, seed: int = 0) -> tuple[Path, Path]:
    """(checkpoint directory, KB path) under ``root``."""
    make_world(root / "world", people=people, seed=seed, phrasing="plain")
    corpus = root / "world" / "corpus.jsonl"
    texts = [markup.convert(json.loads(line)["annotated_text"], "special") for line in corpus.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, vocab_size=600)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=256, max_position_embeddings=512, tie_word_embeddings=True,
                                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id))
    build_dataset([corpus], tokenizer, "lmlm", root / "data", block_size=96)
    train_briefly(model, root / "data", steps, lr=5e-3, seed=seed)
    checkpoint = root / "model"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    kb_path = root / "kb.sqlite"
    with SqliteKB(kb_path, create=True) as kb:
        kb.import_triplets(read_reference_db(root / "world" / "kb.json"))
        kb.embed()
    return checkpoint, kb_path


def train_briefly(model, data_dir: Path, steps: int, lr: float, seed: int = 0, batch: int = 16):
    """Plain AdamW steps on random blocks of a built dataset (with its LMLM labels)."""
    data = PackedDataset(data_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(data), (batch,), generator=generator).numpy()
        loss = model(input_ids=torch.tensor(data.ids[index].astype("int64")), labels=torch.tensor(data.labels[index].astype("int64"))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()
