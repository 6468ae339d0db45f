import atexit
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import subprocess
import sys
import tempfile
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


# Each CLI call runs in a process of its own, forked from a server that imported the CLI, torch and transformers
# once, at the session's start: the call is the real command with its own exit code and output, without paying
# those imports each time. A call whose environment changes what an interpreter reads only as it starts (the hash
# seed, the import path, thread counts, the HF libraries' settings) runs as a real ``python -m lmlm`` instead, as
# do the tests of the entry points themselves (tests/test_cli_errors.py) and of damaged checkpoints.
# torch._dynamo sets TORCHINDUCTOR_CACHE_DIR as it loads (a model's first forward, or collection, loads it): imported
# before the snapshot, its own setting is not taken for a test's, which would send every later call the slow way.
import torch._dynamo  # noqa: E402, F401

_CLI_PROCESSES = multiprocessing.get_context("forkserver")
_CLI_PROCESSES.set_forkserver_preload(["lmlm.cli", "lmlm.engine", "lmlm.kb", "torch", "transformers", "sentence_transformers"])
_STARTUP_ENVIRON = dict(os.environ)


def _read_at_startup(name: str) -> bool:
    return name.startswith(("PYTHON", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_", "MKL_", "TORCH"))


def pytest_configure(config):
    multiprocessing.forkserver.ensure_running()  # the server's environment is the session's, not a test's


def _cli_process(args: list[str], environ: dict, cwd: str, stdout: str, stderr: str) -> None:
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        with open(path, "wb") as f:
            os.dup2(f.fileno(), fd)
    from lmlm.cli import main

    try:
        code = main(args)
    finally:
        atexit._run_exitfuncs()  # what an interpreter runs as it exits, which multiprocessing's os._exit skips
        gc.collect()
    sys.exit(code)


def run_cli(*args: str, check: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run the real ``lmlm`` command in a process of its own; past ``timeout`` seconds it is killed and the call fails."""
    args = [str(a) for a in args]
    if any(os.environ.get(k) != _STARTUP_ENVIRON.get(k) for k in {*os.environ, *_STARTUP_ENVIRON} if _read_at_startup(k)):
        proc = subprocess.run([sys.executable, "-m", "lmlm", *args], capture_output=True, text=True, timeout=timeout)
    else:
        proc = _forked_cli(args, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lmlm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _forked_cli(args: list[str], timeout: float | None) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        process = _CLI_PROCESSES.Process(target=_cli_process, args=(args, dict(os.environ), os.getcwd(), out, err))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["lmlm", *args], timeout)
        return subprocess.CompletedProcess(["lmlm", *args], process.exitcode, Path(out).read_text(errors="replace"),
                                           Path(err).read_text(errors="replace"))


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
