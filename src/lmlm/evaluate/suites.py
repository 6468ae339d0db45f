"""The evaluation suites (DESIGN.md section 6). Each returns {"metrics": {...}, "records": [...]}.

An LMLM is an ``LMLM`` (checkpoint + KB); a Standard model is an ``LMLM`` without a KB, run with
lookups off. Prompts for knowledge completion force " <|db_entity|>" after the prefix for an LMLM,
with the space, exactly as the training text has it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from lmlm import markup
from lmlm.engine import LMLM, LookupTokens
from lmlm.engine.cache import cache_keyword
from lmlm.errors import LmlmError, NotFound
from lmlm.evaluate.judge import LLMJudge
from lmlm.evaluate.metrics import FactExtractor, completion_correct, fact_supported, factscore
from lmlm.evaluate.protocols import FACTSCORE_GAMMA, factuality_settings
from lmlm.evaluate.retrieval_sets import content_words, contiguous, value_words
from lmlm.perplexity import perplexities, token_nll

FORCED_CALL = " " + markup.DB_ENTITY
# new tokens for a completion: the call (entity, relation and value, each spelt in full on a small vocabulary) comes
# before the answer's words and shares the budget, which must not cut the answer short
COMPLETION_TOKENS = 64


def _is_lmlm(model: LMLM) -> bool:
    return model.kb is not None


def writes_calls(model: LMLM, options: dict, protocol: str = "ours") -> bool:
    """Is the model run as an LMLM, writing calls? With its KB, yes. With its database off (``use_db=False``), our
    protocol bans lookups, as the forgetting audit's DEL-OFF does (the text shows what the weights know), and the
    reference's lets the model write calls that nobody answers, as its runs without --enable_dblookup do."""
    if options.get("use_db") is False:
        return protocol == "reference"
    return _is_lmlm(model)


# --- knowledge completion ------------------------------------------------------------------------------------


def completion(model: LMLM, prompts: list[dict], max_new_tokens: int = COMPLETION_TOKENS, batch_size: int = 64, protocol: str = "ours",
               force_call: bool = True, **options) -> dict:
    """T-REx-style completion: correct when the answer is in the first 5 words after the prefix. An LMLM has
    " <|db_entity|>" forced after the prefix unless ``force_call`` is off (then it decides where to look up).
    ``protocol="reference"``: the reference's procedure and scoring (``lmlm.evaluate.trex``).
    ``options``: generation options (``GenerationConfig`` fields) over the suite's own, here and in every suite."""
    if protocol == "reference":
        from lmlm.evaluate.trex import reference_completion

        return reference_completion(model, prompts, batch_size=batch_size, lmlm=writes_calls(model, options, protocol), **options)
    lmlm = writes_calls(model, options)
    inputs = [p["prompt"] + (FORCED_CALL if lmlm and force_call else "") for p in prompts]
    results = model.generate(inputs, batch_size=batch_size, **{"max_new_tokens": max_new_tokens, "use_lookups": lmlm, **options})
    records = []
    for p, r in zip(prompts, results):
        records.append({**p, "generated": r.text, "raw": r.raw, "correct": completion_correct(r.text, p["answer"]),
                        "lookups": [x.to_dict() for x in r.lookups]})
    return {"metrics": {"accuracy": _mean(r["correct"] for r in records), "n": len(records)}, "records": records}


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


# --- factual precision of bios -------------------------------------------------------------------------------------


