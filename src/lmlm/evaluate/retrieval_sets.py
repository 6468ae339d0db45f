"""Labelled retrieval queries from real data, for benchmarks/retrieval_quality.py (issue 27).

Cross-annotator set: each GPT-4o call (entity, relation, value) on a passage is asked of the KB that
another annotator (Llama) extracted from the same passages. A call is labelled by VALUE, never by
relation name: it is answerable with the stored values of its entity that match GPT-4o's value, or
the fact is absent. Answerable calls are split by whether a matching row has the same relation name
(after case/punctuation folding) or another one ("paraphrase"). Passages are split into a "fit" and
a "confirm" half by a hash of their id, so that a decision model can be fit on one and checked on
the other.

Hand-written set: a JSONL of queries written by hand against the real annotated KB
(benchmarks/data/retrieval_handwritten.jsonl), each with its kind and expected values or "absent".

The folding here is the labeler's own, on purpose: a label must not depend on the retriever's
normalization code that it is meant to judge.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.files import read_jsonl

ABSENT = "absent"

# Letters that NFKD leaves whole: folded by hand so that "Łódź" and "Lodz" label alike.
_TRANSLITERATE = str.maketrans({"ł": "l", "ø": "o", "ß": "ss", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_POSSESSIVE = re.compile(r"['’`´]s\b")
_APOSTROPHES = re.compile(r"['’`´\\\"“”]")
_NON_WORD = re.compile(r"[\W_]+")
_PARENTHETICAL = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")
STRONG = ("equal", "tokens", "date", "number")
WEAK = ("contains", "list_item", "partial")  # ranked: a better kind of match hides a worse one
_STOPWORDS = frozenset("a an the of in on at by to for from with and or".split())
_LIST_SEPARATORS = re.compile(r"\s*(?:(?<!\d),|,(?!\d{3}\b)|;|\band\b|&)\s*")  # not a thousands separator
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(), 1)}
THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")  # "39,900" is one number
_DECIMAL_POINT = re.compile(r"(?<=\d)[.,](?=\d)")
_ORDINAL = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())} | {"sept": 9})


def fold(text: str) -> str:
    """Case, Unicode compatibility forms, diacritics, Ł/Ø/ß/Æ, possessive 's, quotes and punctuation folded away."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold().translate(_TRANSLITERATE))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("", _POSSESSIVE.sub("", text))
    return " ".join(_NON_WORD.sub(" ", text).split())


def value_words(value: str) -> list[str]:
    """A value's normalized words, each number one word: "39,900" is "39900", and "1.5" keeps its point as a letter,
    which normalizing keeps, so that neither reads as two numbers ("5" is not a word of "5,000")."""
    return fold(_DECIMAL_POINT.sub("d", THOUSANDS_COMMA.sub("", value))).split()


def content_words(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in _STOPWORDS]


def _number(token: str) -> float | None:
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token])
    try:
        return float(token)
    except ValueError:
        return None


def _numbers_and_rest(value: str) -> tuple[list[float], set[str]]:
    """The numbers of a value ("39,900" is one number) and its other content words."""
    text = THOUSANDS_COMMA.sub("", value)
    numbers, rest = [], set()
    for token in content_words(fold(text).split()):
        n = _number(token)
        if n is None:
            rest.add(token)
        else:
            numbers.append(n)
    return numbers, rest


def parse_date(value: str) -> tuple[int, int, int | None] | None:
    """(year, month, day or None) of a value that is only a date with a month name, in any order."""
    tokens = _ORDINAL.sub(r"\1", fold(value)).split()
    months = [_MONTHS[t] for t in tokens if t in _MONTHS]
    years = [int(t) for t in tokens if t.isdigit() and len(t) == 4]
    days = [int(t) for t in tokens if t.isdigit() and len(t) <= 2 and 1 <= int(t) <= 31]
    if len(months) != 1 or len(years) != 1 or len(days) > 1 or len(tokens) != 2 + len(days):
        return None
    return years[0], months[0], days[0] if days else None


def _items(value: str) -> list[str]:
    return [item for item in _LIST_SEPARATORS.split(value) if item.strip()]


def contiguous(short: list[str], long: list[str]) -> bool:
    n = len(short)
    return n > 0 and any(long[i : i + n] == short for i in range(len(long) - n + 1))


