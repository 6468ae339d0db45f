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


# --- knowledge-base backends: the KB behaviour tests run against each -------------------------------------

KB_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (tests/postgres_server.py). Without PostgreSQL the tests that
    need it are skipped here, and fail in CI (CI set), which installs it (.ci/run)."""
    from postgres_server import PostgresServer, missing_reason

    if reason := missing_reason():
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run installs it")
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


class KBMaker:
    """Makes fresh KBs of one backend: ``make(name, **options)``; ``location(name)`` is what reopens it (a path or URL)."""

    def __init__(self, backend: str, folder: Path, request):
        self.backend, self.folder, self.request = backend, folder, request
        self._urls: dict[str, str] = {}

    def location(self, name: str) -> str | Path:
        if self.backend == "sqlite":
            return self.folder / f"{name}.sqlite"
        if name not in self._urls:
            self._urls[name] = self.request.getfixturevalue("postgres_server").new_database()
        return self._urls[name]

    def __call__(self, name: str, rows=None, create: bool = True, **options):
        from lmlm.kb import open_kb

        kb = open_kb(self.location(name), create=create, **options)
        if rows is not None:
            kb.import_triplets(rows)
        return kb


@pytest.fixture(params=KB_BACKENDS)
def make_kb(request, tmp_path) -> KBMaker:
    """A maker of fresh KBs, once per backend: the same behaviour test runs against SQLite and PostgreSQL."""
    return KBMaker(request.param, tmp_path, request)


@pytest.fixture(scope="module", params=KB_BACKENDS)
def make_module_kb(request, tmp_path_factory) -> KBMaker:
    """``make_kb`` for module-scoped fixtures."""
    return KBMaker(request.param, tmp_path_factory.mktemp(request.param), request)
