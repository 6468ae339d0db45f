"""The model stages: ``lmlm train``, ``generate``, ``distill``, ``ngrams``, ``demo``, ``eval``, ``serve``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lmlm.cli.parsing import from_config_file, generation_options, load_args
from lmlm.config import add_arguments
from lmlm.errors import LmlmError
from lmlm.options import generation_config, generation_fields


def _train(args) -> None:
    from lmlm.train import TrainConfig, train

    metrics, _ = train(load_args(TrainConfig, args))
    print(json.dumps(metrics))


@dataclass(kw_only=True)
class GenerateArgs:
    """``lmlm generate``'s own options; the generation options come from ``GenerationConfig``."""

    prompts: list[str] = field(default_factory=list, metadata={"positional": "*", "help": "prompts to continue"})
    model: str = field(metadata={"help": "an HF checkpoint folder with the lookup tokens"})
    kb: str | None = field(default=None, metadata={"help": "knowledge base: a SQLite file, a postgresql:// URL or env:NAME (needed unless --no-lookups)"})
    input: str | None = field(default=None, metadata={"help": 'JSONL of {"prompt": ...} lines'})
    output: str | None = field(default=None, metadata={"help": "JSONL: each input line with text, raw and lookups added"})
    json: bool = field(default=False, metadata={"help": "print one JSON object per prompt"})
    batch_size: int = field(default=32, metadata={"help": "prompts per engine batch", "ge": 1})
    compile: bool = field(default=False, metadata={"help": "torch.compile the decoding steps: slow once, then faster per token"})
    draft_model: str | None = field(default=None, metadata={
        "help": "a small checkpoint made by 'lmlm distill' that proposes tokens (greedy, batches of up to 8)"})


def _generate(args) -> None:
    from lmlm.engine import LMLM, generate_file

    run, options = load_args(GenerateArgs, args), generation_options(args, "cli")
    if run.input and not run.output:
        raise LmlmError("--input needs --output, the JSONL file to write the results to")
    if run.output and Path(run.output).is_dir():
        raise LmlmError(f"{run.output}: is a directory; --output is the JSONL file to write")
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

    out = distill_checkpoints(load_args(DistillConfig, args))
    print(f"wrote the draft model to {out}")


def _ngrams(args) -> None:
    from lmlm.ngrams import NgramsConfig, NgramTable, build_ngrams

    out = build_ngrams(load_args(NgramsConfig, args))
    contexts = len(NgramTable.load(out).next_token)
    print(f"wrote an n-gram table of {contexts:,} contexts to {out}; the engine drafts from it at batch sizes up to 8")


def _demo(args) -> None:
    if not args.verbose:  # the stage lines and the progress line tell the story; library INFO lines only with -v
        logging.getLogger("lmlm").setLevel(logging.WARNING)
    if args.profile == "wiki":
        from lmlm.wiki_run import QUICK_WIKI, WIKI_PLAN, run_wiki

        run_wiki(args.out or "runs/wiki", plan=QUICK_WIKI if args.quick else WIKI_PLAN, seed=args.seed, evaluate_only=args.evaluate_only)
        return
    from lmlm.demo import run_demo

    run_demo(args.out or "runs/demo", quick=args.quick, seed=args.seed, evaluate_only=args.evaluate_only)


def _eval(args) -> None:
    from lmlm.evaluate.run import EvalConfig, run_eval

    result = run_eval(load_args(EvalConfig, args), generation_options(args, "eval"))
    print(json.dumps(result["metrics"]))


def _declare_eval(p) -> None:
    from lmlm.evaluate.run import EvalConfig

    add_arguments(p, EvalConfig, required=True)
    group = p.add_argument_group("generation", "left out, each suite chooses (factuality: --fallback abstain)")
    add_arguments(group, generation_config(), generation_fields("eval"), show_defaults=False)


@dataclass(kw_only=True)
class ServeArgs:
    """``lmlm serve``'s own options; the server's caps and protections come from ``ServeConfig``."""

    model: str = field(metadata={"help": "an LMLM checkpoint directory"})
    kb: str = field(metadata={"help": "the knowledge base: a SQLite file, a postgresql:// URL or env:NAME (a variable holding it)"})
    port: int = field(default=8000, metadata={"help": "TCP port", "ge": 0, "le": 65535})


def _serve(args) -> None:
    from lmlm.serve import ServeConfig, serve

    run, config = load_args(ServeArgs, args), load_args(ServeConfig, args)
    config = dataclasses.replace(config, api_key=config.api_key or os.environ.get("LMLM_API_KEY"))

    def announce() -> None:
        print(f"lmlm: serving {run.model} on http://{config.bind_host}:{run.port}/ (API at /v1, page at /)", file=sys.stderr)

    serve(run.model, run.kb, host=config.bind_host, port=run.port, config=config, on_ready=announce,
          defaults=generation_options(args, "serve"))


def _declare_serve(p) -> None:
    from lmlm.serve.config import ServeConfig

    add_arguments(p, ServeArgs, required=True)
    add_arguments(p, ServeConfig)
    group = p.add_argument_group("generation defaults", "for requests that leave the option out")
    add_arguments(group, generation_config(), generation_fields("serve"))


def add_model_commands(stages) -> None:
    stages.add_parser("train", help="pretrain an LMLM or Standard model (the dataset's mode) as an HF checkpoint",
                      declare=from_config_file("lmlm.train.config", "TrainConfig")).set_defaults(run=_train)
    stages.add_parser("generate", help="generate with lookups in the knowledge base", declare=_declare_generate).set_defaults(run=_generate)
    stages.add_parser("distill", help="fine-tune a small draft model on a model's output, for speculative decoding",
                      declare=from_config_file("lmlm.draft", "DistillConfig")).set_defaults(run=_distill)
    stages.add_parser("ngrams", help="count the training text's n-grams into a checkpoint, for the engine to draft tokens from",
                      declare=from_config_file("lmlm.ngrams", "NgramsConfig")).set_defaults(run=_ngrams)
    p = stages.add_parser("demo", help="the end-to-end run on a synthetic world, with a report")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test of the machinery; its models are too briefly trained for the full run's figures")
    p.add_argument("--out", help="default: runs/demo, or runs/wiki for --profile wiki")
    p.add_argument("--profile", choices=["default", "wiki"], default="default",
                   help="wiki: the wiki world at relation noise 0 and at the measured default, scored by mention count and hops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluate-only", action="store_true",
                   help="evaluate the models a finished run of the same seed left in --out again, with this version's settings")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also show the library's INFO log lines")
    p.set_defaults(run=_demo)
    stages.add_parser("eval", help="run one evaluation suite on a checkpoint", declare=_declare_eval).set_defaults(run=_eval)
    stages.add_parser("serve", help="HTTP API (OpenAI-compatible completions too) and a web page",
                      declare=_declare_serve).set_defaults(run=_serve)
