"""Typed dataclass configs: one schema for YAML files, command-line options and request bodies.

``load_config(Cls, path, overrides)`` reads YAML, applies ``--field value`` overrides, and checks
every key, type and bound against the dataclass, naming the key that is wrong. ``add_arguments`` puts
one option per dataclass field on an argparse parser. A field's ``metadata`` says how it is shown:

    help       the option's help text
    ge, gt, le, lt   bounds of a number (numbers are finite wherever they are checked)
    choices    the values a string may take
    flag       the option's name when it is not ``--field-name`` (``--no-lookups``)
    positional the field is a positional argument (``nargs`` in its value: "*", "+", "?")
    surfaces   where a generation option is shown: "cli", "eval", "api", "completions", "compat", "serve"
               (``lmlm.options`` reads them; every field of ``GenerationConfig`` names its surfaces)
    sampling   the option only acts when sampling (the CLI refuses it without ``--do-sample``)
    api_default, compat   a surface's own default or name, where the surface's convention differs

A bool field is a bare flag: ``--field`` sets True, or ``--no-...`` sets False when the default is True.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path

from lmlm.errors import LmlmError


def _field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value, kind):
    """``value`` as ``kind`` (str, int, float, bool, a list or an optional of one), or an error naming ``key``."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(key, item, args[0]) for item in items]
    if typing.get_origin(kind) is typing.Literal:
        if value in args:
            return value
        raise LmlmError(f"config key {key!r}: expected one of {', '.join(map(str, args))}, got {value!r}")
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise LmlmError(f"config key {key!r}: expected {kind.__name__}, got {value!r}")


def load_config(cls, path: str | Path | None = None, overrides: dict | None = None):
    """An instance of dataclass ``cls`` from a YAML file and overrides (None values are ignored)."""
    values: dict = {}
    if path:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise LmlmError(f"{path}: no such config file") from None
        except yaml.YAMLError as e:
            raise LmlmError(f"{path}: invalid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise LmlmError(f"{path}: expected a mapping of config keys")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise LmlmError(f"unknown config key {unknown[0]!r}" + (f" in {path}" if path else "") + f"; known keys: {', '.join(types_)}")
    typed = {k: _coerce(k, v, types_[k]) for k, v in values.items()}
    for f in dataclasses.fields(cls):
        if f.name in typed:
            check_bounds(f.name, typed[f.name], f.metadata)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in typed
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LmlmError(f"missing config key {missing[0]!r}")
    return cls(**typed)


BOUNDS = {"ge": (lambda v, b: v >= b, "≥"), "gt": (lambda v, b: v > b, ">"), "le": (lambda v, b: v <= b, "≤"), "lt": (lambda v, b: v < b, "<")}


def check_bounds(key: str, value, metadata) -> None:
    """An error naming ``key`` when ``value`` is not a finite number within the field's bounds, or not one of its choices."""
    if isinstance(value, float) and not math.isfinite(value):
        raise LmlmError(f"config key {key!r}: expected a finite number, got {value!r}")
    if value is None or isinstance(value, bool):
        return
    for name, (holds, sign) in BOUNDS.items():
        if name in metadata and isinstance(value, (int, float)) and not holds(value, metadata[name]):
            raise LmlmError(f"config key {key!r}: must be {sign} {metadata[name]}, got {value!r}")
    if "choices" in metadata and value not in metadata["choices"]:
        raise LmlmError(f"config key {key!r}: expected one of {', '.join(metadata['choices'])}, got {value!r}")


def add_arguments(parser: argparse.ArgumentParser, cls, fields: list | None = None, required: bool = False,
                  show_defaults: bool = True) -> None:
    """One option per field of ``cls`` (or of ``fields``, a selection of them); values stay strings until
    ``load_config`` checks them, and an option left out stays None. ``required``: a field with no default
    must be given here (no YAML file can supply it). ``show_defaults``: the help names the dataclass's
    defaults (not where an option left out leaves the choice to someone else)."""
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls) if fields is None else fields:
        meta, kind = f.metadata, types_[f.name]
        options = {"help": _help(f, kind) if show_defaults else f.metadata.get("help", ""), "default": None}
        if "choices" in meta:
            options["choices"] = meta["choices"]
        if meta.get("positional"):
            nargs = None if meta["positional"] is True else meta["positional"]
            parser.add_argument(f.name, nargs=nargs, **options, **({} if "choices" in meta else {"metavar": f.name.upper()}))
            continue
        name = meta.get("flag") or "--" + f.name.replace("_", "-")
        if kind is bool:
            options.update(action="store_const", const=not name.startswith("--no-"))
        else:
            if typing.get_origin(kind) is list:
                options["nargs"] = "+"
            if required and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                options["required"] = True
        parser.add_argument(name, dest=f.name, **options)


def _help(f: dataclasses.Field, kind) -> str:
    """The field's help, and its default where that says more than 'off'."""
    text = f.metadata.get("help", "")
    if f.default in (dataclasses.MISSING, None, "") or kind is bool:
        return text
    return f"{text} (default: {f.default})" if text else f"default: {f.default}"


def overrides_from(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
