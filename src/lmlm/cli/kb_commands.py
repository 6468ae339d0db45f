"""``lmlm markup`` and ``lmlm kb``: check and convert lookup markup; build, query and edit a knowledge base."""

from __future__ import annotations

import json

from lmlm.cli.parsing import print_report
from lmlm.errors import LmlmError

KB_HELP = "knowledge base: a SQLite file, a postgresql:// URL, or env:NAME (a variable holding either, so no password shows)"


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


def _open_kb(args):
    from lmlm.kb import open_kb

    return open_kb(args.kb, encoder=getattr(args, "encoder", None))


def _kb_build(args) -> None:
    from lmlm.kb.io import build
    from lmlm.kb.opening import is_shared

    if is_shared(args.out):
        _kb_import(args)  # a database is not a file to build aside: each file's import is one transaction instead
        return
    report = build(args.files, args.out, encoder=args.encoder, embed=not args.no_embed)
    for path, stats in report["files"].items():
        print(f"{path}: {stats['added']} added, {stats['duplicates']} duplicates, {stats['invalid']} invalid")
    print_report(report["stats"], False)


def _kb_import(args) -> None:
    from pathlib import Path

    from lmlm.kb import open_kb
    from lmlm.kb.io import import_files
    from lmlm.kb.opening import is_shared

    shared = is_shared(args.out)
    out = Path(args.out)
    if not shared and (not out.exists() or (out.is_file() and out.stat().st_size == 0)):
        _kb_build(args)  # a new KB is built aside and renamed into place: a failed import leaves nothing behind
        return
    with open_kb(args.out, encoder=args.encoder, create=shared) as kb:
        for path, stats in import_files(kb, args.files).items():
            print(f"{path}: {stats['added']} added, {stats['duplicates']} duplicates, {stats['invalid']} invalid")
        if not args.no_embed:
            kb.embed()
        print_report(kb.stats(), False)


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
    if args.explain and args.mode != "default":
        raise LmlmError("--explain shows how default mode decides; leave out --mode reference")
    with _open_kb(args) as kb:
        if args.explain:
            for entity, relation in pairs:
                _print_explanation(kb.explain(entity, relation), args.json)
            return
        for result in kb.lookup_many(pairs, mode=args.mode):
            record = result.to_dict()
            if args.json:
                print(json.dumps(record, ensure_ascii=False))
            else:
                found = f"{record['entity']} / {record['relation']}" if record["value"] is not None else "-"
                print(f"{record['value']!s:<40} {record['tier']:<6} {record['score']:.3f}  {found}")


def _print_explanation(explanation: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(explanation, ensure_ascii=False))
        return
    answer = explanation["answer"]
    print(f"answer: {answer['value']!s} ({explanation['decision']}; score {answer['score']:.3f}); the asked relation's kind: "
          f"{explanation['relation_kind'] or 'none named'}")
    for entity in explanation["entities"]:
        passes = f"fact {entity['passes']['fact']} passes: {entity['passes']['rule']}" if entity["passes"] else "no fact passes"
        print(f"  {entity['entity']} (entity score {entity['entity_score']:.3f}{', forgotten' if entity['forgotten'] else ''}): {passes}")
        for fact in entity["facts"]:
            similarity = "   -  " if fact["similarity"] is None else f"{fact['similarity']:6.3f}"
            print(f"    {similarity}  [{fact['id']}] {fact['relation']} = {fact['value']!s}{'  (' + fact['left_out'] + ')' if fact['left_out'] else ''}")


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
        print_report(result, args.json)


def _kb_stats(args) -> None:
    with _open_kb(args) as kb:
        print_report(kb.stats(), args.json)


def _kb_migrate(args) -> None:
    from lmlm.kb.migrate import migrate

    print_report(migrate(args.source, args.destination, batch=args.batch), args.json)


def _kb_serve_check(args) -> None:
    from lmlm.kb.opening import is_shared

    if not is_shared(args.kb):
        raise LmlmError(f"{args.kb}: serve-check reads a shared (PostgreSQL) knowledge base; give its URL or env:NAME")
    with _open_kb(args) as kb:
        report = kb.serve_check()
    if args.json:
        print(json.dumps(report))
        return
    replicas = report.pop("replicas")
    print_report(report, False)
    for r in replicas:
        print(f"replica {r['id']}: applied version {r['applied_version']} (lag {r['lag']}), seen {r['seen_seconds_ago']} s ago")
    if not replicas:
        print("no replica seen in the last minute")


def add_markup_commands(stages) -> None:
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


def add_kb_commands(stages) -> None:
    kb = stages.add_parser("kb", help="build, query and edit a knowledge base").add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help, kb_arg=True):
        p = kb.add_parser(name, help=help)
        if kb_arg:
            p.add_argument("kb", metavar="KB", help=KB_HELP)
        p.add_argument("--encoder", default=None, help="sentence encoder: a sentence-transformers path or name, default all-MiniLM-L6-v2")
        p.set_defaults(run=run)
        return p

    for name, run, help in (("build", _kb_build, "build a fresh KB from annotated corpora, database JSON or JSONL triplets"),
                            ("import", _kb_import, "add triplets from files to a KB (created if missing)")):
        p = command(name, run, help, kb_arg=False)
        p.add_argument("files", nargs="+", metavar="FILE")
        p.add_argument("--out", required=True, metavar="KB", help=KB_HELP)
        p.add_argument("--no-embed", action="store_true", help="skip computing vectors now (they are computed at the first fuzzy lookup)")
    p = command("export", _kb_export, "write live triplets as database JSON (.json) or JSONL (.jsonl)")
    p.add_argument("--out", required=True)
    p = command("query", _kb_query, "look facts up")
    p.add_argument("--entity")
    p.add_argument("--relation")
    p.add_argument("--batch", metavar="QUERIES.jsonl", help='lines of {"entity", "relation"}; one result line each, in order')
    p.add_argument("--mode", choices=["default", "reference"], default="default")
    p.add_argument("--explain", action="store_true", help="show the candidate entities and facts default mode weighed, "
                   "with their similarities, why a fact was left out, and which passes the thresholds")
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
    p = command("migrate", _kb_migrate, "copy a KB between SQLite, PostgreSQL and reference JSON (resumes a killed copy)", kb_arg=False)
    p.add_argument("source", metavar="SRC", help=KB_HELP + ", or a reference database JSON")
    p.add_argument("destination", metavar="DST", help=KB_HELP + ", or a .json / .jsonl file")
    p.add_argument("--batch", type=int, default=10_000, help="rows per transaction (each records the resume point)")
    p.add_argument("--json", action="store_true")
    p = command("serve-check", _kb_serve_check, "a shared KB's schema version, KB version, counts and each replica's lag")
    p.add_argument("--json", action="store_true")
