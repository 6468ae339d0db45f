"""The ``lmlm`` command: parses arguments and calls the stages. No logic of its own.

A stage with a config dataclass takes its options from the dataclass's fields (``lmlm.config``); the
generation options come from ``GenerationConfig`` (``lmlm.options``). A stage's options are declared
only when that stage runs or shows its help, so ``lmlm --help`` and ``lmlm kb ...`` import no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field

from lmlm.config import add_arguments, load_config, overrides_from
from lmlm.errors import LmlmError
from lmlm.options import generation_config, generation_fields


class _Parser(argparse.ArgumentParser):
    """A parser whose options ``declare(parser)`` adds when it is first used: declaring a stage may import its
    config's module, and only the stage that runs needs it."""

    def __init__(self, *args, declare=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._declare = declare

    def declared(self) -> _Parser:
        if self._declare is not None:
            declare, self._declare = self._declare, None
            declare(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        return super(_Parser, self.declared()).parse_known_args(args, namespace)

    def format_usage(self):
        return super(_Parser, self.declared()).format_usage()

    def format_help(self):
        return super(_Parser, self.declared()).format_help()


def _load(cls, args: argparse.Namespace):
    """``cls`` from the YAML file of ``--config`` (for stages that take one) and the options given."""
    return load_config(cls, getattr(args, "config", None), overrides_from(args, cls))


def generation_options(args: argparse.Namespace, surface: str) -> dict:
    """The generation options of ``surface`` on the command line, checked: all of them for ``cli`` (left
    out, the default), only those given for ``eval`` (left out, the suite chooses)."""
    cfg = _load(generation_config(), args)
    return {f.name: getattr(cfg, f.name) for f in generation_fields(surface) if surface == "cli" or getattr(args, f.name) is not None}


def _from_config_file(module: str, name: str):
    """Declares the fields of the config dataclass ``module.name`` as options, after ``--config FILE``."""

    def declare(p: argparse.ArgumentParser) -> None:
        cls = getattr(importlib.import_module(module), name)
        p.add_argument("--config", help=f"YAML file of {name} keys; command-line options override it")
        add_arguments(p, cls)

    return declare


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

    result = train_annotator(_load(AnnotatorConfig, args))
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
    from lmlm.train import TrainConfig, train

    metrics, _ = train(_load(TrainConfig, args))
    print(json.dumps(metrics))


@dataclass(kw_only=True)
class GenerateArgs:
    """``lmlm generate``'s own options; the generation options come from ``GenerationConfig``."""

    prompts: list[str] = field(default_factory=list, metadata={"positional": "*", "help": "prompts to continue"})
    model: str = field(metadata={"help": "an HF checkpoint folder with the lookup tokens"})
    kb: str | None = field(default=None, metadata={"help": "knowledge base file (needed unless --no-lookups)"})
    input: str | None = field(default=None, metadata={"help": 'JSONL of {"prompt": ...} lines'})
    output: str | None = field(default=None, metadata={"help": "JSONL: each input line with text, raw and lookups added"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per prompt"})
    batch_size: int = field(default=32, metadata={"help": "prompts per engine batch", "ge": 1})
    compile: bool = field(default=False, metadata={"help": "torch.compile the decoding steps: slow once, then faster per token"})
    draft_model: str | None = field(default=None, metadata={
        "help": "a small checkpoint made by 'lmlm distill' that proposes tokens (greedy, batches of up to 8)"})


def _generate(args) -> None:
    from lmlm.engine import LMLM, generate_file

    run, options = _load(GenerateArgs, args), generation_options(args, "cli")
    lmlm = LMLM.from_pretrained(run.model, kb=run.kb, use_lookups=options["use_lookups"], compile=run.compile, draft_model=run.draft_model)
    if run.input:
        count = generate_file(lmlm, run.input, run.output, batch_size=run.batch_size, **options)
        print(f"wrote {count} results to {run.output}")
        return
    if not run.prompts:
        raise LmlmError("give prompts, or --input PROMPTS.jsonl --output OUT.jsonl")
    for prompt, result in zip(run.prompts, lmlm.generate(run.prompts, batch_size=run.batch_size, **options)):
        if run.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            print(f"{prompt}{result.text}")
            for p in result.lookups:
                print(f"    [{p.tier}] {p.entity} / {p.relation} -> {p.value}")


def _declare_generate(p) -> None:
    add_arguments(p, GenerateArgs, required=True)
    add_arguments(p.add_argument_group("generation"), generation_config(), generation_fields("cli"))


def _distill(args) -> None:
    from lmlm.draft import DistillConfig, distill_checkpoints

    out = distill_checkpoints(_load(DistillConfig, args))
    print(f"wrote the draft model to {out}")


def _ngrams(args) -> None:
    from lmlm.ngrams import NgramsConfig, NgramTable, build_ngrams

    out = build_ngrams(_load(NgramsConfig, args))
    contexts = len(NgramTable.load(out).next_token)
    print(f"wrote an n-gram table of {contexts:,} contexts to {out}; the engine drafts from it at batch sizes up to 8")


def _demo(args) -> None:
    from lmlm.demo import run_demo

    if not args.verbose:  # the stage lines and the progress line tell the story; library INFO lines only with -v
        logging.getLogger("lmlm").setLevel(logging.WARNING)
    run_demo(args.out, quick=args.quick, seed=args.seed)


def _eval(args) -> None:
    from lmlm.evaluate.run import EvalConfig, run_eval

    result = run_eval(_load(EvalConfig, args), generation_options(args, "eval"))
    print(json.dumps(result["metrics"]))


def _declare_eval(p) -> None:
    from lmlm.evaluate.run import EvalConfig

    add_arguments(p, EvalConfig, required=True)
    group = p.add_argument_group("generation", "left out, each suite chooses (factuality: --fallback abstain)")
    add_arguments(group, generation_config(), generation_fields("eval"), show_defaults=False)


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

    annotator = stages.add_parser("annotator", help="fine-tune an annotator").add_subparsers(dest="command", required=True, metavar="COMMAND")
    annotator.add_parser("train", help="LoRA SFT of a causal LM: plain text in, annotated text out (loads as --backend hf)",
                         declare=_from_config_file("lmlm.annotate.finetune", "AnnotatorConfig")).set_defaults(run=_annotator_train)

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


@dataclass(kw_only=True)
class ServeArgs:
    """``lmlm serve``'s own options; the server's caps and protections come from ``ServeConfig``."""

    model: str = field(metadata={"help": "an LMLM checkpoint directory"})
    kb: str = field(metadata={"help": "the knowledge base (SQLite file)"})
    port: int = field(default=8000, metadata={"help": "TCP port", "ge": 0, "le": 65535})


def _serve(args) -> None:
    from lmlm.serve import ServeConfig, serve

    run, config = _load(ServeArgs, args), _load(ServeConfig, args)
    config = dataclasses.replace(config, api_key=config.api_key or os.environ.get("LMLM_API_KEY"))

    def announce() -> None:
        print(f"lmlm: serving {run.model} on http://{config.bind_host}:{run.port}/ (API at /v1, page at /)", file=sys.stderr)

    serve(run.model, run.kb, host=config.bind_host, port=run.port, config=config, on_ready=announce)


def _declare_serve(p) -> None:
    from lmlm.serve.config import ServeConfig

    add_arguments(p, ServeArgs, required=True)
    add_arguments(p, ServeConfig)


def _add_model_commands(stages) -> None:
    stages.add_parser("train", help="pretrain an LMLM or Standard model (the dataset's mode) as an HF checkpoint",
                      declare=_from_config_file("lmlm.train.config", "TrainConfig")).set_defaults(run=_train)
    stages.add_parser("generate", help="generate with lookups in the knowledge base", declare=_declare_generate).set_defaults(run=_generate)
    stages.add_parser("distill", help="fine-tune a small draft model on a model's output, for speculative decoding",
                      declare=_from_config_file("lmlm.draft", "DistillConfig")).set_defaults(run=_distill)
    stages.add_parser("ngrams", help="count the training text's n-grams into a checkpoint, for the engine to draft tokens from",
                      declare=_from_config_file("lmlm.ngrams", "NgramsConfig")).set_defaults(run=_ngrams)
    p = stages.add_parser("demo", help="the end-to-end run on a synthetic world, with a report")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test of the machinery; its models are too briefly trained for the full run's figures")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also show the library's INFO log lines")
    p.set_defaults(run=_demo)
    stages.add_parser("eval", help="run one evaluation suite on a checkpoint", declare=_declare_eval).set_defaults(run=_eval)
    stages.add_parser("serve", help="HTTP API (OpenAI-compatible completions too) and a web page",
                      declare=_declare_serve).set_defaults(run=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmlm", description="Large Memory Language Models: annotate, build a KB, train, generate, evaluate, serve.")
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
    _add_model_commands(stages)
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
