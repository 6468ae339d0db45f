"""Typed dataclass configs: one schema for YAML files and command-line overrides.

``load_config(Cls, path, overrides)`` reads YAML, applies ``--field value`` overrides, and checks
every key and type against the dataclass, naming the key that is wrong. ``add_arguments`` puts one
``--field`` option per dataclass field on an argparse parser.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in typed
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LmlmError(f"missing config key {missing[0]!r}")
    return cls(**typed)


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--field-name`` option per field; values stay strings until ``load_config`` checks them."""
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        many = {"nargs": "+"} if typing.get_origin(types_[f.name]) is list else {}
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="VALUE", help=f.metadata.get("help", ""), **many)


def overrides_from(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
