"""Throwaway PostgreSQL clusters (initdb on a free loopback port), for tests that must
stop a server, check real passwords or change server settings: the machine's shared
PostgreSQL is never stopped or reconfigured by a test."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

_AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def _bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return candidates[-1] if candidates else "/usr/local/bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A cluster of our own. `auth="trust"` or `"scram-sha-256"` (the superuser
    `postgres` then has `superpass`)."""

    def __init__(self, *, auth: str = "trust") -> None:
        # Not under pytest's tmp dir: that one is private to root; the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="todo-pg-"))
        self.data = self.base / "data"
        self.superpass = f"su-{uuid.uuid4().hex}"
        self.port = _free_port()
        pwfile = self.base / "pw"
        pwfile.write_text(self.superpass)
        shutil.chown(self.base, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            f"--auth={auth}",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*_AS_POSTGRES, f"{_bindir()}/{tool}", *args],
            check=check,
            capture_output=True,
            timeout=120,
        )

    def running(self) -> bool:
        status = subprocess.run(
            [*_AS_POSTGRES, f"{_bindir()}/pg_ctl", "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
        )
        return status.returncode == 0

    def start(self) -> None:
        """Start the server (nothing to do when it runs)."""
        if self.running():
            return
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.base / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.superpass}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """A URL the app can be given (no password needed under trust)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "todo") -> str:
        """A new, empty database on this cluster (which must be running); its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
