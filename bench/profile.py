"""Profile the app (or the floor) under the benchmark's load with py-spy.

    python -m bench.profile [--kind app|floor] [--endpoint list|create] [--seconds 10]

Starts the server with one worker on a fresh SQLite database (seeded with 50 tasks), runs
wrk at 32 connections against the endpoint and, meanwhile, samples the server with

    py-spy record --pid PID --duration SECONDS --rate 200 --format speedscope -o FILE

(py-spy from requirements-dev.txt; it needs ptrace rights over the server: root, or
kernel.yama.ptrace_scope=0). Open the profile in https://www.speedscope.app ("Left
Heavy" shows where the time goes); `--format flamegraph -o x.svg` gives an SVG instead.
Profiles land in bench/results/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.run import CREATE_LUA, LIST_LUA, LISTER, ROOT, SECRET, WRITER, seed, server, wrk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["app", "floor"], default="app")
    parser.add_argument("--endpoint", choices=["list", "create"], default="list")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--format", choices=["speedscope", "flamegraph", "raw"], default="speedscope"
    )
    args = parser.parse_args()
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists() or shutil.which("wrk") is None:
        print("needs py-spy (requirements-dev.txt) and wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="todo-profile-"))
    database = workdir / "bench.db"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "SQLITE_", "BETTER_AUTH_", "PG"))
    }
    env.update(
        BETTER_AUTH_SECRET=SECRET,
        LOG_LEVEL="warning",
        HOME=str(workdir),
        SQLITE_PATH=str(database),
        BENCH_DATABASE=f"sqlite:///{database}",
    )
    script, user, path = {
        "list": (LIST_LUA, LISTER, f"/api/{LISTER}/tasks?limit=50"),
        "create": (CREATE_LUA, WRITER, f"/api/{WRITER}/tasks"),
    }[args.endpoint]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = {"speedscope": "json", "flamegraph": "svg", "raw": "txt"}[args.format]
    target = out / f"profile-{args.kind}-{args.endpoint}-{time.strftime('%Y%m%d-%H%M%S')}.{suffix}"
    try:
        with server("app", env, workdir) as info:  # migrate and seed
            seed(info["base"])
        with server(args.kind, env, workdir) as info:
            wrk(info["base"] + path, script, user, 2, 32)  # warm up
            load = threading.Thread(
                target=wrk, args=(info["base"] + path, script, user, args.seconds + 2, 32)
            )
            load.start()
            command = [
                *(str(py_spy), "record", "--pid", str(info["pid"])),
                *("--duration", str(args.seconds), "--rate", "200"),
                *("--format", args.format, "-o", str(target)),
            ]
            print("$", " ".join(command))
            subprocess.run(command, check=True)
            load.join()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"profile: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
