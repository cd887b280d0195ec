"""Replication status: what the leader publishes and what every worker reads.

The leader writes a small JSON file beside the database (atomically: a temporary file,
then a rename), so any worker can answer `/config/database` without asking it. Reading
costs one `stat()` while the file is unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

State = Literal["disabled", "invalid", "restoring", "unreadable", "replicating", "error", "stopped"]
Role = Literal["leader", "follower"]
FORMAT = 1


def status_path(db_path: Path) -> Path:
    return db_path.with_name(f".{db_path.name}-replication.json")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def stall_after(sync_interval: float) -> float:
    """Seconds without a confirmed sync after which replication is reported as failing."""
    return max(30.0, 10 * sync_interval)


@dataclass(frozen=True)
class ReplicationStatus:
    """The replication facts for `/config/database` and `/` (all JSON-ready).

    `last_sync_at` is ISO 8601 UTC; `lag_seconds` is how long ago the replica was last
    known to hold every change (None before the first sync); `restore` is the start-up
    decision (`RestoreResult.as_dict()`), None while undecided.
    """

    state: State
    role: Role | None
    replica_url: str
    last_sync_at: str | None
    lag_seconds: float | None
    last_error: str | None
    restore: dict[str, Any] | None
    sync_interval_seconds: float | None
    database_ready: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_record(
    record: dict[str, Any] | None, role: Role | None, now: float | None = None
) -> ReplicationStatus | None:
    """The status a record (as written by `StatusFile.write`) stands for, or None."""
    if not record or record.get("format") != FORMAT:
        return None
    now = time.time() if now is None else now
    state: State = record.get("state", "error")
    last_sync = record.get("last_sync_at")
    last_error = record.get("last_error")
    interval = record.get("sync_interval")
    lag = None if last_sync is None else round(max(0.0, now - float(last_sync)), 3)
    # The leader writes the threshold it uses, so that every worker reports alike.
    threshold = record.get("stall_after")
    if not isinstance(threshold, int | float) and isinstance(interval, int | float):
        threshold = stall_after(float(interval))
    if state == "replicating" and isinstance(threshold, int | float):
        since = last_sync if last_sync is not None else record.get("replicating_since")
        if since is not None and now - float(since) > threshold:
            state = "error"
            # The stall first: an earlier error may be long over (a restart since).
            stalled = (
                f"the replica has confirmed no sync for {now - float(since):.0f} s "
                "(endpoint unreachable or not answering?)"
            )
            last_error = f"{stalled}; last error: {last_error}" if last_error else stalled
    restore = record.get("restore")
    return ReplicationStatus(
        state=state,
        role=role,
        replica_url=str(record.get("replica_url", "")),
        last_sync_at=iso(last_sync),
        lag_seconds=lag,
        last_error=last_error,
        restore=restore,
        sync_interval_seconds=interval,
        database_ready=bool(record.get("database_ready")),
    )


class StatusFile:
    """Atomic writes and cached reads of one status file. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache_key: tuple[int, int, int] | None = None
        self._cache: dict[str, Any] | None = None

    def write(self, record: dict[str, Any]) -> None:
        payload = json.dumps({"format": FORMAT, **record}, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            Path(tmp).chmod(0o644)
            Path(tmp).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise

    def read(self) -> dict[str, Any] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key == self._cache_key:
                return self._cache
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        record = data if isinstance(data, dict) else None
        with self._lock:
            self._cache_key, self._cache = key, record
        return record
