"""Retrieval quality of the KB lookup, default mode against the reference retriever, on the same queries.

Three KBs and their query sets:
  real           every annotated file in ../shared/data/lmlm-annotated:
                   synthetic_kinds  queries generated from its rows (below);
                   handwritten      benchmarks/data/retrieval_handwritten.jsonl, written by hand against its rows:
                                    relation_order, relation_synonym, entity_article, entity_initials,
                                    entity_transliteration, entity_distinctive_part, absent_other_type;
  synthetic      a generated people KB, with the generated kinds;
  dwiki-eval100  the Llama annotator's database in ../shared/data/retrieval-dev, asked GPT-4o's calls on the
                 same passages (lmlm.evaluate.retrieval_sets): same_name, paraphrase and absent, labelled by
                 value; cross_fit and cross_confirm are the two halves of the passages (fit on one, confirm
                 on the other), cross_both_halves both together.
Generated kinds:
  exact       the stored entity and relation;
  surface     case, spacing, underscores, diacritics, apostrophes;
  paraphrase  relation synonyms (a table written here, never seen by the KB) and entity variants
              ("Last, First", a dropped parenthetical, a dropped middle name);
  absent      a relation the entity does not have, or a look-alike entity that is not in the KB.
Reported per set and kind, for each mode: the correct / wrong / empty rates (for absent kinds, empty is
correct), plus sweeps of the default mode's relation thresholds on the generated kinds.

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

from lmlm.corpus import read_corpus  # noqa: E402
from lmlm.evaluate.retrieval_sets import Query, check_handwritten, cross_annotator_queries, read_handwritten  # noqa: E402
from lmlm.kb import SqliteKB  # noqa: E402
from lmlm.kb.io import read_any  # noqa: E402
from lmlm.kb.normalize import normalize_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lmlm-annotated"
RETRIEVAL_DEV = REPO.parent / "shared" / "data" / "retrieval-dev"
CROSS_DATABASE = "dwiki-eval100-annotator_database.json"
CROSS_CALLS = "dwiki-eval100-devhalf_chatgpt_gpt4o-v7.1_cleaned.json"
HANDWRITTEN = REPO / "benchmarks" / "data" / "retrieval_handwritten.jsonl"

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

GROUPS = {  # kinds reported together as well as one by one
    "paraphrase": ("paraphrase_relation", "paraphrase_entity"),
    "absent": ("absent_relation", "absent_entity"),
    "relation_paraphrase": ("relation_order", "relation_synonym"),
    "entity_variant": ("entity_article", "entity_initials", "entity_transliteration", "entity_distinctive_part"),
}


def outcome(expected: list[str] | None, value: str | None) -> str:
    """correct, wrong or empty. For a fact that is not in the KB, abstaining (empty) is the correct answer."""
    if expected is None:
        return "correct" if value is None else "wrong"
    if value is None:
        return "empty"
    return "correct" if value in expected else "wrong"


def score(queries: list[dict], results) -> dict[str, dict]:
    """Per kind (and per group of kinds): n and the correct / wrong / empty rates."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for q, res in zip(queries, results):
        by_kind[q["kind"]].append(outcome(q["expected"], res.value))
    for group, kinds in GROUPS.items():
        merged = [o for k in kinds for o in by_kind.get(k, [])]
        if merged and len([k for k in kinds if k in by_kind]) > 1:
            by_kind[group] = merged
    return {kind: {"n": len(outs), **{o: round(outs.count(o) / len(outs), 4) for o in ("correct", "wrong", "empty")}}
            for kind, outs in by_kind.items()}


def run_modes(kb, queries: list[dict]) -> dict:
    pairs = [(q["entity"], q["relation"]) for q in queries]
    report = {}
    for mode in ("default", "reference"):
        t0 = time.perf_counter()
        results = kb.lookup_many(pairs, mode=mode)
        report[mode] = score(queries, results)
        report[mode]["ms_per_query"] = round(1000 * (time.perf_counter() - t0) / max(1, len(pairs)), 3)
    return report


def build_kb(name: str, triplets: list[tuple], workdir: Path):
    kb = SqliteKB(workdir / f"{name}.sqlite", create=True)
    kb.import_triplets(triplets)
    t0 = time.perf_counter()
    kb.embed(reference=True)
    return kb, round(time.perf_counter() - t0, 1)


def sweeps(kb, queries: list[dict]) -> dict:
    """The default mode's relation thresholds swept on the synthetic kinds (correct rates)."""
    pairs = [(q["entity"], q["relation"]) for q in queries]
    out = {"relation_threshold_sweep": {}, "relation_floor_margin_sweep": {}}
    default_threshold = kb.thresholds.relation
    for threshold in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
        kb.thresholds.relation = threshold
        s = score(queries, kb.lookup_many(pairs))
        out["relation_threshold_sweep"][str(threshold)] = {k: s[k]["correct"] for k in ("paraphrase", "absent")}
    kb.thresholds.relation = default_threshold
    default_floor_margin = kb.thresholds.relation_floor, kb.thresholds.relation_margin
    for floor in (0.45, 0.5, 0.55):
        for margin in (0.05, 0.08, 0.1, 0.12, 0.15):
            kb.thresholds.relation_floor, kb.thresholds.relation_margin = floor, margin
            s = score(queries, kb.lookup_many(pairs))
            out["relation_floor_margin_sweep"][f"{floor}/{margin}"] = {
                k: s[k]["correct"] for k in ("paraphrase_relation", "absent_relation", "paraphrase", "absent")}
    kb.thresholds.relation_floor, kb.thresholds.relation_margin = default_floor_margin
    return out


