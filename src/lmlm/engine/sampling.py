"""From logits to tokens, shared by the engine, its draft model and the reference loop: the repetition
penalty, the lookup-token biases and bans, then greedy choice or seeded sampling with temperature, top-k
and top-p."""

from __future__ import annotations

import functools

import torch

from lmlm.engine.config import GenerationConfig, LookupTokens


def process_logits(scores: torch.Tensor, seen: torch.Tensor, lookups_done: torch.Tensor, tokens: LookupTokens, cfg: GenerationConfig,
                   new_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Repetition penalty over the tokens each row has seen, lookup-token biases, the ban on
    <|db_entity|> when lookups are off or a row has used its quota, and on eos before min_new_tokens."""
    scores = scores.float()
    if cfg.repetition_penalty != 1.0:
        penalized = torch.where(scores > 0, scores / cfg.repetition_penalty, scores * cfg.repetition_penalty)
        scores = torch.where(seen, penalized, scores)
    scores = scores + lookup_biases(scores.shape[-1], tokens.entity, (tokens.relationship, tokens.ret, tokens.end),
                                    cfg.entity_bias, cfg.lookup_bias, scores.device)
    # a column is a view, so each ban is one in-place op: at batch 1 the engine's time goes to ops like these
    if tokens.entity is not None:  # a tokenizer without lookup tokens runs with lookups off
        scores[:, tokens.entity].masked_fill_((lookups_done >= cfg.max_lookups) | (not cfg.use_lookups), float("-inf"))
    if cfg.min_new_tokens and new_tokens is not None:
        scores[:, tokens.eos].masked_fill_(new_tokens < cfg.min_new_tokens, float("-inf"))
    return scores


@functools.lru_cache(maxsize=16)
def lookup_biases(vocab: int, entity: int, others: tuple[int, ...], entity_bias: float, lookup_bias: float, device) -> torch.Tensor:
    """The logit bias on the lookup tokens (those the tokenizer has), one row to add to every row of scores."""
    bias = torch.zeros(vocab, device=device)
    for token, value in ((entity, entity_bias), *((t, lookup_bias) for t in others)):
        if token is not None:
            bias[token] = value
    return bias


def choose(scores: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: the best, or a draw after temperature, top-k and top-p."""
    if not cfg.do_sample:
        return scores.argmax(dim=-1)
    scores = scores / max(cfg.temperature, 1e-6)
    if cfg.top_k > 0:
        kth = torch.topk(scores, min(cfg.top_k, scores.shape[-1])).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_scores.softmax(-1) > cfg.top_p
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)


def sampling_generator(seed: int, device) -> torch.Generator:
    """The seeded generator that ``choose`` samples with: ``torch.multinomial`` on an accelerator needs one on
    that device. Meta tensors have no generator of their own; the CPU's serves them."""
    device = torch.device(device)
    return torch.Generator(device="cpu" if device.type == "meta" else device).manual_seed(seed)
