"""Benchmark the app against the floor (bench/floor.py) with wrk, A-B-B-A.

    python -m bench.run                      # SQLite and PostgreSQL, 6 s per leg
    python -m bench.run --backend sqlite --duration 10 --cold-runs 7

For "list 50 tasks" and "create a task" at 32 connections (one server worker, wrk on the
same machine), in the order app, floor, floor, app so that drift cancels: requests/s,
the app/floor ratio, p50/p99 latency, errors (non-2xx responses and socket errors) and
resident memory after the legs, for the app and the floor. Then cold start, measured as
the image runs it (bench.coldstart: a fresh copy of the tree without __pycache__,
PYTHONDONTWRITEBYTECODE=1, to the first /health; median of --cold-runs), plain and
precompiled; and what one client streaming an 80 MB header costs (bench.headlimit).
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

from bench import coldstart, headlimit

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
    argv = coldstart.command(kind, port)
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
    socket_total = 0
    if socket_errors:  # "connect 0, read 3, write 0, timeout 0"
        socket_total = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": socket_total,
    }


def seed(base: str) -> None:
    headers = {"Authorization": f"Bearer {token(LISTER)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        existing = client.get(f"/api/{LISTER}/tasks", params={"limit": 1})
        missing = 50 - int(existing.headers.get("X-Total-Count", "0"))
        for index in range(max(0, missing)):
            client.post(f"/api/{LISTER}/tasks", json={"title": f"seeded task {index}"})


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[dict[str, str], str]]:
    """(the app's environment for it, the floor's BENCH_DATABASE)."""
    if backend == "sqlite":
        path = workdir / "bench.db"
        yield {"SQLITE_PATH": str(path)}, f"sqlite:///{path}"
        return
    import psycopg

    name = f"todo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield {"DATABASE_URL": url}, url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_backend(
    backend: str, duration: int, connections: int, cold_runs: int, head_mb: float
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"todo-bench-{backend}-"))
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "SQLITE_", "BETTER_AUTH_", "PG"))
    }
    base_env.update(BETTER_AUTH_SECRET=SECRET, LOG_LEVEL="warning", HOME=str(workdir))
    results: dict[str, Any] = {"backend": backend, "runs": {}}
    try:
        with database(backend, workdir) as (app_database, floor_database):
            app_env = {**base_env, **app_database}
            floor_env = {**base_env, "BENCH_DATABASE": floor_database}
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
            both_env = {**app_env, "BENCH_DATABASE": floor_env["BENCH_DATABASE"]}
            results["cold_start_s"] = coldstart.cold_starts(both_env, cold_runs)
            if head_mb:
                results["head_limit"] = {}
                for kind, env in (("app", app_env), ("floor", floor_env)):
                    with server(kind, env, workdir) as info:
                        port = int(info["base"].rsplit(":", 1)[1])
                        measured = headlimit.measure("127.0.0.1", port, info["pid"], head_mb)
                        results["head_limit"][kind] = measured
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarise(results)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "backend": results["backend"],
        "cold_start_s": results["cold_start_s"],
        "head_limit": results.get("head_limit"),
    }
    for phase, runs in results["runs"].items():
        row: dict[str, Any] = {}
        for kind, samples in runs.items():
            row[kind] = {
                "rps": round(statistics.mean(s["rps"] for s in samples), 1),
                "p50_ms": round(statistics.mean(s["p50_ms"] for s in samples), 2),
                "p99_ms": round(statistics.mean(s["p99_ms"] for s in samples), 2),
                "non2xx": sum(s["non2xx"] for s in samples),
                "socket_errors": sum(s["socket_errors"] for s in samples),
                "rss_mb": max(s["rss_mb"] for s in samples),
            }
        row["ratio"] = round(row["app"]["rps"] / row["floor"]["rps"], 2)
        row["p99_ratio"] = round(row["app"]["p99_ms"] / row["floor"]["p99_ms"], 2)
        summary[phase] = row
    return summary


def render(summaries: list[dict[str, Any]], cold_runs: int) -> str:
    lines = [
        "| backend | endpoint | app req/s | floor req/s | app/floor | app p50 / p99 ms "
        "| floor p50 / p99 ms | p99 app/floor | errors app / floor | RSS MB app / floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        for phase in ("list", "create"):
            row = summary[phase]
            app, floor = row["app"], row["floor"]
            errors = [
                f"{side['non2xx'] + side['socket_errors']}"
                + (f" ({side['socket_errors']} socket)" if side["socket_errors"] else "")
                for side in (app, floor)
            ]
            lines.append(
                f"| {summary['backend']} | {phase} | {app['rps']:.0f} | {floor['rps']:.0f} "
                f"| {row['ratio']:.2f} | {app['p50_ms']:.1f} / {app['p99_ms']:.1f} "
                f"| {floor['p50_ms']:.1f} / {floor['p99_ms']:.1f} | {row['p99_ratio']:.2f} "
                f"| {errors[0]} / {errors[1]} | {app['rss_mb']:.0f} / {floor['rss_mb']:.0f} |"
            )
    for summary in summaries:
        cold = summary["cold_start_s"]
        lines.append(
            f"\nCold start ({summary['backend']}), to first /health, median of {cold_runs}:"
        )
        for variant, label in (
            ("", "as the image ran before precompiling (stdlib and our code from source)"),
            ("_compiled", "precompiled as the Dockerfile now does"),
            ("_fresh_copy", "fresh copy without __pycache__, compiled stdlib"),
        ):
            app, floor = cold["app" + variant], cold["floor" + variant]
            lines.append(
                f"* {label}: app {app * 1000:.0f} ms, floor {floor * 1000:.0f} ms "
                f"({app / floor:.1f}x)"
            )
    for summary in summaries:
        for kind, head in (summary.get("head_limit") or {}).items():
            answer = head.get("status_line") or head.get("read_error") or "no answer"
            lines.append(
                f"\n{head['header_mb']:g} MB header, {kind}: {answer!r} after "
                f"{head.get('answered_s', head.get('closed_s'))} s ({head['sent_mb']} MB sent), "
                f"server CPU {head['server_cpu_s']} s, concurrent /health at worst "
                f"{head['health_max_ms']} ms"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=6, help="seconds per leg (default 6)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-runs", type=int, default=5, help="cold starts per kind")
    parser.add_argument(
        "--head-mb", type=float, default=80, help="header size for the head-limit check (0: skip)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    summaries = [
        # The head limit does not depend on the database: measured with the first only.
        bench_backend(b, args.duration, args.connections, args.cold_runs, args.head_mb * (i == 0))
        for i, b in enumerate(backends)
    ]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.json").write_text(json.dumps(summaries, indent=2))
    print(render(summaries, args.cold_runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
