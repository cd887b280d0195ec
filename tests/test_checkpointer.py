"""src.database.checkpointer: a served SQLite file's WAL is folded into the database by a
thread of its own, not inside a request's COMMIT on the event loop."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from src.database.checkpointer import Checkpointer
from tests.conftest import wait_until


def test_the_wal_is_checkpointed_by_the_thread_and_the_thread_stops(tmp_path: Path) -> None:
    path = tmp_path / "todo.db"
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # only the thread checkpoints here
        writer.execute("CREATE TABLE t (x TEXT)")
        writer.execute("BEGIN")
        writer.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(4000)])
        writer.execute("COMMIT")
        before = path.stat().st_size  # the rows are in the WAL, not yet in the file
        checkpointer = Checkpointer(path)
        try:
            assert wait_until(lambda: path.stat().st_size > before + 1_000_000, timeout=10)
        finally:
            checkpointer.stop()
        assert not any(t.name.startswith("checkpoint ") for t in threading.enumerate())
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (4000,)
    finally:
        writer.close()