def evaluate_synthetic_kinds(name: str, triplets: list[tuple], workdir: Path, per_kind: int, seed: int, extra_sets: dict) -> dict:
    """The generated kinds on one KB, plus any other query sets written for the same KB."""
    queries = make_queries(triplets, random.Random(seed), per_kind)
    kb, embed_s = build_kb(name, triplets, workdir)
    report = {"triplets": len(triplets), "embed_seconds": embed_s, "sets": {"synthetic_kinds": {"queries": len(queries), "modes": run_modes(kb, queries)}}}
    for set_name, set_queries in extra_sets.items():
        report["sets"][set_name] = {"queries": len(set_queries), "modes": run_modes(kb, set_queries)}
    report.update(sweeps(kb, queries))
    kb.close()
    return report


def evaluate_cross_annotator(triplets: list[tuple], queries: list[Query], stats: dict, workdir: Path) -> dict:
    kb, embed_s = build_kb("dwiki-eval100", triplets, workdir)
    rows = [q.to_json() for q in queries]
    report = {"triplets": len(triplets), "embed_seconds": embed_s, "labelling": stats, "sets": {}}
    for set_name in ("cross_fit", "cross_confirm"):
        chosen = [r for r in rows if r["set"] == set_name]
        report["sets"][set_name] = {"queries": len(chosen), "modes": run_modes(kb, chosen)}
    report["sets"]["cross_both_halves"] = {"queries": len(rows), "modes": run_modes(kb, rows)}
    kb.close()
    return report


def print_table(results: dict) -> None:
    print(f"\n{'KB':<15}{'set':<19}{'kind':<25}{'n':>5}   {'default c / w / e':<22}{'reference c / w / e':<22}")
    for kb_name, report in results["kbs"].items():
        for set_name, block in report["sets"].items():
            d, r = block["modes"]["default"], block["modes"]["reference"]
            for kind in sorted(k for k in d if k != "ms_per_query"):
                cells = ["{correct:.2f} / {wrong:.2f} / {empty:.2f}".format(**m[kind]) for m in (d, r)]
                print(f"{kb_name:<15}{set_name:<19}{kind:<25}{d[kind]['n']:>5}   {cells[0]:<22}{cells[1]:<22}")
    print("(c / w / e: correct, wrong, empty. For absent kinds the correct answer is to abstain, so empty counts as correct.)")


def targets(results: dict) -> dict:
    out = {}
    for name in ("real", "synthetic"):
        d = results["kbs"][name]["sets"]["synthetic_kinds"]["modes"]["default"]
        r = results["kbs"][name]["sets"]["synthetic_kinds"]["modes"]["reference"]
        out[name] = {
            "exact>=0.98": d["exact"]["correct"] >= 0.98,
            "surface>=0.98": d["surface"]["correct"] >= 0.98,
            "paraphrase>=0.85": d["paraphrase"]["correct"] >= 0.85,
            "abstention>=0.90": d["absent"]["correct"] >= 0.90,
            "paraphrase>reference": d["paraphrase"]["correct"] > r["paraphrase"]["correct"],
            "absent>reference": d["absent"]["correct"] > r["absent"]["correct"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--retrieval-dev", type=Path, default=RETRIEVAL_DEV)
    parser.add_argument("--handwritten", type=Path, default=HANDWRITTEN)
    parser.add_argument("--per-kind", type=int, default=300)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieval_quality.json")
    args = parser.parse_args()

    real = []
    for path in sorted(args.shared.glob("*.json")):
        real += [row[:3] for row in read_any(path)]
    handwritten = read_handwritten(args.handwritten)
    problems = check_handwritten(handwritten, real)
    if problems:
        sys.exit("hand-written queries do not fit the KB:\n  " + "\n  ".join(problems))
    dev_triplets = [row[:3] for row in read_any(args.retrieval_dev / CROSS_DATABASE)]
    cross, stats = cross_annotator_queries(read_corpus(args.retrieval_dev / CROSS_CALLS).examples, dev_triplets)
    synthetic = synthetic_triplets(args.people, random.Random(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        results = {"kbs": {
            "real": evaluate_synthetic_kinds("real", real, Path(tmp), args.per_kind, args.seed,
                                             {"handwritten": [q.to_json() for q in handwritten]}),
            "synthetic": evaluate_synthetic_kinds("synthetic", synthetic, Path(tmp), args.per_kind, args.seed, {}),
            "dwiki-eval100": evaluate_cross_annotator(dev_triplets, cross, stats, Path(tmp)),
        }}
    results["targets"] = targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print_table(results)
    print("\ntargets (default mode, synthetic kinds):", json.dumps(results["targets"]))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
