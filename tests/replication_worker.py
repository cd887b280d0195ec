"""A stand-in for one app worker process, for the replication tests.

    python tests/replication_worker.py DB_PATH [--write]

Reads its configuration from the environment like the app (SQLITE_REPLICA_URL, …),
starts a `Replication`, prints one JSON line per second about itself (role, state, the
pid of its Litestream child), and with `--write` commits a row every 5 ms once the
database may be opened. SIGTERM stops it the way the app's shutdown will: writes first,
then replication.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config.settings import load_settings
from src.replication import Replication, replica_config
from tests.replica_servers import connect, insert


def main() -> int:
    if os.environ.get("REPLICATION_WORKER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    db_path = Path(sys.argv[1])
    write = "--write" in sys.argv
    config = replica_config(load_settings())
    assert config is not None and config.valid, config
    replication = Replication(config, db_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    replication.start()

    def report(event: str) -> None:
        supervisor = replication._supervisor
        line = {
            "event": event,
            "pid": os.getpid(),
            "role": replication.role,
            "ready": replication.database_ready,
            "state": replication.status().state,
            "litestream_pid": supervisor.pid if supervisor else None,
        }
        print(json.dumps(line), flush=True)

    while not replication.wait_ready(0.1):
        if stop.is_set():
            replication.stop()
            return 0
    report("ready")
    conn = connect(db_path) if write else None
    last = 0.0
    while not stop.is_set():
        if conn is not None:
            insert(conn, 1)
            time.sleep(0.005)
        else:
            stop.wait(0.1)
        if time.monotonic() - last >= 0.5:
            report("status")
            last = time.monotonic()
    if conn is not None:
        conn.close()
    replication.stop()
    report("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
