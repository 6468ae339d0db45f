"""``lmlm experiment unlearn``: TOFU-style unlearning on a synthetic world (``lmlm.unlearn``)."""

from __future__ import annotations

import json

from lmlm.cli.parsing import from_config_file, load_args


def _unlearn(args) -> None:
    from lmlm.unlearn import UnlearnConfig
    from lmlm.unlearn.run import run_unlearn

    report = run_unlearn(load_args(UnlearnConfig, args), echo=print)
    summary = {kind: {size: {"original": r["original"]["forget_quality"], "deletion": r.get("deletion", {}).get("forget_quality"),
                             "best": {m: b["forget_quality"] for m, b in r["best"].items()}}
                      for size, r in result["forget"].items()} for kind, result in report["kinds"].items()}
    print(json.dumps({"forget_quality": summary}))


def add_unlearn_command(experiments) -> None:
    """``unlearn`` among the ``lmlm experiment`` subcommands (``experiments``: their subparsers)."""
    experiments.add_parser("unlearn", help="TOFU-style: forget people by KB deletion vs GA, GD, NPO, SimNPO; forget quality vs utility",
                           declare=from_config_file("lmlm.unlearn.config", "UnlearnConfig")).set_defaults(run=_unlearn)
