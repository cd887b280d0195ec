"""Cold start as the image runs it: process start to the first `/health` answer, and to
the first moment it serves (`/ready` 200 for the app, whose `/health` answers while the
application is still being imported; the floor's `/health`, which it answers only then).

The image copies the tree that .dockerignore lets through (no `__pycache__`) and sets
PYTHONDONTWRITEBYTECODE=1; python:3.11-slim ships its standard library without bytecode
(docker-library/python removes every *.pyc to keep the image small: its Dockerfile's
`find /usr/local … -name '*.pyc' … -exec rm -rf`; issue #615), and the app's user could
not write it anyway; pip compiled site-packages at install time (pip's default). So
unless the Dockerfile precompiles, every start compiles our modules *and* the ~190
standard-library modules the server imports.

This machine's interpreter has a compiled standard library, so the image's situation is
reproduced with PYTHONPYCACHEPREFIX, which makes Python read bytecode only from a
separate tree: one start of each server writes every module it imports there, and each
variant keeps the part the image would have:

* `image`: site-packages only (the image as it was built before precompiling);
* `compiled`: everything (the Dockerfile's `python -m compileall` of the standard
  library and of src/ and alembic/);
* `fresh_copy`: site-packages and the standard library, not our code (a fresh copy of
  the tree on a machine whose Python is compiled, e.g. a laptop or CI).

    python -m bench.coldstart [--runs 7]     # app and floor, every variant
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
FLOOR_FILES = ("bench/__init__.py", "bench/floor.py")
KINDS = ("app", "floor")


def image_tree(target: Path) -> Path:
    """Copy the build context as .dockerignore filters it into `target` (and the floor)."""
    from tests.dockerfile_replay import context_files  # the replay's .dockerignore rules

    for name in [*context_files(ROOT), *FLOOR_FILES]:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    return target


def bytecode_variants(tree: Path, env: dict[str, str], scratch: Path) -> dict[str, Path]:
    """PYTHONPYCACHEPREFIX trees for the variants in the module docstring."""
    everything = scratch / "pyc-compiled"
    writing = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for kind in KINDS:
        first_health(kind, tree, {**writing, "PYTHONPYCACHEPREFIX": str(everything)}, write=True)
    ours = str(everything) + str(tree.resolve())
    keep: dict[str, Callable[[str], bool]] = {
        "image": lambda path: "/site-packages/" in path,
        "fresh_copy": lambda path: not path.startswith(ours),
    }
    variants = {"compiled": everything}
    for name, wanted in keep.items():
        target = scratch / f"pyc-{name}"
        for pyc in everything.rglob("*.pyc"):
            if wanted(str(pyc)):
                copy = target / pyc.relative_to(everything)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(pyc, copy)
        target.mkdir(exist_ok=True)
        variants[name] = target
    return variants


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(kind: str, port: int) -> list[str]:
    if kind == "app":
        return [sys.executable, "-m", "src", "serve", "--port", str(port), "--workers", "1"]
    return [sys.executable, "-m", "bench.floor", "--port", str(port)]


READY_PATH = {"app": "/ready", "floor": "/health"}


def first_health(
    kind: str, tree: Path, env: dict[str, str], *, write: bool = False, timeout: float = 30
) -> tuple[float, float]:
    """Seconds from spawning the server in `tree` to its first HTTP answer on /health,
    and to its first 200 on its readiness path (READY_PATH)."""
    port = _free_port()
    env = {**env, "PYTHONPATH": str(tree)}
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    started = time.monotonic()
    process = subprocess.Popen(
        command(kind, port),
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    answered: float | None = None
    path = "/health"
    try:
        while time.monotonic() - started < timeout:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code
                if answered is None:
                    answered = time.monotonic() - started
                    path = READY_PATH[kind]
                    continue
                if status == 200:
                    return answered, time.monotonic() - started
            except httpx.HTTPError:
                if process.poll() is not None:
                    raise RuntimeError(f"{kind} exited with {process.returncode}") from None
            time.sleep(0.002)
        raise RuntimeError(f"{kind}: not ready within {timeout}s")
    finally:
        process.terminate()
        process.wait(30)


def cold_starts(env: dict[str, str], runs: int) -> dict[str, float]:
    """Median seconds to first /health, as `<kind>` (the image as built before
    precompiling), `<kind>_compiled` and `<kind>_fresh_copy` (see the module docstring),
    and to readiness, as the same names with `_ready` appended.

    Runs alternate between kinds and variants so that machine load affects them alike.
    """
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="todo-coldstart-") as scratch:
        tree = image_tree(Path(scratch) / "tree")
        variants = bytecode_variants(tree, env, Path(scratch))
        for _ in range(runs):
            for variant, prefix in variants.items():
                for kind in KINDS:
                    name = kind if variant == "image" else f"{kind}_{variant}"
                    first, ready = first_health(
                        kind, tree, {**env, "PYTHONPYCACHEPREFIX": str(prefix)}
                    )
                    results.setdefault(name, []).append(first)
                    results.setdefault(f"{name}_ready", []).append(ready)
    return {name: round(statistics.median(times), 3) for name, times in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="todo-coldstart-home-") as home:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "SQLITE_", "BETTER_AUTH_", "PG", "PYTHON"))
        }
        env.update(
            HOME=home,
            LOG_LEVEL="warning",
            SQLITE_PATH=f"{home}/todo.db",
            BENCH_DATABASE=f"sqlite:///{home}/todo.db",
            BETTER_AUTH_SECRET="coldstart-" + "x" * 32,
        )
        for name, seconds in cold_starts(env, args.runs).items():
            print(f"{name}: {seconds * 1000:.0f} ms (median of {args.runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
