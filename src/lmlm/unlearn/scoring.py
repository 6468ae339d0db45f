"""Teacher-forced scoring of answers: the mean NLL of an answer's tokens given the question, and the share of
the stated value's tokens that are the model's greedy choice (1: greedy decoding would state the value).

An LMLM answers with its call in context: the gold call (entity and relation, as static perplexity has
them) and the value the KB returns for it, or "unknown" where the KB has none (the engine's ``unknown``
fallback). The call and the returned value are context, not scored: only the answer's original-text tokens
(T_org) are, for an LMLM as for a Standard model, so the two are scored on the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lmlm.data import label_document
from lmlm.engine.calls import choose_value
from lmlm.tokenizer import lookup_token_ids
from lmlm.unlearn.questions import Answer, Question


@dataclass(frozen=True)
class Text:
    """A text to score from character ``start`` on; ``value`` is the character span checked greedily."""

    text: str
    start: int
    value: tuple[int, int] = (0, 0)


@dataclass
class Scores:
    nll: np.ndarray  # summed NLL of each text's scored tokens
    tokens: np.ndarray  # scored tokens per text
    greedy: np.ndarray  # the share of the value span's tokens that are the model's argmax

    @property
    def loss(self) -> np.ndarray:
        """Mean NLL per scored token of each text."""
        return self.nll / np.maximum(self.tokens, 1)


def answer_text(question: Question, answer: Answer, kb) -> Text:
    """The question and an answer, with the LMLM's call answered by ``kb`` (None: a Standard model, or lookups off)."""
    returned = None if kb is None else choose_value(kb.lookup(answer.entity, answer.relation), "unknown").value
    text = question.question + " " + answer.text(returned)
    end = len(text) - len(answer.after)
    return Text(text, len(question.question), (end - len(answer.value), end))


@torch.no_grad()
def score(model, tokenizer, texts: list[Text], batch_size: int = 64) -> Scores:
    """Teacher-forced scores of ``texts``, in batches of right-padded rows."""
    model.eval()
    rows = [_encode(tokenizer, t) for t in texts]
    nll, tokens, greedy = np.zeros(len(rows)), np.zeros(len(rows), dtype=int), np.zeros(len(rows))
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(ids) for ids, _, _ in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for r, (row_ids, _, _) in enumerate(batch):
            ids[r, : len(row_ids)], attention[r, : len(row_ids)] = torch.as_tensor(row_ids), 1
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").numpy()
        chosen = (logits.argmax(-1) == ids[:, 1:]).numpy()
        for r, (row_ids, scored, value) in enumerate(batch):
            n = len(row_ids) - 1  # predictions of tokens 1..n
            i = start + r
            nll[i], tokens[i] = token_nll[r, :n][scored[1:]].sum(), scored[1:].sum()
            greedy[i] = chosen[r, :n][value[1:]].mean() if value[1:].any() else 0.0
    return Scores(nll, tokens, greedy)


def _encode(tokenizer, t: Text) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Token ids, the scored mask (T_org tokens from ``start`` on) and the value span's mask."""
    encoded = tokenizer(t.text, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], np.asarray(encoded["offset_mapping"]).reshape(-1, 2)
    space = tokenizer.encode(" ", add_special_tokens=False)
    org = label_document(np.asarray(ids), lookup_token_ids(tokenizer), space[0] if len(space) == 1 else None, tokenizer.bos_token_id).org
    real = offsets[:, 1] > offsets[:, 0]  # bos and eos cover no characters
    scored = org & real & (offsets[:, 1] > t.start)
    value = real & (offsets[:, 1] > t.value[0]) & (offsets[:, 0] < t.value[1])
    return ids, scored, value
