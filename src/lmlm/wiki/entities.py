"""The wiki world's entities: six types, each with its own relations, linked to each other, with names
unique across the whole world (the KB keys facts by name alone), and a Zipf-drawn popularity each.

Relations are functional (one value per entity and relation), so a chain of relations from an entity has
exactly one end: a multi-hop question has one right answer by construction.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field

from lmlm.errors import LmlmError
from lmlm.world import FIRST_NAMES, MONTHS, OCCUPATIONS, SURNAME_ENDS, SURNAME_PARTS

PERSON, ORGANIZATION, CITY, COUNTRY, WORK, AWARD = "person", "organization", "city", "country", "creative work", "award"
TYPES = (PERSON, ORGANIZATION, CITY, COUNTRY, WORK, AWARD)

# Each type's relations, in the order an article states them; a value that names another entity is a link.
RELATIONS: dict[str, tuple[str, ...]] = {
    PERSON: ("Occupation", "Birth Date", "Birthplace", "Alma Mater", "Employer"),
    ORGANIZATION: ("Industry", "Founding Year", "Headquarters", "Chief Executive"),
    CITY: ("Country", "Population", "Founding Year"),
    COUNTRY: ("Capital", "Official Language", "Currency"),
    WORK: ("Genre", "Author", "Publication Year", "Publisher"),
    AWARD: ("Field", "Established", "Presenter", "First Recipient"),
}
LINKS = {"Birthplace": CITY, "Alma Mater": ORGANIZATION, "Employer": ORGANIZATION, "Headquarters": CITY, "Chief Executive": PERSON,
         "Country": COUNTRY, "Capital": CITY, "Author": PERSON, "Publisher": ORGANIZATION, "Presenter": ORGANIZATION,
         "First Recipient": PERSON}
# Shares of the entities by type; a country holds many cities, so countries are few: one in a hundred entities,
# between MIN_COUNTRIES and MAX_COUNTRIES; people make up the rest.
SHARES = {ORGANIZATION: 0.13, CITY: 0.10, WORK: 0.12, AWARD: 0.09}
MIN_COUNTRIES, MAX_COUNTRIES = 6, 150
MIN_ENTITIES = 50

EXTRA_FIRST = ("Agnes Bastian Cosima Dorian Elodie Ferris Galen Hollis Iona Jorah Kaia Lorcan Mirela Nerys Oona Piers Quinta "
               "Rafe Sabine Tobin Una Vidar Wilma Yorick Zelda Anselm Brielle Cassius Delphine Evander").split()
SURNAME_MIDS = ("", "en", "er", "in")
CITY_STARTS = ("Ab Bel Cor Dun El Fal Gar Hal Ist Jor Kal Lor Mar Nor Os Pal Quin Ros Sal Tor Ul Val Wen Yar Zor "
               "Ard Brim Cael Drom Esk Fir Glen Harn Ivel Kest Lun").split()
CITY_MIDS = ("", "a", "e", "i", "o", "en", "ar", "el", "or", "an", "is", "ul", "am", "on")
CITY_ENDS = "berg bury dale don field ford gate haven holm ley mere mont more mouth port ridge stead stow ton vale wick worth".split()
COUNTRY_STARTS = "Ar Bel Cal Dor Es Fen Gal Hes Is Jor Kar Lum Mor Nor Os Pel Ques Ros Sar Tal Ul Ves Wes Zan".split()
COUNTRY_ENDS = "avia enia estan ovia undia aria ithia oria".split()
ORG_HEADS = ("Amber Ash Birch Blue Cedar Copper Crow Elder Ember Fern Flint Fox Frost Gold Granite Hazel Heron Iron Ivy "
             "Jade Juniper Lark Linden Maple Moon North Oak Onyx Pine Quartz Raven Red Rowan Silver Slate Stone Sun Thistle "
             "Willow Wren").split()
ORG_TAILS = "bay cove ford haven moor spring bridge brook crest field gate glen hill light line mark peak point ridge rock shore side stone vale view wood".split()
# industry -> the word a company of that industry is named with
INDUSTRIES = {"pharmaceuticals": "Pharma", "shipping": "Shipping", "banking": "Bank", "aviation": "Airlines", "robotics": "Robotics",
              "publishing": "Press", "food processing": "Foods", "energy": "Energy", "automobiles": "Motors", "textiles": "Textiles",
              "insurance": "Insurance", "telecommunications": "Telecom", "mining": "Mining", "software": "Software"}
UNIVERSITY = "higher education"
WORK_ADJECTIVES = ("Silent Hidden Broken Golden Distant Quiet Burning Frozen Hollow Last Lonely Crimson Endless Forgotten Gentle "
                   "Iron Little Lost Midnight Northern Pale Restless Scarlet Secret Shining Silver Sleeping Southern Winter Wild").split()
WORK_NOUNS = ("Harbor Orchard Lantern River Garden Tower Mirror Voyage Kingdom Letter Island Meadow Shadow Window Forest "
              "Bridge Compass Feather Fortress Harvest Journey Lighthouse Mountain Ocean Promise Season Song Storm Valley Whisper").split()
GENRES = "novel,poetry collection,play,short story collection,opera,symphony,documentary film,feature film,memoir,travel book".split(",")
AWARD_KINDS = "Medal Prize Award Cup Fellowship".split()
FIELDS = ("Physics,Chemistry,Literature,Music,Architecture,Medicine,Mathematics,Economics,Journalism,Film,Painting,Engineering,"
          "Astronomy,Geology,Poetry,Theatre").split(",")
LANGUAGES = "Arvenish Belmoric Caldan Dorvish Estic Fennish Galric Hessian Ivorish Jorvan Kaldic Lumric".split()
CURRENCIES = "crown mark florin thaler ducat real guilder shilling".split()


@dataclass
class Entity:
    name: str
    type: str
    facts: dict[str, str] = field(default_factory=dict)
    popularity: int = 1  # documents drawn for it as their subject; a link's documents mention it too
    pronoun: str | None = "it"  # None: always named (works and awards)

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "pronoun": self.pronoun, "popularity": self.popularity, "facts": self.facts}


def type_counts(entities: int) -> dict[str, int]:
    if entities < MIN_ENTITIES:
        raise LmlmError(f"a wiki world needs at least {MIN_ENTITIES} entities, got {entities}")
    counts = {t: round(entities * share) for t, share in SHARES.items()}
    counts[COUNTRY] = min(MAX_COUNTRIES, max(MIN_COUNTRIES, entities // 100))
    counts[PERSON] = entities - sum(counts.values())
    return counts


def _names(pool, n: int, rng: random.Random, taken: set[str]) -> list[str]:
    """n names drawn from a combinatorial pool without repeats or clashes with names of other types."""
    pool = [name for name in pool if name not in taken]
    if len(pool) < n:
        raise LmlmError(f"only {len(pool)} distinct names for {n} entities of a type: the wiki world has too many entities")
    chosen = rng.sample(pool, n)
    taken.update(chosen)
    return chosen


def _name_pools() -> dict[str, list[str]]:
    surnames = [p + m + e for p, m, e in itertools.product(SURNAME_PARTS, SURNAME_MIDS, SURNAME_ENDS)]
    cities = [s + m + e for s, m, e in itertools.product(CITY_STARTS, CITY_MIDS, CITY_ENDS)]
    works = [f"The {a} {n}" for a, n in itertools.product(WORK_ADJECTIVES, WORK_NOUNS)]
    works += [f"{n} of the {a} {m}" for n, a, m in itertools.product(WORK_NOUNS, WORK_ADJECTIVES, WORK_NOUNS) if n != m]
    return {
        PERSON: [f"{f} {s}" for f, s in itertools.product(FIRST_NAMES + EXTRA_FIRST, surnames)],
        CITY: cities,
        COUNTRY: [s + e for s, e in itertools.product(COUNTRY_STARTS, COUNTRY_ENDS)],
        WORK: works,
        AWARD: [f"{s} {k} for {f}" for s, k, f in itertools.product(surnames[:: 7], AWARD_KINDS, FIELDS)],
    }


def _org_names(n: int, rng: random.Random, taken: set[str]) -> list[tuple[str, str]]:
    """(name, industry) pairs: a company's name says its industry, as real ones often do."""
    pool = [(h + t + " " + word, industry) for h, t in itertools.product(ORG_HEADS, ORG_TAILS) for industry, word in INDUSTRIES.items()]
    names = _names([name for name, _ in pool], n, rng, taken)
    industry = dict(pool)
    return [(name, industry[name]) for name in names]


