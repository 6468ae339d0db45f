"""Retrieval quality of the KB lookup, default mode against the reference retriever, on the same queries.

Two KBs: every annotated file in ../shared/data/lmlm-annotated (real), and a synthetic people KB.
From each, labelled queries of several kinds are generated:
  exact       the stored entity and relation;
  surface     case, spacing, underscores, diacritics, apostrophes;
  paraphrase  relation synonyms (a table written here, never seen by the KB) and entity variants
              ("Last, First", a dropped parenthetical, a dropped middle name);
  absent      a relation the entity does not have, or a look-alike entity that is not in the KB.
Reported: precision@1 on the answerable kinds, correct-abstention rate on the absent ones, per mode,
plus sweeps of the relation threshold and of the floor/margin rule for the default mode (run with
--seed 1 to see them on a second query sample, the one the defaults were chosen on).

    python benchmarks/retrieval_quality.py [--out benchmarks/results/retrieval_quality.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lmlm.kb import SqliteKB  # noqa: E402
from lmlm.kb.io import read_any  # noqa: E402
from lmlm.kb.normalize import normalize_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lmlm-annotated"

SYNONYMS = {
    "Birth Date": ["Date of Birth", "born on", "birthday", "DOB"],
    "Birthplace": ["Place of Birth", "Birth Place", "born in", "hometown"],
    "Death Date": ["Date of Death", "died on"],
    "Nationality": ["citizenship", "Country of Citizenship"],
    "Occupation": ["profession", "job", "line of work"],
    "Spouse": ["married to", "Husband or Wife", "Partner"],
    "Employer": ["works for", "Employed By", "Company"],
    "University": ["alma mater", "educated at", "College Attended"],
    "Major": ["field of study", "Subject Studied", "Degree Subject"],
    "Father": ["Father's Name", "dad"],
    "Mother": ["Mother's Name", "mom"],
    "Genre": ["music genre", "Musical Style"],
    "Founded": ["Founding Date", "established in", "Year Founded"],
    "Capital": ["capital city", "seat of government"],
    "Population": ["number of inhabitants", "Number of Residents"],
    "Location": ["located in", "Situated In", "Where Located"],
    "Position": ["Playing Position", "Role on Team"],
    "Team": ["plays for", "Club"],
    "Education": ["studied at", "School Attended"],
    "Award": ["prize won", "Honor Received"],
}
ABSENT_RELATIONS = list(SYNONYMS) + ["Favourite Colour", "Shoe Size", "Blood Type", "Pet Name", "Height"]

FIRST = ["Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena", "Mateo", "Nadia",
         "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Tamsin", "Ulla", "Viktor", "Wanda", "Ximena", "Yusuf", "Zofia"]
MIDDLE = ["Marie", "James", "Anne", "Lee", "Rose", "Paul", "Jean", "Ray"]
LAST = ["Abara", "Bergström", "Castellano", "Dufresne", "Eriksen", "Fontaine", "García", "Halvorsen", "Ibáñez", "Jankowski",
        "Kowalczyk", "Lindqvist", "Moreau", "Nakamura", "O'Connell", "Petrović", "Quispe", "Rautio", "Sørensen", "Takahashi",
        "Urquhart", "Vasquez", "Wiśniewski", "Xu", "Yilmaz", "Zeller"]
CITIES = ["Lisbon", "Kraków", "Osaka", "Tromsø", "Valparaíso", "Lagos", "Tbilisi", "Quito", "Graz", "Izmir", "Perth", "Bergen"]
ATTRS = {
    "Birth Date": lambda r: f"{r.randint(1, 28)} {r.choice(['January', 'March', 'May', 'July', 'October'])} {r.randint(1940, 2001)}",
    "Birthplace": lambda r: r.choice(CITIES),
    "University": lambda r: f"University of {r.choice(CITIES)}",
    "Major": lambda r: r.choice(["Chemistry", "Linguistics", "Economics", "Geology", "Music"]),
    "Employer": lambda r: r.choice(["Northwind Labs", "Bluefield Bank", "Orion Freight", "Helix Media"]),
    "Nationality": lambda r: r.choice(["Portuguese", "Polish", "Japanese", "Norwegian", "Chilean"]),
    "Occupation": lambda r: r.choice(["geologist", "violinist", "actuary", "architect"]),
    "Spouse": lambda r: f"{r.choice(FIRST)} {r.choice(LAST)}",
}


def synthetic_triplets(n_people: int, rng: random.Random) -> list[tuple[str, str, str]]:
    names: set[str] = set()
    triplets = []
    while len(names) < n_people:
        name = f"{rng.choice(FIRST)} {rng.choice(MIDDLE)} {rng.choice(LAST)}" if rng.random() < 0.5 else f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if rng.random() < 0.1:
            name += f" ({rng.choice(['painter', 'chemist', 'footballer'])})"
        if name in names:
            continue
        names.add(name)
        for relation in rng.sample(list(ATTRS), rng.randint(5, 7)):
            triplets.append((name, relation, ATTRS[relation](rng)))
    return triplets


# --- query generation ------------------------------------------------------------------


def _strip_diacritics(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def surface_variant(text: str, rng: random.Random) -> str:
    options = [str.upper, str.lower, lambda s: "  " + s.replace(" ", "  ") + " ", lambda s: s.replace(" ", "_")]
    if _strip_diacritics(text) != text:
        options.append(_strip_diacritics)
    else:
        options.append(lambda s: s.replace("e", "é", 1) if "e" in s else s.upper())
    if "'" in text or "’" in text:
        options.append(lambda s: s.replace("'", "’") if "'" in s else s.replace("’", "'"))
    return rng.choice(options)(text)


def entity_variants(name: str) -> list[str]:
    variants = []
    if "(" in name and name.endswith(")"):
        variants.append(name[: name.index("(")].strip())
    bare = name.split(" (")[0]
    words = bare.split()
    if len(words) >= 3 and all(w[:1].isupper() for w in words):
        variants.append(f"{words[0]} {words[-1]}")
    if 2 <= len(words) <= 3 and all(w[:1].isupper() for w in words):
        variants.append(f"{words[-1]}, {' '.join(words[:-1])}")
    return variants


def look_alike(name: str, known: set[str], rng: random.Random, pool: list[str]) -> str | None:
    words = name.split(" (")[0].split()
    for _ in range(20):
        if len(words) >= 2 and rng.random() < 0.5:
            candidate = " ".join(words[:-1] + [rng.choice(pool).split(" (")[0].split()[-1]])
        else:
            i = max(range(len(words)), key=lambda j: len(words[j]))
            w = words[i]
            if len(w) < 4:
                return None
            pos = rng.randrange(1, len(w) - 1)
            w = w[:pos] + rng.choice("aeioustrnl") + w[pos + 1 :]
            candidate = " ".join(words[:i] + [w] + words[i + 1 :])
        if normalize_key(candidate) not in known:
            return candidate
    return None


def make_queries(triplets: list[tuple[str, str, str]], rng: random.Random, per_kind: int) -> list[dict]:
    facts: dict[tuple[str, str], set[str]] = defaultdict(set)
    relations_of: dict[str, set[str]] = defaultdict(set)
    name_of: dict[str, str] = {}
    for e, r, v in triplets:
        facts[(normalize_key(e), normalize_key(r))].add(v)
        relations_of[normalize_key(e)].add(normalize_key(r))
        name_of.setdefault(normalize_key(e), e)
    # A name variant that several entities share is ambiguous, and one that any entity has is no look-alike.
    variant_owners: dict[str, set[str]] = defaultdict(set)
    for key, name in name_of.items():
        for variant in [name] + entity_variants(name):
            variant_owners[normalize_key(variant)].add(key)
    synonym_key = {normalize_key(k): k for k in SYNONYMS}
    sample = rng.sample(triplets, min(len(triplets), 4 * per_kind))
    queries: dict[str, list[dict]] = defaultdict(list)

    def add(kind, entity, relation, expected):
        if len(queries[kind]) < per_kind:
            queries[kind].append({"kind": kind, "entity": entity, "relation": relation, "expected": sorted(expected) if expected else None})

    for e, r, v in sample:
        expected = facts[(normalize_key(e), normalize_key(r))]
        add("exact", e, r, expected)
        if rng.random() < 0.5:
            add("surface", surface_variant(e, rng), r, expected)
        else:
            add("surface", e, surface_variant(r, rng), expected)
        if normalize_key(r) in synonym_key:
            # a synonym that is itself one of the entity's relations asks for that other fact
            synonyms = [x for x in SYNONYMS[synonym_key[normalize_key(r)]] if normalize_key(x) not in relations_of[normalize_key(e)]]
            if synonyms:
                add("paraphrase_relation", e, rng.choice(synonyms), expected)
        variants = [x for x in entity_variants(e) if variant_owners[normalize_key(x)] == {normalize_key(e)}]
        if variants:
            add("paraphrase_entity", rng.choice(variants), r, expected)
        own = relations_of[normalize_key(e)]
        absent = [a for a in ABSENT_RELATIONS if normalize_key(a) not in own and not any(normalize_key(s) in own for s in SYNONYMS.get(a, []))]
        if absent:
            a = rng.choice(absent)
            add("absent_relation", e, rng.choice([a] + SYNONYMS.get(a, [])), None)
        fake = look_alike(e, set(variant_owners), rng, list(name_of.values()))
        if fake:
            add("absent_entity", fake, r, None)
    return [q for kind in queries for q in queries[kind]]


# --- scoring -----------------------------------------------------------------------------

ANSWERABLE = ("exact", "surface", "paraphrase_relation", "paraphrase_entity")


def score(queries: list[dict], results) -> dict[str, dict]:
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for q, res in zip(queries, results):
        if q["expected"] is None:
            by_kind[q["kind"]].append(res.value is None)
        else:
            by_kind[q["kind"]].append(res.value in q["expected"])
    out = {kind: {"n": len(ok), ("precision_at_1" if kind in ANSWERABLE else "abstention"): round(sum(ok) / len(ok), 4)} for kind, ok in by_kind.items()}
    for group, kinds in (("paraphrase", ("paraphrase_relation", "paraphrase_entity")), ("absent", ("absent_relation", "absent_entity"))):
        oks = [ok for k in kinds for ok in by_kind.get(k, [])]
        if oks:
            out[group] = {"n": len(oks), ("precision_at_1" if group == "paraphrase" else "abstention"): round(sum(oks) / len(oks), 4)}
    return out


def evaluate(name: str, triplets: list[tuple[str, str, str]], workdir: Path, per_kind: int, seed: int) -> dict:
    rng = random.Random(seed)
    queries = make_queries(triplets, rng, per_kind)
    kb = SqliteKB(workdir / f"{name}.sqlite", create=True)
    kb.import_triplets(triplets)
    t0 = time.perf_counter()
    kb.embed(reference=True)
    embed_s = time.perf_counter() - t0
    pairs = [(q["entity"], q["relation"]) for q in queries]
    report = {"triplets": len(triplets), "queries": len(queries), "embed_seconds": round(embed_s, 1), "modes": {}, "relation_threshold_sweep": {}}
    for mode in ("default", "reference"):
        t0 = time.perf_counter()
        results = kb.lookup_many(pairs, mode=mode)
        report["modes"][mode] = score(queries, results)
        report["modes"][mode]["ms_per_query"] = round(1000 * (time.perf_counter() - t0) / len(pairs), 3)
    default_threshold = kb.thresholds.relation
    for threshold in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
        kb.thresholds.relation = threshold
        s = score(queries, kb.lookup_many(pairs))
        report["relation_threshold_sweep"][str(threshold)] = {"paraphrase": s["paraphrase"]["precision_at_1"], "absent": s["absent"]["abstention"]}
    kb.thresholds.relation = default_threshold
    report["relation_floor_margin_sweep"] = {}
    default_floor_margin = kb.thresholds.relation_floor, kb.thresholds.relation_margin
    for floor in (0.45, 0.5, 0.55):
        for margin in (0.05, 0.08, 0.1, 0.12, 0.15):
            kb.thresholds.relation_floor, kb.thresholds.relation_margin = floor, margin
            s = score(queries, kb.lookup_many(pairs))
            report["relation_floor_margin_sweep"][f"{floor}/{margin}"] = {
                kind: s[kind]["precision_at_1" if kind.startswith("paraphrase") else "abstention"]
                for kind in ("paraphrase_relation", "absent_relation", "paraphrase", "absent")}
    kb.thresholds.relation_floor, kb.thresholds.relation_margin = default_floor_margin
    kb.close()
    return report


def print_table(results: dict) -> None:
    kinds = ["exact", "surface", "paraphrase_relation", "paraphrase_entity", "paraphrase", "absent_relation", "absent_entity", "absent"]
    for name, report in results["kbs"].items():
        print(f"\n{name}: {report['triplets']} triplets, {report['queries']} queries")
        print(f"{'kind':<22}{'n':>6}{'default':>10}{'reference':>11}")
        for kind in kinds:
            d, r = report["modes"]["default"].get(kind), report["modes"]["reference"].get(kind)
            if d:
                metric = "precision_at_1" if "precision_at_1" in d else "abstention"
                print(f"{kind:<22}{d['n']:>6}{d[metric]:>10.3f}{r[metric]:>11.3f}")
        print("relation floor/margin sweep (default mode; paraphrase_relation / absent_relation): " + ", ".join(
            f"{fm}: {v['paraphrase_relation']:.3f} / {v['absent_relation']:.3f}" for fm, v in report["relation_floor_margin_sweep"].items()))
        print("relation threshold sweep (default mode): " + ", ".join(
            f"{t}: para {v['paraphrase']:.3f} / absent {v['absent']:.3f}" for t, v in report["relation_threshold_sweep"].items()))
    print("\ntargets (default mode):", json.dumps(results["targets"], indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--per-kind", type=int, default=300)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieval_quality.json")
    args = parser.parse_args()

    real = []
    for path in sorted(args.shared.glob("*.json")):
        real += [row[:3] for row in read_any(path)]
    synthetic = synthetic_triplets(args.people, random.Random(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        results = {"kbs": {name: evaluate(name, triplets, Path(tmp), args.per_kind, args.seed)
                           for name, triplets in (("real", real), ("synthetic", synthetic))}}
    targets = {}
    for name, report in results["kbs"].items():
        d, r = report["modes"]["default"], report["modes"]["reference"]
        targets[name] = {
            "exact>=0.98": d["exact"]["precision_at_1"] >= 0.98,
            "surface>=0.98": d["surface"]["precision_at_1"] >= 0.98,
            "paraphrase>=0.85": d["paraphrase"]["precision_at_1"] >= 0.85,
            "abstention>=0.90": d["absent"]["abstention"] >= 0.90,
            "paraphrase>reference": d["paraphrase"]["precision_at_1"] > r["paraphrase"]["precision_at_1"],
            "absent>reference": d["absent"]["abstention"] > r["absent"]["abstention"],
        }
    results["targets"] = targets
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print_table(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
