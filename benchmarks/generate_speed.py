"""Generation speed, on the same model, prompts, KB and token budget, in one run:

  (a) the naive reference loop at batch 1 (restart generate() after each lookup), reference retrieval
  (b) the engine at batch 1, drafting from the n-gram table of the training text (lmlm.ngrams)
  (c) the engine at batch 32
  (d) plain HF generate() at batch 32 with no lookups (the limit)
  (b_without_table) the engine at batch 1 without the table (drafts from a row's own text only), eager and
           compiled, to show what the table buys
  (b', c') the engine at batch 1 and 32 with compile=True (torch.compile of the steps after the prompt; the
           compile warm-up is timed apart, as it is paid once per process)
  (constrained) the engine at batch 1 and 32 with constrain_lookups="entity_relation" against "off", both
           on a KB of the world's facts plus a million other triplets (vectors from the hashing encoder), so that
           the entity trie is that size; with --trained, also the constraint with and without the demo's relation
           and mention priors, on the demo's own KB (the relation prior encodes each call's sentence with its encoder)
  (b_draft) the engine at batch 1 with a draft model, for small: tiny, fine-tuned on small's output for
           other prompts (lmlm.draft; the time it takes is reported apart), eager and compiled; and,
           eager, tiny as trained (b_undistilled_draft), to show what the distillation buys
Each run is timed three times, in turns with the runs it is compared with (a, d, b, ..., a, d, b, ...),
so that a drift in the machine's speed hits them alike; the median counts. The compiled runs take
their turns with a second timing of a and d (``*_beside_compiled``), which their ratios use. The
eager runs also count the model's forwards and the token positions they computed: what the reference
loop's restarts cost in model work. The engine's runs count the tokens it fed on trial (drafts) and
kept, and the drafted calls it took with their answers (calls). At batch 1 every forward reads all
the weights, so (b) cannot beat its forwards times a bare one-token step: the benchmark times that
step (eager and compiled) and reports the ceiling it puts on b/a. It also times steps of 2 to 8
positions (a token and its draft): what verifying a draft costs on this machine.

All runs share one model, whose linear weights the first engine stores column-major (lmlm.engine.layout), so
(a) and (d) run on that layout too: what it buys the engine it buys them. An eager step of 1 and of 32
rows is also timed with the weights as transformers loads them (row-major), to show what the layout buys.

Models are briefly trained on a synthetic world so that they write lookup calls as an LMLM does:
``tiny`` and ``small`` (about 30M parameters, a shape a user would run; 250 steps, about 8 minutes,
so that it writes whole calls rather than runs of lookup tokens). The draft model is distilled from
small's continuations of the bio prompts after the measured ones and of the openings of training
documents, never of the measured prompts.

    python benchmarks/generate_speed.py [--presets tiny small] [--only-constrained [--trained RUN]] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.data import build_dataset, documents  # noqa: E402
from lmlm.demo import DemoPlan  # noqa: E402
from lmlm.draft import distill  # noqa: E402
from lmlm.engine import GenerationConfig, LookupEngine, LookupTokens, reference_loop  # noqa: E402
from lmlm.engine.api import load_model, load_tokenizer  # noqa: E402
from lmlm.engine.cache import CacheTrack  # noqa: E402
from lmlm.kb import SqliteKB  # noqa: E402
from lmlm.kb.encoder import HashingEncoder  # noqa: E402
from lmlm.kb.io import read_reference_db  # noqa: E402
from lmlm.ngrams import NgramTable  # noqa: E402
from lmlm.tokenizer import train_tokenizer  # noqa: E402
from lmlm.train import TrainConfig, train  # noqa: E402
from lmlm.world import make_world  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


REPEATS = 3  # every run is timed this many times; the median counts (a run of a second is at the mercy of the machine)


def timed(fn):
    """(the output, the seconds it took)."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def in_turns(runs: dict[str, Callable], counter: ForwardCounter | None = None) -> dict[str, tuple]:
    """Every run REPEATS times, in turns (a, b, c, a, b, c, ...), so that a drift in the machine's speed hits
    the runs that are compared alike. {name: (output, median seconds, (forwards, positions) of one run)}."""
    seconds, outputs, counts = defaultdict(list), {}, {}
    for _ in range(REPEATS):
        for name, fn in runs.items():
            if counter:
                counter.take()
            outputs[name], took = timed(fn)
            seconds[name].append(took)
            counts[name] = counter.take() if counter else (None, None)
    return {name: (outputs[name], statistics.median(seconds[name]), counts[name]) for name in runs}


