"""Token-level negative log-likelihoods and the perplexity variants built from them (DESIGN.md section 6).

With per-token NLL, a mask of trained tokens (labels != -100) and a mask of T_org (the tokens of
the original text):
    static (oracle)  exp(mean NLL over T_org), gold lookups and values in context
    normalized       exp(sum NLL over every trained token / |T_org|), lookup calls included
    standard         exp(mean NLL over T_org) of a model trained without lookups
Dynamic perplexity needs generation and lives with the evaluation suite.
"""

from __future__ import annotations

import math

import numpy as np
import torch

IGNORE = -100


@torch.no_grad()
def token_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """NLL of each token given the ones before it; position 0 (nothing before it) gets 0."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    return torch.cat([torch.zeros_like(nll[:, :1]), nll], dim=1)


def perplexities(nll: np.ndarray, trained: np.ndarray, org: np.ndarray) -> dict[str, float]:
    """Perplexity variants from flat arrays of per-token NLL and boolean masks."""
    n_org = int(org.sum())
    if n_org == 0:
        return {"static": float("nan"), "normalized": float("nan"), "loss": float("nan"), "t_org": 0}
    return {
        "static": math.exp(float(nll[org].sum()) / n_org),
        "normalized": math.exp(float(nll[trained].sum()) / n_org),
        "loss": float(nll[trained].sum()) / max(int(trained.sum()), 1),
        "t_org": n_org,
    }


@torch.no_grad()
def dataset_perplexities(model, dataset, batch_size: int = 8, max_blocks: int | None = None) -> dict[str, float]:
    """Perplexity variants of ``model`` over a packed dataset (teacher forcing, gold lookups).
    The first token of each block has no context and is left out of every sum."""
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset) if max_blocks is None else min(len(dataset), max_blocks)
    nll, trained, org = [], [], []
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        ids = torch.as_tensor(np.stack([it["input_ids"] for it in items]), device=device)
        nll.append(token_nll(model, ids).cpu().numpy())
        trained.append(np.stack([it["labels"] for it in items]) != IGNORE)
        org.append(np.stack([it["org_mask"] for it in items]).astype(bool))
        trained[-1][:, 0] = org[-1][:, 0] = False
    flat = lambda parts: np.concatenate([p.ravel() for p in parts])  # noqa: E731
    return perplexities(flat(nll), flat(trained), flat(org))
