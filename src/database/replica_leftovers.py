"""A fallback's tasks that only its replica still holds.

A fallback replicated with `SQLITE_REPLICA_URL` keeps its tasks in the replica when the
host's disk is wiped — a Space starts every run on an empty disk. When the primary answers
at the next start, `switchover.merge_leftovers` moves an earlier fallback's tasks into it
before it serves; a file that is not on this disk any more is first restored here from its
replica, so that tasks written during an outage are not stranded in the bucket because the
host restarted before the primary came back. Once they moved (the file handed over:
src.database.promotion), Litestream runs on the file once more, long enough for its final
sync to put the hand-over in the replica: a later start restores a file with nothing left
to move, and a task deleted in the primary meanwhile does not come back.

Bounded: the replica's reachability is checked first (a few seconds), and a replica that
cannot be read is skipped with a warning — the primary serves, the tasks stay in the
replica, and a later start tries again. Workers of one server take turns through a lock
beside the SQLite file, so that one restores while the others find the file there.

A file handed over on this disk whose replica may not have heard of it (the process died
between the move and Litestream's final sync) is shipped at the next start; once the
replica confirmed it, the file records so (`todo_handover_replicated`), so that a kept
disk does not run Litestream at every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path

from src.replication import Replication
from src.replication.binary import LitestreamUnavailable, litestream
from src.replication.config import ReplicaConfig
from src.replication.restore import restore_database

logger = logging.getLogger(__name__)

# How long Litestream may take to pick the file up before its final sync ships it.
_SHIP_READY_SECONDS = 30.0
# How long listing the replica may take (per file) before the primary serves without it.
_LIST_SECONDS = 5.0
_MARK = "todo_handover_replicated"
# After one worker found the replica unreadable, the others of the same start skip it
# for this long instead of each waiting out the listing in turn.
_UNREADABLE_SKIP_SECONDS = 60.0


class ReplicaUnreadable(Exception):
    """The replica could not be read: the other files' replicas (the same endpoint) are
    not tried at this start either."""


@asynccontextmanager
async def turn(path: Path) -> AsyncIterator[None]:
    """One worker at a time restores and moves `path` (an exclusive `flock` beside it,
    dropped by the kernel if the process dies). Waits in a thread: the event loop goes on
    answering `/health`. Raises OSError when the lock file cannot be made."""
    lock = path.with_name(f".{path.name}-replication-leftovers.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def restore_if_missing(config: ReplicaConfig, path: Path) -> str | None:
    """Restore `path` from its replica when the file is not here: "present" (it was
    here), "restored", or None (not here: nothing in the replica, or no Litestream).
    Raises ReplicaUnreadable (logged) when the replica could not be read, now or by
    another worker moments ago."""
    if path.is_file():
        return "present"
    if not config.valid:
        return None
    note = path.with_name(f".{path.name}-replication-leftovers.unreadable")
    with contextlib.suppress(OSError):
        if time.time() - note.stat().st_mtime < _UNREADABLE_SKIP_SECONDS:
            # Another worker of this start waited for it just now: the same endpoint.
            raise ReplicaUnreadable("found unreadable by another worker moments ago")
    try:
        binary = litestream()
    except LitestreamUnavailable as error:
        logger.warning("An earlier fallback's replica was not looked at: %s", error)
        return None
    # Bounded tighter than a fallback's own restore: the primary is waiting to serve.
    quick = dataclasses.replace(config, list_timeout=min(config.list_timeout, _LIST_SECONDS))
    result = restore_database(quick, path, binary)
    if result.outcome == "restored":
        logger.info(
            "Restored %s from %s (%s rows) to look for an earlier fallback's tasks",
            path.name,
            config.masked_url,
            result.rows,
        )
        return "restored"
    if not result.safe_to_open:
        with contextlib.suppress(OSError):
            note.touch(mode=0o600)
        logger.warning(
            "The replica %s could not be read (%s): tasks an earlier fallback kept there "
            "are not moved into the primary at this start.",
            config.masked_url,
            result.reason,
        )
        raise ReplicaUnreadable(result.reason or "unreadable")
    return None


def ship(config: ReplicaConfig, path: Path) -> bool:
    """Replicate `path` until Litestream's final sync, so that the replica holds what the
    move changed; True when a sync after the stop began was confirmed. Bounded; never
    raises."""
    replication = Replication(config, path)
    try:
        replication.start()
        if not replication.wait_ready(_SHIP_READY_SECONDS):
            logger.warning(
                "Litestream did not pick up %s within %g s; the replica %s may still hold "
                "tasks that were moved (the next start tries again).",
                path.name,
                _SHIP_READY_SECONDS,
                config.masked_url,
            )
    finally:
        stopping = datetime.now(UTC)
        replication.stop()
    synced = replication.status().last_sync_at
    return synced is not None and datetime.fromisoformat(synced) >= stopping


def replicated(path: Path) -> bool:
    """Whether the replica confirmed the hand-over of the file at `path`."""
    try:
        with closing(sqlite3.connect(path, timeout=5)) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_MARK,)
            ).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def mark_replicated(path: Path) -> None:
    """Record that the replica holds the hand-over (written after Litestream stopped, so
    only this disk's copy has it: a file restored from the replica is shipped no more
    either, since what the replica holds is what was restored)."""
    with closing(sqlite3.connect(path, timeout=5)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS todo_handover_replicated (at TEXT NOT NULL)")
        db.execute(
            "INSERT INTO todo_handover_replicated (at) VALUES (?)",
            (datetime.now(UTC).isoformat(),),
        )
