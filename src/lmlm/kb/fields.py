"""What can be stored as a triplet field, and what a queried string can match: the checks shared by the
store, the file readers, the edits and the lookups."""

from __future__ import annotations

from lmlm.kb.normalize import normalize_key

MAX_FIELD_CHARS = 2000  # longer strings are refused at write time and never match at read time
INT64_MAX = 2**63 - 1


def field_problem(name: str, text) -> str | None:
    """Why ``text`` cannot be stored as the triplet field ``name`` (entity, relation or value), or None if it can."""
    if not isinstance(text, str):
        return f"{name} must be a string, got {type(text).__name__}"
    if not text.strip():
        return f"{name} is empty"
    if len(text) > MAX_FIELD_CHARS:
        return f"{name} is longer than {MAX_FIELD_CHARS} characters"
    if not storable_text(text):
        return f"{name} {text!r} is not valid Unicode (a lone surrogate, or bytes that are not UTF-8)"
    if name != "value" and not normalize_key(text):
        return f"{name} {text!r} has no letters or digits"
    return None


def storable_text(text: str) -> bool:
    """Can SQLite store ``text``? Lone surrogates (JSON "\\ud800", or undecodable bytes on a command line) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _optional_field_problem(name: str, text) -> str | None:
    """Why a provenance field (source, example id) cannot be stored, or None."""
    if isinstance(text, str) and not storable_text(text):
        return f"{name} {text!r} is not valid Unicode"
    return None


def provenance_problem(source, example_id) -> str | None:
    """Why a fact's source or example id cannot be stored, or None if both can."""
    return _optional_field_problem("source", source) or _optional_field_problem("example_id", example_id)


def row_problem(entity, relation, value, source=None, example_id=None) -> str | None:
    """Why an (entity, relation, value, source, example_id) row cannot be stored, or None if it can."""
    return (field_problem("entity", entity) or field_problem("relation", relation) or field_problem("value", value)
            or provenance_problem(source, example_id))


def is_row_id(value) -> bool:
    """Is ``value`` an integer SQLite can hold as a row id? Larger ones name no row."""
    return isinstance(value, int) and -INT64_MAX - 1 <= value <= INT64_MAX


def query_key(text) -> str:
    """The normalized key of a queried string; empty for anything that cannot match."""
    return normalize_key(text) if isinstance(text, str) and 0 < len(text) <= MAX_FIELD_CHARS and storable_text(text) else ""
