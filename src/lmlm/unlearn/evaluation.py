"""Forget Quality and Model Utility of one model (with its KB, for an LMLM).

Model Utility, a CPU-scale version of TOFU's (open-unlearning's ``model_utility``: the harmonic mean of
probability, ROUGE and truth ratio on the retain set, on real authors and on world facts) is the harmonic
mean of six parts:

    retain set     probability of the answer; greedy value accuracy (the share of the stated value's tokens
                   that are the model's argmax, teacher-forced: the stand-in for ROUGE-L recall of a generated
                   answer, a share of the reference recovered); truth ratio, ``true_better``
    world facts    probability with options; truth ratio, ``true_better`` (no KB: lookups off, for an LMLM too)
    held-out text  the per-token probability of held-out bios of retain-set people, 1 / perplexity
                   (an LMLM's with its gold lookups in context: 1 / static perplexity)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmlm import markup
from lmlm.unlearn import metrics
from lmlm.unlearn.questions import Question
from lmlm.unlearn.scoring import Text, answer_text, score


@dataclass
class UtilitySets:
    retain: list[Question]
    world_facts: list[Question]
    heldout: list[dict]  # annotated held-out bios


def truth_ratios(model, tokenizer, questions: list[Question], kb, against: str = "paraphrased") -> np.ndarray:
    """Per question: P(perturbed) / P(``against`` answer), length-normalized (``metrics.truth_ratios``)."""
    correct = score(model, tokenizer, [answer_text(q, getattr(q, against), kb) for q in questions]).loss
    perturbed = _perturbed_losses(model, tokenizer, questions, kb)
    return metrics.truth_ratios(correct, perturbed)


def _perturbed_losses(model, tokenizer, questions: list[Question], kb) -> np.ndarray:
    k = len(questions[0].perturbed)
    texts = [answer_text(q, wrong, kb) for q in questions for wrong in q.perturbed]
    return score(model, tokenizer, texts).loss.reshape(len(questions), k)


def forget_quality(model, tokenizer, questions: list[Question], kb, reference_ratios: np.ndarray) -> dict:
    ratios = truth_ratios(model, tokenizer, questions, kb)
    return {"forget_quality": metrics.forget_quality(ratios, reference_ratios), "forget_truth_ratio": metrics.closer_to_one(ratios),
            "truth_ratios": ratios}


def model_utility(model, tokenizer, sets: UtilitySets, kb) -> dict:
    """The six parts and their harmonic mean, ``model_utility``."""
    answers = score(model, tokenizer, [answer_text(q, q.answer, kb) for q in sets.retain])
    world = score(model, tokenizer, [answer_text(q, q.answer, None) for q in sets.world_facts]).loss
    world_wrong = _perturbed_losses(model, tokenizer, sets.world_facts, None)
    heldout = score(model, tokenizer, [_heldout_text(doc, kb is not None) for doc in sets.heldout])
    parts = {
        "retain_probability": metrics.probability(answers.loss),
        "retain_accuracy": float(answers.greedy.mean()),
        "retain_truth_ratio": metrics.true_better(truth_ratios(model, tokenizer, sets.retain, kb)),
        "world_facts_probability": metrics.probability_with_options(world, world_wrong),
        "world_facts_truth_ratio": metrics.true_better(metrics.truth_ratios(world, world_wrong)),
        "heldout_token_probability": float(np.exp(-heldout.nll.sum() / max(heldout.tokens.sum(), 1))),
    }
    return {"model_utility": metrics.harmonic_mean(list(parts.values())), **parts}


def _heldout_text(doc: dict, with_calls: bool) -> Text:
    annotated = doc["annotated_text"]
    return Text(markup.convert(annotated, "special") if with_calls else markup.strip(annotated), 0)