class ForwardCounter:
    """The eager model's forwards, and the token positions they computed (prompts, restarts, new and forced tokens)."""

    def __init__(self, model):
        self.forwards = self.positions = 0
        self.handle = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        self.forwards += 1
        self.positions += (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).numel()

    def take(self) -> tuple[int, int]:
        """Forwards and positions since the last take."""
        counts, self.forwards, self.positions = (self.forwards, self.positions), 0, 0
        return counts


WIDTHS = (1, 2, 3, 4, 5, 8)  # positions of one row's step: a token and its draft


@torch.inference_mode()  # as the engine decodes
def step_seconds(cases: dict, ids: list[int], repeats: int = 20) -> dict:
    """Median time of a step of each case {name: (model, decode, rows, width)}: every row is fed ``width``
    tokens after ``ids`` (retracted after), cases in turns."""
    tracks = {}
    for name, (model, decode, rows, width) in cases.items():
        tracks[name] = CacheTrack(model, decode, 0, rows, len(ids) + repeats * width + 1, torch.device("cpu")), rows, width
        tracks[name][0].step([ids] * rows)
    times = defaultdict(list)
    for _ in range(repeats):
        for name, (track, rows, width) in tracks.items():
            start = time.perf_counter()
            track.step([ids[-width:]] * rows)
            times[name].append(time.perf_counter() - start)
            for b in range(rows):
                track.retract(b, width)
    return {name: statistics.median(t) for name, t in times.items()}


def row_major(model):
    """A copy of the model with its linear weights laid out as transformers loads them (the engine stores them column-major)."""
    copied = copy.deepcopy(model)
    for linear in (m for m in copied.modules() if isinstance(m, torch.nn.Linear)):
        linear.weight.data = linear.weight.data.contiguous()
    return copied


