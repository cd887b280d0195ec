"""Replication of one SQLite file, from the app's start to its stop.

Every worker process creates one `Replication` and calls `start()`. One of them wins the
election (election.py) and restores, then replicates; the others follow its status file
and take over when it dies. `wait_ready()` tells the app when it may open the database:
never while the replica is being restored, never after the replica could not be read
(it keeps retrying in the background, so a later attempt can still succeed).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from src.replication.binary import Litestream, LitestreamUnavailable, litestream
from src.replication.config import ReplicaConfig
from src.replication.election import Election
from src.replication.failures import Failure
from src.replication.restore import RestoreResult, restore_database
from src.replication.status import (
    ReplicationStatus,
    Role,
    State,
    StatusFile,
    from_record,
    stall_after,
    status_path,
)
from src.replication.supervisor import Supervisor

logger = logging.getLogger(__name__)
_FOLLOWER_POLL = 0.2
_HEARTBEAT = 1.0
_MIN_WRITE_GAP = 0.25


def _create_empty(db_path: Path) -> None:
    """An empty WAL database, so that Litestream watches it from its first second (only
    after the replica was found empty: it becomes the replica's first state)."""
    conn = sqlite3.connect(db_path, timeout=5.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


class Replication:
    """Restore-then-replicate for `db_path`. All methods are bounded and never raise for
    the replica's or Litestream's behaviour."""

    def __init__(self, config: ReplicaConfig, db_path: Path | str) -> None:
        self.config = config
        self.db_path = Path(db_path).absolute()
        self._election = Election(self.db_path)
        self._file = StatusFile(status_path(self.db_path))
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._decided = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._role: Role | None = None
        self._state: State = "restoring" if config.valid else "invalid"
        self._restore: RestoreResult | None = None
        self._error: str | None = None if config.valid else "; ".join(config.errors)
        self._supervisor: Supervisor | None = None
        self._replicating_since: float | None = None
        self._last_write = 0.0
        self._stall_after = config.stall_timeout or stall_after(config.sync_interval)
        # Whether the log last said that replication is failing (see _watch_health).
        self._health_lock = threading.Lock()
        self._reported_failing = False

    # -- the app's calls ------------------------------------------------------

    def start(self) -> None:
        """Begin in the background (election, restore, replication); returns at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"replication-{self.db_path.name}", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout: float | None) -> bool:
        """Wait up to `timeout` s until the database may be opened; True when it may."""
        return self._ready.wait(timeout)

    def wait_decided(self, timeout: float | None) -> bool:
        """Wait until the first start-up decision is known (safe or not)."""
        return self._decided.wait(timeout)

    @property
    def database_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def role(self) -> Role | None:
        return self._role

    @property
    def restore_result(self) -> RestoreResult | None:
        return self._restore

    def status(self) -> ReplicationStatus:
        """Current status; in a follower, the leader's as published in its status file."""
        if self._role == "follower":
            followed = from_record(self._file.read(), "follower")
            if followed is not None:
                return followed
        status = from_record(self._record(), self._role)
        assert status is not None
        return status

    def stop(self, timeout: float | None = None) -> None:
        """Stop replicating: Litestream's final sync gets up to `timeout` s (default the
        config's stop_timeout); the whole call stays within about timeout + 5 s."""
        self._stopping.set()
        with self._lock:
            supervisor = self._supervisor
        if supervisor is not None:
            supervisor.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            late = self._supervisor
        if late is not None and late is not supervisor:
            late.stop(timeout)
        if self._role == "leader":
            with self._lock:
                self._state = "stopped"
            self._publish(force=True)
        self._election.resign()

    # -- the background thread ----------------------------------------------

    def _run(self) -> None:
        try:
            if not self.config.valid:
                self._decided.set()
                return
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                binary = litestream()
            except LitestreamUnavailable as exc:
                self._fail_without_litestream(str(exc))
                return
            while not self._stopping.is_set():
                outcome = self._election.try_lead(wait=_HEARTBEAT)
                if outcome is True:
                    self._lead(binary)
                    return
                if outcome is False:
                    self._follow()
                self._stopping.wait(_FOLLOWER_POLL if not self._ready.is_set() else _HEARTBEAT)
        except Exception:  # a bug here must not take the app down
            logger.exception("Replication stopped by an unexpected error")
            with self._lock:
                self._state, self._error = "error", "replication stopped by an internal error"
            self._decided.set()

    def _follow(self) -> None:
        self._role = "follower"
        record = self._file.read()
        restore = (record or {}).get("restore")
        if isinstance(restore, dict) and restore.get("outcome"):
            self._restore = RestoreResult.from_dict(restore)
            self._decided.set()
            if record and record.get("database_ready"):
                self._ready.set()

    def _lead(self, binary: Litestream) -> None:
        self._role = "leader"
        logger.info("Replication: this process (pid %s) leads for %s", os.getpid(), self.db_path)
        self._publish(force=True)
        delay = self.config.retry_initial
        while not self._stopping.is_set():
            result = restore_database(self.config, self.db_path, binary)
            self._record_restore(result)
            self._election.decided()
            if result.safe_to_open:
                break
            logger.warning(
                "Replica %s could not be read (%s); the database stays closed, retrying in %g s",
                self.config.masked_url,
                result.reason,
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.config.retry_max)
        if self._stopping.is_set():
            return
        if self._restore is not None and self._restore.outcome == "first_deploy":
            _create_empty(self.db_path)
        supervisor = Supervisor(self.config, self.db_path, binary, on_change=self._publish)
        with self._lock:
            self._supervisor = supervisor
            self._state = "replicating"
            self._replicating_since = time.time()
        supervisor.start()
        # The app may write only once Litestream watches the file, or a stop soon after
        # the first writes would leave them out of the replica.
        watch_wait = max(self.config.watch_timeout, 3 * self.config.monitor_interval)
        if not supervisor.tracker.watching.wait(watch_wait):
            logger.warning(
                "Litestream has not picked up %s after %g s; opening it anyway",
                self.db_path.name,
                watch_wait,
            )
        self._publish(force=True, ready=True)
        self._ready.set()
        while not self._stopping.wait(_HEARTBEAT):
            self._publish(force=True)
        # stop() may have looked for the supervisor before it existed.
        supervisor.stop()

    def _record_restore(self, result: RestoreResult) -> None:
        with self._lock:
            self._restore = result
            if result.safe_to_open:
                self._state, self._error = "restoring", None
            else:
                self._state, self._error = "unreadable", result.reason
        if result.outcome == "restored":
            logger.info(
                "Restored %s from %s: %s rows, %s bytes in %s ms",
                self.db_path.name,
                self.config.masked_url,
                result.rows,
                result.bytes,
                result.duration_ms,
            )
        elif result.safe_to_open:
            logger.info("Replication start-up decision: %s", result.outcome)
        self._publish(force=True, ready=False)
        self._decided.set()

    def _fail_without_litestream(self, reason: str) -> None:
        logger.error("Replication is configured but cannot run: %s", reason)
        failure = Failure("no_litestream", reason)
        with self._lock:
            self._state, self._error = "error", reason
            self._restore = RestoreResult(
                "unreadable", 0, "", code=failure.code, reason=failure.reason
            )
        self._decided.set()

    # -- status -------------------------------------------------------------

    def _record(self, ready: bool | None = None) -> dict[str, Any]:
        with self._lock:
            state, error, restore = self._state, self._error, self._restore
            supervisor, since = self._supervisor, self._replicating_since
        last_sync = None
        if supervisor is not None:
            snap = supervisor.tracker.snapshot()
            last_sync = snap.last_sync_at
            if state == "replicating" and snap.failing:
                state = "error"
            error = error or snap.last_error
        return {
            "format": 1,
            "leader_pid": os.getpid() if self._role == "leader" else None,
            "replica_url": self.config.masked_url,
            "state": state,
            "restore": restore.as_dict() if restore else None,
            "database_ready": self._ready.is_set() if ready is None else ready,
            "last_sync_at": last_sync,
            "last_error": error,
            "replicating_since": since,
            "sync_interval": self.config.sync_interval,
            "stall_after": self._stall_after,
            "updated_at": time.time(),
        }

    def _publish(self, force: bool = False, ready: bool | None = None) -> None:
        if self._role != "leader":
            return
        now = time.monotonic()
        if not force and now - self._last_write < _MIN_WRITE_GAP:
            return
        self._last_write = now
        record = self._record(ready)
        self._watch_health(record)
        try:
            record.pop("format")
            self._file.write(record)
        except OSError as exc:
            logger.warning("Replication status file %s not written: %s", self._file.path, exc)

    def _watch_health(self, record: dict[str, Any]) -> None:
        """Log when replication starts failing (an error, or no confirmed sync for
        `stall_after` s) and when it recovers: once per change, however often the status
        is published (every heartbeat, and on every change Litestream reports). Only the
        leader publishes, so one process logs it; shutdown has its own report
        (Supervisor)."""
        if self._stopping.is_set() or record["state"] not in ("replicating", "error"):
            return
        status = from_record(record, self._role)
        if status is None:
            return
        failing = status.state == "error"
        with self._health_lock:
            if failing == self._reported_failing:
                return
            self._reported_failing = failing
            if failing:
                logger.warning(
                    "Replication to %s is failing: %s. Changes made since %s are not in the "
                    "replica yet.",
                    self.config.masked_url,
                    status.last_error or "no reason given",
                    status.last_sync_at or "replication started",
                )
            else:
                logger.info(
                    "Replication to %s has recovered: the replica confirmed a sync at %s.",
                    self.config.masked_url,
                    status.last_sync_at,
                )
