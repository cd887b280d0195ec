"""kill -9 during a write load on SQLite: the file is intact and every 201 is there.

Run with ./scripts/soak (not part of the default suite).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.server import clean_env, run_server
from tests.soak.load import bearer, run_load

pytestmark = pytest.mark.slow
SECRET = "crash-secret-" + "c" * 40
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "5"))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_during_writes_loses_nothing_acknowledged(tmp_path: Path, round_: int) -> None:
    db = tmp_path / "crash.db"
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(db),
        BETTER_AUTH_SECRET=SECRET,
        LOG_LEVEL="warning",
    )
    import httpx2 as httpx

    with run_server(env, cwd=tmp_path, health_timeout=30) as server:
        server.wait_ready()
        stop = asyncio.Event()

        def killer() -> None:
            time.sleep(1.5 + round_ * 0.37)
            os.kill(server.process.pid, signal.SIGKILL)

        threading.Thread(target=killer, daemon=True).start()
        outcome = asyncio.run(
            run_load(
                server.base_url,
                SECRET,
                connections=32,
                seconds=30,
                mix={"create": 1},
                users=4,
                stop=stop,
            )
        )
        server.process.wait(10)
    assert server.process.returncode == -signal.SIGKILL
    acknowledged = outcome.created
    assert acknowledged, "the load never got a 201 before the kill"

    check = sqlite3.connect(db)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()

    with (
        run_server(env, cwd=tmp_path, health_timeout=30) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        server.wait_ready()
        present: set[str] = set()
        for index in range(4):
            user = f"soak-user-{index}"
            offset = 0
            while True:
                page = client.get(
                    f"/api/{user}/tasks",
                    params={"limit": 100, "offset": offset},
                    headers=bearer(SECRET, user),
                )
                assert page.status_code == 200
                items = page.json()
                present.update(item["id"] for item in items)
                if len(items) < 100:
                    break
                offset += 100
    lost = acknowledged - present
    print(f"\ncrash round {round_}: {len(acknowledged)} acknowledged, {len(lost)} lost")
    assert lost == set()
