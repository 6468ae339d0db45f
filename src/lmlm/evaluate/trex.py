"""Knowledge completion as the reference's ``experiment/eval/eval_trex.py`` runs it, on our engine:

1. an LMLM with its database gets " <|db_entity|>" after the prefix and writes the query, 32 tokens at most,
   up to its <|db_return|>;
2. the KB answers it with the fact above the threshold; a call that is not closed in time, or that no fact
   answers (the reference's ``DatabaseLookupError``), is dropped: the continuation follows the bare prefix;
3. the continuation, 32 tokens after the value's <|db_end|> (or after the prefix), stops at the next
   <|db_return|> (unanswered: the reference's generation stops there, with or without its database);
4. scoring: the answer, case-sensitive, is a substring of the first 5 words of the raw continuation
   (``metrics.reference_match``), and teacher-forced precision@1/5/10: the rank of each of the answer's tokens,
   forced after the context the generation built (with the call and its value when the lookup succeeded), with
   <|db_entity|> banned from the ranking when no lookups are answered.

All of it greedy, with no repetition penalty and no logit bias (the reference's ``SamplingParams``).
"""

from __future__ import annotations

import torch

from lmlm.engine import LookupTokens, strip_calls
from lmlm.evaluate.metrics import completion_correct, reference_match

QUERY_TOKENS = 32
CONTINUATION_TOKENS = 32
VALUE_ROOM = 32  # tokens a forced value and its <|db_end|> may take before the continuation's own 32
PRECISION_AT = (1, 5, 10)
FORCED_CALL = " <|db_entity|>"
SETTINGS = {"repetition_penalty": 1.0, "entity_bias": 0.0, "lookup_bias": 0.0}


def reference_completion(model, prompts: list[dict], batch_size: int = 64, lmlm: bool = True, **options) -> dict:
    """The reference's T-REx procedure and scores for ``prompts`` ({"prompt", "answer"}); ``lmlm``: the model
    writes calls (with ``use_db=False`` in ``options``, nobody answers them). Returns {"metrics", "records"}."""
    tokens = LookupTokens(model.tokenizer)
    # a failed lookup drops the call: the KB's fallback is to give nothing (an option given still decides)
    base = {**SETTINGS, "stop_token_ids": (tokens.ret,), "fallback": "abstain", **options, "use_lookups": lmlm}
    prefixes = [p["prompt"].strip() for p in prompts]
    answered = lmlm and model.kb is not None and base.get("use_db", True)
    contexts, continuations = list(prefixes), [None] * len(prompts)
    if answered:
        _look_up(model, prefixes, contexts, continuations, base, batch_size, tokens)
    dropped = [i for i, c in enumerate(continuations) if c is None]
    results = model.generate([prefixes[i] for i in dropped], batch_size=batch_size,
                             **{**base, "use_db": False, "max_new_tokens": CONTINUATION_TOKENS})
    for i, r in zip(dropped, results):
        continuations[i] = r.token_ids
    return _scored(model, prompts, contexts, continuations, answered, tokens)


def _look_up(model, prefixes: list[str], contexts: list[str], continuations: list, base: dict, batch_size: int, tokens: LookupTokens):
    """Steps 1-3 for the calls that the KB answers: their context becomes the prefix with the call and its value,
    and their continuation the tokens after the value's <|db_end|>. The others keep None (the call is dropped)."""
    decode = lambda ids: model.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
    queries = model.generate([p + FORCED_CALL for p in prefixes], batch_size=batch_size,
                             **{**base, "use_db": False, "max_new_tokens": QUERY_TOKENS})
    closed = [i for i, q in enumerate(queries) if q.token_ids[-1:] == [tokens.ret]]
    calls = [prefixes[i] + FORCED_CALL + decode(queries[i].token_ids) for i in closed]
    answers = model.generate(calls, batch_size=batch_size, **{**base, "max_new_tokens": VALUE_ROOM + CONTINUATION_TOKENS})
    for i, call, r in zip(closed, calls, answers):
        if not (r.lookups and r.lookups[0].value) or tokens.end not in r.token_ids:  # no fact above the threshold
            continue
        value_end = r.token_ids.index(tokens.end) + 1
        contexts[i] = call + decode(r.token_ids[:value_end])
        continuations[i] = r.token_ids[value_end : value_end + CONTINUATION_TOKENS]


def _scored(model, prompts: list[dict], contexts: list[str], continuations: list[list[int]], answered: bool, tokens: LookupTokens) -> dict:
    tokenizer, records = model.tokenizer, []
    for p, context, ids in zip(prompts, contexts, continuations):
        ids = [t for t in ids if t != tokens.eos]
        raw = tokenizer.decode(ids, skip_special_tokens=False)
        clean = tokenizer.decode(strip_calls(ids, tokens), skip_special_tokens=True)
        ranks = answer_precision(model, context, p["answer"], banned=() if answered or tokens.entity is None else (tokens.entity,))
        records.append({**p, "context": context, "continuation": raw, "generated": clean, "looked_up": context != p["prompt"].strip(),
                        "exact_match": reference_match(raw, p["answer"]), "correct": completion_correct(clean, p["answer"]), **ranks})
    n = max(len(records), 1)
    metrics = {"exact_match": sum(r["exact_match"] for r in records) / n, "accuracy": sum(r["correct"] for r in records) / n,
               **{f"precision@{k}": sum(r[f"precision@{k}"] for r in records) / n for k in PRECISION_AT},
               "lookup_success": sum(r["looked_up"] for r in records) / n, "n": len(records)}
    return {"metrics": metrics, "records": records}


@torch.no_grad()
def answer_precision(model, context: str, answer: str, banned: tuple[int, ...] = ()) -> dict[str, float]:
    """Teacher-forced precision@k of the answer after ``context`` (``eval_trex.py``'s ``custom_loss_trex_answer``):
    the share of the answer's tokens that are among the model's k likeliest next tokens, ``banned`` tokens left
    out. The answer's tokens are those of "context answer" past the context's own."""
    tokenizer = model.tokenizer
    context_ids = tokenizer.encode(context)
    ids = tokenizer.encode(f"{context} {answer}")
    if len(ids) <= len(context_ids):
        return {f"precision@{k}": 0.0 for k in PRECISION_AT}
    logits = model.model(input_ids=torch.tensor([ids])).logits[0, len(context_ids) - 1 : -1].float()
    if banned:
        logits[:, list(banned)] = float("-inf")
    targets = torch.tensor(ids[len(context_ids) :]).unsqueeze(1)
    return {f"precision@{k}": float((logits.topk(k, dim=-1).indices == targets).any(dim=1).float().mean()) for k in PRECISION_AT}
