"""The memorization probe (the paper's figure): the loss on the facts' value tokens of a fixed batch of training
documents, logged every N steps while a model trains.

Each call of an annotated document, ``<|db_return|> Paris<|db_end|> Paris``, holds the value twice. An LMLM never
trains on the first (its labels are -100) and copies the second from it; a Standard model trains on the value
where its text states it (the second, with the call gone). So the probe scores the first for an LMLM and the second
for a Standard model: in both, the value's tokens where nothing in the text gives them away, the model has to have
memorized them. A call whose repeat is not its value's tokens is left out of both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from lmlm import markup
from lmlm.data import documents
from lmlm.errors import LmlmError
from lmlm.tokenizer import lookup_token_ids


@dataclass
class ValueProbe:
    """Token ids of the probe's documents, each with the positions of its value tokens."""
    ids: list[list[int]]
    positions: list[list[int]]

    @classmethod
    def from_corpus(cls, paths: list[str], tokenizer, mode: str, docs: int) -> ValueProbe:
        """The first ``docs`` annotated documents of ``paths`` with a call, as a ``mode`` ("lmlm" or "standard")
        model reads them."""
        special = lookup_token_ids(tokenizer)
        space = tokenizer.encode(" ", add_special_tokens=False)
        probe = cls([], [])
        for text in documents(paths, "lmlm"):
            ids, positions = value_positions(tokenizer.encode(text), special, space[0] if len(space) == 1 else None, mode)
            if positions:
                probe.ids.append(ids)
                probe.positions.append(positions)
            if len(probe.ids) == docs:
                break
        if not probe.ids:
            raise LmlmError(f"{', '.join(map(str, paths))}: no annotated document with a lookup call for the value-loss probe")
        return probe

    @torch.no_grad()
    def loss(self, model) -> float:
        """The mean cross-entropy of the value tokens, the model in eval mode (then back in its mode)."""
        training, device = model.training, next(model.parameters()).device
        model.eval()
        width = max(map(len, self.ids))
        ids = torch.tensor([row + [0] * (width - len(row)) for row in self.ids], device=device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in self.ids], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        rows = torch.tensor([r for r, positions in enumerate(self.positions) for _ in positions], device=device)
        cols = torch.tensor([p for positions in self.positions for p in positions], device=device)
        loss = torch.nn.functional.cross_entropy(logits[rows, cols - 1], ids[rows, cols])
        model.train(training)
        return float(loss)


def value_positions(ids: list[int], special: dict[str, int], space: int | None, mode: str) -> tuple[list[int], list[int]]:
    """(the ids the ``mode`` model reads, the positions in them of the value tokens to score) for one document in
    special-token form. A Standard model reads the document with its calls (and the space before each) removed."""
    calls = _calls(ids, special)
    scored = [(ret, end) for _, ret, end in calls if end > ret + 1 and ids[end + 1 : 2 * end - ret] == ids[ret + 1 : end]]
    if mode == "lmlm":
        return list(ids), [p for ret, end in scored for p in range(ret + 1, end)]
    dropped = {i for start, _, end in calls for i in range(start, end + 1)}
    dropped |= {start - 1 for start, _, _ in calls if start > 0 and ids[start - 1] == space}
    kept = [i for i in range(len(ids)) if i not in dropped]
    index = {i: k for k, i in enumerate(kept)}
    return [ids[i] for i in kept], [index[p] for ret, end in scored for p in range(end + 1, 2 * end - ret)]


def _calls(ids: list[int], special: dict[str, int]) -> list[tuple[int, int, int]]:
    """(index of <|db_entity|>, of <|db_return|>, of <|db_end|>) of each whole call."""
    entity, ret, end = special[markup.DB_ENTITY], special[markup.DB_RETURN], special[markup.DB_END]
    calls, start, returned = [], None, None
    for i, token in enumerate(ids):
        if token == entity:
            start, returned = i, None
        elif token == ret and start is not None:
            returned = i
        elif token == end and returned is not None:
            calls.append((start, returned, i))
            start = returned = None
    return calls


class ValueLoss(TrainerCallback):
    """Logs the probe's value loss (``value_loss``) at the start of a run and every ``every`` steps, through
    ``log`` (the trainer's, which writes ``log.jsonl``)."""

    def __init__(self, probe: ValueProbe, every: int, log: Callable[[dict], None]):
        self.probe, self.every, self.log = probe, every, log

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:  # a resumed run logged its first step before
            self.log({"value_loss": self.probe.loss(model)})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.log({"value_loss": self.probe.loss(model)})
