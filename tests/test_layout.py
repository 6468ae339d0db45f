"""The shape of the package (README, module table): imports flow one way, from the CLI down to the markup, and no
module or function grows past what a newcomer can read at once."""

import ast
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "lmlm"
# the README's table, top to bottom: a module may import from its own rank and those below, never above
LAYERS = [["cli"], ["demo", "unlearn", "serve", "evaluate", "compat"], ["engine", "train", "draft"],
          ["kb", "data", "annotate", "ngrams", "tokenizer", "world"], ["markup", "corpus"], ["files", "errors", "config"]]
RANKS = {name: len(LAYERS) - depth for depth, names in enumerate(LAYERS) for name in names}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules():
    return sorted(SOURCE.rglob("*.py"))


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _rank(dotted: str) -> int | None:
    parts = dotted.split(".")
    return RANKS.get(parts[1]) if parts[0] == "lmlm" and len(parts) > 1 else None


def upward_imports(path: Path) -> list[str]:
    """The imports of ``path`` that reach a package ranked above its own."""
    own = RANKS.get(path.relative_to(SOURCE).parts[0].removesuffix(".py"))
    if own is None:
        return []
    return sorted({m for m in _imported(ast.parse(path.read_text(encoding="utf-8"))) if (_rank(m) or 0) > own})


def test_imports_flow_from_the_cli_down_to_the_markup():
    assert {str(p.relative_to(SOURCE)): up for p in _modules() if (up := upward_imports(p))} == {}


def test_the_check_sees_an_import_against_the_flow(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", tmp_path)
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "x.py").write_text("from lmlm.engine import LMLM\nfrom lmlm.markup import strip\n")
    assert upward_imports(tmp_path / "kb" / "x.py") == ["lmlm.engine", "lmlm.engine.LMLM"]


def too_long(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = [f"{len(text.splitlines())} lines"] if len(text.splitlines()) > MAX_FILE_LINES else []
    return found + [f"{n.name}: {n.end_lineno - n.lineno + 1} lines" for n in ast.walk(ast.parse(text))
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_module_or_function_is_too_long_to_read():
    assert {str(p.relative_to(SOURCE)): long for p in _modules() if (long := too_long(p))} == {}


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x = {k}" for k in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert too_long(tmp_path / "long.py") == [f"long: {MAX_FUNCTION_LINES + 1} lines"]
