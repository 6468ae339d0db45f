"""``reference_loop``: the naive loop the reference implementation runs (restart ``generate()`` on the full
token ids after each lookup): the correctness anchor for greedy decoding, and the baseline of
``benchmarks/generate_speed.py``."""

from __future__ import annotations

import torch

from lmlm.engine.calls import choose_value, encode_text, query_of
from lmlm.engine.config import GenerationConfig, LookupTokens
from lmlm.engine.sampling import process_logits


@torch.no_grad()
def reference_loop(model, tokenizer, kb, prompt: str, cfg: GenerationConfig | None = None) -> list[int]:
    """The reference's way: HF ``generate()`` until <|db_return|>, look up, append, restart on the full ids.
    Returns the generated token ids (greedy decoding only)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    cfg = cfg or GenerationConfig()
    tokens = LookupTokens(tokenizer)
    vocab = model.get_output_embeddings().weight.shape[0]

    ids = tokenizer.encode(prompt)
    prompt_len = len(ids)

    class Shared(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen = torch.zeros(input_ids.shape[0], vocab, dtype=torch.bool, device=input_ids.device).scatter(1, input_ids, True)
            new_tokens = torch.full((input_ids.shape[0],), input_ids.shape[1] - prompt_len)
            return process_logits(scores, seen, (input_ids == tokens.ret).sum(1), tokens, cfg, new_tokens)

    stops = [tokenizer.eos_token_id, *cfg.stop_token_ids] + ([tokens.ret] if cfg.answers_calls else [])
    while len(ids) - prompt_len < cfg.max_new_tokens:
        if ids[-1] == tokens.ret and cfg.answers_calls:  # a call to answer: the model's, or the one that ends the prompt
            entity, relation, _ = query_of(ids, tokens, tokenizer)
            chosen = choose_value(kb.lookup(entity, relation, mode=cfg.lookup_mode), cfg.fallback)
            ids += (encode_text(tokenizer, " " + chosen.value) if chosen.value else []) + [tokens.end]
            if chosen.abstains:
                break
            continue
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=cfg.max_new_tokens - (len(ids) - prompt_len), do_sample=False,
                             logits_processor=LogitsProcessorList([Shared()]), eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id, repetition_penalty=None)
        ids = out[0].tolist()
        if ids[-1] != tokens.ret or not cfg.answers_calls:
            break
    return ids[prompt_len : prompt_len + cfg.max_new_tokens]
