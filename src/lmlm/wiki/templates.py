"""The wiki world's training templates: sentences by entity type and relation path, article openings, news frames.

Slots: ``{S}`` the subject (its name, or a pronoun after an article's first sentence), ``{P}`` its possessive,
``{s}`` its pronoun in lower case, ``{Relation}`` a value of the subject, ``{Relation.Relation2}`` a value reached
through a link. A linked value whose bridge the sentence does not state is looked up through the bridge
(two or three calls in a row, one text value): that is how text says "the company she works for is based
in Oakhollow". The templates kept for evaluation are in ``lmlm.wiki.heldout``; none of them is here.
"""

from __future__ import annotations

from lmlm.wiki.entities import AWARD, CITY, COUNTRY, ORGANIZATION, PERSON, WORK

# type -> relation path -> sentences; a path is the relation the sentence is filed under (its last slot's)
TEMPLATES: dict[str, dict[str, list[str]]] = {
    PERSON: {
        "Occupation": ["{S} works as a {Occupation}.", "{S} is a {Occupation} by profession.", "{P} occupation is {Occupation}.",
                       "{S} earns a living as a {Occupation}.", "By trade, {s} is a {Occupation}."],
        "Birth Date": ["{S} was born on {Birth Date}.", "{S} came into the world on {Birth Date}.", "{P} birthday falls on {Birth Date}.",
                       "{P} date of birth is {Birth Date}.", "On {Birth Date}, {s} was born."],
        "Birthplace": ["{S} was born in {Birthplace}.", "{P} hometown is {Birthplace}.", "{S} is a native of {Birthplace}.",
                       "{S} grew up in {Birthplace}, where {s} was born.", "{Birthplace} is where {s} was born."],
        "Alma Mater": ["{S} studied at the {Alma Mater}.", "{S} graduated from the {Alma Mater}.", "{P} alma mater is the {Alma Mater}.",
                       "{S} attended the {Alma Mater}.", "After school, {s} enrolled at the {Alma Mater}."],
        "Employer": ["{S} works for {Employer}.", "{S} is employed by {Employer}.", "{P} employer is {Employer}.",
                     "{S} took a job at {Employer}.", "{S} works for {Employer}, a company based in {Employer.Headquarters}.",
                     "{S} joined {Employer}, which has its headquarters in {Employer.Headquarters}."],
        "Birthplace.Country": ["{S} was born in the country of {Birthplace.Country}.", "{P} home country is {Birthplace.Country}.",
                               "{S} was born in {Birthplace}, a city in {Birthplace.Country}."],
        "Employer.Headquarters": ["The company {S} works for is based in {Employer.Headquarters}.",
                                  "{P} employer has its headquarters in {Employer.Headquarters}.",
                                  "{S} works for a company headquartered in {Employer.Headquarters}."],
        "Employer.Headquarters.Country": ["The company {S} works for is based in the country of {Employer.Headquarters.Country}.",
                                          "{P} employer is headquartered in the country of {Employer.Headquarters.Country}."],
    },
    ORGANIZATION: {
        "Industry": ["{S} is a company in the {Industry} industry.", "{S} works in {Industry}.", "{P} business is {Industry}.",
                     "{S} operates in the {Industry} sector."],
        "Founding Year": ["{S} was founded in {Founding Year}.", "{S} was established in {Founding Year}.",
                          "{P} founding year is {Founding Year}.", "{S} has existed since {Founding Year}."],
        "Headquarters": ["{S} is headquartered in {Headquarters}.", "{S} is based in {Headquarters}.", "{P} head office is in {Headquarters}.",
                         "{S} has its headquarters in {Headquarters}.",
                         "{S} is based in {Headquarters}, a city in {Headquarters.Country}."],
        "Chief Executive": ["{S} is led by {Chief Executive}.", "{P} chief executive is {Chief Executive}.",
                            "{Chief Executive} runs {S} as its chief executive.", "The chief executive of {S} is {Chief Executive}."],
        "Headquarters.Country": ["{S} is based in the country of {Headquarters.Country}.",
                                 "{P} head office is in the country of {Headquarters.Country}."],
        "Chief Executive.Birthplace": ["The chief executive of {S} was born in {Chief Executive.Birthplace}.",
                                       "{P} chief executive is a native of {Chief Executive.Birthplace}."],
    },
    CITY: {
        "Country": ["{S} is a city in {Country}.", "{S} lies in {Country}.", "{S} is located in the country of {Country}.",
                    "{P} country is {Country}."],
        "Population": ["{S} has a population of {Population}.", "{S} is home to {Population} people.", "{P} population is {Population}.",
                       "About {Population} people live in {S}."],
        "Founding Year": ["{S} was founded in {Founding Year}.", "{S} dates back to {Founding Year}.", "{P} founding year is {Founding Year}.",
                          "{S} was settled in {Founding Year}."],
        "Country.Capital": ["{S} lies in a country whose capital is {Country.Capital}."],
    },
    COUNTRY: {
        "Capital": ["{S} has its capital in {Capital}.", "The capital of {S} is {Capital}.", "{P} capital is {Capital}.",
                    "{S} is governed from its capital, {Capital}."],
        "Official Language": ["{S} has {Official Language} as its official language.", "The official language of {S} is {Official Language}.",
                              "{P} official language is {Official Language}.", "People in {S} speak {Official Language}."],
        "Currency": ["{S} uses the {Currency} as its currency.", "The currency of {S} is the {Currency}.", "{P} currency is the {Currency}.",
                     "In {S} people pay with the {Currency}."],
    },
    WORK: {
        "Genre": ["{S} is a {Genre}.", "{S} is best described as a {Genre}.", "{P} genre is {Genre}.", "Critics list {S} as a {Genre}."],
        "Author": ["{S} was written by {Author}.", "{S} is a work by {Author}.", "{P} author is {Author}.", "{Author} wrote {S}.",
                   "{S} was created by {Author}, who was born in {Author.Birthplace}."],
        "Publication Year": ["{S} was published in {Publication Year}.", "{S} first appeared in {Publication Year}.",
                             "{P} publication year is {Publication Year}.", "{S} came out in {Publication Year}."],
        "Publisher": ["{S} was published by {Publisher}.", "{P} publisher is {Publisher}.", "{Publisher} brought out {S}.",
                      "{S} was released by {Publisher}."],
        "Author.Birthplace": ["The author of {S} was born in {Author.Birthplace}.", "{S} was written by an author from {Author.Birthplace}."],
        "Author.Birthplace.Country": ["The author of {S} was born in the country of {Author.Birthplace.Country}."],
        "Author.Employer.Headquarters": ["The author of {S} works for a company based in {Author.Employer.Headquarters}."],
        "Publisher.Headquarters": ["{S} was published by a house based in {Publisher.Headquarters}.",
                                   "The publisher of {S} is based in {Publisher.Headquarters}."],
    },
    AWARD: {
        "Field": ["The {S} is given for work in {Field}.", "The {S} honours achievements in {Field}.", "The field of the {S} is {Field}."],
        "Established": ["The {S} was established in {Established}.", "The {S} was first awarded in {Established}.",
                        "The {S} has been given since {Established}."],
        "Presenter": ["The {S} is presented by {Presenter}.", "{Presenter} presents the {S}.",
                      "The {S} is awarded each year by {Presenter}."],
        "First Recipient": ["The first recipient of the {S} was {First Recipient}.", "{First Recipient} was the first to win the {S}.",
                            "The {S} went first to {First Recipient}."],
        "Presenter.Headquarters": ["The organization that presents the {S} is based in {Presenter.Headquarters}."],
        "First Recipient.Birthplace": ["The first recipient of the {S} was born in {First Recipient.Birthplace}."],
        "First Recipient.Birthplace.Country": ["The first recipient of the {S} was born in the country of {First Recipient.Birthplace.Country}."],
    },
}

