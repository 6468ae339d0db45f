"""What every stage's command line shares: the parser that declares a stage's options only when that stage
runs or shows its help, and reading a config dataclass from the options given."""

from __future__ import annotations

import argparse
import importlib
import json

from lmlm.config import add_arguments, load_config, overrides_from
from lmlm.errors import LmlmError
from lmlm.options import generation_config, generation_fields


class LazyParser(argparse.ArgumentParser):
    """A parser whose options ``declare(parser)`` adds when it is first used: declaring a stage may import its
    config's module, and only the stage that runs needs it."""

    def __init__(self, *args, declare=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._declare = declare

    def declared(self) -> LazyParser:
        if self._declare is not None:
            declare, self._declare = self._declare, None
            declare(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        return super(LazyParser, self.declared()).parse_known_args(args, namespace)

    def format_usage(self):
        return super(LazyParser, self.declared()).format_usage()

    def format_help(self):
        return super(LazyParser, self.declared()).format_help()

    def error(self, message: str):
        """Bad usage in one line (``-h`` shows the usage), as every other refusal of the CLI."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def load_args(cls, args: argparse.Namespace):
    """``cls`` from the YAML file of ``--config`` (for stages that take one) and the options given."""
    return load_config(cls, getattr(args, "config", None), overrides_from(args, cls))


def generation_options(args: argparse.Namespace, surface: str) -> dict:
    """The generation options of ``surface`` on the command line, checked: all of them for ``cli`` (left
    out, the default), only those given for ``eval`` (left out, the suite chooses)."""
    cfg = load_args(generation_config(), args)
    fields = generation_fields(surface)
    ignored = [f for f in fields if f.metadata.get("sampling") and getattr(args, f.name) is not None and not cfg.do_sample]
    if ignored:
        flag = ignored[0].metadata.get("flag", "--" + ignored[0].name.replace("_", "-"))
        raise LmlmError(f"{flag} acts only when sampling: add --do-sample (without it, decoding is greedy)")
    return {f.name: getattr(cfg, f.name) for f in fields if surface == "cli" or getattr(args, f.name) is not None}


def from_config_file(module: str, name: str):
    """Declares the fields of the config dataclass ``module.name`` as options, after ``--config FILE``."""

    def declare(p: argparse.ArgumentParser) -> None:
        cls = getattr(importlib.import_module(module), name)
        p.add_argument("--config", help=f"YAML file of {name} keys; command-line options override it")
        add_arguments(p, cls)

    return declare


def print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
