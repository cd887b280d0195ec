"""WAL checkpoints of a SQLite file in a thread of their own, off the event loop.

SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000 pages,
and with `synchronous=NORMAL` it ends with an fsync of the database file: 5-8 ms on this
machine, once every few hundred creates, during which the event loop — where the app
runs its SQLite work (src.database.inline) — answers nobody. So the request connections
checkpoint only as a backstop (`BACKSTOP_PAGES`), and a daemon thread runs a PASSIVE
checkpoint every `INTERVAL_SECONDS` on a connection of its own: PASSIVE never waits for
readers or writers, and the sqlite3 module lets go of the GIL while SQLite works.

Not for a file Litestream replicates: Litestream checkpoints it itself (engine.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
# 40 MB of WAL: reached only when the thread cannot keep up (or is gone).
BACKSTOP_PAGES = 10000


class Checkpointer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"checkpoint {path.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(INTERVAL_SECONDS):
                try:
                    if connection is None:
                        connection = sqlite3.connect(self.path, isolation_level=None)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    # Busy, or the file is being replaced: the next round tries again.
                    logger.debug("WAL checkpoint of %s skipped: %s", self.path, error)
        finally:
            if connection is not None:
                connection.close()
