"""Where `import src.application` spends its time, and what a lazy import would save.

    python -m bench.imports [--runs 7] [--candidates sqlalchemy.orm,sqlmodel,…]

In a fresh copy of the image tree (no __pycache__, PYTHONDONTWRITEBYTECODE=1), runs
`python -X importtime -c "import src.application"` --runs times and reports medians: the
total, self time grouped by top-level package (our modules by their second level), and
the heaviest cumulative entries.

It then lists the *roots*: the modules of others that our modules import directly (what
a lazy import in our code can move), with the cumulative time of their first import.
A candidate's saving is measured, not read off the tree (importtime charges a shared
dependency to whoever imports it first): a fresh process imports every other root, then
times importing the candidate's roots (`a+b` names several). That is what start-up
would no longer pay if our code imported them lazily: the modules only they need are
in it, those the other roots load anyway are not. Everything our modules' own bodies do (building
routes, pydantic models) is outside both, so it stays in the "src" rows above.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.coldstart import image_tree

DEFAULT_CANDIDATES = (
    "sqlalchemy.dialects.mysql",
    "sqlmodel",
    "sqlmodel+sqlalchemy.dialects.mysql",
    "sqlalchemy.engine",
    "sqlalchemy.engine+sqlmodel+sqlalchemy.dialects.mysql+sqlite3",
    "pydantic_settings",
)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tree), "HOME": str(tree)}


Row = tuple[str, int, int, int]  # module, self µs, cumulative µs, nesting depth


def importtime(tree: Path, code: str = "import src.application") -> list[Row]:
    """Rows in importtime's order (a module after what it imported), one fresh process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((name.strip(), int(own), int(cumulative), depth))
    return rows


def roots(rows: list[Row]) -> dict[str, tuple[str, int]]:
    """Modules not ours imported directly by ours: name -> (importer, cumulative µs)."""
    found: dict[str, tuple[str, int]] = {}
    for index, (name, _, cumulative, depth) in enumerate(rows):
        parent = next((row[0] for row in rows[index + 1 :] if row[3] == depth - 1), "")
        if parent.startswith("src") and not name.startswith("src"):
            found.setdefault(name, (parent, cumulative))
    return found


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "src" else parts[0]


# CPU time, not wall time: importing is CPU work once the files are cached, and CPU time
# is far less disturbed by whatever else the machine runs.
_TIMED = """
import importlib, json, sys, time
before, timed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in before:
    importlib.import_module(name)
started = time.process_time()
for name in timed:
    importlib.import_module(name)
print((time.process_time() - started) * 1000)
"""


def _time_imports(tree: Path, names: list[str], before: list[str] | None = None) -> float:
    """CPU ms to import `names` in a fresh process, after `before`."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED, json.dumps(before or []), json.dumps(names)],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


def saving_ms(tree: Path, ordered_roots: list[str], candidate: str, runs: int) -> float:
    """Median CPU ms saved at start-up if our code did not import `candidate` (`a+b+…`)."""
    timed = candidate.split("+")
    rest = [name for name in ordered_roots if name not in timed]
    return statistics.median(_time_imports(tree, timed, rest) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="todo-imports-") as scratch:
        tree = image_tree(Path(scratch) / "tree")
        samples = [importtime(tree) for _ in range(args.runs)]
        totals = [sum(row[1] for row in rows) for rows in samples]
        print(
            f"import src.application: median {statistics.median(totals) / 1000:.0f} ms "
            f"(min {min(totals) / 1000:.0f}, max {max(totals) / 1000:.0f}; {args.runs} runs)"
        )
        groups: dict[str, list[int]] = {}
        cumulative: dict[str, list[int]] = {}
        for rows in samples:
            per_group: Counter[str] = Counter()
            for name, own, cum, _ in rows:
                per_group[_group(name)] += own
                cumulative.setdefault(name, []).append(cum)
            for group, own in per_group.items():
                groups.setdefault(group, []).append(own)
        print("\nself time by package (median ms):")
        ranked = sorted(groups.items(), key=lambda item: -statistics.median(item[1]))
        for group, values in ranked[: args.top]:
            print(f"  {statistics.median(values) / 1000:7.1f}  {group}")
        print(
            "\nheaviest cumulative entries (median ms; a dependency counts for its first importer):"
        )
        heavy = sorted(cumulative.items(), key=lambda item: -statistics.median(item[1]))
        for name, values in heavy[: args.top]:
            print(f"  {statistics.median(values) / 1000:7.1f}  {name}")
        found = roots(samples[0])
        print("\nroots: modules of others that ours import directly (first import, ms):")
        for name, (importer, cum) in sorted(found.items(), key=lambda item: -item[1][1]):
            if cum >= 1000:
                print(f"  {cum / 1000:7.1f}  {name}  <- {importer}")
        ordered = list(found)
        cpu = [_time_imports(tree, ["src.application"]) for _ in range(args.runs)]
        print(f"\nimport src.application, CPU time: median {statistics.median(cpu):.0f} ms")
        print("saving at start-up if imported lazily (median CPU ms, measured):")
        for candidate in filter(None, args.candidates.split(",")):
            missing = [name for name in candidate.split("+") if name not in found]
            if missing:
                print(f"  {'-':>7}  {candidate} ({', '.join(missing)}: not a root)")
                continue
            print(f"  {saving_ms(tree, ordered, candidate, args.runs):7.1f}  {candidate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
