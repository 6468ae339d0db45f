"""The knowledge base at scale: 10M synthetic triplets about 1M entities (``--triplets N`` for another size,
ten per entity), in SQLite or PostgreSQL (``--backend``).

Reports build time and throughput, disk (files, or the database's size), resident memory while serving
(measured in a fresh process: a replica, which for PostgreSQL builds its faiss index in memory from the
stored vectors), exact and fuzzy lookup latency p50/p99 (single, and amortized over batches of 32), the
compressed entity index's recall@1 against exact search with its bytes per vector, and edit-to-visible
latency across two replicas (two KB objects on the same file or database: one updates a fact, the other
looks it up until it answers with the new value; for PostgreSQL also until its LISTEN thread has applied
the change). PostgreSQL: ``--url`` (or ``env:NAME``) names an empty database; without it a throwaway
server is started (tests/postgres_server.py).

Entity vectors here come from the character-trigram HashingEncoder, not MiniLM: embedding a million
names with MiniLM on 2 cores takes about 17 minutes. The index, its memory and its latency do not
depend on which encoder filled it. For the "with MiniLM" latencies, every encoder call the KB made
while answering is replayed with MiniLM in the same process and its time added to that query's.

    python benchmarks/kb_scale.py [--backend sqlite|postgres] [--triplets 10000000] [--url URL] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lmlm.kb import open_kb  # noqa: E402
from lmlm.kb import index as vindex  # noqa: E402
from lmlm.kb.encoder import HashingEncoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "an", "is", "ul", "be", "na", "ri", "gu", "fe", "zo", "ty", "pe", "qua"]
RELATIONS = [f"{a} {b}" for a in ("Birth", "Home", "Work", "Study", "Family", "Award", "Team", "Music", "Film", "Club")
             for b in ("Date", "Place", "Partner", "Year", "Title")]
PER_ENTITY = 10
REFERENCE_TRIPLETS = 54_600_000


def name(i: int) -> str:
    """A unique, deterministic person-like name for entity ``i``; every fifth has two middle names."""
    s = SYLLABLES
    first = (s[i % 20] + s[(i // 20) % 20]).capitalize()
    last = (s[(i // 400) % 20] + s[(i // 8000) % 20] + s[(i // 160_000) % 20] + s[(i // 3_200_000) % 20]).capitalize()
    if i % 5 == 0:
        return f"{first} {s[(i * 7) % 20].capitalize()}{s[(i * 3) % 20]} {s[(i * 11) % 20].capitalize()}{s[(i * 13) % 20]} {last}"
    return f"{first} {last}"


def facts(i: int) -> list[tuple[str, str]]:
    """Ten distinct relations (a stride coprime to 50) with pseudo-random values, cheap to make."""
    return [(RELATIONS[(i + 3 * k) % len(RELATIONS)], f"value {(i * 2654435761 + 977 * k) % 1_000_003}") for k in range(PER_ENTITY)]


def rows(n: int):
    for i in range(n):
        entity = name(i)
        for relation, value in facts(i):
            yield entity, relation, value


def percentiles(seconds: list[float]) -> dict:
    us = np.asarray(seconds) * 1e6
    return {"p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1)}


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# --- serving, in a fresh process ---------------------------------------------------------


class RecordingEncoder:
    """Passes encode calls through and keeps them, so the same calls can be replayed with MiniLM."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


