"""Templates to annotated text and back: a sentence with its gold lookups, and the facts a sentence states.

A lookup goes right before its value's words, with the space in front of it as its lead, as annotated text has
it; a value reached through a bridge the sentence does not state gets the bridge's call first, so the calls
chain (``... based in [Ada Ashby, Employer -> Foxglove Pharma][Foxglove Pharma, Headquarters -> Oakhollow] Oakhollow``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lmlm import markup
from lmlm.wiki.entities import Entity

SLOT = re.compile(r"\{([^{}]+)\}")
SUBJECT_SLOTS = ("S", "s", "P", "N")
POSSESSIVES = {"he": "his", "she": "her", "it": "its"}


class Builder:
    """Segments of one document, text and lookups, with each lookup's lead space taken from the text before it."""

    def __init__(self, calls=None):
        self.segments: list[markup.Segment] = []
        self._text = ""
        self.calls = calls  # a NoisyCalls: what a noisy annotator writes for each gold call

    def text(self, piece: str) -> None:
        self._text += piece

    def lookup(self, entity: str, relation: str, value: str) -> str:
        """Write the call before a value; its lead space, or "" (also where a noisy annotator left the call out)."""
        call = self.calls.call(entity, relation, value) if self.calls else (entity, relation, value)
        if call is None:
            return ""
        lead = ""
        if self._text.endswith(" "):
            self._text, lead = self._text[:-1], " "
        if self._text:
            self.segments.append(self._text)
        self._text = ""
        self.segments.append(markup.Lookup(*call, lead=lead))
        return lead

    def done(self) -> list[markup.Segment]:
        if self._text:
            self.segments.append(self._text)
            self._text = ""
        return markup.join_segments(self.segments)


def _subject_text(slot: str, entity: Entity, by_name: bool, at_start: bool) -> str:
    if by_name or slot == "N" or entity.pronoun is None:
        return f"{entity.name}'s" if slot == "P" else entity.name
    word = POSSESSIVES[entity.pronoun] if slot == "P" else entity.pronoun
    return word.capitalize() if at_start and slot != "s" else word


def resolve(path: str, subject: Entity, world: dict[str, Entity]) -> list[tuple[str, str, str]] | None:
    """The calls along a relation path from ``subject``: (entity, relation, value) per hop; None if a hop is missing."""
    calls, entity = [], subject
    for relation in path.split("."):
        value = entity.facts.get(relation) if entity else None
        if value is None:
            return None
        calls.append((entity.name, relation, value))
        entity = world.get(value)
    return calls


def render(builder: Builder, template: str, subject: Entity, world: dict[str, Entity], by_name: bool = True,
           lower_start: bool = False) -> bool:
    """Append ``template`` about ``subject`` to ``builder``; False (and nothing appended) if a slot has no value."""
    pieces = SLOT.split(template)
    paths = [p for p in pieces[1::2] if p not in SUBJECT_SLOTS]
    if any(resolve(p, subject, world) is None for p in paths):
        return False
    stated: set[str] = set()
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            builder.text(piece[:1].lower() + piece[1:] if i == 0 and lower_start else piece)
        elif piece in SUBJECT_SLOTS:
            builder.text(_subject_text(piece, subject, by_name, at_start=i == 1 and not pieces[0]))
        else:
            _render_value(builder, piece, subject, world, stated)
    return True


def _render_value(builder: Builder, path: str, subject: Entity, world: dict[str, Entity], stated: set[str]) -> None:
    calls = resolve(path, subject, world)
    hops = path.split(".")
    leads = ""  # only the first call written takes the space before the value
    for n, (entity, relation, value) in enumerate(calls):
        bridge = ".".join(hops[: n + 1])
        if bridge in stated and n < len(calls) - 1:
            continue  # the text names this bridge already: the next call asks about it by name
        leads += builder.lookup(entity, relation, value)
    builder.text(leads + calls[-1][2])
    stated.add(path)


# --- reading facts back ---------------------------------------------------------------------------------------


def template_pattern(template: str) -> tuple[re.Pattern, list[str]]:
    """A regex for a whole sentence of ``template`` and the relation path of each value group, in order."""
    regex, paths, subject_seen = "", [], False
    for i, piece in enumerate(SLOT.split(template)):
        if i % 2 == 0:
            regex += re.escape(piece)
        elif piece in SUBJECT_SLOTS:
            regex += "(?P=subject)" if subject_seen else "(?P<subject>.+?)"
            regex += "(?:'s)?" if piece == "P" else ""
            subject_seen = True
        else:
            regex += f"(?P<v{len(paths)}>.+?)"
            paths.append(piece)
    return re.compile("^" + regex + "$"), paths


def sentence_facts(sentence: str, patterns: list[tuple[re.Pattern, list[str]]]) -> list[tuple[str, str, str]]:
    """The facts of the first pattern that reads the whole sentence."""
    for pattern, paths in patterns:
        m = pattern.match(sentence)
        if m:
            subject = m.group("subject").strip()
            return [(subject, path, m.group(f"v{k}").strip()) for k, path in enumerate(paths)]
    return []


def make_extractor(patterns_of: Callable[[str], list[tuple[re.Pattern, list[str]]]], type_of: Callable[[str], str | None]):
    """A fact extractor (``lmlm.evaluate.metrics.FactExtractor``) for articles that open "NAME is ...": the name
    picks its type's templates, and "it"/"its" stand for the name. A last sentence with no full stop was cut
    off by the token budget: it states nothing yet."""

    def atomic_facts(text: str) -> list[tuple[str, str, str]]:
        words = text.split()
        name = next((n for n in (" ".join(words[:k]) for k in range(min(len(words), 9), 0, -1)) if type_of(n)), None)
        if name is None:
            return []
        kind = type_of(name)
        facts = []
        for sentence in re.split(r"(?<=\.)\s+", text.strip()):
            if sentence.endswith("."):
                for subject, path, value in sentence_facts(sentence.strip(), patterns_of(kind)):
                    facts.append((name if subject.lower() in ("it", "its") else subject, path, value))
        return facts

    return atomic_facts
