"""What the data commands say on stderr: progress (at most a line every few seconds) and the
outcome of a transfer."""

from __future__ import annotations

import sys
import time

from src.core.plural import counted
from src.database.transfer import TransferReport

INTERVAL_SECONDS = 2.0


class Progress:
    def __init__(self, verb: str, interval: float = INTERVAL_SECONDS) -> None:
        self._verb = verb
        self._interval = interval
        self._started = time.monotonic()
        self._last = self._started

    def count(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        print(f"{self._verb} {counted(done, 'task')} so far ({rate:.0f} tasks/s)…", file=sys.stderr)

    def report(self, report: TransferReport) -> None:
        self.count(report.read)


def summary(report: TransferReport) -> str:
    """'10000 added, 0 replaced by a newer version, …' for a finished transfer."""
    parts = [
        f"{report.inserted} added",
        f"{report.updated} replaced by a newer version",
        f"{report.unchanged} already identical",
        f"{report.skipped} kept because the target's copy is as new or newer",
    ]
    return ", ".join(parts)


def report_conflicts(report: TransferReport) -> int:
    """Exit code 1, with the ids, when tasks were left out for belonging to another user."""
    if not report.conflicts:
        return 0
    print(
        f"Left out {report.conflicts} task(s): the target already has a task with the same id "
        f"that belongs to another user (ids: {', '.join(report.conflict_ids)}"
        f"{', …' if report.conflicts > len(report.conflict_ids) else ''}); a transfer never "
        "moves a task between users.",
        file=sys.stderr,
    )
    return 1
