"""``lmlm experiment NAME``: the paper's experiments (``lmlm.experiments``). Each is one line of ``EXPERIMENTS``:
its config dataclass gives its options (and ``--config FILE``), its function runs it and returns its report,
whose ``summary`` is printed as JSON."""

from __future__ import annotations

import importlib
import json

from lmlm.cli.parsing import from_config_file, load_args
from lmlm.cli.unlearn_commands import add_unlearn_command

# name: (help, module, config dataclass, function)
EXPERIMENTS = {
    "memorization": ("the loss on the facts' value tokens over training, LMLM vs Standard, from their logs: JSON and a chart",
                     "lmlm.experiments.memorization", "MemorizationConfig", "run_memorization"),
    "offload": ("train at each share of the facts annotated as lookups, same budget; completion, factual precision, "
                "normalized perplexity, database-off completion: JSON, a table and charts",
                "lmlm.experiments.offload", "OffloadConfig", "run_offload"),
    "paper": ("every experiment above and unlearning at one CPU scale, resumable per stage: report.md and report.json with "
              "every table and chart (make paper)", "lmlm.experiments.paper", "PaperConfig", "run_paper"),
}


def _runner(module: str, config: str, function: str):
    def run(args) -> None:
        loaded = importlib.import_module(module)
        report = getattr(loaded, function)(load_args(getattr(loaded, config), args))
        print(json.dumps(report["summary"]))

    return run


def add_experiment_commands(stages) -> None:
    group = stages.add_parser("experiment", help="the paper's experiments at CPU scale, each with a report and charts")
    experiments = group.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, (help_text, module, config, function) in EXPERIMENTS.items():
        parser = experiments.add_parser(name, help=help_text, declare=from_config_file(module, config))
        parser.set_defaults(run=_runner(module, config, function))
    add_unlearn_command(experiments)
