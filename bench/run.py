"""Benchmark the app against the floor (bench/floor.py) with wrk, A-B-B-A.

    python -m bench.run                      # SQLite and PostgreSQL, 10 s per run
    python -m bench.run --backend sqlite --duration 5

Reports requests/s, p50/p99 latency and non-2xx count at 32 connections for "list 50
tasks" and "create a task", cold start (process start to first /health) and resident
memory after the runs, for the app and for the floor, and the app/floor ratio.
Needs wrk (Debian: apt-get install wrk) and, for PostgreSQL, the server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-" + "x" * 40
LISTER, WRITER = "bench-lister", "bench-writer"
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

LIST_LUA = """
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""
CREATE_LUA = """
wrk.method = "POST"
wrk.body = '{"title": "benchmark task", "description": "written by wrk"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET, "HS256")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(kind: str, env: dict[str, str], workdir: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    if kind == "app":
        argv = [sys.executable, "-m", "src", "serve", "--port", str(port), "--workers", "1"]
    else:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{kind}-{port}.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    first_health = None
    while time.monotonic() - started < 30:
        try:
            if httpx.get(base + "/health", timeout=0.5).status_code == 200:
                first_health = time.monotonic() - started
                break
        except httpx.HTTPError:
            time.sleep(0.005)
    if first_health is None:
        process.kill()
        raise RuntimeError(f"{kind} did not start: {(workdir / f'{kind}-{port}.log').read_text()}")
    if kind == "app":
        deadline = time.monotonic() + 30
        while httpx.get(base + "/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("app never became ready")
            time.sleep(0.05)
    try:
        yield {"base": base, "pid": process.pid, "cold_start": first_health}
    finally:
        process.terminate()
        process.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url: str, script: str, user: str, duration: int, connections: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                handle.name,
                url,
            ],
            env={**os.environ, "BENCH_TOKEN": token(user)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    return parse_wrk(output)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": total,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


def seed(base: str) -> None:
    headers = {"Authorization": f"Bearer {token(LISTER)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        existing = client.get(f"/api/{LISTER}/tasks", params={"limit": 1})
        missing = 50 - int(existing.headers.get("X-Total-Count", "0"))
        for index in range(max(0, missing)):
            client.post(f"/api/{LISTER}/tasks", json={"title": f"seeded task {index}"})


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[dict[str, str]]:
    if backend == "sqlite":
        path = workdir / "bench.db"
        yield {"app": {"SQLITE_PATH": str(path)}, "floor": f"sqlite:///{path}"}  # type: ignore[misc]
        return
    import psycopg

    name = f"todo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield {"app": {"DATABASE_URL": url}, "floor": url}  # type: ignore[misc]
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cold_starts(kind: str, env: dict[str, str], workdir: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        with server(kind, env, workdir) as info:
            times.append(info["cold_start"])
    return statistics.median(times)


def bench_backend(backend: str, duration: int, connections: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"todo-bench-{backend}-"))
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "SQLITE_", "BETTER_AUTH_", "PG"))
    }
    base_env.update(BETTER_AUTH_SECRET=SECRET, LOG_LEVEL="warning", HOME=str(workdir))
    results: dict[str, Any] = {"backend": backend, "runs": {}}
    try:
        with database(backend, workdir) as db:
            app_env = {**base_env, **db["app"]}  # type: ignore[dict-item]
            floor_env = {**base_env, "BENCH_DATABASE": db["floor"]}  # type: ignore[dict-item]
            with server("app", app_env, workdir) as info:  # migrate and seed once
                seed(info["base"])
            for phase, script, user, path in (
                ("list", LIST_LUA, LISTER, f"/api/{LISTER}/tasks?limit=50"),
                ("create", CREATE_LUA, WRITER, f"/api/{WRITER}/tasks"),
            ):
                runs: dict[str, list[dict[str, Any]]] = {"app": [], "floor": []}
                for kind in ("app", "floor", "floor", "app"):  # A-B-B-A cancels drift
                    env = app_env if kind == "app" else floor_env
                    with server(kind, env, workdir) as info:
                        # Warm up (connections, caches) before measuring.
                        wrk(info["base"] + path, script, user, 2, connections)
                        run = wrk(info["base"] + path, script, user, duration, connections)
                        run["rss_mb"] = round(rss_mb(info["pid"]), 1)
                        runs[kind].append(run)
                results["runs"][phase] = runs
            results["cold_start_s"] = {
                "app": round(cold_starts("app", app_env, workdir), 3),
                "floor": round(cold_starts("floor", floor_env, workdir), 3),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarise(results)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "backend": results["backend"],
        "cold_start_s": results["cold_start_s"],
    }
    for phase, runs in results["runs"].items():
        row: dict[str, Any] = {}
        for kind, samples in runs.items():
            row[kind] = {
                "rps": round(statistics.mean(s["rps"] for s in samples), 1),
                "p50_ms": round(statistics.mean(s["p50_ms"] for s in samples), 2),
                "p99_ms": round(statistics.mean(s["p99_ms"] for s in samples), 2),
                "errors": sum(s["errors"] for s in samples),
                "rss_mb": max(s["rss_mb"] for s in samples),
            }
        row["ratio"] = round(row["app"]["rps"] / row["floor"]["rps"], 2)
        summary[phase] = row
    return summary


def render(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | endpoint | app req/s | floor req/s | app/floor | app p50 / p99 ms "
        "| floor p50 / p99 ms | app errors | app RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        for phase in ("list", "create"):
            row = summary[phase]
            app, floor = row["app"], row["floor"]
            lines.append(
                f"| {summary['backend']} | {phase} | {app['rps']:.0f} | {floor['rps']:.0f} "
                f"| {row['ratio']:.2f} | {app['p50_ms']:.1f} / {app['p99_ms']:.1f} "
                f"| {floor['p50_ms']:.1f} / {floor['p99_ms']:.1f} | {app['errors']} "
                f"| {app['rss_mb']:.0f} |"
            )
    for summary in summaries:
        cold = summary["cold_start_s"]
        lines.append(
            f"\nCold start ({summary['backend']}, median of 5, process start to first /health): "
            f"app {cold['app'] * 1000:.0f} ms, floor {cold['floor'] * 1000:.0f} ms"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    summaries = [bench_backend(b, args.duration, args.connections) for b in backends]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_text(json.dumps(summaries, indent=2))
    print(render(summaries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