def measure(model, tokenizer, kb, ngrams, prompts: list[str], new_tokens: int, single: int, draft=None, undistilled=None) -> tuple[dict, dict]:
    """The eager runs in turns (forwards counted), then the compiled runs in turns with a second timing of
    a and d, which the compiled ratios use."""
    tokens = LookupTokens(tokenizer)
    cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # every run makes the same number of tokens
    ref_cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, lookup_mode="reference")

    def engine_run(engine, batch):
        return lambda: [r for s in range(0, len(prompts[:single] if batch == 1 else prompts), batch) for r in engine.generate(prompts[s : s + batch], cfg)]

    def hf_batches():
        tokenizer.padding_side = "left"
        produced = 0
        for s in range(0, len(prompts), 32):
            enc = tokenizer(prompts[s : s + 32], return_tensors="pt", padding=True)
            ids = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            produced += int((ids[:, enc["input_ids"].shape[1]:] != tokenizer.pad_token_id).sum())
        return produced

    def rows_of(timings: dict, engines: dict, suffix: str = "") -> dict:
        rows = {}
        for name, (out, seconds, counts) in timings.items():
            if name in engines:
                drafts = {k: v // REPEATS for k, v in engines[name][0].draft_stats.items()}
                made, lookups = sum(len(r.token_ids) for r in out), sum(len(r.lookups) for r in out)
            else:
                drafts, made = None, out if name.startswith("d_") else sum(map(len, out))
                lookups = 0 if name.startswith("d_") else sum(o.count(tokens.ret) for o in out)
            rows[name + (suffix if name not in engines else "")] = {
                "tokens": made, "lookups": lookups, "seconds": round(seconds, 2), "tokens_per_second": round(made / seconds, 1),
                "lookups_per_second": round(lookups / seconds, 2), "forwards": counts[0], "positions": counts[1],
                "drafts_taken": None if drafts is None else f"{drafts['drafted'] - drafts['rejected']}/{drafts['drafted']}",
                "drafted_calls_taken": None if drafts is None else drafts["calls"]}
        return rows

    baselines = {"a_reference_loop_batch1": lambda: [reference_loop(model, tokenizer, kb, p, ref_cfg) for p in prompts[:single]],
                 "d_hf_generate_batch32_no_lookups": hf_batches}
    engines = {"b_engine_batch1": (LookupEngine(model, tokenizer, kb, ngrams=ngrams), 1),
               "b_engine_batch1_without_table": (LookupEngine(model, tokenizer, kb), 1),
               "c_engine_batch32": (LookupEngine(model, tokenizer, kb, ngrams=ngrams), 32)}
    for name, proposer in (("draft", draft), ("undistilled_draft", undistilled)):
        if proposer is not None:
            engines[f"b_engine_batch1_{name}"] = (LookupEngine(model, tokenizer, kb, draft_model=proposer), 1)
    for engine, _ in engines.values():
        engine.generate(prompts[:2], cfg)  # warm up (encoder, indexes, the draft model)
        engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
    reference_loop(model, tokenizer, kb, prompts[0], ref_cfg)
    counter = ForwardCounter(model)
    rows = rows_of(in_turns({**baselines, **{n: engine_run(e, b) for n, (e, b) in engines.items()}}, counter), engines)
    counter.handle.remove()  # a hook would be traced into the compiled graph

    torch._dynamo.reset()  # each model starts from a clean compile cache, as in a fresh process
    compiled = {"b_engine_batch1_compiled": (LookupEngine(model, tokenizer, kb, compile=True, ngrams=ngrams), 1),
                "b_engine_batch1_without_table_compiled": (LookupEngine(model, tokenizer, kb, compile=True), 1),
                "c_engine_batch32_compiled": (LookupEngine(model, tokenizer, kb, compile=True, ngrams=ngrams), 32)}
    _, warmup = timed(lambda: (compiled["b_engine_batch1_compiled"][0].generate(prompts[:1], cfg),
                               compiled["c_engine_batch32_compiled"][0].generate(prompts[:32], cfg)))
    compiled["b_engine_batch1_without_table_compiled"][0].generate(prompts[:1], cfg)
    if draft is not None:
        drafting = compiled["b_engine_batch1_draft_compiled"] = (LookupEngine(model, tokenizer, kb, compile=True, draft_model=draft), 1)
        _, draft_warmup = timed(engine_run(drafting[0], 1))  # the draft's graphs, verify widths
    for engine, _ in compiled.values():
        engine.draft_stats = dict.fromkeys(engine.draft_stats, 0)
    rows |= rows_of(in_turns({**baselines, **{n: engine_run(e, b) for n, (e, b) in compiled.items()}}), compiled, "_beside_compiled")
    # b's floor: its forwards, each at least a bare one-token step (after the first prompt)
    context = tokenizer.encode(prompts[0])
    by_width = {kind: step_seconds({w: (e.model, e.decode, 1, w) for w in WIDTHS}, context)
                for kind, e in (("eager", engines["b_engine_batch1"][0]), ("compiled", compiled["b_engine_batch1_compiled"][0]))}
    loaded = row_major(model)
    layouts = step_seconds({(layout, rows): (m, m, rows, 1) for layout, m in (("row_major", loaded), ("column_major", model)) for rows in (1, 32)},
                           context)
    step = {k: v[1] for k, v in by_width.items()}
    a_seconds = {"eager": rows["a_reference_loop_batch1"]["seconds"], "compiled": rows["a_reference_loop_batch1_beside_compiled"]["seconds"]}
    floor = {"compile_warmup_seconds": round(warmup, 2), **{f"one_token_step_ms_{k}": round(1000 * v, 2) for k, v in step.items()},
             **{f"step_ms_by_width_{k}": {w: round(1000 * t, 2) for w, t in v.items()} for k, v in by_width.items()},
             "eager_step_ms_by_weight_layout": {f"{layout}, {rows} rows": round(1000 * t, 2) for (layout, rows), t in layouts.items()},
             **{f"b_over_a_ceiling_{k}": round(a_seconds[k] / (rows["b_engine_batch1"]["forwards"] * v), 2) for k, v in step.items()}}
    if draft is not None:
        floor["draft_compile_warmup_seconds"] = round(draft_warmup, 2)
    return rows, floor


def distill_prompts(bios: list[str], corpus: list[Path], count: int = 1500) -> list[str]:
    """Prompts to distill the draft on: the given bio prompts, and the first 4 to 10 words of training documents."""
    openings = [" ".join(doc.split()[:words]) for doc in documents(corpus, "standard") for words in (4, 6, 8, 10)]
    return bios + random.Random(0).sample(openings, min(count, len(openings)))


EXTRA_ENTITIES, EXTRA_RELATIONS = 50_000, 20  # a million triplets besides the world's own


def big_kb(path: Path, world_kb: Path) -> SqliteKB:
    """The world's facts and a million triplets of made-up entities, embedded (unconstrained calls that miss go fuzzy).
    The vectors come from the hashing encoder: MiniLM would take far longer to embed the names than the runs take,
    and it would only slow the unconstrained runs' fuzzy lookups, so the constraint's cost is, if anything, overstated."""
    rng = random.Random(0)
    syllables = ["ka", "lo", "mir", "ven", "tas", "dor", "el", "quin", "bra", "sut", "nel", "os", "rik", "fa", "gem", "hol"]
    word = lambda: "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()  # noqa: E731
    kb = SqliteKB(path, create=True, encoder=HashingEncoder())
    kb.import_triplets(read_reference_db(world_kb))
    names = {f"{word()} {word()}" for _ in range(EXTRA_ENTITIES * 2)}
    extra = ((name, f"Attribute {r}", word()) for name in sorted(names)[:EXTRA_ENTITIES] for r in range(EXTRA_RELATIONS))
    kb.import_triplets(extra)
    kb.embed()
    return kb


def constrained_runs(model, tokenizer, kb: SqliteKB, ngrams, prompts: list[str], new_tokens: int, single: int,
                     variants: dict[str, dict] | None = None) -> dict:
    """Tokens/s of the engine under each variant (GenerationConfig fields) against constrain_lookups "off", at
    batch 1 and 32, in turns; by default the one variant is the entity and relation constraint."""
    variants = {"off": {"constrain_lookups": "off"}, **(variants or {"entity_relation": {"constrain_lookups": "entity_relation"}})}
    runs, engines = {}, {}
    for variant, fields in variants.items():
        cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, **fields)
        for batch, chosen in ((1, prompts[:single]), (32, prompts)):
            engine = engines[(variant, batch)] = LookupEngine(model, tokenizer, kb, ngrams=ngrams)
            engine.generate(chosen[:2], cfg)  # warm up: the tries are built on first use, once per KB version
            runs[f"batch{batch}_{variant}"] = (lambda e=engine, c=cfg, ps=chosen, b=batch:
                                               [r for s in range(0, len(ps), b) for r in e.generate(ps[s : s + b], c)])
    timings = in_turns(runs)
    rows = {name: {"tokens": sum(len(r.token_ids) for r in out), "lookups": sum(len(r.lookups) for r in out),
                   "hits": sum(x.value is not None for r in out for x in r.lookups), "seconds": round(seconds, 2)}
            for name, (out, seconds, _) in timings.items()}
    for row in rows.values():
        row["tokens_per_second"] = round(row["tokens"] / row["seconds"], 1)
    cost = {f"batch{b}" + ("" if len(variants) == 2 else f"_{variant}"):
            round(1 - rows[f"batch{b}_{variant}"]["tokens_per_second"] / rows[f"batch{b}_off"]["tokens_per_second"], 3)
            for variant in variants if variant != "off" for b in (1, 32)}
    return {"kb_triplets": kb.stats()["triplets"], "variants": variants, "runs": rows, "cost": cost}


