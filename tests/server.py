"""Run the real server in a subprocess, as a deployer would, and talk HTTP to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    started_at: float
    first_health_seconds: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /ready says 200 (a database connected and migrated)."""
        deadline = time.monotonic() + timeout
        while httpx.get(self.base_url + "/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, f"not ready after {timeout}s:\n{self.logs()}"
            time.sleep(0.05)

    def client(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)


def clean_env(**values: str) -> dict[str, str]:
    """The parent's environment minus anything that configures the app."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "PG", "SQLITE_", "BETTER_AUTH_", "SPACE_"))
        and k not in {"JWT_SECRET", "FALLBACK_DATABASE_URL", "PORT", "WEB_CONCURRENCY"}
    }
    env.update(values)
    return env


@contextlib.contextmanager
def run_server(
    env: dict[str, str],
    *,
    cwd: Path,
    command: Sequence[str] | None = None,
    port: int | None = None,
    health_timeout: float = 15,
    preexec_fn: object = None,
) -> Iterator[Server]:
    port = port or free_port()
    log_path = cwd / f"server-{port}.log"
    argv = list(command or [sys.executable, "-m", "src", "serve", "--port", str(port)])
    env = {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,  # type: ignore[arg-type]
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path, started)
    try:
        deadline = started + health_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited {process.returncode}:\n{server.logs()}")
            try:
                if httpx.get(server.base_url + "/health", timeout=0.5).status_code in (200, 503):
                    server.first_health_seconds = time.monotonic() - started
                    break
            except httpx.HTTPError:
                time.sleep(0.02)
        else:
            raise AssertionError(f"no /health within {health_timeout}s:\n{server.logs()}")
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
