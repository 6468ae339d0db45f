"""The data stages: ``lmlm world``, ``annotate``, ``annotator train``, ``clean``, ``tokenizer train``, ``data build``."""

from __future__ import annotations

import argparse

from lmlm.cli.parsing import from_config_file, load_args, print_report
from lmlm.errors import LmlmError


def _world(args) -> None:
    if args.profile == "wiki":
        from lmlm.wiki import make_wiki_world, noise_for

        if args.phrasing is not None:
            raise LmlmError("--phrasing is the default profile's; the wiki profile words its documents its own way")
        print_report(make_wiki_world(args.out, entities=args.entities, seed=args.seed, noise=noise_for(args.relation_noise)), False)
        return
    if args.relation_noise:
        raise LmlmError("--relation-noise needs --profile wiki")
    from lmlm.world import make_world

    print_report(make_world(args.out, people=args.people, seed=args.seed, bios_per_person=args.bios, phrasing=args.phrasing or "varied"),
                 False)


def _noise_rate(text: str) -> float:
    """``--relation-noise``: a share in [0, 1], or ``default`` for the rate measured on real annotations."""
    from lmlm.wiki import MEASURED

    if text == "default":
        return MEASURED.relation
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1] or 'default', got {text!r}")
    return rate


def _annotate(args) -> None:
    from lmlm.annotate import run

    if args.backend == "aligned":
        print_report(run.annotate_aligned(args.input, args.out, kb=args.kb), False)
        return
    if not args.model:
        raise LmlmError(f"--backend {args.backend} needs --model")
    from lmlm.annotate.llm import HFBackend, OpenAIBackend

    if args.backend == "openai":
        backend = OpenAIBackend(args.model, base_url=args.base_url, concurrency=args.concurrency, timeout=args.timeout,
                                max_retries=args.max_retries, max_tokens=args.max_tokens)
    else:
        backend = HFBackend(args.model, adapter=args.adapter, batch_size=args.batch_size, max_new_tokens=args.max_tokens)
    print_report(run.annotate_llm(args.input, args.out, backend, resume=args.resume, cache=args.cache), args.json)


def _annotator_train(args) -> None:
    from lmlm.annotate.finetune import AnnotatorConfig, train_annotator

    result = train_annotator(load_args(AnnotatorConfig, args))
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
    print_report(report, args.json)


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
    print_report(meta["counts"], args.json)


def _add_world_command(stages) -> None:
    from lmlm.world import PHRASINGS  # no heavy imports: the world module is plain Python

    p = stages.add_parser("world", help="generate a synthetic knowledge world")
    p.add_argument("--out", required=True)
    p.add_argument("--people", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bios", type=int, default=3, help="biographies per train person")
    p.add_argument("--phrasing", choices=list(PHRASINGS), default=None,
                   help="varied (default): openers and names mid-sentence; plain: four templates a relation, learned in fewer steps")
    p.add_argument("--profile", choices=["default", "wiki"], default="default",
                   help="default: people and their bios; wiki: six linked entity types, a long tail of popularity, varied documents")
    g = p.add_argument_group("wiki")
    g.add_argument("--entities", type=int, default=2000, help="entities of every type")
    g.add_argument("--relation-noise", type=_noise_rate, default=0.0, metavar="P",
                   help="share of training calls that name their relation with a synonym the KB does not store, with the "
                        "measured rates of wrong-entity and missing calls; 'default': the measured share")
    p.set_defaults(run=_world)


def _add_annotate_command(stages) -> None:
    p = stages.add_parser("annotate", help="insert lookups into plain text")
    p.add_argument("input", metavar="IN", help="corpus (JSON or JSONL) with a 'text' field")
    p.add_argument("--backend", choices=["aligned", "openai", "hf"], default="aligned")
    p.add_argument("--out", required=True, help="annotated corpus; for openai and hf a .jsonl file, appended as results arrive")
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("aligned")
    g.add_argument("--kb", help="known facts: database JSON, JSONL triplets, a KB file, or a shared KB (postgresql://... or env:NAME); default: each example's own lookups")
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


def add_data_commands(stages) -> None:
    _add_world_command(stages)
    _add_annotate_command(stages)
    annotator = stages.add_parser("annotator", help="fine-tune an annotator").add_subparsers(dest="command", required=True, metavar="COMMAND")
    annotator.add_parser("train", help="LoRA SFT of a causal LM: plain text in, annotated text out (loads as --backend hf)",
                         declare=from_config_file("lmlm.annotate.finetune", "AnnotatorConfig")).set_defaults(run=_annotator_train)

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
