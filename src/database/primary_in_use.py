"""Workers of one server agree on the database: while one serves the primary, no other
starts a SQLite fallback beside it.

Each worker that serves the primary holds a shared `flock` on a lock file beside the
SQLite file; the kernel drops it when the process ends, so a whole restart begins with none
held. A worker about to fall back (the primary unreachable at its start: a worker that the
server restarted during an outage, or a primary that flapped while the workers started)
first tries the lock exclusively; when it cannot have it, a sibling is on the primary, and
this worker waits for the primary too instead of serving a second store. A worker that is
on the fallback looks the same way, to switch as soon as a sibling has.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class PrimaryInUse:
    """This process's side of the lock for one SQLite location (`None`: in memory, one
    process only, nothing to agree on)."""

    def __init__(self, sqlite_path: Path | None) -> None:
        self.path = (
            sqlite_path.with_name(f".{sqlite_path.name}-primary.lock") if sqlite_path else None
        )
        self._held: int | None = None

    def hold(self) -> None:
        """This worker serves the primary (until `release`, or its end)."""
        if self.path is None or self._held is not None:
            return
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # never waits: holders only ever share it
        except OSError:
            os.close(fd)
            logger.debug("Could not share the primary's lock %s", self.path, exc_info=True)
            return
        self._held = fd

    def release(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            os.close(fd)

    def elsewhere(self) -> bool:
        """Whether another worker of this server serves the primary now."""
        if self.path is None or self._held is not None:
            return False
        fd = self._open()
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        else:
            return False
        finally:
            os.close(fd)  # and with it the exclusive lock, had it been taken

    def _open(self) -> int | None:
        assert self.path is not None
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            logger.debug("Could not open the primary's lock %s", self.path, exc_info=True)
            return None
