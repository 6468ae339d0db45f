"""How the engine runs a model's forward on the CPU: linear weights stored column-major, and the steps
after the prompt through torch.compile."""

from __future__ import annotations

from collections import Counter

import torch


def compiled(model):
    """The model's forward through torch.compile, for every step after the prompt. It takes about a minute
    once per process, then removes most of the per-step Python overhead that dominates small models, and
    makes wide steps (forced values, drafts to verify) cost little more than one-token steps. Prompts stay
    eager: their widths vary most, and each new width class costs a compile. Freezing makes the weights
    constants of the graph (the engine never trains), so inductor can pre-pack them for the CPU's matmul
    kernels."""
    # every model of one class shares a code object, and with it dynamo's budget of recompiles: a draft
    # model and the width classes of the steps need more than the default 8, or later graphs fall back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(model, dynamic=True, options={"freezing": True})


def column_major_linears(model):
    """Store the model's linear weights transposed in memory, in place: the same values, shapes and state dict.
    On the CPU, MKL multiplies a few rows (the matrix products of batched and drafted steps) by a weight stored
    this way faster than by the usual row-major one, and one row as fast (benchmarks/generate_speed.py).
    Weights shared with another module (tied embeddings) are left as they are: transformers' check of tied
    weights needs them contiguous to save the model."""
    uses = Counter(id(parameter) for _, parameter in model.named_parameters(remove_duplicate=False))
    for linear in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        weight = linear.weight
        if weight.device.type == "cpu" and weight.is_contiguous() and uses[id(weight)] == 1:
            weight.data = weight.data.t().contiguous().t()