def _strong_match(asked: str, stored: str) -> str | None:
    """Does the stored value state the asked value? Equal, the same words in any order, the same date
    or number, or the asked value whole inside the stored one ("Poland" in "east-central Poland")."""
    a, s = fold(asked), fold(stored)
    if not a or not s:
        return None
    if a == s:
        return "equal"
    a_content, s_content = content_words(a.split()), content_words(s.split())
    if a_content and sorted(a_content) == sorted(s_content):
        return "tokens"
    date_a, date_s = parse_date(asked), parse_date(stored)
    if date_a and date_a == date_s:
        return "date"
    (nums_a, rest_a), (nums_s, rest_s) = _numbers_and_rest(asked), _numbers_and_rest(stored)
    if len(nums_a) == 1 and nums_a == nums_s and len(rest_a ^ rest_s) <= 1:
        return "number"  # "three children" / "three", "until 2009" / "2009"; not "2 goals" / "2 caps", nor a distance for a location
    if a_content and contiguous(value_words(asked), value_words(stored)):
        return "contains"
    return None


def match_value(asked: str, stored: str) -> str | None:
    """How the stored value matches the asked one, or None. Besides the strong matches: the stored value
    is some items of an asked list ("Chelsea School of Art" of "AA, Chelsea School of Art, UEL"), or the
    larger part of the asked value ("vice-champion" of "European vice-champion")."""
    how = _strong_match(asked, stored)
    if how:
        return how
    items = _items(asked)
    if len(items) >= 2 and all(any(_strong_match(item, part) in STRONG for item in items) for part in _items(stored)):
        return "list_item"
    a, s = value_words(asked), value_words(stored)
    a_content, s_content = set(content_words(a)), set(content_words(s))
    if s_content and contiguous(s, a) and 2 * len(s_content) >= len(a_content):
        return "partial"
    return None


# --- entity resolution ----------------------------------------------------------------------------------


def _entity_tokens(name: str) -> tuple[str, ...]:
    """Order-free content words of a name without parentheticals, quotes or articles."""
    return tuple(sorted(content_words(fold(_PARENTHETICAL.sub("", name)).split())))


class EntityIndex:
    """Stored entity names, looked up in tiers: exact, folded, variant (same content words once
    parentheticals, quotes and articles are dropped, in any order), contained (one name's words
    a contiguous run of the other's). The last tier is only a candidate: a value must confirm it."""

    TIERS = ("exact", "folded", "variant", "contained")

    def __init__(self, names):
        self.names = sorted(set(names))
        self._folded, self._variant = defaultdict(set), defaultdict(set)
        for name in self.names:
            self._folded[fold(name)].add(name)
            self._variant[_entity_tokens(name)].add(name)

    def resolve(self, entity: str) -> tuple[str | None, list[str]]:
        if entity in self.names:
            return "exact", [entity]
        for tier, found in (("folded", self._folded.get(fold(entity))), ("variant", self._variant.get(_entity_tokens(entity)))):
            if found:
                return tier, sorted(found)
        words = fold(_PARENTHETICAL.sub("", entity)).split()
        contained = [n for n in self.names if contiguous(words, fold(n).split()) or contiguous(fold(_PARENTHETICAL.sub("", n)).split(), words)]
        return ("contained", contained) if contained else (None, [])


# --- queries -----------------------------------------------------------------------------------------------


@dataclass
class Query:
    set: str
    kind: str
    entity: str
    relation: str
    expected: list[str] | None  # None: the fact is not in the KB, the right answer is to abstain
    passage: str | None = None
    asked_values: list[str] = field(default_factory=list)
    entity_match: str | None = None
    matches: list[dict] = field(default_factory=list)  # the stored rows that answer it, and how
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def passage_half(passage_id: str) -> str:
    """"fit" or "confirm", from a hash of the passage id. Not sha1 of the text: the shared dev half was
    itself chosen by that hash's parity, so it would put every passage on one side."""
    digest = hashlib.sha256(f"lmlm-retrieval-split:{passage_id}".encode()).digest()
    return "fit" if digest[0] % 2 == 0 else "confirm"


def passage_id(example: dict, index: int) -> str:
    return str(example.get("original_dataset_ids") or example.get("id") or f"#{index}")


def cross_annotator_queries(examples: list[dict], triplets: list[tuple]) -> tuple[list[Query], dict]:
    """One query per distinct (passage, entity, relation) that the asking annotator wrote, labelled
    against the stored triplets. Returns the queries and counts (calls, entity tiers, kinds)."""
    rows_of = defaultdict(list)
    for entity, relation, value, *_ in triplets:
        rows_of[entity].append((relation, value))
    index = EntityIndex(rows_of)
    grouped: dict[tuple, list[tuple[str, str, str]]] = defaultdict(list)
    order: list[tuple] = []
    for i, example in enumerate(examples):
        pid = passage_id(example, i)
        for entity, relation, value in markup.triplets(example["annotated_text"]):
            key = (pid, fold(entity), fold(relation))
            if key not in grouped:
                order.append(key)
            grouped[key].append((entity, relation, value))
    stats = {"passages": len(examples), "calls": sum(len(v) for v in grouped.values()), "queries": len(order),
             "entity_match": defaultdict(int), "entity_match_calls": defaultdict(int), "kinds": defaultdict(int), "value_match": defaultdict(int)}
    queries = []
    for key in order:
        query = _label(key[0], grouped[key], index, rows_of)
        queries.append(query)
        stats["entity_match"][query.entity_match or "none"] += 1
        stats["entity_match_calls"][query.entity_match or "none"] += len(grouped[key])
        stats["kinds"][f"{query.set}/{query.kind}"] += 1
        for m in query.matches:
            stats["value_match"][m["how"]] += 1
    return queries, json.loads(json.dumps(stats))