def factuality(model: LMLM, prompts: list[dict], batch_size: int = 32, judge: LLMJudge | None = None,
               extract_facts: FactExtractor | None = None, protocol: str = "ours", **options) -> dict:
    """FactScore-style: the share of atomic facts in generated bios that the ground truth supports:
    read by ``extract_facts`` (the synthetic world's, for its bios) and checked exactly against the prompt's
    ``facts``, or, with ``judge``, judged by an LLM given the prompt's ``facts`` (else the KB's facts about
    the person). The bios are generated with ``protocol``'s settings (``lmlm.evaluate.protocols``); under both,
    an LMLM whose KB has no answer for a call stops, as the reference's FactScore run does, rather than state
    ``top1_anyway``'s nearest fact, which is another fact's value. Both scoring rules are reported: ours, one
    precision over all facts, and the reference's FactScore (length penalty, mean over bios, respond ratio)."""
    if (judge is None) == (extract_facts is None):
        raise LmlmError("factuality needs either a fact extractor (exact scoring) or a judge")
    lmlm = writes_calls(model, options, protocol)
    longest = max((len(model.tokenizer.encode(p["prompt"])) for p in prompts), default=0)
    answers = lmlm and options.get("use_db", True) and options.get("use_lookups", True)
    settings = factuality_settings(protocol, longest, model.engine.context, answers_calls=answers)
    results = model.generate([p["prompt"] for p in prompts], batch_size=batch_size, **{**settings, "use_lookups": lmlm, **options})
    records, supported, total, unjudged, verdicts = [], 0, 0, 0, []
    for p, r in zip(prompts, results):
        bio, judged = f"{p['person']} is{r.text}", ()
        if judge is None:
            facts = [list(f) + [fact_supported(f, p["person"], p["facts"])] for f in extract_facts(bio)]
        else:
            knowledge = list(p["facts"].items()) if p.get("facts") else [(t.relation, t.value) for t in _kb_facts(model, p["person"])]
            judged = judge.judge(p["person"], bio, knowledge)
            unjudged += judged is None
            facts = [list(f) for f in judged or []]
        supported, total = supported + sum(f[-1] for f in facts), total + len(facts)
        verdicts.append(None if judged is None else [bool(f[-1]) for f in facts])  # None: the judge's reply was unreadable
        records.append({"person": p["person"], "bio": bio, "raw": r.raw, "facts": facts, "lookups": [x.to_dict() for x in r.lookups]})
    metrics = {"factual_precision": supported / total if total else 0.0, "facts": total, "facts_per_bio": total / max(len(prompts), 1),
               "bios": len(prompts), **factscore(verdicts, FACTSCORE_GAMMA)}
    if judge is not None:
        metrics["unjudged_bios"] = unjudged
    return {"metrics": metrics, "records": records}


def _kb_facts(model: LMLM, person: str) -> list:
    try:
        return model.kb.facts(person) if model.kb is not None else []
    except NotFound:
        return []


# --- perplexity ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def perplexity(model: LMLM, documents: list[dict], dynamic: bool = True, max_docs: int | None = None,
               dynamic_docs: int | None = None, use_db: bool = True) -> dict:
    """Static, normalized and dynamic perplexity of an LMLM over held-out annotated documents; for a
    Standard model, the perplexity of the documents with the lookups stripped (the same T_org).
    Dynamic perplexity generates token by token, so ``dynamic_docs`` may score it on fewer documents.
    Without the database (``use_db=False``) an LMLM is scored as a Standard model is: on the text without calls."""
    docs = documents[:max_docs] if max_docs else documents
    tokenizer, lm = model.tokenizer, model.model
    tokens = LookupTokens(tokenizer)
    lmlm = _is_lmlm(model) and use_db
    nll, trained, org = [], [], []
    for doc in docs:
        text = markup.convert(doc["annotated_text"], "special") if lmlm else markup.strip(doc["annotated_text"])
        ids = tokenizer.encode(text)
        labels_mask, org_mask = _masks(ids, tokens)
        nll.append(token_nll(lm, torch.tensor([ids]))[0].numpy())
        trained.append(labels_mask)
        org.append(org_mask)
    flat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    out = perplexities(flat(nll), flat(trained).astype(bool), flat(org).astype(bool))
    if not lmlm:
        return {"metrics": {"standard": out["static"], "t_org_tokens": out["t_org"]}, "records": []}
    metrics = {"static": out["static"], "normalized": out["normalized"], "t_org_tokens": out["t_org"]}
    if dynamic:
        metrics["dynamic"] = _dynamic_perplexity(model, docs[:dynamic_docs] if dynamic_docs else docs)
    return {"metrics": metrics, "records": []}


def _masks(ids: list[int], tokens: LookupTokens) -> tuple[np.ndarray, np.ndarray]:
    """Trained-token and T_org masks of one document; the first token (no context) is in neither."""
    from lmlm.data import label_document

    special = {markup.DB_ENTITY: tokens.entity, markup.DB_RELATIONSHIP: tokens.relationship, markup.DB_RETURN: tokens.ret, markup.DB_END: tokens.end}
    labelled = label_document(np.asarray(ids), special, tokens.space)
    trained, org = labelled.labels != -100, labelled.org.copy()
    trained[0] = org[0] = False
    return trained, org


