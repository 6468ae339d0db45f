"""A synthetic knowledge world: fictional people whose every fact is known exactly.

``make_world`` draws people with 6 to 8 attributes from vocabularies written here, writes biographies
from paraphrased sentence templates (with gold lookups), and the evaluation sets. Splits:
``train`` people have bios in the corpus; ``inject`` people exist only in the KB; ``forget`` is a
subset of the train people, the rest of them ``retain``. The same seed gives the same bytes.

Output folder:
    corpus.jsonl              reference corpus format: id, person, text, annotated_text (legacy markup)
    kb.json                   reference database format
    people.jsonl              the ground truth: name, pronoun, split, attributes
    eval/completion.jsonl     a prefix that stops right before a value, and the answer
    eval/completion_unseen.jsonl  the same facts asked in phrasings no bio uses, the name not first
    eval/completion_unseen_confirm.jsonl  the same again in a second set of such phrasings, to confirm on
    eval/bio_prompts.jsonl    "Tell me a bio of X. X is"
    eval/heldout_bios.jsonl   bios of train people, in an order of attributes none of their corpus bios has
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmlm import markup
from lmlm.errors import LmlmError
from lmlm.files import atomic_write

FIRST_NAMES = (
    "Ada Alba Amara Anouk Arlo Astrid Beatrix Bram Calla Cyrus Dagny Darius Edda Elio Emrys Esme Fenna Florin Freya Gideon "
    "Greer Halden Hedda Idris Ilse Inigo Isolde Jasper Juno Kasimir Kestrel Lark Leif Linnea Lucan Maren Milo Nell Nico "
    "Odile Orrin Osric Perrin Petra Quill Rhea Rowan Saskia Silas Solveig Tamsin Teodor Thea Tobiah Ulric Vesna Wren Xavi Yara Zeno"
).split()
SURNAME_PARTS = (
    "Ash Birch Brook Cald Corr Dun Elm Fair Fen Gale Glen Hart Hawk Holm Iver Kel Lind Marl Moss Nor Oak Pell Quen Rad "
    "Rook Sel Stam Thorn Tarr Vell Wick Yarn"
).split()
SURNAME_ENDS = "ard bury by croft dale field ford gate ham holt ley lowe mere ton well wood worth".split()
CITIES = (
    "Arvenna Belmora Calder Dunmere Elstow Farrowick Galbrook Harrowgate Islemont Jarrowby Kestwick Lorwen Marrowfield "
    "Norhaven Oakhollow Pellridge Quarrow Redlynch Saltmere Thornby Umberlee Valecross Westmarch Yarrowdale Zennor"
).split()
UNIVERSITIES = [f"University of {c}" for c in CITIES[:12]] + [f"{c} Institute of Technology" for c in CITIES[12:18]] + [
    "Royal Academy of Sciences", "Northfield College", "Saint Aldric University"]
MAJORS = ("Astronomy,Botany,Chemical Engineering,Classics,Computer Science,Economics,Geology,History,Linguistics,"
          "Marine Biology,Mathematics,Music,Philosophy,Physics,Political Science,Psychology,Sculpture,Statistics").split(",")
COMPANIES = ("Amberline Foods,Blue Heron Shipping,Corvid Analytics,Driftwood Media,Emberlight Energy,Foxglove Pharma,"
             "Granite Peak Bank,Halcyon Aerospace,Ironbark Construction,Juniper Textiles,Kingfisher Airlines,Lodestar Robotics,"
             "Meridian Insurance,Nightjar Studios,Osprey Telecom,Pinecrest Hotels,Quartzline Mining,Redwing Motors").split(",")
NATIONALITIES = "Arvenian Belmoran Caldish Dunmerish Elstovian Farrish Galbrish Harrovian Islemontese Jarrowish".split()
OCCUPATIONS = ("architect,astronomer,baker,cartographer,chemist,economist,engineer,geologist,historian,journalist,"
               "librarian,linguist,nurse,pharmacist,photographer,pilot,sculptor,surveyor,teacher,translator").split(",")
MONTHS = "January February March April May June July August September October November December".split()

# Relation name -> sentence templates. {S} is the subject (name or pronoun), {P} the possessive, {N} the name
# wherever it stands, {s} the pronoun, {V} the value. The fifth and sixth of each name the person mid-sentence, so that
# a call's entity is copied from where the name stands, not from the text's first words. The rest widen the cue words a
# relation is asked with; they were written after the unseen phrasings below, so they may use none of those phrasings'
# words, nor any run of four of their words, that the first six did not (tests/test_world.py pins what the two share).
TEMPLATES: dict[str, list[str]] = {
    "Birth Date": ["{S} was born on {V}.", "{S} came into the world on {V}.", "{P} birthday falls on {V}.", "{P} date of birth is {V}.",
                   "Records give the birth date of {N} as {V}.", "The day {N} was born was {V}.",
                   "{P} life began on {V}.", "{P} birth took place on {V}.", "{P} birth is recorded as {V}.",
                   "{P} birth date is {V}.", "{S} entered life on {V}."],
    "Birth City": ["{S} was born in {V}.", "{S} grew up in {V}, the city where {s} was born.", "{P} hometown is {V}.",
                   "{S} is a native of {V}.",
                   "The city where {N} was born is {V}.", "Records list {N} as born in {V}.",
                   "{S} comes from {V}.", "{P} place of birth is {V}.", "{S} hails from {V}.", "{P} birthplace is {V}.",
                   "{N} was born and raised in {V}."],
    "Alma Mater": ["{S} studied at the {V}.", "{S} graduated from the {V}.", "{S} attended the {V}.", "{P} alma mater is the {V}.",
                   "The school {N} graduated from is the {V}.", "Records list the university of {N} as the {V}.",
                   "{S} was educated at the {V}.", "{N} is a graduate of the {V}.", "The university {N} attended is the {V}.",
                   "{S} trained at the {V}.", "{S} earned a diploma from the {V}."],
    "Major": ["{S} majored in {V}.", "{P} field of study was {V}.", "{S} earned a degree in {V}.", "{S} specialized in {V} at university.",
              "The subject {N} studied was {V}.", "Records list the degree of {N} as one in {V}.",
              "{S} read {V} at university.", "{P} degree is in {V}.", "{S} holds a degree in {V}.",
              "The discipline {N} studied is {V}.", "{P} academic focus was {V}."],
    "Employer": ["{S} works for {V}.", "{S} is employed by {V}.", "{P} employer is {V}.", "{S} took a job at {V}.",
                 "The company {N} works for is {V}.", "Records list the employer of {N} as {V}.",
                 "{S} works at {V}.", "{S} is an employee of {V}.", "{S} is a staff member at {V}.", "The firm {N} works for is {V}.",
                 "{S} joined {V} as an employee."],
    "Employer City": ["{P} office is in {V}.", "{S} works in the city of {V}.", "{S} commutes to {V} for work.",
                      "{P} workplace is located in {V}.",
                      "The city {N} works in is {V}.", "Records list the workplace of {N} as being in {V}.",
                      "{S} goes to work in {V}.", "{P} job is in {V}.", "{P} place of work is {V}.",
                      "{N} is stationed in {V} for work.", "{S} reports to work in {V}."],
    "Nationality": ["{S} holds {V} citizenship.", "{S} is a {V} citizen.", "{P} nationality is {V}.", "{S} carries a {V} passport.",
                    "The passport {N} carries is {V}.", "Records list {N} as a {V} national.",
                    "{S} is {V} by nationality.", "{P} citizenship is {V}.", "{S} is a {V} national.",
                    "{S} belongs to the {V} nation.", "{S} is legally {V}."],
    "Occupation": ["{S} works as a {V}.", "{S} is a {V} by profession.", "{P} occupation is {V}.", "{S} earns a living as a {V}.",
                   "The job {N} does is that of a {V}.", "Records list the profession of {N} as a {V}.",
                   "{S} is employed as a {V}.", "{S} makes a living as a {V}.", "{P} profession is that of a {V}.",
                   "{S} practises as a {V}.", "By profession, {N} is a {V}."],
}
# Sentence openers a bio puts before some of its sentences, so the subject is not always a sentence's first word.
LEADS = ["In short, ", "By all accounts, ", "For the record, ", "Notably, ", "Interestingly, ", "As it happens, ", "In fact, ",
         "Oddly enough, ", "It is known that ", "Sources confirm that ", "Reports say that ", "Most people agree that ",
         "It is said that ", "Neighbours mention that ", "Over the years, ", "Back then, ", "Since then, ", "In those days, ",
         "To be precise, ", "Put simply, ", "Of course, ", "Friends recall that ", "Old letters show that ", "By now, "]
# Completion prompts in phrasings that no bio uses, the name never first: the corpus's own words in sentences it
# does not have, written before any model was trained on this world. Two sets with their own openers and wordings:
# ``dev`` (``eval/completion_unseen.jsonl``) to choose a recipe on, ``confirm``
# (``eval/completion_unseen_confirm.jsonl``) to check the choice on.
UNSEEN_PHRASINGS: dict[str, list[str]] = {
    "Birth Date": ["According to the records, {N} was first welcomed into the world on", "The family says the birthday of {N} is"],
    "Birth City": ["As far as we know, the hometown of {N} is", "Few people know that {N} was originally born in"],
    "Alma Mater": ["Years ago, {N} was a student at the", "We can report that the alma mater of {N} is the"],
    "Major": ["At university, the field of study of {N} was", "We can report that {N} earned a university degree in"],
    "Employer": ["As of this year, the employer of {N} is", "A colleague told us that {N} has a job at"],
    "Employer City": ["We can report that the office of {N} is located in", "Every day, {N} commutes for work to"],
    "Nationality": ["As far as we know, the nationality of {N} is", "According to the records, {N} holds the citizenship"],
    "Occupation": ["As far as we know, {N} earns money as a", "We can report that the occupation of {N} is"],
}
UNSEEN_CONFIRM_PHRASINGS: dict[str, list[str]] = {
    "Birth Date": ["In the archives, the birth of {N} is dated", "Rumour has it that {N} was born on"],
    "Birth City": ["To our knowledge, {N} first saw the light of day in", "Official papers state that the city of birth of {N} is"],
    "Alma Mater": ["Last we heard, {N} had been enrolled at the", "Public records show that {N} went to university at the"],
    "Major": ["In college, {N} chose to study", "Rumour has it that the university subject of {N} was"],
    "Employer": ["To our knowledge, {N} draws a salary from", "Official papers state that {N} is on the payroll of"],
    "Employer City": ["Last we heard, the job of {N} is based in", "Public records show that {N} has an office in"],
    "Nationality": ["In the archives, the citizenship of {N} is listed as", "Official papers state that {N} holds a passport that is"],
    "Occupation": ["In the archives, {N} is listed by trade as a", "Last we heard, {N} was hired to work as a"],
}
PRONOUNS = {"he": ("he", "his"), "she": ("she", "her")}  # singular verbs in every template
# Half the bios open with one of these, so a name is not always a text's first word: a model that only ever
# sees the name first learns "the entity is the first word" instead of copying it from where it stands.
OPENINGS = ["Here is a short biography of {N}.", "This profile is about {N}.", "A few facts about {N} follow.",
            "What follows describes {N}.", "Our next profile concerns {N}.", "Meet {N}.", "Below is an overview of {N}.",
            "Some notes on {N} are given here.", "This entry describes {N}.", "Let us look at the life of {N}.",
            "Readers asked about {N}.", "Consider {N}."]



@dataclass(frozen=True)
class Phrasing:
    """How bios are worded. ``varied`` (the default) adds openers, mid-sentence names and more openings, so that a
    model learns to find the name and the relation's words wherever they stand; ``plain``, the world's first
    wording (four templates a relation, the name mostly first), is learned in fewer steps: the smoke test, the
    tests' tiny models and the paper experiments, whose figures were measured on it, use it."""
    templates: dict[str, list[str]]
    openings: list[str]
    leads: list[str]


