"""The ``lmlm`` command: parses arguments and calls the stages. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from lmlm.errors import LmlmError


def _markup_check(args) -> None:
    from lmlm.corpus import check_corpus, read_corpus

    reports = [check_corpus(read_corpus(path)) for path in args.files]
    if args.json:
        for report in reports:
            print(json.dumps(report, ensure_ascii=False))
        return
    print(f"{'file':<52} {'examples':>8} {'lookups':>8} {'repaired':>8} {'malformed':>9} {'fidelity':>8}")
    for r in reports:
        fidelity = "n/a" if r["fidelity"] is None else f"{r['fidelity']:.3f}"
        name = r["file"] if len(r["file"]) <= 52 else "…" + r["file"][-51:]
        print(f"{name:<52} {r['examples']:>8} {r['lookups']:>8} {r['repaired']:>8} {r['malformed']:>9} {fidelity:>8}")
        for m in r["malformed_first"]:
            print(f"    example {m['example']} offset {m['offset']}: {m['reason']}: {m['snippet'][:60]!r}")
        if r["malformed"] > len(r["malformed_first"]):
            print(f"    … and {r['malformed'] - len(r['malformed_first'])} more malformed")


def _markup_convert(args) -> None:
    from lmlm.corpus import convert_corpus

    report = convert_corpus(args.input, args.to, args.out)
    print(f"wrote {report['examples']} examples to {report['file']} ({report['malformed_dropped']} malformed pieces dropped)")


def _print(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")


def _open_kb(args):
    from lmlm.kb import SqliteKB

    return SqliteKB(args.kb, encoder=getattr(args, "encoder", None))


def _kb_build(args) -> None:
    from lmlm.kb.io import build

    report = build(args.files, args.out, encoder=args.encoder, embed=not args.no_embed)
    for path, stats in report["files"].items():
        print(f"{path}: {stats['added']} added, {stats['duplicates']} duplicates, {stats['invalid']} invalid")
    _print(report["stats"], False)


def _kb_import(args) -> None:
    from pathlib import Path

    from lmlm.kb import SqliteKB
    from lmlm.kb.io import import_files

    out = Path(args.out)
    if not out.exists() or (out.is_file() and out.stat().st_size == 0):
        _kb_build(args)  # a new KB is built aside and renamed into place: a failed import leaves nothing behind
        return
    with SqliteKB(out, encoder=args.encoder) as kb:
        for path, stats in import_files(kb, args.files).items():
            print(f"{path}: {stats['added']} added, {stats['duplicates']} duplicates, {stats['invalid']} invalid")
        if not args.no_embed:
            kb.embed()
        _print(kb.stats(), False)


def _kb_export(args) -> None:
    from lmlm.kb.io import export

    with _open_kb(args) as kb:
        print(f"wrote {export(kb.triplets(), args.out)} triplets to {args.out}")


def _kb_query(args) -> None:
    from lmlm.kb.io import read_queries

    if args.batch:
        pairs = read_queries(args.batch)
    elif args.entity is not None and args.relation is not None:
        pairs = [(args.entity, args.relation)]
    else:
        raise LmlmError("give --entity and --relation, or --batch QUERIES.jsonl")
    with _open_kb(args) as kb:
        for result in kb.lookup_many(pairs, mode=args.mode):
            record = result.to_dict()
            if args.json:
                print(json.dumps(record, ensure_ascii=False))
            else:
                found = f"{record['entity']} / {record['relation']}" if record["value"] is not None else "-"
                print(f"{record['value']!s:<40} {record['tier']:<6} {record['score']:.3f}  {found}")


def _kb_edit(args) -> None:
    with _open_kb(args) as kb:
        if args.command == "add":
            result = vars(kb.add(args.entity, args.relation, args.value))
        elif args.command == "update":
            result = vars(kb.update(args.id, args.value))
        elif args.command == "delete":
            result = vars(kb.delete(args.id))
        else:
            result = {"entity": args.entity, "facts_forgotten": kb.forget(args.entity)}
        _print(result, args.json)


def _kb_stats(args) -> None:
    with _open_kb(args) as kb:
        _print(kb.stats(), args.json)


def _add_kb_commands(stages) -> None:
    kb = stages.add_parser("kb", help="build, query and edit a knowledge base").add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help, kb_arg=True):
        p = kb.add_parser(name, help=help)
        if kb_arg:
            p.add_argument("kb", metavar="KB", help="knowledge base file (SQLite)")
        p.add_argument("--encoder", default=None, help="sentence encoder: a sentence-transformers path or name, default all-MiniLM-L6-v2")
        p.set_defaults(run=run)
        return p

    for name, run, help in (("build", _kb_build, "build a fresh KB from annotated corpora, database JSON or JSONL triplets"),
                            ("import", _kb_import, "add triplets from files to a KB (created if missing)")):
        p = command(name, run, help, kb_arg=False)
        p.add_argument("files", nargs="+", metavar="FILE")
        p.add_argument("--out", required=True, metavar="KB")
        p.add_argument("--no-embed", action="store_true", help="skip computing vectors now (they are computed at the first fuzzy lookup)")
    p = command("export", _kb_export, "write live triplets as database JSON (.json) or JSONL (.jsonl)")
    p.add_argument("--out", required=True)
    p = command("query", _kb_query, "look facts up")
    p.add_argument("--entity")
    p.add_argument("--relation")
    p.add_argument("--batch", metavar="QUERIES.jsonl", help='lines of {"entity", "relation"}; one result line each, in order')
    p.add_argument("--mode", choices=["default", "reference"], default="default")
    p.add_argument("--json", action="store_true")
    p = command("add", _kb_edit, "add a fact")
    for field in ("--entity", "--relation", "--value"):
        p.add_argument(field, required=True)
    p = command("update", _kb_edit, "change a fact's value")
    p.add_argument("id", type=int)
    p.add_argument("--value", required=True)
    p = command("delete", _kb_edit, "delete a fact")
    p.add_argument("id", type=int)
    p = command("forget", _kb_edit, "erase every fact of an entity")
    p.add_argument("--entity", required=True)
    for name in ("add", "update", "delete", "forget"):
        kb.choices[name].add_argument("--json", action="store_true")
    p = command("stats", _kb_stats, "counts, size, encoder")
    p.add_argument("--json", action="store_true")


def _world(args) -> None:
    from lmlm.world import make_world

    _print(make_world(args.out, people=args.people, seed=args.seed, bios_per_person=args.bios), False)


def _annotate(args) -> None:
    from lmlm.annotate import run

    if args.backend == "aligned":
        _print(run.annotate_aligned(args.input, args.out, kb=args.kb), False)
        return
    if not args.model:
        raise LmlmError(f"--backend {args.backend} needs --model")
    from lmlm.annotate.llm import HFBackend, OpenAIBackend

    if args.backend == "openai":
        backend = OpenAIBackend(args.model, base_url=args.base_url, concurrency=args.concurrency, timeout=args.timeout,
                                max_retries=args.max_retries, max_tokens=args.max_tokens)
    else:
        backend = HFBackend(args.model, adapter=args.adapter, batch_size=args.batch_size, max_new_tokens=args.max_tokens)
    _print(run.annotate_llm(args.input, args.out, backend, resume=args.resume, cache=args.cache), args.json)


def _annotator_train(args) -> None:
    from lmlm.annotate.finetune import AnnotatorConfig, train_annotator
    from lmlm.config import load_config, overrides_from

    result = train_annotator(load_config(AnnotatorConfig, args.config, overrides_from(args, AnnotatorConfig)))
    losses = result.pop("losses")
    print(f"trained {result['steps']} steps on {result['examples']} examples ({result['too_long']} too long); "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; adapter in {result['config']['out']}")


def _clean(args) -> None:
    from lmlm.annotate.clean import CleanConfig, clean_examples
    from lmlm.corpus import read_corpus, write_corpus

    corpus = read_corpus(args.input)
    kept, report = clean_examples(corpus.examples, CleanConfig(require_fidelity=not args.no_fidelity))
    if corpus.rejected:
        report["examples_in"] += len(corpus.rejected)
        report["examples_removed"]["rejected_by_annotator"] = len(corpus.rejected)
    write_corpus(args.out, kept, corpus.metadata)
    _print(report, args.json)


def _tokenizer_train(args) -> None:
    from lmlm.data import documents
    from lmlm.tokenizer import extend_tokenizer, train_tokenizer

    if args.base:
        tokenizer = extend_tokenizer(args.base)
    else:
        tokenizer = train_tokenizer(documents(args.files, "lmlm") + documents(args.files, "standard"), vocab_size=args.vocab_size)
    tokenizer.save_pretrained(args.out)
    print(f"saved a tokenizer of {len(tokenizer)} tokens to {args.out}")


def _data_build(args) -> None:
    from lmlm.data import build_dataset
    from lmlm.tokenizer import load_tokenizer

    meta = build_dataset(args.files, load_tokenizer(args.tokenizer), args.mode, args.out, block_size=args.block_size)
    print(f"{meta['blocks']} blocks of {meta['block_size']} tokens in {args.out}")
    _print(meta["counts"], args.json)


def _train(args) -> None:
    from lmlm.config import load_config, overrides_from
    from lmlm.train import TrainConfig, train

    cfg = load_config(TrainConfig, args.config, overrides_from(args, TrainConfig))
    metrics, _ = train(cfg)
    print(json.dumps(metrics))


def _generate(args) -> None:
    from lmlm.engine import LMLM

    lmlm = LMLM.from_pretrained(args.model, kb=args.kb, use_lookups=not args.no_lookups, compile=args.compile, draft_model=args.draft_model)
    options = {"max_new_tokens": args.max_new_tokens, "use_lookups": not args.no_lookups, "fallback": args.fallback,
               "do_sample": args.temperature > 0, "temperature": args.temperature or 1.0, "top_k": args.top_k, "top_p": args.top_p,
               "repetition_penalty": args.repetition_penalty, "max_lookups": args.max_lookups, "truncate_prompt": args.truncate}
    if args.input:
        from lmlm.engine import generate_file

        count = generate_file(lmlm, args.input, args.output, batch_size=args.batch_size, **options)
        print(f"wrote {count} results to {args.output}")
        return
    if not args.prompts:
        raise LmlmError("give prompts, or --input PROMPTS.jsonl --output OUT.jsonl")
    for prompt, result in zip(args.prompts, lmlm.generate(args.prompts, batch_size=args.batch_size, **options)):
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            print(f"{prompt}{result.text}")
            for p in result.lookups:
                print(f"    [{p.tier}] {p.entity} / {p.relation} -> {p.value}")


def _add_generate_command(stages) -> None:
    p = stages.add_parser("generate", help="generate with lookups in the knowledge base")
    p.add_argument("prompts", nargs="*", metavar="PROMPT")
    p.add_argument("--model", required=True, help="an HF checkpoint folder with the lookup tokens")
    p.add_argument("--kb", help="knowledge base file (needed unless --no-lookups)")
    p.add_argument("--input", help='JSONL of {"prompt": ...} lines')
    p.add_argument("--output", help="JSONL: each input line with text, raw and lookups added")
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--no-lookups", action="store_true", help="generate freely, with <|db_entity|> banned")
    p.add_argument("--fallback", choices=["top1_anyway", "unknown", "abstain"], default="top1_anyway")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.2)
    p.add_argument("--max-lookups", type=int, default=5)
    p.add_argument("--truncate", action="store_true", help="keep the last tokens of a prompt that does not fit the context")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoding steps: about a minute once, then faster per token")
    p.add_argument("--draft-model", help="a small checkpoint made by 'lmlm distill' that proposes tokens (greedy, batches of up to 8)")
    p.set_defaults(run=_generate)


def _distill(args) -> None:
    from lmlm.config import load_config, overrides_from
    from lmlm.draft import DistillConfig, distill_checkpoints

    out = distill_checkpoints(load_config(DistillConfig, args.config, overrides_from(args, DistillConfig)))
    print(f"wrote the draft model to {out}")


def _ngrams(args) -> None:
    from lmlm.config import load_config, overrides_from
    from lmlm.ngrams import NgramsConfig, NgramTable, build_ngrams

    out = build_ngrams(load_config(NgramsConfig, args.config, overrides_from(args, NgramsConfig)))
    contexts = len(NgramTable.load(out).next_token)
    print(f"wrote an n-gram table of {contexts:,} contexts to {out}; the engine drafts from it at batch sizes up to 8")


def _add_ngrams_command(stages) -> None:
    from lmlm.config import add_arguments
    from lmlm.ngrams import NgramsConfig

    p = stages.add_parser("ngrams", help="count the training text's n-grams into a checkpoint, for the engine to draft tokens from")
    p.add_argument("--config", help="YAML file of NgramsConfig keys; command-line options override it")
    add_arguments(p, NgramsConfig)
    p.set_defaults(run=_ngrams)


def _add_distill_command(stages) -> None:
    from lmlm.config import add_arguments
    from lmlm.draft import DistillConfig

    p = stages.add_parser("distill", help="fine-tune a small draft model on a model's output, for speculative decoding")
    p.add_argument("--config", help="YAML file of DistillConfig keys; command-line options override it")
    add_arguments(p, DistillConfig)
    p.set_defaults(run=_distill)


def _demo(args) -> None:
    from lmlm.demo import run_demo

    if not args.verbose:  # the stage lines and the progress line tell the story; library INFO lines only with -v
        logging.getLogger("lmlm").setLevel(logging.WARNING)
    run_demo(args.out, quick=args.quick, seed=args.seed)


def _eval(args) -> None:
    from lmlm.corpus import read_corpus
    from lmlm.evaluate import suites
    from lmlm.evaluate.judge import LLMJudge
    from lmlm.evaluate.report import write_report
    from lmlm.engine import LMLM

    if args.judge_url and not args.judge_model:
        raise LmlmError("--judge-url needs --judge-model")
    rows = read_corpus(args.data, require=()).examples
    lmlm = LMLM.from_pretrained(args.model, kb=args.kb, use_lookups=args.kb is not None)
    if args.suite == "ppl":
        result = suites.perplexity(lmlm, rows, dynamic=not args.no_dynamic, max_docs=args.limit)
    elif args.suite in ("completion", "inject"):
        prompts = [r for r in rows if args.suite == "completion" or r.get("split") == "inject"][: args.limit]
        result = suites.completion(lmlm, prompts)
    elif args.suite == "factuality":
        judge = LLMJudge(args.judge_url, args.judge_model, os.environ.get("OPENAI_API_KEY", "EMPTY")) if args.judge_url else None
        result = suites.factuality(lmlm, rows[: args.limit], fallback=args.fallback, judge=judge)
    else:
        if lmlm.kb is None:
            raise LmlmError("the forget suite needs --kb")
        result = suites.forgetting(lmlm, [r for r in rows if r.get("split") == "forget"][: args.limit],
                                   [r for r in rows if r.get("split") == "retain"][: args.limit])
    print(json.dumps(result["metrics"]))
    if args.out:
        side = "lmlm" if lmlm.kb is not None else "standard"
        write_report({side: {args.suite: result["metrics"]}, "records": result["records"]}, args.out, title=f"lmlm eval {args.suite}")


def _add_eval_commands(stages) -> None:
    p = stages.add_parser("demo", help="the end-to-end run on a synthetic world, with a report")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test of the machinery; its models are too briefly trained for the full run's figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also show the library's INFO log lines")
    p.set_defaults(run=_demo)
    p = stages.add_parser("eval", help="run one evaluation suite on a checkpoint")
    p.add_argument("suite", choices=["ppl", "completion", "factuality", "forget", "inject"])
    p.add_argument("--model", required=True)
    p.add_argument("--kb", help="knowledge base: evaluates as an LMLM; without it, as a Standard model")
    p.add_argument("--data", required=True, help="annotated documents (ppl), completion prompts (completion, forget, inject), bio prompts (factuality)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--no-dynamic", action="store_true", help="skip dynamic perplexity (it generates)")
    p.add_argument("--fallback", choices=["top1_anyway", "unknown", "abstain"], default="abstain",
                   help="factuality: what an LMLM says when its KB has no answer (abstain: nothing more)")
    p.add_argument("--judge-url", help="factuality on real data: an OpenAI-compatible endpoint whose LLM judges the atomic facts")
    p.add_argument("--judge-model", help="the judge's model name (with --judge-url)")
    p.add_argument("--out", help="write report.json, report.md and charts here")
    p.set_defaults(run=_eval)


def _add_train_command(stages) -> None:
    from lmlm.config import add_arguments
    from lmlm.train import TrainConfig

    p = stages.add_parser("train", help="pretrain an LMLM or Standard model (the dataset's mode) as an HF checkpoint")
    p.add_argument("--config", help="YAML file of TrainConfig keys; command-line options override it")
    add_arguments(p, TrainConfig)
    p.set_defaults(run=_train)


def _add_data_commands(stages) -> None:
    p = stages.add_parser("world", help="generate a synthetic knowledge world")
    p.add_argument("--out", required=True)
    p.add_argument("--people", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bios", type=int, default=3, help="biographies per train person")
    p.set_defaults(run=_world)

    p = stages.add_parser("annotate", help="insert lookups into plain text")
    p.add_argument("input", metavar="IN", help="corpus (JSON or JSONL) with a 'text' field")
    p.add_argument("--backend", choices=["aligned", "openai", "hf"], default="aligned")
    p.add_argument("--out", required=True, help="annotated corpus; for openai and hf a .jsonl file, appended as results arrive")
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("aligned")
    g.add_argument("--kb", help="known facts: database JSON, JSONL triplets or a KB file; default: each example's own lookups")
    g = p.add_argument_group("openai and hf")
    g.add_argument("--model", help="openai: the endpoint's model name; hf: a model directory, or a LoRA adapter directory")
    g.add_argument("--resume", action="store_true", help="continue --out, skipping the ids already in it")
    g.add_argument("--cache", help="raw-output cache (SQLite); default: OUT.cache.sqlite")
    g.add_argument("--max-tokens", type=int, help="cap on each answer's tokens")
    g = p.add_argument_group("openai")
    g.add_argument("--base-url", help="any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama); the key is read from OPENAI_API_KEY")
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    g.add_argument("--max-retries", type=int, default=6, help="retries of a request on 429, 5xx and timeouts")
    g = p.add_argument_group("hf")
    g.add_argument("--adapter", help="a LoRA adapter directory to apply to --model")
    g.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(run=_annotate)

    from lmlm.annotate.finetune import AnnotatorConfig
    from lmlm.config import add_arguments

    annotator = stages.add_parser("annotator", help="fine-tune an annotator").add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = annotator.add_parser("train", help="LoRA SFT of a causal LM: plain text in, annotated text out (loads as --backend hf)")
    p.add_argument("--config", help="YAML file of the options below; command-line options override it")
    add_arguments(p, AnnotatorConfig)
    p.set_defaults(run=_annotator_train)

    p = stages.add_parser("clean", help="apply the cleaning filters to an annotated corpus")
    p.add_argument("input", metavar="IN")
    p.add_argument("--out", required=True)
    p.add_argument("--no-fidelity", action="store_true", help="keep examples whose stripped text differs from 'text'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_clean)

    tok = stages.add_parser("tokenizer", help="make a tokenizer with the lookup tokens").add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = tok.add_parser("train", help="train a byte-level BPE on corpora, or extend an existing HF tokenizer (--base)")
    p.add_argument("files", nargs="*", metavar="CORPUS")
    p.add_argument("--base", help="an existing HF tokenizer (path) to extend instead of training")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--out", required=True)
    p.set_defaults(run=_tokenizer_train)

    data = stages.add_parser("data", help="build training data").add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = data.add_parser("build", help="tokenize, label and pack annotated corpora")
    p.add_argument("files", nargs="+", metavar="CORPUS")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--mode", choices=["lmlm", "standard"], required=True)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_data_build)


def _serve(args) -> None:
    import os

    from lmlm.serve import ServeConfig, serve

    api_key = args.api_key or os.environ.get("LMLM_API_KEY")
    config = ServeConfig(max_prompt_chars=args.max_prompt_chars, max_batch=args.max_batch, max_new_tokens=args.max_new_tokens,
                         window_ms=args.window_ms, read_only=args.read_only, api_key=api_key, protect=args.protect)
    def announce() -> None:
        print(f"lmlm: serving {args.model} on http://{args.host}:{args.port}/ (API at /v1, page at /)", file=sys.stderr)

    serve(args.model, args.kb, host=args.host, port=args.port, config=config, on_ready=announce)


def _add_serve_command(stages) -> None:
    from lmlm.serve import ServeConfig

    defaults = ServeConfig()
    p = stages.add_parser("serve", help="HTTP API (OpenAI-compatible completions too) and a web page")
    p.add_argument("--model", required=True, help="an LMLM checkpoint directory")
    p.add_argument("--kb", required=True, help="the knowledge base (SQLite file)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--read-only", action="store_true", help="turn the KB write endpoints off")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (also read from LMLM_API_KEY)")
    p.add_argument("--protect", choices=["writes", "all"], default="writes", help="what the API key guards")
    p.add_argument("--max-batch", type=int, default=defaults.max_batch, help="prompts per request and per engine batch")
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help="cap on a request's max_new_tokens")
    p.add_argument("--max-prompt-chars", type=int, default=defaults.max_prompt_chars)
    p.add_argument("--window-ms", type=float, default=defaults.window_ms, help="how long a request waits to be batched with others")
    p.set_defaults(run=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmlm", description="Large Memory Language Models: annotate, build a KB, train, generate, evaluate, serve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    markup = stages.add_parser("markup", help="check and convert lookup markup").add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = markup.add_parser("check", help="report lookups, malformed pieces and fidelity per file")
    check.add_argument("files", nargs="+", metavar="FILE", help="annotated corpus: reference JSON or JSONL")
    check.add_argument("--json", action="store_true", help="print one JSON object per file")
    check.set_defaults(run=_markup_check)
    convert = markup.add_parser("convert", help="re-render annotated_text in the special-token or legacy form")
    convert.add_argument("input", metavar="IN")
    convert.add_argument("--to", choices=["special", "legacy"], required=True)
    convert.add_argument("--out", required=True)
    convert.set_defaults(run=_markup_convert)
    _add_kb_commands(stages)
    _add_data_commands(stages)
    _add_train_command(stages)
    _add_generate_command(stages)
    _add_distill_command(stages)
    _add_ngrams_command(stages)
    _add_eval_commands(stages)
    _add_serve_command(stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lmlm").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        args.run(args)
    except LmlmError as e:
        print(f"lmlm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmlm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
