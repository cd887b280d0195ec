"""One replicator per database file, whatever the number of worker processes.

Two `flock` locks beside the database:
* the *leader* lock, held for as long as a process restores and replicates; the kernel
  releases it when that process dies, so another one can take over;
* the *decision* lock, held by the leader while it decides how the database starts
  (restore or not) and by every newcomer while it tries for leadership.

A newcomer takes the decision lock first, then tries the leader lock. So a process that
finds a leader always finds one that has finished deciding (and written its status
file), or waits for it; it never reads a status file left over from an earlier run as
if it were today's decision.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path


def lock_paths(db_path: Path) -> tuple[Path, Path]:
    """(leader lock, decision lock) for a database file."""
    return (
        db_path.with_name(f".{db_path.name}-replication.lock"),
        db_path.with_name(f".{db_path.name}-replication.decide.lock"),
    )


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class Election:
    """This process's side of the election for one database file. Not thread-safe."""

    def __init__(self, db_path: Path) -> None:
        self.leader_path, self.decision_path = lock_paths(db_path)
        self._leader_fd: int | None = None
        self._decision_fd: int | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader_fd is not None

    def try_lead(self, wait: float) -> bool | None:
        """Try to become the leader, waiting at most `wait` s for a deciding leader.

        True: we lead and hold the decision lock (call `decided()` once decided).
        False: another process leads and has decided. None: one is still deciding.
        """
        if self._leader_fd is not None:
            return True
        decision = _open(self.decision_path)
        deadline = time.monotonic() + wait
        try:
            while not _try_lock(decision):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
            leader = _open(self.leader_path)
            if _try_lock(leader):
                self._leader_fd, self._decision_fd = leader, decision
                decision = -1
                return True
            os.close(leader)
            return False
        finally:
            if decision >= 0:
                os.close(decision)  # closing releases our decision lock, if we took it

    def decided(self) -> None:
        """Let waiting processes read the decision (the leader keeps leading)."""
        if self._decision_fd is not None:
            os.close(self._decision_fd)
            self._decision_fd = None

    def resign(self) -> None:
        """Give up leadership (and the decision lock, if still held)."""
        self.decided()
        if self._leader_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._leader_fd)
            self._leader_fd = None
