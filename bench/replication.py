"""What durable SQLite costs: create throughput with replication on against off, and how
long a wiped host takes to get 100 000 tasks back.

    python -m bench.replication                    # file and S3 replicas, 6 s legs
    python -m bench.replication --replica s3 --tasks 100000 --duration 10 --rounds 3

Throughput: the app (one worker, 32 connections, wrk on the same machine) creating tasks
on its SQLite file, legs in the order off, on, on, off (repeated --rounds times) for each
replica kind so that drift cancels; the ratio is over all legs, and each round's own is
shown too; every leg starts on a fresh data directory (and a fresh replica) so none
inherits another's file, and warms up for 2 s first. Replication runs with the product's
defaults (SQLITE_REPLICA_SYNC_INTERVAL=1 s); the S3 replica is moto_server on loopback,
so the network is not in the figure, Litestream's own work is.

Restore: --tasks tasks are imported (`python -m src import`) into a fresh file, the app
started with the replica (a first deploy: Litestream uploads the file), stopped with
SIGTERM once the replica holds it, its data directory wiped, and started again; the
figures are Litestream's restore as the app reports it (`/config/database`:
replication.restore.duration_ms) and process start to the first `/ready` 200, and every
task is counted back through the API.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.run import CREATE_LUA, ROOT, SECRET, WRITER, rss_mb, server, token, wrk

RESTORE_USER = "bench-restore"


@contextmanager
def replicas(kinds: list[str], scratch: Path) -> Iterator[dict[str, Any]]:
    """Per kind, a function giving a fresh replica's environment."""
    moto = None
    if "s3" in kinds:
        from tests.replica_servers import start_moto

        moto = start_moto(log=scratch / "moto.log")
    makers: dict[str, Any] = {}

    def file_replica() -> dict[str, str]:
        return {"SQLITE_REPLICA_URL": f"file://{scratch}/replica-{uuid.uuid4().hex[:8]}"}

    def s3_replica() -> dict[str, str]:
        assert moto is not None
        return {
            "SQLITE_REPLICA_URL": moto.url(moto.new_bucket()),
            "AWS_ACCESS_KEY_ID": moto.key_id,
            "AWS_SECRET_ACCESS_KEY": moto.secret,
        }

    makers = {"file": file_replica, "s3": s3_replica}
    try:
        yield {kind: makers[kind] for kind in kinds}
    finally:
        if moto is not None:
            from tests.replica_servers import stop_process

            stop_process(moto.process)


def base_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "SQLITE_", "BETTER_AUTH_", "PG", "AWS_", "LITESTREAM_"))
    }
    return {**env, "BETTER_AUTH_SECRET": SECRET, "LOG_LEVEL": "warning", "HOME": str(home)}


def create_throughput(
    kinds: list[str],
    fresh: dict[str, Any],
    scratch: Path,
    duration: int,
    connections: int,
    rounds: int = 1,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in kinds:
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for leg in ("off", "on", "on", "off") * rounds:
            data = scratch / f"data-{uuid.uuid4().hex[:8]}"
            env = {**base_env(scratch), "SQLITE_PATH": str(data / "todo.db")}
            if leg == "on":
                env.update(fresh[kind]())
            with server("app", env, scratch) as info:
                if leg == "on":
                    state = _config(info["base"])["replication"]["state"]
                    assert state == "replicating", state
                url = info["base"] + f"/api/{WRITER}/tasks"
                wrk(url, CREATE_LUA, WRITER, 2, connections)
                run = wrk(url, CREATE_LUA, WRITER, duration, connections)
                run["rss_mb"] = round(rss_mb(info["pid"]), 1)
                runs[leg].append(run)
            shutil.rmtree(data, ignore_errors=True)
        row = {
            leg: {
                "rps": round(statistics.mean(r["rps"] for r in samples), 1),
                "p99_ms": round(statistics.mean(r["p99_ms"] for r in samples), 2),
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in samples),
                "rss_mb": max(r["rss_mb"] for r in samples),
            }
            for leg, samples in runs.items()
        }
        row["ratio"] = round(row["on"]["rps"] / row["off"]["rps"], 3)
        # Each A-B-B-A round's own ratio: on this shared machine one round alone
        # varies by several percent either way.
        row["round_ratios"] = [
            round(
                (runs["on"][2 * i]["rps"] + runs["on"][2 * i + 1]["rps"])
                / (runs["off"][2 * i]["rps"] + runs["off"][2 * i + 1]["rps"]),
                3,
            )
            for i in range(rounds)
        ]
        results[kind] = row
    return results


