"""What `litestream replicate` says about itself, read from its JSON log lines.

Litestream 0.5.17 logs (slog JSON on stderr, see litestream_config.render):
* `replica sync` (debug) at the start of every replica sync, with
  `txid.replica` / `txid.db`: equal means the replica holds everything Litestream has
  seen locally; otherwise it is about to upload up to `txid.db`;
* `ltx file uploaded` (debug) per upload, with `maxTXID`;
* `db sync` (debug) with `status: ok` once it has read the database's WAL: only from
  then on does a SIGTERM ship what was committed (a database created after Litestream
  started is picked up at its next monitor tick, and writes before that are lost);
* `monitor error` (error) when a sync fails, rate-limited by Litestream;
  `replica sync recovered` (info) when syncing works again.
Its Prometheus error counters stay at 0 for a refused or silent endpoint
(research/litestream.md), so the log is the source.

`last_sync_at` is the latest moment up to which the replica is known to hold every local
change: the time of a sync that found nothing to upload, or the start of a sync whose
uploads all completed. `now - last_sync_at` bounds how much a crash would lose.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from src.replication.failures import sanitize

logger = logging.getLogger("src.replication.litestream")
_FORWARD = {"ERROR": logging.ERROR, "WARN": logging.WARNING}


def _txid(value: Any) -> int | None:
    try:
        return int(str(value), 16)
    except (TypeError, ValueError):
        return None


def _first_level_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """slog writes the record's level first; a later attribute also called `level` (the
    compaction level of `ltx file uploaded`) must not replace it."""
    entry: dict[str, Any] = {}
    for key, value in pairs:
        if key in entry:
            entry[f"{key}_attr"] = value
        else:
            entry[key] = value
    return entry


@dataclass(frozen=True)
class SyncSnapshot:
    """Wall-clock times (time.time()) of the facts below; None when not seen yet."""

    started_at: float | None
    last_sync_at: float | None
    last_error: str | None
    last_error_at: float | None
    replica_txid: int | None
    db_txid: int | None
    failing: bool


class SyncTracker:
    """Thread-safe fold of Litestream log lines into a SyncSnapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._last_sync_at: float | None = None
        self._pending: tuple[float, int] | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._failing = False
        self._replica_txid: int | None = None
        self._db_txid: int | None = None
        self.version = 0  # bumped on every change that matters to readers
        # Set once Litestream has the database open and a WAL position: from then on its
        # shutdown sync ships every committed change.
        self.watching = threading.Event()

    def feed(self, raw: bytes | str, now: float | None = None) -> None:
        """Take one output line (JSON from Litestream, or anything else it printed)."""
        now = time.time() if now is None else now
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text:
            return
        try:
            entry = json.loads(text, object_pairs_hook=_first_level_wins)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            # Not a log record: a Go panic or a start-up error ("Error: …").
            self.error(text, now)
            return
        self._apply(entry, now)

    def _apply(self, entry: dict[str, Any], now: float) -> None:
        msg = str(entry.get("msg", ""))
        level = str(entry.get("level", "")).upper()
        with self._lock:
            if msg == "replicating to":
                self._started_at = now
                self.version += 1
            elif msg == "db sync" and entry.get("status") == "ok":
                self.watching.set()
            elif msg == "replica sync":
                self.watching.set()
                raw_txids = entry.get("txid")
                txids: dict[str, Any] = raw_txids if isinstance(raw_txids, dict) else {}
                replica, db = _txid(txids.get("replica")), _txid(txids.get("db"))
                self._replica_txid, self._db_txid = replica, db
                if replica is not None and db is not None and replica >= db:
                    self._synced(now)
                elif db is not None:
                    self._pending = (now, db)
            elif msg == "ltx file uploaded":
                top = _txid(entry.get("maxTXID"))
                if top is not None:
                    self._replica_txid = top
                if self._pending is not None and top is not None and top >= self._pending[1]:
                    self._synced(self._pending[0])
            elif msg == "replica sync recovered":
                self._failing = False
                self.version += 1
        if level not in _FORWARD:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("Litestream: %s", sanitize(json.dumps(entry)))
            return
        if level in _FORWARD:
            detail = sanitize(str(entry.get("error") or entry.get("err") or ""))
            line = f"{msg}: {detail}" if detail else msg
            logger.log(_FORWARD[level], "Litestream: %s", line)
            if level == "ERROR":
                self.error(line, now)

    def _synced(self, at: float) -> None:
        self._last_sync_at = max(at, self._last_sync_at or 0.0)
        self._pending = None
        if self._failing:
            self._failing = False
        self.version += 1

    def error(self, text: str, now: float | None = None) -> None:
        with self._lock:
            self._last_error = sanitize(text)
            self._last_error_at = time.time() if now is None else now
            self._failing = True
            self.version += 1

    def snapshot(self) -> SyncSnapshot:
        with self._lock:
            return SyncSnapshot(
                started_at=self._started_at,
                last_sync_at=self._last_sync_at,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                replica_txid=self._replica_txid,
                db_txid=self._db_txid,
                failing=self._failing,
            )
