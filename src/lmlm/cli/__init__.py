"""The ``lmlm`` command: parses arguments and calls the stages. No logic of its own.

A stage with a config dataclass takes its options from the dataclass's fields (``lmlm.config``); the
generation options come from ``GenerationConfig`` (``lmlm.options``). A stage's options are declared
only when that stage runs or shows its help, so ``lmlm --help`` and ``lmlm kb ...`` import no torch.

``parsing`` holds what the stages share; ``kb_commands``, ``data_commands``, ``model_commands`` and
``experiment_commands`` each declare a group of stages and call the library for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys

from lmlm.cli.data_commands import add_data_commands
from lmlm.cli.experiment_commands import add_experiment_commands
from lmlm.cli.kb_commands import add_kb_commands, add_markup_commands
from lmlm.cli.model_commands import add_model_commands
from lmlm.cli.parsing import LazyParser
from lmlm.errors import LmlmError


def build_parser() -> argparse.ArgumentParser:
    parser = LazyParser(prog="lmlm", description="Large Memory Language Models: annotate, build a KB, train, generate, evaluate, serve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    add_markup_commands(stages)
    add_kb_commands(stages)
    add_data_commands(stages)
    add_model_commands(stages)
    add_experiment_commands(stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lmlm").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        args.run(args)
    except LmlmError as e:
        print(f"lmlm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as e:
        if not _stdout_reader_gone():
            print(f"lmlm: error: {e}", file=sys.stderr)
            return 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the reader stopped early (`| head`): no
        return 141  # traceback, and none when Python flushes stdout at exit
    return 0


def _stdout_reader_gone() -> bool:
    """Is standard output a pipe whose reader has closed it? (poll reports an error on such a pipe's write end)"""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll here, or stdout is no file
        return False


if __name__ == "__main__":
    sys.exit(main())
