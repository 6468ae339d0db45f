"""Running an ASGI app with uvicorn on 127.0.0.1 in a background thread, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int | None = None):
    """Serve ``app`` until the block ends; yields the base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def start_serve(model: Path, kb: str, port: int, max_batch: int = 32, env: dict | None = None, timeout: float = 180) -> subprocess.Popen:
    """`lmlm serve` in its own process, returned once its /health answers; its stderr is kept in a temp file (a pipe
    nobody reads could fill and stall the server) and shown if it does not come up."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "lmlm", "serve", "--model", str(model), "--kb", kb, "--port", str(port),
                             "--max-batch", str(max_batch)], env=env, stderr=log, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                log.close()  # the child keeps its own handle
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    log.seek(0)
    raise RuntimeError(f"lmlm serve on port {port} did not come up: {log.read()[-2000:]}")


_TINY: dict[str, Path] = {}


def tiny_lmlm_copy(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, KB) of the tiny LMLM: the checkpoint is trained once per test session (in
    ``$LMLM_TINY_DIR`` if set, kept across sessions), and each call gets a fresh copy of the KB to edit."""
    from tiny_lmlm import make_tiny_lmlm

    if "root" not in _TINY:
        root = Path(os.environ.get("LMLM_TINY_DIR") or tmp_path_factory.mktemp("tiny-lmlm"))
        if not (root / "kb.sqlite").exists():
            make_tiny_lmlm(root)
        _TINY["root"] = root
    kb = tmp_path_factory.mktemp("kb") / "kb.sqlite"
    shutil.copyfile(_TINY["root"] / "kb.sqlite", kb)
    return _TINY["root"] / "model", kb