@torch.no_grad()
def _dynamic_perplexity(model: LMLM, docs: list[dict], max_call_tokens: int = 24) -> float:
    """The model reads the original text token by token; wherever its most likely continuation is a
    call (<|db_entity|>, or the lone space that precedes one in the training text), it writes the call
    itself (greedy), the KB answers, and reading goes on. The NLL is taken over the original tokens
    only, in the context the model built."""
    from transformers import DynamicCache

    tokenizer, lm, kb = model.tokenizer, model.model, model.kb
    tokens = LookupTokens(tokenizer)
    keyword = cache_keyword(lm)
    step = lambda ids, cache: lm(input_ids=torch.tensor([ids]), **{keyword: cache}, use_cache=True).logits[0, -1]  # noqa: E731
    total, count = 0.0, 0
    for doc in docs:
        plain_ids = tokenizer.encode(markup.strip(doc["annotated_text"]))
        cache = DynamicCache()
        logits = step(plain_ids[:1], cache)
        calls = 0
        for target in plain_ids[1:]:
            if calls < 8 and int(logits.argmax()) in (tokens.entity, tokens.space):
                lead = [tokens.space] if int(logits.argmax()) == tokens.space else []
                after_lead = step(lead, cache) if lead else logits
                if int(after_lead.argmax()) == tokens.entity:
                    calls += 1
                    logits = _write_call(lm, tokenizer, kb, tokens, cache, max_call_tokens, keyword)
                elif lead:
                    cache.crop(-1)  # not a call after all: forget the space
            total += float(-torch.log_softmax(logits.float(), -1)[target])
            count += 1
            logits = step([target], cache)
    return math.exp(total / count) if count else float("nan")


def _write_call(lm, tokenizer, kb, tokens: LookupTokens, cache, max_tokens: int, keyword: str):
    """Feed <|db_entity|>, let the model write the query greedily, answer it, feed the value and <|db_end|>;
    ``keyword`` is the forward's name for the cache (``cache_keyword``)."""
    from lmlm.engine import choose_value, encode_text, query_of

    written = [tokens.entity]
    logits = lm(input_ids=torch.tensor([[tokens.entity]]), **{keyword: cache}, use_cache=True).logits[0, -1]
    while written[-1] != tokens.ret and len(written) < max_tokens:
        written.append(int(logits.argmax()))
        logits = lm(input_ids=torch.tensor([[written[-1]]]), **{keyword: cache}, use_cache=True).logits[0, -1]
    if written[-1] == tokens.ret:
        entity, relation, _ = query_of(written, tokens, tokenizer)
        value = choose_value(kb.lookup(entity, relation), "top1_anyway").value
        forced = encode_text(tokenizer, " " + value) + [tokens.end]
    else:
        forced = [tokens.end]
    return lm(input_ids=torch.tensor([forced]), **{keyword: cache}, use_cache=True).logits[0, -1]


# --- forgetting --------------------------------------------------------------------------------------------------------


def _private_copy(kb, folder: Path):
    """A copy of ``kb`` in ``folder`` for the audit to erase facts from: the file and its indexes, or, for a shared
    KB (which the audit must never edit), its rows and vectors migrated into a SQLite file."""
    from lmlm.kb import SqliteKB

    if isinstance(kb, SqliteKB):
        copy = folder / kb.path.name
        kb.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(kb.path, copy)
        for index_file in kb.path.parent.glob(kb.path.name + ".*.faiss"):
            shutil.copy(index_file, folder / index_file.name)
    else:
        from lmlm.kb.migrate import migrate

        copy = folder / "kb.sqlite"
        migrate(kb.store.url, copy)
    return SqliteKB(copy, encoder=kb.encoder)


def forgetting(model: LMLM, forget_prompts: list[dict], retain_prompts: list[dict], **options) -> dict:
    """The audit: FULL (KB intact), DEL-ON (the forget set's facts deleted, lookups on) and DEL-OFF
    (lookups off) on the forget set, and the retain set before and after. Leakage under DEL-ON counts
    correct answers whose looked-up value came from another fact (a near neighbour) and correct
    answers given with no lookup supplying them (the weights)."""
    kb = model.kb
    full_forget, full_retain = completion(model, forget_prompts, **options), completion(model, retain_prompts, **options)
    with tempfile.TemporaryDirectory() as tmp:
        deleted = _private_copy(kb, Path(tmp))
        for person in sorted({p["person"] for p in forget_prompts}):
            deleted.forget(person, exact=True)  # exactly the forget-set person: a shortened name could also fit retain-set people
        del_model = LMLM(model.model, model.tokenizer, deleted)
        del_forget, del_retain = completion(del_model, forget_prompts, **options), completion(del_model, retain_prompts, **options)
        deleted.close()
    off_model = LMLM(model.model, model.tokenizer, None)
    del_off = completion(off_model, forget_prompts, **options)
    near, weights = 0, 0
    for record in del_forget["records"]:
        if record["correct"]:
            if any(x["value"] and completion_correct(x["value"], record["answer"], 99) for x in record["lookups"]):
                near += 1
            else:
                weights += 1
    metrics = {
        "forget_full": full_forget["metrics"]["accuracy"],
        "forget_del_on": del_forget["metrics"]["accuracy"],
        "forget_del_off": del_off["metrics"]["accuracy"],
        "retain_full": full_retain["metrics"]["accuracy"],
        "retain_del_on": del_retain["metrics"]["accuracy"],
        "leaked_near_neighbour": near,
        "leaked_weights_del_on": weights,
        "n_forget": len(forget_prompts),
        "n_retain": len(retain_prompts),
    }
    records = [{"setting": "del_on", **r} for r in del_forget["records"]] + [{"setting": "del_off", **r} for r in del_off["records"]]
    return {"metrics": metrics, "records": records}


