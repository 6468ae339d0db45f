"""The lookup grammar: the one place that knows how lookups are written.

Two surface forms carry the same content (DESIGN.md section 2):

    special:  <|db_entity|> ENTITY<|db_relationship|> RELATION<|db_return|> VALUE<|db_end|>
    legacy:   [dblookup('ENTITY', 'RELATION') -> VALUE]

A document parses into a list of segments, each a plain ``str`` or a ``Lookup``.
The single space in front of a lookup belongs to the lookup (``Lookup.lead``), so
stripping the lookups is simply joining the text segments.

Parsing never raises on bad markup: malformed pieces are dropped from the text and
reported as ``Malformed`` with their character offset and a reason. Lookups that
were readable but not written canonically (unescaped inner quote, double quotes,
odd spacing) are kept and marked ``repaired``.

Canonical segment lists: no empty or adjacent text segments; entity, relation and
value are non-empty, stripped and single-line; a lookup with ``lead == ""`` is not
preceded by a space. For those, ``parse(render(x, form)).segments == x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Union

DB_ENTITY = "<|db_entity|>"
DB_RELATIONSHIP = "<|db_relationship|>"
DB_RETURN = "<|db_return|>"
DB_END = "<|db_end|>"
SPECIAL_TOKENS = (DB_ENTITY, DB_RELATIONSHIP, DB_RETURN, DB_END)

LEGACY_START = "[dblookup"

Form = Literal["special", "legacy"]


@dataclass(frozen=True)
class Lookup:
    entity: str
    relation: str
    value: str
    lead: str = " "  # the whitespace in front of the call that stripping removes: " " or ""
    span: tuple[int, int] | None = field(default=None, compare=False)  # call's [start, end) in the source
    repaired: str | None = field(default=None, compare=False)  # why it was not canonical, if it was not

    @property
    def triplet(self) -> tuple[str, str, str]:
        return (self.entity, self.relation, self.value)


@dataclass(frozen=True)
class Malformed:
    offset: int
    reason: str
    snippet: str

    @property
    def is_lookup(self) -> bool:
        """True for a broken lookup call, False for debris or a stray token."""
        return not (self.reason.startswith("chat-template debris") or self.reason.startswith("stray"))


Segment = Union[str, Lookup]


@dataclass
class Document:
    segments: list[Segment]
    malformed: list[Malformed]

    @property
    def lookups(self) -> list[Lookup]:
        return [s for s in self.segments if isinstance(s, Lookup)]

    @property
    def plain(self) -> str:
        """The text with every lookup (and its lead space) removed."""
        return "".join(s for s in self.segments if isinstance(s, str))

    @property
    def triplets(self) -> list[tuple[str, str, str]]:
        return [lk.triplet for lk in self.lookups]


# --- chat-template debris ----------------------------------------------------

_DEBRIS = re.compile(
    r"<\|(?:eot_id|start_header_id|end_header_id|im_start|im_end|begin_of_text|end_of_text|endoftext)\|>"
    r"|\[/?INST\]|</s>"
    r"|(?:(?<=[^\sA-Za-z])|^)(?:assistant|user|system)[ \t]*\n",
    re.MULTILINE,
)


# --- parsing -------------------------------------------------------------------

_MARKERS = re.compile(r"\[dblookup|<\|db_(?:entity|relationship|return|end)\|>|" + _DEBRIS.pattern, re.MULTILINE)
_NEXT_CALL = re.compile(r"\[dblookup|<\|db_entity\|>|\n")


class _Bad(Exception):
    """A malformed call: ``end`` is where the broken piece stops."""

    def __init__(self, reason: str, end: int):
        self.reason, self.end = reason, end


def parse(text: str) -> Document:
    """Parse annotated text in either form (or a mix) into segments and malformed pieces."""
    segments: list[Segment] = []
    malformed: list[Malformed] = []
    buf: list[str] = []
    pos = 0
    while (m := _MARKERS.search(text, pos)) is not None:
        start = m.start()
        buf.append(text[pos:start])
        try:
            if m.group().startswith(LEGACY_START):
                lookup, end = _parse_legacy(text, start)
            elif m.group() == DB_ENTITY:
                lookup, end = _parse_special(text, start)
            elif m.group() in SPECIAL_TOKENS:
                raise _Bad(f"stray {m.group()} outside a lookup", m.end())
            else:
                raise _Bad(f"chat-template debris {m.group().strip()!r}", m.end())
        except _Bad as bad:
            malformed.append(Malformed(start, bad.reason, text[start : min(bad.end, start + 120)]))
            pos = max(bad.end, start + 1)
            continue
        prefix = "".join(buf)
        lead = " " if prefix.endswith(" ") else ""
        buf = [prefix[: len(prefix) - len(lead)]]
        _flush(segments, buf)
        segments.append(Lookup(*lookup[:3], lead=lead, span=(start, end), repaired=lookup[3]))
        pos = end
    buf.append(text[pos:])
    _flush(segments, buf)
    return Document(segments, malformed)


def _flush(segments: list[Segment], buf: list[str]) -> None:
    chunk = "".join(buf)
    buf.clear()
    if not chunk:
        return
    if segments and isinstance(segments[-1], str):
        segments[-1] += chunk
    else:
        segments.append(chunk)


def _call_limit(text: str, start: int) -> int:
    """Where a call starting at ``start`` must have ended: the next call, newline, or end of text."""
    m = _NEXT_CALL.search(text, start + 1)
    return m.start() if m else len(text)


def _parse_special(text: str, start: int):
    limit = _call_limit(text, start)
    pos = start + len(DB_ENTITY)
    parts = []
    repaired = None
    for token in (DB_RELATIONSHIP, DB_RETURN, DB_END):
        end = text.find(token, pos, limit)
        if end < 0:
            missing = {DB_RELATIONSHIP: "missing relation", DB_RETURN: "missing <|db_return|>"}.get(token)
            if missing and text.find(DB_END, pos, limit) >= 0:
                raise _Bad(missing, text.find(DB_END, pos, limit) + len(DB_END))
            raise _Bad(f"unclosed {DB_ENTITY} (no {token})", limit)
        raw = text[pos:end]
        if any(t in raw for t in SPECIAL_TOKENS):
            raise _Bad("nested or out-of-order lookup tokens", end + len(token))
        part = raw.strip()
        if not part:
            raise _Bad("empty argument", end + len(token))
        if raw != " " + part:
            repaired = "spacing"
        parts.append(part)
        pos = end + len(token)
    return (*parts, repaired), pos


_LEGACY_OPEN = re.compile(r"\[dblookup\(\s*")
_ARROW = re.compile(r"(\]?)\s*->\s*")  # an annotator sometimes closes the call before the arrow


def _parse_legacy(text: str, start: int):
    limit = _call_limit(text, start)
    m = _LEGACY_OPEN.match(text, start, limit)
    if not m:
        raise _Bad("'[dblookup' without '('", start + len(LEGACY_START))
    repairs = [] if m.end() == start + len("[dblookup(") else ["spacing"]
    entity, pos, closer = _read_quoted(text, m.end(), limit, repairs)
    if closer == ")":
        raise _Bad("missing relation", pos)
    relation, pos, closer = _read_quoted(text, pos, limit, repairs)
    if closer != ")":
        raise _Bad("more than two arguments", pos)
    arrow = _ARROW.match(text, pos, limit)
    if not arrow:
        raise _Bad("missing '->' after the arguments", pos)
    if arrow.group(1):
        repairs.append("misplaced ']'")
    elif arrow.group() != " -> ":
        repairs.append("spacing")
    value, end = _read_value(text, arrow.end(), limit, repairs)
    if value != value.strip():
        repairs.append("spacing")
        value = value.strip()
    if not (entity.strip() and relation.strip() and value):
        raise _Bad("empty argument", end)
    if entity != entity.strip() or relation != relation.strip():
        repairs.append("spacing")
    repaired = ", ".join(dict.fromkeys(repairs)) or None
    return (entity.strip(), relation.strip(), value, repaired), end


_SEPARATOR = re.compile(r"\s*(,\s*|\))")


def _read_quoted(text: str, pos: int, limit: int, repairs: list[str]) -> tuple[str, int, str]:
    """Read one quoted argument; returns (argument, position after its separator, ',' or ')')."""
    if pos >= limit or text[pos] not in "'\"":
        raise _Bad("argument is not quoted", pos)
    quote = text[pos]
    if quote == '"':
        repairs.append("double quotes")
    out = []
    i = pos + 1
    while i < limit:
        c = text[i]
        if c == "\\":
            if i + 1 < limit and text[i + 1] in "\\'\"":
                out.append(text[i + 1])
                i += 2
                continue
            repairs.append("unescaped backslash")
        elif c == quote:
            sep = _SEPARATOR.match(text, i + 1, limit)
            if sep:
                if sep.group() not in (", ", ")"):
                    repairs.append("spacing")
                return "".join(out), sep.end(), sep.group(1)[0]
            repairs.append("unescaped quote")
        out.append(c)
        i += 1
    raise _Bad("unterminated argument", limit)


def _read_value(text: str, pos: int, limit: int, repairs: list[str]) -> tuple[str, int]:
    """VALUE runs to the ']' that closes the call; balanced brackets and backslash escapes may sit inside."""
    out = []
    depth = 0
    i = pos
    while i < limit:
        c = text[i]
        if c == "\\" and i + 1 < limit and text[i + 1] in "\\[]'\"":
            if text[i + 1] in "'\"":  # annotators escape quotes that need no escaping here
                repairs.append("escaped quote in value")
            out.append(text[i + 1])
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            if depth == 0:
                return "".join(out), i + 1
            depth -= 1
        out.append(c)
        i += 1
    if text.startswith(LEGACY_START, limit) or text.startswith(DB_ENTITY, limit):
        raise _Bad("nested or unclosed lookup (another call starts before ']')", limit)
    raise _Bad("unclosed lookup (no ']')", limit)


# --- rendering -----------------------------------------------------------------


def render_lookup(lookup: Lookup, form: Form = "special") -> str:
    if form == "special":
        return f"{lookup.lead}{DB_ENTITY} {lookup.entity}{DB_RELATIONSHIP} {lookup.relation}{DB_RETURN} {lookup.value}{DB_END}"
    if form == "legacy":
        return f"{lookup.lead}[dblookup({_quote(lookup.entity)}, {_quote(lookup.relation)}) -> {_escape_value(lookup.value)}]"
    raise ValueError(f"unknown markup form {form!r}: expected 'special' or 'legacy'")


def render(segments: list[Segment], form: Form = "special") -> str:
    return "".join(s if isinstance(s, str) else render_lookup(s, form) for s in segments)


def _quote(arg: str) -> str:
    return "'" + arg.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _escape_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\")
    if _balanced(value):
        return escaped
    return escaped.replace("[", "\\[").replace("]", "\\]")


def _balanced(value: str) -> bool:
    depth = 0
    for c in value:
        depth += (c == "[") - (c == "]")
        if depth < 0:
            return False
    return depth == 0


# --- conveniences -------------------------------------------------------------


def join_segments(segments: list[Segment]) -> list[Segment]:
    """Canonical form: adjacent text segments merged, empty ones dropped."""
    out: list[Segment] = []
    for s in segments:
        if isinstance(s, str) and out and isinstance(out[-1], str):
            out[-1] += s
        elif s != "":
            out.append(s)
    return out


def convert(text: str, form: Form) -> str:
    """Re-render annotated text in ``form``; malformed pieces are dropped."""
    return render(parse(text).segments, form)


def strip(text: str) -> str:
    """The plain text: every lookup and the single space in front of it removed."""
    return parse(text).plain


def triplets(text: str) -> list[tuple[str, str, str]]:
    return parse(text).triplets


def validate(text: str) -> list[Malformed]:
    return parse(text).malformed


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def is_faithful(annotated: str, text: str) -> bool:
    """Does stripping the lookups give ``text`` back (whitespace-normalized, a leading title line allowed)?"""
    return same_text(strip(annotated), text)


def same_text(plain: str, text: str) -> bool:
    """Is ``plain`` the text ``text``, up to whitespace and a leading title line that ``plain`` may lack?"""
    plain = normalize_whitespace(plain)
    if plain == normalize_whitespace(text):
        return True
    title, sep, body = text.partition("\n")
    return bool(sep) and plain == normalize_whitespace(body)


def contains_markup(text: str) -> bool:
    """Would ``text`` be read as markup (a lookup, a lookup token, or debris)?"""
    return _MARKERS.search(text) is not None
