"""The ``lmlm`` command: parses arguments and calls the stages. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
