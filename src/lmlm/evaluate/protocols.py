"""The evaluation protocols: ours, and the reference's (kilian-group/LMLM, ``experiment/eval/eval_factscore.py``
with ``scripts/eval/eval_factscore.sh``, and ``experiment/eval/eval_trex.py``). A protocol is a named preset of
generation settings (``GenerationConfig`` fields) plus a scoring rule; options given on the command line still
override a preset. The reference's T-REx run also has a procedure of its own (``lmlm.evaluate.trex``).
"""

from __future__ import annotations

PROTOCOLS = ("ours", "reference")

# ours: 96 tokens, the default biases (+4/+2), repetition penalty 1.2 and 5 lookups; a bio stops at a failed lookup
OURS_FACTUALITY = {"max_new_tokens": 96, "fallback": "abstain"}

# eval_factscore.sh with --enable_dblookup: greedy, repetition penalty 1.2, logit bias +5 on <|db_entity|> and +2 on
# the other lookup tokens, no lookup cap, 256 tokens counted without the lookups and with the prompt (the raw text
# stops at the context, 1024 there), and a DatabaseLookupError (no fact above the threshold) ends the bio
REFERENCE_FACTUALITY = {"repetition_penalty": 1.2, "entity_bias": 5.0, "lookup_bias": 2.0, "max_lookups": 1000,
                        "lookup_free_budget": 256, "fallback": "abstain"}

# the same script without --enable_dblookup (a Standard model, or an LMLM with its database off): no logit bias,
# no stop at <|db_return|>, 256 new tokens
REFERENCE_FACTUALITY_NO_DB = {"repetition_penalty": 1.2, "entity_bias": 0.0, "lookup_bias": 0.0, "max_lookups": 1000,
                              "max_new_tokens": 256}

FACTSCORE_GAMMA = 10  # factscorer.py's length penalty: exp(1 - gamma / n) for a bio of n <= gamma facts


def factuality_settings(protocol: str, prompt_tokens: int, context: int | None, answers_calls: bool) -> dict:
    """The generation settings of the factuality suite under ``protocol``, for prompts of up to ``prompt_tokens``
    tokens and a model whose context holds ``context``. The reference's runs with lookups generate until the
    lookup-free budget or the context ends them: ``max_new_tokens`` is what the context leaves."""
    if protocol == "ours":
        return dict(OURS_FACTUALITY)
    if not answers_calls:
        settings = dict(REFERENCE_FACTUALITY_NO_DB)
        raw = settings["max_new_tokens"]
    else:
        settings = dict(REFERENCE_FACTUALITY)
        raw = 1024
    room = (context or 10**9) - prompt_tokens
    return {**settings, "max_new_tokens": max(1, min(raw, room))}
