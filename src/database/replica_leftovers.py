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
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from src.replication import Replication
from src.replication.binary import LitestreamUnavailable, litestream
from src.replication.config import ReplicaConfig
from src.replication.restore import restore_database

logger = logging.getLogger(__name__)

# How long Litestream may take to pick the file up before its final sync ships it.
_SHIP_READY_SECONDS = 30.0


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


def restore_if_missing(config: ReplicaConfig, path: Path) -> bool:
    """Restore `path` from its replica when the file is not here; True when the file is
    here afterwards (it was, or it was restored). Never raises: a replica that cannot be
    read, or no Litestream, is logged and answers False."""
    if path.is_file():
        return True
    if not config.valid:
        return False
    try:
        binary = litestream()
    except LitestreamUnavailable as error:
        logger.warning("An earlier fallback's replica was not looked at: %s", error)
        return False
    result = restore_database(config, path, binary)
    if result.outcome == "restored":
        logger.info(
            "Restored an earlier fallback's file %s from %s (%s rows) to move its tasks",
            path.name,
            config.masked_url,
            result.rows,
        )
        return True
    if not result.safe_to_open:
        logger.warning(
            "The replica %s could not be read (%s): tasks an earlier fallback kept there "
            "are not moved into the primary at this start.",
            config.masked_url,
            result.reason,
        )
    return False


def ship(config: ReplicaConfig, path: Path) -> None:
    """Replicate `path` until Litestream's final sync, so that the replica holds what the
    move changed. Bounded; never raises."""
    replication = Replication(config, path)
    try:
        replication.start()
        if not replication.wait_ready(_SHIP_READY_SECONDS):
            logger.warning(
                "Litestream did not pick up %s within %g s; the replica %s may still hold "
                "tasks that were moved (a later start finds them already moved).",
                path.name,
                _SHIP_READY_SECONDS,
                config.masked_url,
            )
    finally:
        replication.stop()
