"""Opening a KB from what a user typed: a path (SQLite), a ``postgresql://`` URL, or ``env:NAME``, the name
of an environment variable that holds either (so a password never shows in the process list)."""

from __future__ import annotations

import os

from lmlm.errors import LmlmError
from lmlm.kb.pg_schema import is_url


def resolve_kb_spec(spec) -> str:
    """The path or URL ``spec`` names (``env:NAME`` read from the environment)."""
    spec = os.fspath(spec)
    if spec.startswith("env:"):
        name = spec.removeprefix("env:")
        if not os.environ.get(name):
            raise LmlmError(f"{spec}: the environment variable {name} is not set (export {name}=postgresql://...)")
        return os.environ[name]
    return spec


def is_shared(spec) -> bool:
    """Does ``spec`` name a PostgreSQL KB?"""
    return is_url(resolve_kb_spec(spec))


def open_kb(spec, encoder=None, create: bool = False, listen: bool = False, **options):
    """A ``SqliteKB`` for a path, a ``PostgresKB`` for a URL; ``listen`` starts a replica's change listener."""
    target = resolve_kb_spec(spec)
    if is_url(target):
        from lmlm.kb.postgres import PostgresKB

        return PostgresKB(target, encoder=encoder, create=create, listen=listen, **options)
    from lmlm.kb.sqlite import SqliteKB

    return SqliteKB(target, encoder=encoder, create=create, **options)
