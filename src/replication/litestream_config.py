"""The private files and environment a Litestream child runs with.

The YAML is read with `-no-expand-env`: Litestream otherwise expands `$VAR` anywhere in
the file, so a `$` in a path or password would silently change it. Values are written as
JSON strings, which YAML reads as double-quoted scalars. The file lives in a fresh
0700 directory, is 0600, and is removed when the child is done.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.replication.config import ReplicaConfig

# Only what Litestream needs: it is a static binary that executes nothing (no -exec).
_BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


_PREFIX = "todo-litestream-"


def _sweep_orphans() -> None:
    """Remove the run directories of processes that are gone: a process killed outright
    (SIGKILL, OOM) never ran its cleanup, and some replica types' YAML holds credentials.
    Only this user's, and only those whose process no longer exists."""
    root = Path(tempfile.gettempdir())
    try:
        candidates = list(root.glob(f"{_PREFIX}*-*"))
    except OSError:
        return
    for directory in candidates:
        pid_text = directory.name.removeprefix(_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # alive under another user, or not ours to look at


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render(config: ReplicaConfig, db_path: Path, *, shutdown_sync_timeout: float) -> str:
    """The YAML text for one database and its replica (logs as JSON on stderr)."""
    if config.replica is None:
        raise ValueError("an invalid replica configuration cannot be rendered")
    q = json.dumps
    lines = [
        "# Written by todo-backend for this run only; regenerated at every start.",
        "logging:",
        "  level: debug",  # the per-sync lines ("replica sync") are debug in 0.5.17
        "  type: json",
        "  stderr: true",
        f"shutdown-sync-timeout: {_duration(shutdown_sync_timeout)}",
        "shutdown-sync-interval: 100ms",
        "dbs:",
        f"  - path: {q(str(db_path))}",
        f"    monitor-interval: {_duration(config.monitor_interval)}",
        "    replica:",
        f"      url: {q(config.replica.url)}",
        f"      sync-interval: {_duration(config.sync_interval)}",
    ]
    for key, value in sorted(config.replica_fields.items()):
        lines.append(f"      {key}: {q(value)}")
    return "\n".join(lines) + "\n"


def child_environment(config: ReplicaConfig, home: Path) -> dict[str, str]:
    """The whole environment of the child: nothing inherited (so no AWS_CA_BUNDLE, no
    LOG_LEVEL, which Litestream would obey, no stray AWS_PROFILE)."""
    env = dict(_BASE_ENV)
    env["HOME"] = str(home)
    env.update(config.env)
    return env


@contextmanager
def run_directory(
    config: ReplicaConfig, db_path: Path, *, shutdown_sync_timeout: float = 5.0
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private directory holding `litestream.yml`; yields (config path, environment)."""
    _sweep_orphans()
    directory = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    try:
        path = directory / "litestream.yml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(config, db_path, shutdown_sync_timeout=shutdown_sync_timeout))
        yield path, child_environment(config, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