# --- call accuracy ---------------------------------------------------------------------------------------------


def call_accuracy(model: LMLM, documents: list[dict], constrain: str = "off", margin: float = 5.0, max_call_tokens: int = 32,
                  relation_prior: float = 0.0, mention_prior: float = 0.0) -> dict:
    """How often the model's own call finds the gold fact: each annotated document is teacher-forced up to each
    gold call's <|db_entity|>, the model writes the entity and relation greedily (under ``constrain``, with the
    priors), the call is looked up in a KB of that document's gold facts, and the value is scored against the
    gold value. ``hit_rate`` is the share of calls the KB answered (a match, not the fallback); ``chance`` what a
    call that named one of its document's (entity, relation) pairs at random would score."""
    from lmlm.engine import GenerationConfig, LookupEngine
    from lmlm.kb import SqliteKB

    if model.kb is None:
        raise LmlmError("call accuracy needs the model's KB (its encoder embeds each document's gold facts)")
    # a long document keeps its last tokens before the call: the call's context is what matters
    cfg = GenerationConfig(max_new_tokens=max_call_tokens, constrain_lookups=constrain, constrain_margin=margin, fallback="unknown",
                           ngram_drafts=False, truncate_prompt=True, relation_prior=relation_prior, mention_prior=mention_prior)
    records, scored = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, doc in enumerate(documents):
            text = markup.convert(doc["annotated_text"], "special")
            gold, prompts = markup.triplets(text), _prompts_at_calls(text)
            if not gold or len(gold) != len(prompts):  # a malformed call: its place in the text is unclear
                continue
            with SqliteKB(Path(tmp) / f"doc{n}.sqlite", encoder=model.kb.encoder, create=True) as kb:
                kb.import_triplets(gold)
                kb.embed()
                results = LookupEngine(model.model, model.tokenizer, kb).generate(prompts, cfg)
            values_by_pair = _values_by_pair(gold)
            records += [{**_scored_call(fact, result), "chance": _chance(fact, values_by_pair)} for fact, result in zip(gold, results)]
            scored += 1
    return {"metrics": {"call_accuracy": _mean(r["right"] for r in records), "call_hit_rate": _mean(r["hit"] for r in records),
                        "chance": _mean(r["chance"] for r in records), "calls": len(records), "documents": scored}, "records": records}


def _values_by_pair(facts: list[tuple[str, str, str]]) -> dict[tuple[str, str], set[str]]:
    values: dict[tuple[str, str], set[str]] = {}
    for entity, relation, value in facts:
        values.setdefault((entity, relation), set()).add(value)
    return values


def _chance(fact: tuple[str, str, str], values_by_pair: dict[tuple[str, str], set[str]]) -> float:
    """The share of the document's (entity, relation) pairs that hold a value agreeing with the fact's."""
    return sum(any(values_agree(held, fact[2]) for held in values) for values in values_by_pair.values()) / len(values_by_pair)


def values_agree(written: str, gold: str) -> bool:
    """DESIGN 6c's comparison: equal once normalized, or one holds the other as whole words that say more than
    stopwords ("1961" and "in 1961", "Łódź" and "Lodz"; not "5" and "5,000", nor "the" and "the Beatles"). A value
    of symbols alone, which normalizing empties, agrees only with the same text."""
    written_words, gold_words = value_words(written), value_words(gold)
    if not written_words or not gold_words:
        return bool(written.strip()) and written.strip().casefold() == gold.strip().casefold()
    shorter, longer = sorted((written_words, gold_words), key=len)
    return written_words == gold_words or (bool(content_words(shorter)) and contiguous(shorter, longer))


def _prompts_at_calls(text: str) -> list[str]:
    """The text up to and with each call's <|db_entity|>."""
    ends, at = [], text.find(markup.DB_ENTITY)
    while at >= 0:
        ends.append(at + len(markup.DB_ENTITY))
        at = text.find(markup.DB_ENTITY, ends[-1])
    return [text[:end] for end in ends]


def _scored_call(fact: tuple[str, str, str], result) -> dict:
    entity, relation, value = fact
    call = result.lookups[0] if result.lookups else None  # the call the prompt opened is the row's first
    hit = call is not None and call.triplet_id is not None and call.tier != "nearest"
    right = hit and values_agree(call.value, value)
    return {"gold": [entity, relation, value], "written": [call.entity, call.relation, call.value] if call else None,
            "hit": hit, "right": right}