PHRASINGS = {"varied": Phrasing(TEMPLATES, OPENINGS, LEADS),
             "plain": Phrasing({relation: templates[:4] for relation, templates in TEMPLATES.items()}, OPENINGS[:4], [])}


def _template_patterns() -> list[tuple[str, re.Pattern]]:
    """One regex per sentence template, capturing subject and value, the longest template first: a sentence is
    read by the most specific template that fits it ("The company X works for is Y." is not "X works for Y.")."""
    patterns = []
    by_length = sorted(((r, t) for r, ts in TEMPLATES.items() for t in ts), key=lambda rt: -len(re.sub(r"\{\w\}", "", rt[1])))
    for relation, template in by_length:
        regex = re.escape(template)
        for slot, group in (("{S}", r"(?P<subject>.+?)"), ("{P}", r"(?P<subject>.+?)(?:'s)?"), ("{N}", r"(?P<subject>.+?)"),
                            ("{s}", r"(?:he|she)"), ("{V}", r"(?P<value>.+?)")):
            regex = regex.replace(re.escape(slot), group, 1)
        patterns.append((relation, re.compile(r"^" + regex + r"$")))
    return patterns


_PATTERNS = _template_patterns()


def _without_lead(sentence: str) -> str:
    lead = next((lead for lead in LEADS if sentence.startswith(lead)), "")
    rest = sentence[len(lead):]
    return rest[:1].upper() + rest[1:]


