"""Tokenizers with the four lookup tokens as single special tokens, saved in HF format.

Either train a byte-level BPE on a corpus with ``tokenizers``, or extend an existing HF tokenizer.
Trained tokenizers carry bos, eos, pad and an unk token: the reference's ``LlamaForLMLM`` calls
``convert_tokens_to_ids("<|end_of_text|>")`` and expects an int back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from lmlm.errors import LmlmError
from lmlm.markup import SPECIAL_TOKENS

BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|unk|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE trained on ``texts``, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, PAD, UNK, *SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(texts, trainer=trainer)
    # Every encoded text opens with bos, as Llama's do: a prompt's first word then has context, the same
    # as a document's first word in training, and a name there is copied like a name anywhere else.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=list(SPECIAL_TOKENS), clean_up_tokenization_spaces=False,
    )


def extend_tokenizer(base: str | os.PathLike):
    """An existing HF tokenizer with the lookup tokens added as special tokens (and a pad token if it had none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)}, replace_additional_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def load_tokenizer(path: str | os.PathLike, require_lookup_tokens: bool = True):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise LmlmError(f"{path}: cannot load a tokenizer ({e})") from None
    if require_lookup_tokens:
        check_lookup_tokens(tokenizer, path)
    return tokenizer


def check_lookup_tokens(tokenizer, where) -> None:
    """Refuse a tokenizer in which a lookup token is missing or not a single token."""
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != token:
            raise LmlmError(f"{where}: the tokenizer has no single token for {token}; build one with 'lmlm tokenizer train'")


def lookup_token_ids(tokenizer) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}


def fingerprint(tokenizer) -> str:
    """A digest of the vocabulary and merges, so a dataset built with another tokenizer is recognised."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