def zipf_sampler(exponent: float, largest: int):
    """A draw from the Zipf distribution P(k) ~ k^-exponent on 1..largest."""
    weights = [k ** -exponent for k in range(1, largest + 1)]
    cumulative = list(itertools.accumulate(weights))
    return lambda rng: bisect.bisect_left(cumulative, rng.random() * cumulative[-1]) + 1


def _year(rng: random.Random, low: int, high: int) -> str:
    return str(rng.randint(low, high))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(1940, 2002)}"


def make_entities(n: int, rng: random.Random, zipf_exponent: float, most_popular: int) -> list[Entity]:
    """``n`` entities with their facts and popularity; cities, countries and organizations first, as people link to them."""
    counts, taken = type_counts(n), set()
    pools = _name_pools()
    by_type: dict[str, list[Entity]] = {}
    for kind in (COUNTRY, CITY, PERSON, WORK, AWARD):
        by_type[kind] = [Entity(name, kind, pronoun=None if kind in (WORK, AWARD) else "it")  # a title reads badly as "it"
                         for name in _names(pools[kind], counts[kind], rng, taken)]
    n_universities = max(1, counts[ORGANIZATION] // 8)
    universities = _universities(by_type[CITY], n_universities, rng, taken)
    companies = [Entity(name, ORGANIZATION, {"Industry": industry}) for name, industry in _org_names(counts[ORGANIZATION] - len(universities), rng, taken)]
    by_type[ORGANIZATION] = universities + companies
    entities = [e for kind in TYPES for e in by_type[kind]]
    draw = zipf_sampler(zipf_exponent, most_popular)
    for entity in entities:
        entity.popularity = draw(rng)
    _place_cities(by_type[CITY], by_type[COUNTRY], rng)
    _fill_people(by_type[PERSON], by_type[CITY], companies, universities, rng)
    _fill_organizations(by_type[ORGANIZATION], by_type[CITY], by_type[PERSON], rng)
    _fill_works_and_awards(by_type[WORK], by_type[AWARD], by_type[PERSON], by_type[ORGANIZATION], rng)
    for entity in entities:
        entity.facts = {r: entity.facts[r] for r in RELATIONS[entity.type] if r in entity.facts}
    return entities


def _popular(people: list[Entity], rng: random.Random) -> Entity:
    """A person drawn by popularity: authors, chief executives and prize winners are the people written about most,
    so naming them in other entities' facts leaves the long tail of people mentioned once."""
    return rng.choices(people, weights=[p.popularity for p in people])[0]


def _universities(cities: list[Entity], n: int, rng: random.Random, taken: set[str]) -> list[Entity]:
    homes = rng.sample(cities, min(n, len(cities)))
    names = [f"University of {c.name}" for c in homes]
    taken.update(names)
    return [Entity(name, ORGANIZATION, {"Industry": UNIVERSITY, "Headquarters": c.name}) for name, c in zip(names, homes)]


def _place_cities(cities: list[Entity], countries: list[Entity], rng: random.Random) -> None:
    """Every country has a city at least; its capital is one of its own cities."""
    members: dict[str, list[Entity]] = {c.name: [] for c in countries}
    for i, city in enumerate(cities):
        country = countries[i] if i < len(countries) else rng.choice(countries)
        members[country.name].append(city)
        city.facts.update({"Country": country.name, "Population": f"{rng.randint(8, 2400) * 1000:,}",
                           "Founding Year": _year(rng, 900, 1900)})
    for country in countries:
        capital = rng.choice(members[country.name]) if members[country.name] else None
        country.facts.update({"Official Language": rng.choice(LANGUAGES), "Currency": rng.choice(CURRENCIES)})
        if capital:
            country.facts["Capital"] = capital.name


def _fill_people(people, cities, companies, universities, rng: random.Random) -> None:
    for person in people:
        person.pronoun = rng.choice(("he", "she"))
        person.facts.update({"Occupation": rng.choice(OCCUPATIONS), "Birth Date": _date(rng), "Birthplace": rng.choice(cities).name,
                             "Alma Mater": rng.choice(universities).name, "Employer": rng.choice(companies or universities).name})


def _fill_organizations(organizations, cities, people, rng: random.Random) -> None:
    """A chief executive works for the organization (one of its employees, where it has any)."""
    staff: dict[str, list[Entity]] = {}
    for person in people:
        staff.setdefault(person.facts["Employer"], []).append(person)
    for org in organizations:
        org.facts.setdefault("Headquarters", rng.choice(cities).name)
        org.facts["Founding Year"] = _year(rng, 1820, 2015)
        if staff.get(org.name):
            org.facts["Chief Executive"] = _popular(staff[org.name], rng).name


def _fill_works_and_awards(works, awards, people, organizations, rng: random.Random) -> None:
    publishers = [o for o in organizations if o.facts["Industry"] in ("publishing", UNIVERSITY)] or organizations
    for work in works:
        work.facts.update({"Genre": rng.choice(GENRES), "Author": _popular(people, rng).name,
                           "Publication Year": _year(rng, 1850, 2020), "Publisher": rng.choice(publishers).name})
    for award in awards:
        field_name = award.name.rsplit(" for ", 1)[1]
        award.facts.update({"Field": field_name, "Established": _year(rng, 1850, 2000), "Presenter": rng.choice(organizations).name,
                            "First Recipient": _popular(people, rng).name})