def constrained_on_trained(run: Path, args) -> dict:
    """The constrained runs on a model the demo trained, its world's bio prompts and KB (plus the million triplets);
    then, on the demo's own KB (its sentence encoder's vectors), the constraint with and without the demo's priors,
    whose relation prior encodes each call's sentence."""
    tokenizer, model = load_tokenizer(run / "lmlm"), load_model(run / "lmlm")
    model.eval()
    corpus = [run / "world" / "corpus.jsonl"]
    ngrams = NgramTable.from_texts(documents(corpus, "lmlm"), tokenizer)
    bios = [json.loads(line)["prompt"] for line in (run / "world" / "eval" / "bio_prompts.jsonl").read_text().splitlines()]
    prompts = bios[: args.prompts]
    with tempfile.TemporaryDirectory() as tmp:
        large = big_kb(Path(tmp) / "big.sqlite", run / "world" / "kb.json")
        try:
            constrained = constrained_runs(model, tokenizer, large, ngrams, prompts, args.new_tokens, args.single)
        finally:
            large.close()
    plan, own = DemoPlan(), SqliteKB(run / "kb.sqlite")
    constraint = {"constrain_lookups": plan.constrain_lookups}
    priors = {**constraint, "relation_prior": plan.relation_prior, "mention_prior": plan.mention_prior}
    try:
        with_priors = constrained_runs(model, tokenizer, own, ngrams, prompts, args.new_tokens, args.single,
                                       {"entity_relation": constraint, "entity_relation_priors": priors})
    finally:
        own.close()
    return {"constrained": constrained, "priors": with_priors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--single", type=int, default=16, help="prompts run at batch 1 (a, b)")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/generate_speed.json, or generate_speed_constrained.json")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--only-constrained", action="store_true", help="time only the constrained runs (and write them to --out)")
    parser.add_argument("--trained", type=Path, help="with --only-constrained: a demo run's folder (lmlm/, world/) to time "
                                                     "instead of training a model here")
    args = parser.parse_args()
    args.out = args.out or REPO / "benchmarks" / "results" / f"generate_speed{'_constrained' if args.only_constrained else ''}.json"
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    report = {"torch_threads": torch.get_num_threads(), "models": {}}
    if args.only_constrained and args.trained:
        report["models"]["demo's tiny"] = constrained_on_trained(args.trained, args)
        write_and_print_constrained(report, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_world(tmp / "world", people=300, seed=0, phrasing="plain")
        corpus = [tmp / "world" / "corpus.jsonl"]
        tokenizer = train_tokenizer(documents(corpus, "lmlm") + documents(corpus, "standard"), vocab_size=2048)
        build_dataset(corpus, tokenizer, "lmlm", tmp / "data", block_size=128)
        kb = SqliteKB(tmp / "kb.sqlite", create=True)
        kb.import_triplets(read_reference_db(tmp / "world" / "kb.json"))
        kb.embed(reference=True)
        ngrams, ngrams_seconds = timed(lambda: NgramTable.from_texts(documents(corpus, "lmlm"), tokenizer))
        report["ngram_table"] = {"contexts": len(ngrams.next_token), "seconds": round(ngrams_seconds, 2)}
        bios = [json.loads(line)["prompt"] for line in (tmp / "world" / "eval" / "bio_prompts.jsonl").read_text().splitlines()]
        prompts = bios[: args.prompts]
        trained = {}
        large = big_kb(tmp / "big.sqlite", tmp / "world" / "kb.json")
        for preset, steps in (("tiny", 600), ("small", 250)):  # tiny as trained by the demo; small until it writes whole calls
            if preset not in args.presets:
                continue
            cfg = TrainConfig(data=str(tmp / "data"), out=str(tmp / preset), model=preset, max_steps=steps, batch_size=16, lr=2e-3, warmup_steps=10, log_every=50)
            _, model = trained[preset] = train(cfg)
            model.eval()
            constrained = constrained_runs(model, tokenizer, large, ngrams, prompts, args.new_tokens, args.single)
            if args.only_constrained:
                report["models"][preset] = {"train_steps": steps, "constrained": constrained}
                continue
            draft = distill_seconds = None
            if preset == "small":  # tiny drafts for small, fine-tuned on small's output for prompts that are not measured
                draft, distill_seconds = timed(lambda: distill(model, copy.deepcopy(trained["tiny"][1]), tokenizer, kb,
                                                               distill_prompts(bios[args.prompts :], corpus)))
            undistilled = trained["tiny"][1] if draft is not None else None
            rows, floor = measure(model, tokenizer, kb, ngrams, prompts, args.new_tokens, args.single, draft, undistilled)
            speed = {k: r["tokens_per_second"] for k, r in rows.items()}
            ratios = {}
            for suffix, beside in (("", ""), ("_compiled", "_beside_compiled")):  # each against a and d timed in the same turns
                a, d = speed[f"a_reference_loop_batch1{beside}"], speed[f"d_hf_generate_batch32_no_lookups{beside}"]
                runs = (("b_over_a", "b_engine_batch1", a), ("c_over_a", "c_engine_batch32", a), ("c_over_d", "c_engine_batch32", d),
                        ("b_over_a_without_table", "b_engine_batch1_without_table", a), ("b_over_a_draft", "b_engine_batch1_draft", a),
                        ("b_over_a_undistilled_draft", "b_engine_batch1_undistilled_draft", a))
                ratios |= {f"{name}{suffix}": round(speed[f"{run}{suffix}"] / base, 2) for name, run, base in runs if f"{run}{suffix}" in speed}
            report["models"][preset] = {"parameters": sum(p.numel() for p in model.parameters()), "train_steps": steps, "runs": rows,
                                        **floor, **ratios, **({"distill_seconds": round(distill_seconds, 1)} if draft is not None else {}),
                                        "constrained": constrained}
        large.close()
    if args.only_constrained:
        write_and_print_constrained(report, args.out)
        return
    # d is eager HF generate(): c/d measures the cost of lookups only for the eager engine
    report["targets"] = {f"{m}: {k}{suffix}": v for m, r in report["models"].items() for suffix in ("", "_compiled")
                         for k, v in (("b/a>=2", r[f"b_over_a{suffix}"] >= 2), ("c/a>=10", r[f"c_over_a{suffix}"] >= 10))}
    report["targets"].update({f"{m}: c/d>=0.85": r["c_over_d"] >= 0.85 for m, r in report["models"].items()})
    report["targets"].update({f"{m}: b/a>=2 with the draft model{suffix}": r[f"b_over_a_draft{suffix}"] >= 2
                              for m, r in report["models"].items() if "b_over_a_draft" in r for suffix in ("", "_compiled")})
    for name, model in report["models"].items():
        print(f"\n{name} ({model['parameters']:,} parameters)")
        print(f"{'run':<36}{'tokens':>8}{'lookups':>9}{'tokens/s':>10}{'lookups/s':>11}{'forwards':>10}{'positions':>11}{'drafts taken':>14}"
              f"{'calls':>7}")
        dash = lambda v: "-" if v is None else v  # noqa: E731
        for run, r in model["runs"].items():
            print(f"{run:<36}{r['tokens']:>8}{r['lookups']:>9}{r['tokens_per_second']:>10}{r['lookups_per_second']:>11}"
                  f"{dash(r['forwards']):>10}{dash(r['positions']):>11}{dash(r['drafts_taken']):>14}{dash(r['drafted_calls_taken']):>7}")
        print(f"b/a {model['b_over_a']}  c/a {model['c_over_a']}  c/d {model['c_over_d']}   compiled: b/a {model['b_over_a_compiled']}  "
              f"c/a {model['c_over_a_compiled']}  c/d {model['c_over_d_compiled']}  (warm-up {model['compile_warmup_seconds']} s)")
        print(f"without the n-gram table: b/a {model['b_over_a_without_table']} eager, {model['b_over_a_without_table_compiled']} compiled")
        print(f"one-token step {model['one_token_step_ms_eager']} ms eager, {model['one_token_step_ms_compiled']} ms compiled: "
              f"b/a can reach at most {model['b_over_a_ceiling_eager']} eager, {model['b_over_a_ceiling_compiled']} compiled")
        print("eager step by weight layout (ms): " + ", ".join(f"{k}: {t}" for k, t in model["eager_step_ms_by_weight_layout"].items()))
        for kind in ("eager", "compiled"):
            print(f"step of one row by positions, {kind} (ms): " + ", ".join(f"{w}: {t}" for w, t in model[f"step_ms_by_width_{kind}"].items()))
        if "b_over_a_draft" in model:
            print(f"with the draft model (distilled in {model['distill_seconds']} s): b/a {model['b_over_a_draft']} eager, "
                  f"{model['b_over_a_draft_compiled']} compiled (warm-up {model['draft_compile_warmup_seconds']} s); "
                  f"undistilled: b/a {model['b_over_a_undistilled_draft']} eager")
    write_and_print_constrained(report, args.out)
    print("\ntargets:", report["targets"])


def write_and_print_constrained(report: dict, out: Path) -> None:
    report.setdefault("targets", {}).update({f"{m}: constrained cost at {b} <= 0.10": cost <= 0.10 for m, r in report["models"].items()
                                             for b, cost in r["constrained"]["cost"].items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    for name, model in report["models"].items():
        for section in ("constrained", "priors"):
            if section in model:
                print_variants(f"{name}, {section} on a KB of {model[section]['kb_triplets']:,} triplets", model[section])


def print_variants(title: str, timed: dict) -> None:
    print(f"\n{title}")
    print(f"{'run':<36}{'tokens':>8}{'lookups':>9}{'hits':>6}{'tokens/s':>10}")
    for run, r in timed["runs"].items():
        print(f"{run:<36}{r['tokens']:>8}{r['lookups']:>9}{r['hits']:>6}{r['tokens_per_second']:>10}")
    print("cost (1 - tokens/s against off): " + ", ".join(f"{b} {v}" for b, v in timed["cost"].items()))

if __name__ == "__main__":
    main()
