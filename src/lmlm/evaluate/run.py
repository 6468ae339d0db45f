"""``run_eval``: one evaluation suite on a checkpoint, as ``lmlm eval`` runs it. ``EvalConfig`` holds its
options; this module imports torch only when a suite runs, so the CLI can read ``EvalConfig`` for its flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lmlm.errors import LmlmError
from lmlm.evaluate.protocols import PROTOCOLS

SUITES = ("ppl", "completion", "factuality", "forget", "inject")


@dataclass(kw_only=True)
class EvalConfig:
    suite: str = field(metadata={"positional": True, "choices": SUITES, "help": "the suite to run"})
    model: str = field(metadata={"help": "an HF checkpoint folder"})
    data: str = field(metadata={"help": "annotated documents (ppl), completion prompts (completion, forget, inject), "
                                        "bio prompts (factuality)"})
    kb: str | None = field(default=None, metadata={"help": "knowledge base: evaluates as an LMLM; without it, as a Standard model"})
    limit: int | None = field(default=None, metadata={"help": "evaluate the first this many rows", "ge": 0})
    dynamic: bool = field(default=True, metadata={"help": "skip dynamic perplexity (it generates)", "flag": "--no-dynamic"})
    judge_url: str | None = field(default=None, metadata={
        "help": "factuality on real data: an OpenAI-compatible endpoint whose LLM judges the atomic facts"})
    judge_model: str | None = field(default=None, metadata={"help": "the judge's model name (with --judge-url)"})
    protocol: str = field(default="ours", metadata={
        "choices": PROTOCOLS, "help": "completion, inject and factuality: our settings and scoring, or the reference's "
                                      "(its eval_trex.py and eval_factscore.py; README, Evaluation)"})
    out: str | None = field(default=None, metadata={"help": "write report.json, report.md and charts here"})


def run_eval(cfg: EvalConfig, options: dict | None = None) -> dict:
    """Run ``cfg.suite``; write its report to ``cfg.out`` if given. ``options`` are generation options
    (``GenerationConfig`` fields) that override the suite's own choices. Returns {"metrics", "records"}."""
    from lmlm.corpus import read_corpus
    from lmlm.engine import LMLM
    from lmlm.evaluate.report import write_report

    options = options or {}
    _check_combination(cfg, options)
    rows = read_corpus(cfg.data, require=()).examples
    no_db = options.get("use_db") is False
    lmlm = LMLM.from_pretrained(cfg.model, kb=cfg.kb, use_lookups=cfg.kb is not None or no_db)
    result = _run_suite(cfg, lmlm, rows, options)
    if cfg.out:
        side = "lmlm" if lmlm.kb is not None or no_db else "standard"
        name = cfg.suite + ("_no_db" if no_db else "") + ("_reference" if cfg.protocol == "reference" else "")
        write_report({side: {name: result["metrics"]}, "records": result["records"]}, cfg.out,
                     title=f"lmlm eval {cfg.suite} ({cfg.protocol} protocol{', database off' if no_db else ''})")
    return result


def _check_combination(cfg: EvalConfig, options: dict) -> None:
    if cfg.judge_url and not cfg.judge_model:
        raise LmlmError("--judge-url needs --judge-model")
    if cfg.protocol == "reference" and cfg.suite in ("ppl", "forget"):
        raise LmlmError(f"--protocol reference: the reference has no protocol of its own for the {cfg.suite} suite "
                        "(it has one for completion, inject and factuality)")
    if cfg.suite == "ppl" and (ignored := sorted(set(options) - {"use_db"})):
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise LmlmError(f"{flags}: the ppl suite scores the text as it stands (its dynamic calls are greedy), so generation options do not apply")
    if options.get("use_db") is False and cfg.suite == "forget":
        raise LmlmError("--no-db: the forget suite runs with the database off already (forget_del_off)")


def _run_suite(cfg: EvalConfig, lmlm, rows: list[dict], options: dict) -> dict:
    from lmlm.evaluate import suites

    first = slice(None, cfg.limit)
    if cfg.suite == "ppl":
        return suites.perplexity(lmlm, rows, dynamic=cfg.dynamic, max_docs=cfg.limit, use_db=options.get("use_db", True))
    if cfg.suite in ("completion", "inject"):
        prompts = [r for r in rows if cfg.suite == "completion" or r.get("split") == "inject"][first]
        return suites.completion(lmlm, prompts, protocol=cfg.protocol, **options)
    if cfg.suite == "factuality":
        judge = _judge(cfg)
        return suites.factuality(lmlm, rows[first], judge=judge, extract_facts=None if judge else _world_facts(), protocol=cfg.protocol,
                                 **options)
    if lmlm.kb is None:
        raise LmlmError("the forget suite needs --kb")
    return suites.forgetting(lmlm, [r for r in rows if r.get("split") == "forget"][first],
                             [r for r in rows if r.get("split") == "retain"][first], **options)


def _judge(cfg: EvalConfig):
    if not cfg.judge_url:
        return None
    from lmlm.evaluate.judge import LLMJudge

    return LLMJudge(cfg.judge_url, cfg.judge_model, os.environ.get("OPENAI_API_KEY", "EMPTY"))


def _world_facts():
    """Without a judge, the bios are scored exactly: they are the synthetic world's, read by its templates."""
    from lmlm.world import atomic_facts

    return atomic_facts
