import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LMLM_SHARED", REPO.parent / "shared")) / "data" / "lmlm-annotated"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real annotated data beside the repo (../shared); tests that use it fail loudly without it."""
    if not SHARED.is_dir():
        pytest.fail(f"real data not found at {SHARED}: put ../shared beside the repo or set LMLM_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def corpora(shared) -> list[Path]:
    return sorted(p for p in shared.glob("*.json") if not p.name.endswith("database.json"))


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``lmlm`` command in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "lmlm", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"lmlm {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def fails_cleanly(proc, *needles):
    """The CLI refused: exit 2 and one line on stderr, no traceback, naming each of ``needles``."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