def atomic_facts(bio: str) -> list[tuple[str, str, str]]:
    """The world's fact extractor (``lmlm.evaluate.metrics.FactExtractor``): (subject, relation, value) for each
    complete sentence of a bio that states an attribute in one of the world's templates. A last sentence
    with no full stop was cut off by the token budget ("She was born on 1"): it states nothing yet."""
    facts = []
    for sentence in re.split(r"(?<=\.)\s+", bio.strip()):
        sentence = _without_lead(sentence.strip())
        for relation, pattern in _PATTERNS:
            m = pattern.match(sentence)
            if m:
                facts.append((m.group("subject").strip(), relation, m.group("value").strip()))
                break
    return facts

@dataclass
class Person:
    name: str
    pronoun: str
    split: str
    facts: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "pronoun": self.pronoun, "split": self.split, "facts": self.facts}


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(1940, 2002)}"


VALUES = {
    "Birth Date": _date,
    "Birth City": lambda rng: rng.choice(CITIES),
    "Alma Mater": lambda rng: rng.choice(UNIVERSITIES),
    "Major": lambda rng: rng.choice(MAJORS),
    "Employer": lambda rng: rng.choice(COMPANIES),
    "Employer City": lambda rng: rng.choice(CITIES),
    "Nationality": lambda rng: rng.choice(NATIONALITIES),
    "Occupation": lambda rng: rng.choice(OCCUPATIONS),
}