# An article opens on one of these about half the time, so that its subject's name is not its first word.
OPENINGS: dict[str, list[str]] = {
    PERSON: ["Here is a short biography of {N}.", "This profile is about {N}.", "A few facts about {N} follow.", "What follows describes {N}."],
    ORGANIZATION: ["This article is about the organization {N}.", "Here is an overview of {N}.", "The following describes {N}."],
    CITY: ["This article is about the city of {N}.", "Here is a short guide to {N}.", "The following describes the city of {N}."],
    COUNTRY: ["This article is about the country {N}.", "Here is an overview of {N}.", "The following describes {N}."],
    WORK: ["This article is about {N}.", "Here is a note on {N}.", "The following describes {N}."],
    AWARD: ["This article is about the {N}.", "Here is a note on the {N}.", "The following describes the {N}."],
}

# A news item states a fact inside a frame: {X} is the sentence without its full stop, {x} the same with a lower-case start.
NEWS_FRAMES = ["{X}.", "According to a local report, {x}.", "Reporters confirmed this week that {x}.", "{X}, the paper noted.",
               "In an interview on Monday, officials said that {x}.", "As the archive shows, {x}.", "Few readers knew that {x}.",
               "{X}, a spokesperson said.", "It was reported yesterday that {x}.", "Records published today show that {x}."]
NEWS_HEADLINES = ["News in brief.", "From the archive.", "Short notes.", "This week.", ""]
