"""The start-up decision: use the file on disk, restore it from the replica, or start fresh
— and never start fresh when the replica could not be read.

An empty database started against a good replica is uploaded as its newest state
("database behind replica", research/litestream.md), so `first_deploy` needs two positive
answers: an LTX listing that is an empty list, and `restore -if-replica-exists` saying
"no matching backups found" (it also finds v0.3 backups, which the listing does not).
The restore is written beside the database, checked with `PRAGMA integrity_check`, then
renamed into place (with its -wal, if any) and the directory fsynced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from src.core.plural import counted
from src.replication.binary import Litestream
from src.replication.config import ReplicaConfig
from src.replication.failures import Failure, classify, last_error_line, sanitize, timed_out
from src.replication.listing import list_replica, preflight
from src.replication.litestream_config import run_directory
from src.replication.process import run_bounded

Outcome = Literal["existing", "restored", "first_deploy", "unreadable"]
# Outcomes after which the app may open (or create) the database.
SAFE_OUTCOMES: frozenset[str] = frozenset({"existing", "restored", "first_deploy"})
_SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class RestoreResult:
    """`rows`/`bytes`/`txid` are set for `restored`; `code`/`reason` for `unreadable`."""

    outcome: Outcome
    duration_ms: int
    at: str
    rows: int | None = None
    bytes: int | None = None
    txid: str | None = None
    code: str | None = None
    reason: str | None = None

    @property
    def safe_to_open(self) -> bool:
        return self.outcome in SAFE_OUTCOMES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreResult:
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


def database_present(db_path: Path) -> bool:
    """A database is there when its file (or its WAL) holds bytes; an empty file is what
    SQLite would treat as a new, empty database, so it does not count."""
    for candidate in (db_path, Path(f"{db_path}-wal")):
        with contextlib.suppress(OSError):
            if candidate.stat().st_size > 0:
                return True
    return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _unreadable(start: float, failure: Failure) -> RestoreResult:
    return RestoreResult("unreadable", _ms(start), _now(), code=failure.code, reason=failure.reason)


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def _remove(path: Path) -> None:
    for candidate in (path, *(Path(f"{path}{s}") for s in _SIDECARS), Path(f"{path}.tmp")):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()


def restore_database(config: ReplicaConfig, db_path: Path, litestream: Litestream) -> RestoreResult:
    """Decide and, when there is a replica, restore `db_path` from it. Never raises for the
    replica's behaviour; every Litestream call is killed at its deadline."""
    start = time.monotonic()
    if database_present(db_path):
        return RestoreResult("existing", _ms(start), _now())
    failure = preflight(config, timeout=min(5.0, config.list_timeout))
    if failure is not None:
        return _unreadable(start, failure)
    staging = db_path.with_name(f"{db_path.name}.restoring")
    _remove(staging)
    # Litestream's local positions for a database that is gone describe nothing now.
    shutil.rmtree(db_path.with_name(f".{db_path.name}-litestream"), ignore_errors=True)
    with run_directory(config, db_path) as (config_path, env):
        listing = list_replica(litestream.path, config_path, db_path, env, config.list_timeout)
        if listing.failure is not None:
            return _unreadable(start, listing.failure)
        timeout = config.restore_timeout if listing.files else config.list_timeout
        argv = [
            str(litestream.path),
            "restore",
            "-no-expand-env",
            "-config",
            str(config_path),
            "-if-replica-exists",
            "-json",
            "-o",
            str(staging),
            str(db_path),
        ]
        result = run_bounded(argv, timeout=timeout, env=env, cwd=str(config_path.parent))
    try:
        if result.timed_out:
            return _unreadable(start, timed_out(timeout, "restoring the database"))
        if result.returncode != 0:
            return _unreadable(start, classify(last_error_line(result.stderr or result.stdout)))
        if not staging.exists():
            if listing.files:
                return _unreadable(
                    start,
                    Failure(
                        "inconsistent",
                        f"the replica lists {counted(listing.files, 'file')} but Litestream "
                        "restored nothing from them",
                    ),
                )
            return RestoreResult("first_deploy", _ms(start), _now())
        checked = _check_staged(staging)
        if isinstance(checked, str):
            return _unreadable(start, Failure("corrupt", checked))
        rows = checked
        size = staging.stat().st_size
        _move_into_place(staging, db_path)
        return RestoreResult(
            "restored", _ms(start), _now(), rows=rows, bytes=size, txid=_txid(result.stdout)
        )
    finally:
        _remove(staging)


def _txid(stdout: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(stdout).get("txid")
        return str(value) if value else None
    return None


def _check_staged(path: Path) -> int | str:
    """The row count of the staged copy, or why it must not be used. Any WAL the copy
    has is checkpointed into it, so that one file is moved into place."""
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            if rows != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in rows[:3])
                return f"the restored database failed its integrity check ({sanitize(detail)})"
            total = _count_rows(conn)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"the restored database cannot be opened ({sanitize(str(exc))})"
    return total


def _count_rows(conn: sqlite3.Connection) -> int:
    """Rows of the app's tables (not SQLite's, not Litestream's `_litestream_seq`/_lock)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' "
            "AND name NOT LIKE '!_litestream!_%' ESCAPE '!'"
        )
    ]
    total = 0
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        total += int(conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])  # noqa: S608
    return total


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(staging: Path, db_path: Path) -> None:
    """The checked file replaces whatever stale sidecars are there, then the directory
    entry is made durable: a crash leaves either no database (restore runs again) or the
    complete one."""
    for suffix in _SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            Path(f"{staging}{suffix}").unlink()
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db_path}{suffix}").unlink()
    _fsync(staging)
    staging.replace(db_path)
    _fsync(db_path.parent)
