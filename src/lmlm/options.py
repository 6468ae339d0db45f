"""The generation options, read from their one source: the fields of ``GenerationConfig`` and their metadata.

Each field names the surfaces that show it (``lmlm.config`` lists the metadata keys). The CLI, the HTTP
request bodies and ``lmlm.compat`` take their options from here, so a new field reaches every surface it
names, with the same help, bounds and default, by being declared once.
"""

from __future__ import annotations

import dataclasses

SURFACES = ("cli", "eval", "api", "completions", "compat", "serve")  # serve: a server-wide default for requests


def generation_config():
    """The ``GenerationConfig`` class: the one import of it here, so that its module can move."""
    from lmlm.engine import GenerationConfig

    return GenerationConfig


def generation_fields(surface: str) -> list[dataclasses.Field]:
    """The fields of ``GenerationConfig`` that ``surface`` shows, in declaration order."""
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}: expected one of {', '.join(SURFACES)}")
    return [f for f in dataclasses.fields(generation_config()) if surface in f.metadata["surfaces"]]


def surface_default(f: dataclasses.Field, surface: str):
    """A field's default on ``surface``: the dataclass's, unless the surface's convention declares its own."""
    if surface == "api" and "api_default" in f.metadata:
        return f.metadata["api_default"]
    if surface == "compat":
        return f.metadata.get("compat", {}).get("default", f.default)
    return f.default


def compat_keywords() -> dict[str, tuple[str, object]]:
    """The reference implementation's keyword of each option ``lmlm.compat`` takes: keyword -> (field, default)."""
    return {f.metadata.get("compat", {}).get("name", f.name): (f.name, surface_default(f, "compat"))
            for f in generation_fields("compat")}