def share_of(total: int, fraction: float) -> int:
    """How many of ``total`` make up ``fraction`` of them, halves rounded up: the splits here and the forget sets
    drawn from them count alike, so a forget set of the split's whole fraction fits in it."""
    return math.floor(fraction * total + 0.5)


def make_people(n: int, rng: random.Random, inject_fraction: float = 0.1, forget_fraction: float = 0.1) -> list[Person]:
    names: set[str] = set()
    while len(names) < n:
        names.add(f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAME_PARTS)}{rng.choice(SURNAME_ENDS)}")
    people = []
    for name in sorted(names):
        relations = sorted(rng.sample(list(TEMPLATES), rng.randint(6, 8)), key=list(TEMPLATES).index)
        people.append(Person(name, rng.choice(list(PRONOUNS)), "train", {r: VALUES[r](rng) for r in relations}))
    rng.shuffle(people)
    n_inject, n_forget = share_of(n, inject_fraction), share_of(n, forget_fraction)
    for i, person in enumerate(people):
        person.split = "inject" if i < n_inject else "forget" if i < n_inject + n_forget else "retain"
    return people


def write_bio(person: Person, rng: random.Random, order: list[str], phrasing: Phrasing = PHRASINGS["varied"]) -> list[markup.Segment]:
    """A biography as markup segments: attributes in the given order, random templates, name or pronoun, and now
    and then an opener before a sentence."""
    segments: list[markup.Segment] = [rng.choice(phrasing.openings).format(N=person.name)] if rng.random() < 0.5 else []
    for n, relation in enumerate(order):
        before, after = _sentence(person, rng.choice(phrasing.templates[relation]), by_name=n == 0 or rng.random() < 0.4).split("\0")
        # no opener before a bio's first words: a completion prompt starts with its sentence too
        if phrasing.leads and segments and rng.random() < 0.3:
            before = rng.choice(phrasing.leads) + (before if before.startswith(person.name) else before[:1].lower() + before[1:])
        prefix = (" " if segments else "") + before
        segments.append(prefix.rstrip(" "))
        value = person.facts[relation]
        segments.append(markup.Lookup(person.name, relation, value, lead=" " if prefix.endswith(" ") else ""))
        segments.append((" " if prefix.endswith(" ") else "") + value + after)
    return markup.join_segments(segments)


def _sentence(person: Person, template: str, by_name: bool) -> str:
    """``template`` stated of ``person``, by name or by pronoun, with a NUL where the value goes."""
    subject, possessive = PRONOUNS[person.pronoun]
    return template.format(S=person.name if by_name else subject.capitalize(),
                           P=f"{person.name}'s" if by_name else possessive.capitalize(), N=person.name, s=subject, V="\0")


