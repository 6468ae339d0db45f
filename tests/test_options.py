"""The generation options have one source, GenerationConfig's fields: every field names the surfaces that show
it, and reaches each of them (the CLI, the HTTP request bodies, compat's keywords) with the same default and
bounds, and no surface has an option of its own making. Building the CLI's parser imports no torch."""

import argparse
import dataclasses
import subprocess
import sys

import pytest
from conftest import run_cli

from lmlm import cli, compat
from lmlm.cli import parsing
from lmlm.config import BOUNDS
from lmlm.options import SURFACES, generation_config, generation_fields, surface_default
from lmlm.serve.schemas import CompletionRequest, GenerateOptions

FIELDS = dataclasses.fields(generation_config())
OPENAI_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stop", "seed"}


def _stage(name: str) -> argparse.ArgumentParser:
    stages = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return stages.choices[name].declared()


def _options(name: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in _stage(name)._actions}


def _parsed(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_every_field_has_help_and_names_its_surfaces(f):
    assert f.metadata["help"]
    assert set(f.metadata["surfaces"]) <= set(SURFACES), f.metadata["surfaces"]


@pytest.mark.parametrize("f", generation_fields("cli"), ids=lambda f: f.name)
def test_each_cli_field_is_a_generate_flag_with_the_dataclass_default(f):
    action = _options("generate")[f.name]
    assert action.option_strings == [f.metadata.get("flag", "--" + f.name.replace("_", "-"))]
    assert action.help.startswith(f.metadata["help"])
    options = parsing.generation_options(_parsed("generate", "--model", "m"), "cli")
    assert options[f.name] == f.default
    assert surface_default(f, "cli") == f.default


@pytest.mark.parametrize("f", generation_fields("eval"), ids=lambda f: f.name)
def test_each_eval_field_is_an_eval_flag_that_left_out_leaves_the_suites_choice(f):
    assert f.name in _options("eval")
    args = _parsed("eval", "factuality", "--model", "m", "--data", "d")
    assert getattr(args, f.name) is None and parsing.generation_options(args, "eval") == {}


@pytest.mark.parametrize("f", generation_fields("api"), ids=lambda f: f.name)
def test_each_api_field_is_in_the_generate_body_with_its_default_and_bounds(f):
    body = GenerateOptions.model_fields[f.name]
    assert body.default == surface_default(f, "api")
    assert body.default == f.default or "api_default" in f.metadata
    bounds = {type(m).__name__.lower(): getattr(m, type(m).__name__.lower()) for m in body.metadata}
    assert bounds == {name: f.metadata[name] for name in BOUNDS if name in f.metadata}


@pytest.mark.parametrize("f", generation_fields("completions"), ids=lambda f: f.name)
def test_each_completions_field_is_in_the_openai_body_with_the_dataclass_default(f):
    assert CompletionRequest.model_fields[f.name].default == f.default


@pytest.mark.parametrize("f", generation_fields("compat"), ids=lambda f: f.name)
def test_each_compat_field_takes_the_references_keyword_and_default(f):
    keyword = f.metadata.get("compat", {}).get("name", f.name)
    assert getattr(compat._generation_config({}, "top1_anyway"), f.name) == surface_default(f, "compat")
    given = _another_value(f)
    assert given != surface_default(f, "compat")
    assert getattr(compat._generation_config({keyword: given}, "top1_anyway"), f.name) == given


@pytest.mark.parametrize("f", generation_fields("serve"), ids=lambda f: f.name)
def test_each_serve_field_is_a_serve_flag_that_sets_the_servers_default_only_when_given(f):
    base = ("serve", "--model", "m", "--kb", "k")
    assert f.name in _options("serve")
    assert parsing.generation_options(_parsed(*base), "serve") == {}
    given = _another_value(f)
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    given_as = (flag,) if isinstance(given, bool) else (flag, str(given))  # a switch takes no value
    assert parsing.generation_options(_parsed(*base, *given_as), "serve") == {f.name: given}


def _another_value(f: dataclasses.Field):
    """A valid value of the field other than its default."""
    if "choices" in f.metadata:
        return next(c for c in f.metadata["choices"] if c != f.default)
    if isinstance(f.default, bool):
        return not f.default
    return f.default + 1 if isinstance(f.default, int) else f.default / 2


def test_no_surface_has_a_generation_option_of_its_own():
    group = next(g for g in _stage("generate")._action_groups if g.title == "generation")
    assert [a.dest for a in group._group_actions] == [f.name for f in generation_fields("cli")]
    assert list(GenerateOptions.model_fields) == [f.name for f in generation_fields("api")]
    assert set(CompletionRequest.model_fields) - OPENAI_FIELDS == {f.name for f in generation_fields("completions")}
    assert sorted(name for name, _ in compat.compat_keywords().values()) == sorted(f.name for f in generation_fields("compat"))
    group = next(g for g in _stage("serve")._action_groups if g.title == "generation defaults")
    assert [a.dest for a in group._group_actions] == [f.name for f in generation_fields("serve")]


def test_the_cli_checks_an_option_against_the_bounds_of_its_field():
    proc = run_cli("generate", "--model", "nowhere", "--top-p", "2", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "lmlm: error: config key 'top_p': must be ≤ 1, got 2.0"


@pytest.mark.parametrize("argv", [["kb", "stats", "x.sqlite"], ["--help"]])
def test_building_the_parser_imports_no_torch(argv):
    code = ("import sys, lmlm.cli\n"
            f"try:\n    lmlm.cli.build_parser().parse_args({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
