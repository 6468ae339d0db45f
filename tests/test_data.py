"""Tokenizer and training data: label masks on real tokenizations, packing, standard mode, refusal."""

import json

import numpy as np
import pytest
from conftest import run_cli

from lmlm import markup
from lmlm.data import IGNORE, PackedDataset, build_dataset, documents, label_document, lookup_token_ids, tokenize
from lmlm.errors import LmlmError
from lmlm.tokenizer import check_lookup_tokens, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer(corpora):
    return train_tokenizer(documents(corpora, "lmlm") + documents(corpora, "standard"), vocab_size=2048)


def reference_labels(tokens: list[str]) -> list[bool]:
    """An independent reading: True where a token sits between <|db_return|> and <|db_end|>, the latter included."""
    masked, inside = [], False
    for token in tokens:
        if token == markup.DB_END:
            masked.append(True)
            inside = False
        else:
            masked.append(inside)
            inside = inside or token == markup.DB_RETURN
    return masked


def test_lookup_tokens_are_single_and_ids_fit(tokenizer):
    check_lookup_tokens(tokenizer, "test")
    assert tokenizer.convert_tokens_to_ids("<|end_of_text|>") == tokenizer.eos_token_id
    assert isinstance(tokenizer.convert_tokens_to_ids("<|no such token|>"), int)
    # every text opens with bos, as in Llama tokenizers; it is no text of the document
    doc = tokenize(["Ada Ashby was born in London."], tokenizer)[0]
    assert doc.ids[0] == tokenizer.bos_token_id and not doc.org[0] and doc.org[1:].all()


def test_masks_on_real_documents(tokenizer, corpora):
    docs = documents(corpora, "lmlm")[:300]
    for doc, tok in zip(docs, tokenize(docs, tokenizer)):
        tokens = tokenizer.convert_ids_to_tokens(tok.ids.tolist())
        assert ((tok.labels == IGNORE).tolist()) == reference_labels(tokens)
        # the entity, the relation and the repeated value text after <|db_end|> are trained
        for i, token in enumerate(tokens):
            if token in (markup.DB_ENTITY, markup.DB_RELATIONSHIP):
                assert tok.labels[i] != IGNORE and tok.labels[i + 1] != IGNORE
            if token == markup.DB_RETURN:
                assert tok.labels[i] != IGNORE and tok.labels[i + 1] == IGNORE
            if token == markup.DB_END and i + 1 < len(tokens):
                assert tok.labels[i + 1] != IGNORE
        assert tokenizer.decode(tok.ids[tok.org], skip_special_tokens=False).replace(" ", "") == markup.strip(doc).replace(" ", "")


def test_block_boundaries_keep_masks(tokenizer, corpora, tmp_path):
    docs = documents(corpora[:1], "lmlm")[:40]
    meta = build_dataset(corpora[:1], tokenizer, "lmlm", tmp_path / "ds", block_size=17)
    ds = PackedDataset(tmp_path / "ds")
    flat_ids = np.concatenate([ds[i]["input_ids"] for i in range(len(ds))])
    flat_labels = np.concatenate([ds[i]["labels"] for i in range(len(ds))])
    tokens = tokenizer.convert_ids_to_tokens(flat_ids.tolist())
    assert (flat_labels == IGNORE).tolist() == [m or t == tokenizer.pad_token for m, t in zip(reference_labels(tokens), tokens)]
    cut = [b for b in range(1, len(ds)) if (ds[b - 1]["labels"][-1] == IGNORE and ds[b]["labels"][0] == IGNORE)]
    assert cut, "no lookup straddles a block boundary at block size 17"
    assert meta["counts"]["documents"] == len(documents(corpora[:1], "lmlm")) > len(docs)


def test_standard_blocks_have_no_lookup_tokens(tokenizer, corpora, tmp_path):
    build_dataset(corpora, tokenizer, "standard", tmp_path / "std")
    ds = PackedDataset(tmp_path / "std")
    assert not np.isin(np.asarray(ds.ids), list(lookup_token_ids(tokenizer).values())).any()
    real = np.asarray(ds.ids) != tokenizer.pad_token_id
    assert (np.asarray(ds.labels)[real] != IGNORE).all()


def test_real_data_builds_in_both_modes_and_reports_counts(tokenizer, shared, tmp_path):
    cleaned = sorted(shared.glob("*_cleaned.json"))
    for mode in ("lmlm", "standard"):
        meta = build_dataset(cleaned, tokenizer, mode, tmp_path / mode)
        counts = meta["counts"]
        print(mode, counts)
        assert counts["total"] == counts["t_org"] + counts["lookup_call"]
        assert (counts["value"] > 10_000) == (mode == "lmlm")
    assert json.loads((tmp_path / "lmlm" / "meta.json").read_text())["counts"]["t_org"] > 0


def test_dataset_from_another_tokenizer_is_refused(tokenizer, corpora, tmp_path):
    build_dataset(corpora[:1], tokenizer, "lmlm", tmp_path / "ds")
    other = train_tokenizer(documents(corpora[:1], "lmlm"), vocab_size=600)
    with pytest.raises(LmlmError, match="another tokenizer"):
        PackedDataset(tmp_path / "ds").check_tokenizer(other)
    PackedDataset(tmp_path / "ds").check_tokenizer(tokenizer)


def test_label_document_by_hand():
    special = {markup.DB_ENTITY: 10, markup.DB_RELATIONSHIP: 11, markup.DB_RETURN: 12, markup.DB_END: 13}
    ids = np.array([5, 1, 10, 6, 11, 7, 12, 8, 9, 13, 8, 9])
    out = label_document(ids, special, space_id=1)
    assert (out.labels == IGNORE).tolist() == [False] * 7 + [True, True, True] + [False, False]
    assert out.org.tolist() == [True] + [False] * 9 + [True, True]


def test_cli_pipeline(tmp_path):
    run_cli("world", "--out", tmp_path / "w", "--people", "40", "--seed", "1", check=True)
    run_cli("annotate", tmp_path / "w" / "corpus.jsonl", "--kb", tmp_path / "w" / "kb.json", "--out", tmp_path / "a.jsonl", check=True)
    run_cli("clean", tmp_path / "a.jsonl", "--out", tmp_path / "c.jsonl", check=True)
    run_cli("tokenizer", "train", tmp_path / "c.jsonl", "--vocab-size", "600", "--out", tmp_path / "tok", check=True)
    proc = run_cli("data", "build", tmp_path / "c.jsonl", "--tokenizer", tmp_path / "tok", "--mode", "lmlm", "--out", tmp_path / "ds", "--json", check=True)
    assert json.loads(proc.stdout.splitlines()[-1])["value"] > 0
