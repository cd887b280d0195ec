"""Time from process start to the first /health answer (median of N runs).

    python -m bench.startup [--runs 7]

Scenarios: the SQLite default (no configuration), and a primary that accepts TCP
connections and never answers (a loopback listener) — the server must not wait for it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]


def hung_listener() -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return int(server.getsockname()[1])


def first_health(env: dict[str, str]) -> float:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="todo-startup-")
    env = {**env, "HOME": workdir, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning"}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "src", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code:
                    return time.monotonic() - started
            except httpx.HTTPError:
                time.sleep(0.002)
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "SQLITE_", "PG"))}
    hung = f"postgresql://user:pw@127.0.0.1:{hung_listener()}/app"
    scenarios = {
        "SQLite default": base,
        "hung primary": {**base, "DATABASE_URL": hung},
    }
    for name, env in scenarios.items():
        times = [first_health(env) for _ in range(args.runs)]
        print(
            f"{name}: median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms over {args.runs} runs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
