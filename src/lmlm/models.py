"""The model factory: presets by name, as plain HF causal LMs. Nothing else in lmlm assumes Llama.

    micro        ~0.4M (hidden 128, 2 layers): learns a synthetic world's lookups in about a CPU-minute (demo --quick)
    tiny         ~3M parameters (plus embeddings): learns the synthetic world in minutes on 2 CPU cores
    small        ~31M with a 2,048-token vocabulary (47M with 32,000)
    llama2-176m  the reference shape: hidden 512, 8 layers, 8 heads, FFN 11008, vocab 32000
    llama2-382m  the reference shape: hidden 768, 12 layers, 12 heads, FFN 11008, vocab 32000
    gpt2-124m    GPT-2 small (HF GPT2LMHeadModel), with GPT-2's dropout 0.1 as the reference trains it
    gpt2-355m    GPT-2 medium, dropout 0.1
The reference sizes count a 32,000-token vocabulary (Llama 2's); the vocabulary actually used is
the tokenizer's.
"""

from __future__ import annotations

from dataclasses import dataclass

PRESETS: dict[str, dict] = {
    "micro": {"arch": "llama", "hidden": 128, "layers": 2, "heads": 4, "ffn": 384},
    "tiny": {"arch": "llama", "hidden": 256, "layers": 4, "heads": 4, "ffn": 768},
    "small": {"arch": "llama", "hidden": 512, "layers": 8, "heads": 8, "ffn": 1792},
    "llama2-176m": {"arch": "llama", "hidden": 512, "layers": 8, "heads": 8, "ffn": 11008, "vocab": 32000, "tied": False},
    "llama2-382m": {"arch": "llama", "hidden": 768, "layers": 12, "heads": 12, "ffn": 11008, "vocab": 32000, "tied": False},
    "gpt2-124m": {"arch": "gpt2", "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072, "vocab": 50257, "tied": True, "dropout": 0.1},
    "gpt2-355m": {"arch": "gpt2", "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096, "vocab": 50257, "tied": True, "dropout": 0.1},
}


@dataclass
class TokenIds:
    vocab_size: int
    bos: int | None
    eos: int
    pad: int


def model_config(preset: str, tokens: TokenIds, context: int = 1024, use_preset_vocab: bool = False):
    """An HF config for ``preset``; the vocabulary is the tokenizer's unless ``use_preset_vocab``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = PRESETS[preset]
    vocab = p.get("vocab", tokens.vocab_size) if use_preset_vocab else tokens.vocab_size
    ids = {"bos_token_id": tokens.bos, "eos_token_id": tokens.eos, "pad_token_id": tokens.pad}
    if p["arch"] == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(vocab_size=vocab, n_embd=p["hidden"], n_layer=p["layers"], n_head=p["heads"], n_inner=p["ffn"],
                          n_positions=context, resid_pdrop=p["dropout"], embd_pdrop=p["dropout"], attn_pdrop=p["dropout"], tie_word_embeddings=p.get("tied", True), **ids)
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=p["hidden"], num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                       num_key_value_heads=p["heads"], intermediate_size=p["ffn"], max_position_embeddings=context,
                       tie_word_embeddings=p.get("tied", True), rms_norm_eps=1e-5, **ids)


def build_model(preset: str, tokens: TokenIds, context: int = 1024, seed: int = 0):
    """A freshly initialized causal LM of ``preset`` (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model_config(preset, tokens, context))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def check_preset(name: str, flag: str = "--model") -> None:
    """An error naming ``flag`` when ``name`` is not a preset: before a run builds anything for it."""
    from lmlm.errors import LmlmError

    if name not in PRESETS:
        raise LmlmError(f"{flag}: unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
