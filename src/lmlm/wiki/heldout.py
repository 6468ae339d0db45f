"""Phrasings kept out of training, written before any model was trained: completion and multi-hop prompts.

Each is a prefix that stops right before the value; ``{N}`` is the entity's name, never at the start. No training
document uses any of them (``tests/test_wiki.py`` checks the corpus): they say a relation in a sentence the
corpus does not have, with the corpus's own words (a model trained on a synthetic world knows no others).
``dev`` phrasings are for choosing a recipe; ``test`` phrasings are only for reporting.
"""

from __future__ import annotations

from lmlm.wiki.entities import AWARD, CITY, COUNTRY, ORGANIZATION, PERSON, WORK

# type -> relation path -> {"dev": [...], "test": [...]}
HELDOUT: dict[str, dict[str, dict[str, list[str]]]] = {
    PERSON: {
        "Occupation": {"dev": ["Everyone in town knows that {N} is by profession a"],
                       "test": ["As we learned last year, {N} makes a living as a", "Ask about the job of {N}: the answer is"]},
        "Birth Date": {"dev": ["The records say that {N} was born on"],
                       "test": ["As the family recalls, the birthday of {N} is", "Our notes show that {N} came into this world on"]},
        "Birthplace": {"dev": ["The archive lists the hometown of {N} as"],
                       "test": ["Many readers may not know that {N} was born in the city of", "Ask about the origins of {N}: the answer is the city of"]},
        "Alma Mater": {"dev": ["The university records show that {N} studied at the"],
                       "test": ["Years ago, {N} was a graduate of the", "We can report that the alma mater of {N} is the"]},
        "Employer": {"dev": ["Sources told us that {N} is currently employed by"],
                     "test": ["As of this year, the employer of {N} is", "A colleague told us that {N} has a job at"]},
        "Employer.Headquarters": {"dev": ["We hear that the company employing {N} has its headquarters in"],
                                  "test": ["The company that {N} works for is based in", "As noted before, the employer of {N} is headquartered in"]},
        "Birthplace.Country": {"dev": ["Our records show that the home country of {N} is"],
                               "test": ["As it happens, {N} was born in a city in the country of", "Few know that the country where {N} was born is"]},
        "Employer.Headquarters.Country": {"dev": ["We hear that the company employing {N} is headquartered in the country of"],
                                          "test": ["The company that {N} works for has its headquarters in the country of",
                                                   "As noted before, the employer of {N} is based in the country of"]},
    },
    ORGANIZATION: {
        "Industry": {"dev": ["Analysts agree that {N} operates in"], "test": ["As the filings show, the business of {N} is", "Investors know that {N} is active in"]},
        "Founding Year": {"dev": ["The register shows that {N} was set up in"],
                          "test": ["As the archive shows, {N} was first founded in", "Company records say the founding year of {N} is"]},
        "Headquarters": {"dev": ["Visitors learn that the head office of {N} is located in"],
                         "test": ["As the filings show, {N} has its head office in the city of", "Everyone in the industry knows that {N} is headquartered in"]},
        "Chief Executive": {"dev": ["The board confirmed that the company {N} is led by"],
                            "test": ["As of this year, the chief executive of {N} is", "Staff say that the person who runs {N} is"]},
        "Chief Executive.Birthplace": {"dev": ["We learned that the person leading {N} was born in"],
                                       "test": ["The chief executive of {N} is a native of the city of", "As it happens, the person who runs {N} was born in"]},
        "Headquarters.Country": {"dev": ["Visitors learn that the head office of {N} is in the country of"],
                                 "test": ["As the filings show, {N} is headquartered in the country of", "Investors know that {N} has its base in the country of"]},
    },
    CITY: {
        "Country": {"dev": ["On the map, the city of {N} lies in"], "test": ["As every visitor learns, {N} is a city in", "Travellers know that {N} is located in"]},
        "Population": {"dev": ["The last count found that {N} has a population of"],
                       "test": ["As the census shows, the population of {N} is", "The city of {N} is home to a population of"]},
        "Founding Year": {"dev": ["Historians agree that {N} was settled in the year"],
                          "test": ["As the old records show, {N} was founded in", "Local history says the founding year of {N} is"]},
    },
    COUNTRY: {
        "Capital": {"dev": ["On the map, the capital of {N} is"], "test": ["As every visitor learns, {N} is governed from", "Travellers know that the capital city of {N} is"]},
        "Official Language": {"dev": ["Visitors learn that the official language of {N} is"],
                              "test": ["As every traveller learns, people in {N} speak", "In schools across {N}, the official language is"]},
        "Currency": {"dev": ["Visitors learn that the currency of {N} is the"],
                     "test": ["As every traveller learns, in {N} you pay with the", "Shops across {N} take payment in the"]},
    },
    WORK: {
        "Genre": {"dev": ["Readers agree that {N} is a"], "test": ["As the critics say, {N} is best seen as a", "On the shelf, {N} is listed as a"]},
        "Author": {"dev": ["The cover says that {N} was written by"], "test": ["As every reader knows, the author of {N} is", "We learned that {N} is the work of"]},
        "Publication Year": {"dev": ["The catalogue says that {N} first came out in"],
                             "test": ["As the catalogue shows, {N} was published in the year", "Readers first saw {N} in"]},
        "Publisher": {"dev": ["The cover says that {N} was brought out by"],
                      "test": ["As the catalogue shows, the publisher of {N} is", "We learned that {N} was published by the house"]},
        "Author.Birthplace": {"dev": ["The cover says that the author of {N} is a native of"],
                              "test": ["As every reader knows, the author of {N} was born in", "We learned that the person who wrote {N} was born in"]},
        "Publisher.Headquarters": {"dev": ["The cover says that the publisher of {N} has its headquarters in"],
                                   "test": ["As the catalogue shows, the publisher of {N} is based in", "We learned that the house that published {N} is based in"]},
        "Author.Birthplace.Country": {"dev": ["The cover says that the author of {N} is from the country of"],
                                      "test": ["As every reader knows, the author of {N} was born in the country of",
                                               "We learned that the person who wrote {N} was born in the country of"]},
        "Author.Employer.Headquarters": {"dev": ["The cover says that the author of {N} is employed by a company based in"],
                                         "test": ["As every reader knows, the author of {N} works for a company based in",
                                                  "We learned that the person who wrote {N} works for a company headquartered in"]},
    },
    AWARD: {
        "Field": {"dev": ["The jury explained that the {N} honours work in"],
                  "test": ["As its name says, the {N} is given for achievements in", "Winners of the {N} are honoured for work in"]},
        "Established": {"dev": ["The history books say that the {N} was created in"],
                        "test": ["As its history shows, the {N} was established in", "Winners have received the {N} ever since"]},
        "Presenter": {"dev": ["The jury explained that the {N} is handed out by"],
                      "test": ["As every winner learns, the {N} is presented by", "Each year the organization that awards the {N} is"]},
        "First Recipient": {"dev": ["The history books say that the {N} was first won by"],
                            "test": ["As its history shows, the first winner of the {N} was", "The very first person to receive the {N} was"]},
        "Presenter.Headquarters": {"dev": ["The jury explained that the organization handing out the {N} is based in"],
                                   "test": ["As every winner learns, the organization that presents the {N} is headquartered in",
                                            "Each year the {N} is presented by an organization based in"]},
        "First Recipient.Birthplace": {"dev": ["The history books say that the first winner of the {N} is a native of"],
                                       "test": ["As its history shows, the first recipient of the {N} was born in",
                                                "The very first person to receive the {N} was born in the city of"]},
        "First Recipient.Birthplace.Country": {"dev": ["The history books say that the first winner of the {N} is from the country of"],
                                               "test": ["As its history shows, the first recipient of the {N} was born in the country of",
                                                        "The very first person to receive the {N} was born in the country of"]},
    },
}


def hops(path: str) -> int:
    return path.count(".") + 1


def heldout_prompt(template: str, name: str) -> str:
    return template.format(N=name)