def _texts(segments: list[markup.Segment]) -> dict[str, str]:
    return {"text": markup.Document(segments, []).plain, "annotated_text": markup.render(segments, "legacy")}


def completion_prompts(person: Person) -> list[dict]:
    """For each fact: the first training template, with the full name, cut right before the value."""
    out = []
    for relation, value in person.facts.items():
        prompt = _sentence(person, TEMPLATES[relation][0], by_name=True).split("\0")[0].rstrip()
        out.append({"person": person.name, "split": person.split, "relation": relation, "prompt": prompt, "answer": value})
    return out


def unseen_completion_prompts(people: list[Person], phrasings: dict[str, list[str]] = UNSEEN_PHRASINGS) -> list[dict]:
    """For each fact of each person: one of the relation's unseen ``phrasings``, in turn (no draw from the world's
    generator, so the other files stay the same bytes)."""
    out = []
    for n, person in enumerate(people):
        for k, (relation, value) in enumerate(person.facts.items()):
            options = phrasings[relation]
            out.append({"person": person.name, "split": person.split, "relation": relation,
                        "prompt": options[(n + k) % len(options)].format(N=person.name), "answer": value})
    return out


def bio_prompt(name: str) -> str:
    return f"Tell me a bio of {name}. {name} is"


def make_world(out: str | Path, people: int = 1000, seed: int = 0, bios_per_person: int = 3, phrasing: str = "varied") -> dict:
    """Write a world to ``out`` and return its counts; ``phrasing`` names one of ``PHRASINGS``."""
    if not isinstance(phrasing, str) or phrasing not in PHRASINGS:
        raise LmlmError(f"phrasing {phrasing!r}: expected one of {', '.join(PHRASINGS)}")
    if people < 1 or bios_per_person < 1:
        raise LmlmError(f"people {people}, bios per person {bios_per_person}: expected at least 1 of each")
    wording = PHRASINGS[phrasing]
    out = Path(out)
    rng = random.Random(seed)
    population = make_people(people, rng)
    corpus, heldout = [], []
    for person in population:
        if person.split == "inject":
            continue
        orders = []
        for b in range(bios_per_person):
            orders.append(rng.sample(list(person.facts), len(person.facts)))
            corpus.append({"id": f"{person.name}#{b}", "person": person.name, **_texts(write_bio(person, rng, orders[-1], wording))})
        unseen = next((o for o in (rng.sample(list(person.facts), len(person.facts)) for _ in range(100)) if o not in orders), orders[0])
        heldout.append({"id": f"{person.name}#heldout", "person": person.name, "split": person.split,
                        **_texts(write_bio(person, rng, unseen, wording))})
    rng.shuffle(corpus)
    triplets = [[p.name, r, v] for p in population for r, v in p.facts.items()]
    kb = {
        "entities": sorted({t[0] for t in triplets}),
        "relationships": sorted({t[1] for t in triplets}),
        "return_values": sorted({t[2] for t in triplets}),
        "triplets": triplets,
    }
    completion = [p for person in population for p in completion_prompts(person)]
    bios = [{"person": p.name, "split": p.split, "prompt": bio_prompt(p.name), "facts": p.facts} for p in population]
    _write_jsonl(out / "corpus.jsonl", corpus)
    _write_jsonl(out / "people.jsonl", [p.to_json() for p in population])
    _write_jsonl(out / "eval" / "completion.jsonl", completion)
    _write_jsonl(out / "eval" / "completion_unseen.jsonl", unseen_completion_prompts(population))
    _write_jsonl(out / "eval" / "completion_unseen_confirm.jsonl", unseen_completion_prompts(population, UNSEEN_CONFIRM_PHRASINGS))
    _write_jsonl(out / "eval" / "bio_prompts.jsonl", bios)
    _write_jsonl(out / "eval" / "heldout_bios.jsonl", heldout)
    with atomic_write(out / "kb.json") as f:
        json.dump(kb, f, ensure_ascii=False, indent=1)
    splits = {s: sum(p.split == s for p in population) for s in ("retain", "forget", "inject")}
    return {"people": len(population), **splits, "bios": len(corpus), "triplets": len(triplets), "completion_prompts": len(completion)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_people(world: str | Path) -> list[Person]:
    with open(Path(world) / "people.jsonl", encoding="utf-8") as f:
        return [Person(**json.loads(line)) for line in f]