def _config(base: str) -> dict[str, Any]:
    return dict(httpx.get(base + "/config/database", timeout=10).json())


def _export_file(path: Path, count: int) -> None:
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    with path.open("w") as handle:
        for index in range(count):
            task = {
                "id": str(uuid.uuid4()),
                "user_id": RESTORE_USER,
                "title": f"restored task {index}",
                "description": "one of many, to be restored after a wipe",
                "status": "completed" if index % 3 == 0 else "pending",
                "completed": index % 3 == 0,
                "created_at": now,
                "updated_at": now,
            }
            handle.write(json.dumps(task) + "\n")


def restore_time(kind: str, fresh: dict[str, Any], scratch: Path, count: int) -> dict[str, Any]:
    data = scratch / f"restore-{kind}"
    env = {**base_env(scratch), "SQLITE_PATH": str(data / "todo.db")}
    lines = scratch / "tasks.jsonl"
    if not lines.exists():
        _export_file(lines, count)
    subprocess.run(
        [sys.executable, "-m", "src", "import", str(lines)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    env.update(fresh[kind]())
    with server("app", env, scratch) as info:
        deadline = time.monotonic() + 120
        while _config(info["base"])["replication"].get("last_sync_at") is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never received the database")
            time.sleep(0.2)
        time.sleep(2)  # a sync interval or two past the first: the snapshot is whole
    size_mb = (data / "todo.db").stat().st_size / 2**20
    shutil.rmtree(data)
    started = time.monotonic()
    with server("app", env, scratch) as info:
        ready = time.monotonic() - started
        restore = _config(info["base"])["replication"]["restore"]
        headers = {"Authorization": f"Bearer {token(RESTORE_USER)}"}
        total = httpx.get(
            info["base"] + f"/api/{RESTORE_USER}/tasks",
            params={"limit": 1},
            headers=headers,
            timeout=30,
        ).headers["X-Total-Count"]
    assert restore["outcome"] == "restored", restore
    assert int(total) == count, (total, count)
    return {
        "tasks": count,
        "database_mb": round(size_mb, 1),
        "restore_ms": restore["duration_ms"],
        "start_to_ready_s": round(ready, 2),
    }


def render(throughput: dict[str, Any], restores: dict[str, Any], duration: int, rounds: int) -> str:
    lines = [
        f"Create throughput, replication off vs on ({rounds} x A-B-B-A, {duration} s legs, "
        "32 connections):",
        "| replica | off req/s | on req/s | on/off | per round | off p99 ms | on p99 ms "
        "| errors | RSS MB off / on |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in throughput.items():
        off, on = row["off"], row["on"]
        lines.append(
            f"| {kind} | {off['rps']:.0f} | {on['rps']:.0f} | {row['ratio']:.2f} "
            f"| {' '.join(f'{r:.2f}' for r in row['round_ratios'])} "
            f"| {off['p99_ms']:.1f} | {on['p99_ms']:.1f} | {off['errors']} / {on['errors']} "
            f"| {off['rss_mb']:.0f} / {on['rss_mb']:.0f} |"
        )
    for kind, restore in restores.items():
        lines.append(
            f"\nRestore from the {kind} replica: {restore['tasks']} tasks "
            f"({restore['database_mb']} MB) in {restore['restore_ms']} ms; process start to "
            f"/ready {restore['start_to_ready_s']} s; every task counted back"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replica", choices=["file", "s3", "both"], default="both")
    parser.add_argument("--duration", type=int, default=6, help="seconds per leg")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="A-B-B-A rounds per replica")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks to restore (0: skip)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    kinds = ["file", "s3"] if args.replica == "both" else [args.replica]
    scratch = Path(tempfile.mkdtemp(prefix="todo-bench-replication-"))
    try:
        with replicas(kinds, scratch) as fresh:
            throughput = create_throughput(
                kinds, fresh, scratch, args.duration, args.connections, args.rounds
            )
            restores = (
                {kind: restore_time(kind, fresh, scratch, args.tasks) for kind in kinds}
                if args.tasks
                else {}
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {"throughput": throughput, "restore": restores}
    (out / f"replication-{stamp}.json").write_text(json.dumps(record, indent=2))
    print(render(throughput, restores, args.duration, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