def serve(path: str, n: int, queries: int) -> dict:
    rng = random.Random(1)
    recorder = RecordingEncoder(HashingEncoder())
    t0 = time.perf_counter()
    kb = open_kb(path, encoder=recorder, listen=True)
    kb.embed()  # loads the stored index (SQLite) or builds it in memory from the stored vectors (PostgreSQL); nothing is encoded
    out = {"rss_after_open_mb": vm_kb("VmRSS") // 1024, "open_and_index_seconds": round(time.perf_counter() - t0, 1)}

    def exact_queries(count):
        out = []
        for _ in range(count):
            i = rng.randrange(n)
            out.append((name(i), rng.choice(facts(i))[0]))
        return out

    warm, exact, exact_batched = exact_queries(20_000), exact_queries(queries), exact_queries(queries)
    fuzzy, expected = [], []
    for q in range(queries):
        i = rng.randrange(n // 5) * 5  # four-word names
        relation, value = rng.choice(facts(i))
        first, mid1, _, last = name(i).split()
        if q % 4 == 0:  # a look-alike nobody has: searched, then refused
            fuzzy.append((f"{first} {mid1} Zz{last.lower()}", relation))
            expected.append(None)
        elif q % 4 == 1:  # the relation written differently
            fuzzy.append((name(i), relation.lower().replace(" ", "_") + "s"))
            expected.append(value)
        else:  # one middle name left out: only the vector index finds it
            fuzzy.append((f"{first} {mid1} {last}", relation))
            expected.append(value)

    def timed(pairs, size):
        """Per-query seconds (amortized over batches of ``size``), results, and the encoder calls of each batch."""
        times, results, calls = [], [], []
        for start in range(0, len(pairs), size):
            batch = pairs[start : start + size]
            recorder.calls = []
            t0 = time.perf_counter()
            results += kb.lookup_many(batch)
            times.append((time.perf_counter() - t0) / len(batch))
            calls.append(recorder.calls)
        return times, results, calls

    timed(warm, 32)  # steady state: other queries warm the caches, then fresh ones are timed
    times, results, _ = timed(exact, 1)
    out["exact_single"] = percentiles(times)
    out["exact_hit_rate"] = sum(r.tier == "exact" for r in results) / len(results)
    out["exact_batch32_per_query"] = percentiles(timed(exact_batched, 32)[0])

    from lmlm.kb.encoder import load_encoder

    minilm = load_encoder()
    minilm.encode(["warm up"])

    def with_minilm(times, calls, size):
        """Add the time MiniLM takes for exactly the encode calls each batch made (the KB caches query vectors)."""
        total = []
        for t, batch_calls in zip(times, calls):
            t0 = time.perf_counter()
            for texts in batch_calls:
                minilm.encode(texts)
            total.append(t + (time.perf_counter() - t0) / size)
        return total

    kb.vectors.forget_query_vectors()
    times, results, calls = timed(fuzzy, 1)
    out["fuzzy_single"] = percentiles(times)
    out["fuzzy_single_with_minilm"] = percentiles(with_minilm(times, calls, 1))
    out["fuzzy_accuracy"] = round(sum(r.value == e for r, e in zip(results, expected)) / len(results), 4)
    kb.vectors.forget_query_vectors()
    times, _, calls = timed(fuzzy, 32)
    out["fuzzy_batch32_per_query"] = percentiles(times)
    out["fuzzy_batch32_per_query_with_minilm"] = percentiles(with_minilm(times, calls, 32))
    out["rss_serving_mb"] = vm_kb("VmRSS") // 1024
    out["peak_rss_with_minilm_mb"] = vm_kb("VmHWM") // 1024
    kb.close()
    return out


# --- main ------------------------------------------------------------------------------------


def edit_to_visible(spec: str, n: int, edits: int = 200) -> dict:
    """Seconds from the start of one replica's update to the other replica's first lookup with the new value;
    for PostgreSQL, on every other edit instead, to the other replica's listener having applied it (no lookup)."""
    rng = random.Random(3)
    with open_kb(spec, encoder=HashingEncoder()) as writer, open_kb(spec, encoder=HashingEncoder(), listen=True) as reader:
        listens = hasattr(reader, "replica")
        visible, applied = [], []
        for k in range(edits):
            i = rng.randrange(n)
            relation = rng.choice(facts(i))[0]
            triplet = reader.lookup(name(i), relation).triplet
            t0 = time.perf_counter()
            writer.update(triplet.id, f"edited {k}")
            if listens and k % 2:
                version = writer.store.current_version()
                while reader.replica.applied < version:
                    time.sleep(0.0002)
                applied.append(time.perf_counter() - t0)
                continue
            while reader.lookup(name(i), relation).value != f"edited {k}":
                pass
            visible.append(time.perf_counter() - t0)
        out = {"edits": edits, "visible_to_other_replica": percentiles(visible)}
        if applied:
            out["applied_by_other_replicas_listener"] = percentiles(applied)
        return out


def disk_mb(backend: str, spec: str, folder: Path) -> dict:
    if backend == "postgres":
        with open_kb(spec) as kb:
            return {"database": round(kb.store.database_bytes() / 2**20, 1)}
    sizes = {p.name.split(".", 1)[-1] or "sqlite": p.stat().st_size for p in folder.iterdir()}
    return {k: round(v / 2**20, 1) for k, v in sizes.items()}


def recall_at_1(kb, n: int, samples: int = 1000) -> dict:
    """The compressed index against exact inner-product search over the same stored vectors."""
    compressed = kb.indexes.loaded["entities"]
    exact = vindex.build_index(kb.encoder.dim, lambda: kb.store.iter_vectors("entities"), kb.store.counts()["entities"], exact_max=10**12)
    rng = random.Random(2)
    queries = []
    for _ in range(samples):
        words = name(rng.randrange(n // 5) * 5).split()
        queries.append(" ".join(words[:2] + words[3:]))
    vectors = kb.encoder.encode(queries)
    _, got = vindex.search(compressed, vectors, 1)
    _, want = vindex.search(exact, vectors, 1)
    return {"recall_at_1": round(float((got[:, 0] == want[:, 0]).mean()), 4), "index": vindex.describe(compressed),
            "bytes_per_vector": vindex.bytes_per_vector(compressed), "exact_bytes_per_vector": vindex.bytes_per_vector(exact)}


def build_and_measure(args, spec: str, folder: Path) -> dict:
    n = args.triplets // PER_ENTITY if args.triplets else args.entities
    triplets = n * PER_ENTITY
    report = {"backend": args.backend, "entities": n, "triplets": triplets, "encoder": "hashing-trigram-384 (not MiniLM; see the docstring)"}
    kb = open_kb(spec, encoder=HashingEncoder(), create=True)
    t0 = time.perf_counter()
    stats = kb.import_triplets(rows(n))
    build_s = time.perf_counter() - t0
    report["import"] = {"seconds": round(build_s, 1), "triplets_per_second": round(stats.added / build_s), "added": stats.added}
    t0 = time.perf_counter()
    kb.embed()
    report["embed_and_index_seconds"] = round(time.perf_counter() - t0, 1)
    report["recall"] = recall_at_1(kb, n)
    kb.close()
    report["disk_mb"] = disk_mb(args.backend, spec, folder)
    main_store = report["disk_mb"]["database" if args.backend == "postgres" else "sqlite"]  # the triplets' store, indexes apart
    report["bytes_per_triplet"] = round(main_store * 2**20 / triplets, 1)
    child = subprocess.run([sys.executable, __file__, "--serve-child", "env:LMLM_SCALE_KB", "--entities", str(n), "--queries", str(args.queries)],
                           capture_output=True, text=True, check=True, env={**os.environ, "LMLM_SCALE_KB": spec})  # no password in ps
    report["serving"] = json.loads(child.stdout.strip().splitlines()[-1])
    report["edit_to_visible"] = edit_to_visible(spec, n)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--triplets", type=int, default=None, help="ten per entity; overrides --entities")
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="postgres: an empty database (a URL or env:NAME); default: a throwaway server")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=None, help="make the KB's temporary folder in this folder, created if missing (a disk with room; default: the system's)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kb_scale.json")
    parser.add_argument("--serve-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_child:
        print(json.dumps(serve(args.serve_child, args.entities, args.queries)))
        return

    server = None
    if args.backend == "postgres" and not args.url:
        from postgres_server import PostgresServer

        server = PostgresServer().start()
        args.url = server.new_database("scale")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            spec = args.url if args.backend == "postgres" else str(Path(tmp) / "scale.sqlite")
            report = build_and_measure(args, spec, Path(tmp))
    finally:
        if server:
            server.stop()
    n, triplets = report["entities"], report["triplets"]

    s = report["serving"]
    bpv = report["recall"]["bytes_per_vector"]
    entities_per_triplet = n / triplets
    report["reference_scale_arithmetic"] = {
        "triplets": REFERENCE_TRIPLETS,
        "reference_flat_fp32_triplet_index_gb": round(REFERENCE_TRIPLETS * 384 * 4 / 1e9, 1),
        f"ours_{args.backend}_gb": round(REFERENCE_TRIPLETS * report["bytes_per_triplet"] / 1e9, 1),
        "ours_entity_index_gb_at_this_entity_ratio": round(REFERENCE_TRIPLETS * entities_per_triplet * bpv / 1e9, 2),
        "ours_entity_index_gb_if_every_triplet_had_its_own_entity": round(REFERENCE_TRIPLETS * bpv / 1e9, 1),
    }
    report["targets"] = {
        "import>=100k/s": report["import"]["triplets_per_second"] >= 100_000,
        "exact_p50<=50us": s["exact_single"]["p50_us"] <= 50,
        "exact_p99<=2ms (issue 30, at 54.6M)": s["exact_single"]["p99_us"] <= 2000,
        "rss<=4GB": s["peak_rss_with_minilm_mb"] <= 4096,
        "rss<=12GB (issue 30, at 54.6M)": s["peak_rss_with_minilm_mb"] <= 12 * 1024,
        "fuzzy_single_p50<=20ms (with MiniLM)": s["fuzzy_single_with_minilm"]["p50_us"] <= 20_000,
        "fuzzy_batch32_p50<=3ms (with MiniLM)": s["fuzzy_batch32_per_query_with_minilm"]["p50_us"] <= 3_000,
        "recall@1>=0.95": report["recall"]["recall_at_1"] >= 0.95,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