def _label(pid: str, calls: list[tuple[str, str, str]], index: EntityIndex, rows_of) -> Query:
    entity, relation = calls[0][0], calls[0][1]
    asked = [value for _, _, value in calls]
    tier, names = index.resolve(entity)
    matches = []
    for name in names:
        for stored_relation, stored_value in rows_of[name]:
            how = _best_match(asked, stored_value)
            # a contained name is another entity unless a value as good as equal says otherwise
            if how and (tier != "contained" or how in STRONG):
                matches.append({"entity": name, "relation": stored_relation, "value": stored_value, "how": how})
    matches = _best_kind(matches)
    if matches:
        same = any(fold(m["relation"]) == fold(relation) for m in matches)
        kind = "same_name" if same else "paraphrase"
        expected = sorted({m["value"] for m in matches})
    else:
        kind, expected = ABSENT, None
    return Query(set=f"cross_{passage_half(pid)}", kind=kind, entity=entity, relation=relation, expected=expected,
                 passage=pid, asked_values=asked, entity_match=tier, matches=matches)


def _rank(how: str) -> int:
    """Strong matches are all as good as each other; weak ones are ranked."""
    return 0 if how in STRONG else 1 + WEAK.index(how)


def _best_match(asked: list[str], stored: str) -> str | None:
    found = [how for how in (match_value(value, stored) for value in asked) if how]
    return min(found, key=_rank) if found else None


def _best_kind(matches: list[dict]) -> list[dict]:
    """Only the rows that match best: "Finnish" is the nationality, not the "Finnish Under-21 team"
    that also contains it."""
    if not matches:
        return matches
    best = min(_rank(m["how"]) for m in matches)
    return [m for m in matches if _rank(m["how"]) == best]


# --- hand-written queries ---------------------------------------------------------------------------------


def read_handwritten(path: str | os.PathLike) -> list[Query]:
    """The hand-written JSONL: one object per line with kind, entity, relation and expected
    (a list of stored values, or "absent")."""
    path = Path(path)
    queries = []
    for lineno, row in read_jsonl(path, ("kind", "entity", "relation", "expected")):
        expected = row["expected"]
        if expected != ABSENT and not (isinstance(expected, list) and expected and all(isinstance(v, str) for v in expected)):
            raise LmlmError(f'{path}:{lineno}: expected must be "absent" or a non-empty list of values')
        queries.append(Query(set="handwritten", kind=row["kind"], entity=row["entity"], relation=row["relation"],
                             expected=None if expected == ABSENT else expected, note=row.get("note", ""),
                             matches=[{"entity": row.get("stored_entity", row["entity"]), "relation": row.get("stored_relation")}]))
    return queries


def check_handwritten(queries: list[Query], triplets) -> list[str]:
    """What is wrong with hand-written queries against the KB they were written for: an expected value
    not stored under the named entity and relation, a paraphrase that is in fact the stored name, an
    entity variant that names another stored entity, an absent fact that is stored."""
    values = defaultdict(set)
    names_by_fold = defaultdict(set)
    for entity, relation, value, *_ in triplets:
        values[(entity, fold(relation))].add(value)
        values[(entity, None)].add(relation)
        names_by_fold[fold(entity)].add(entity)
    problems = []
    for q in queries:
        stored = q.matches[0]["entity"]
        where = f"{q.kind} ({q.entity!r}, {q.relation!r})"
        if (stored, None) not in values:
            problems.append(f"{where}: no stored entity {stored!r}")
        elif q.expected is None:
            if (stored, fold(q.relation)) in values:
                problems.append(f"{where}: stored, not absent")
        elif not set(q.expected) <= values.get((stored, fold(q.matches[0]["relation"] or "")), set()):
            problems.append(f"{where}: expected {q.expected} not stored under {stored!r}")
        if q.kind.startswith("relation_") and (stored, fold(q.relation)) in values:
            problems.append(f"{where}: the relation is stored under this very name")
        if q.kind.startswith("entity_") and names_by_fold.get(fold(q.entity), set()) - {stored}:
            problems.append(f"{where}: names another stored entity {sorted(names_by_fold[fold(q.entity)])}")
    return problems
