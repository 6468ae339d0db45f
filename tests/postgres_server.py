"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temp folder and ``pg_ctl`` on a free port on
127.0.0.1, as the unprivileged ``postgres`` user when the tests run as root (initdb refuses root). Trust
authentication, loopback only, fsync off: it holds nothing worth keeping and is removed when stopped."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from live_server import free_port

RUN_AS = "postgres"


def find_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's versioned folder (newest first), else the PATH."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and shutil.which("pg_ctl") else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if find_bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as an unprivileged user"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as (apt-get install postgresql makes it)"
    return None


class PostgresServer:
    def __init__(self):
        self.bin = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="lmlm-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count()
        self.running = False

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, RUN_AS)
        os.chmod(self.root, 0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the server and remove its folder (again: nothing)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, stem: str = "kb") -> str:
        """The URL of a fresh, empty database."""
        import psycopg

        name = f"{stem}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
