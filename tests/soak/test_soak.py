"""Five minutes of mixed load at 64 connections on the SQLite default.

Run with ./scripts/soak (not part of the default suite). SOAK_SECONDS shortens it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from tests.server import clean_env, run_server
from tests.soak.load import bearer, run_load

pytestmark = pytest.mark.slow
SECRET = "soak-secret-" + "s" * 40
SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_mixed_load_on_sqlite(tmp_path: Path) -> None:
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "soak.db"),
        BETTER_AUTH_SECRET=SECRET,
        LOG_LEVEL="warning",
    )
    samples: list[tuple[float, int]] = []
    with run_server(env, cwd=tmp_path, health_timeout=30) as server:
        import httpx2 as httpx

        server.wait_ready()

        done = threading.Event()

        def sample() -> None:
            while not done.wait(5):
                samples.append((time.monotonic(), rss_kib(server.process.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        outcome = asyncio.run(
            run_load(
                server.base_url,
                SECRET,
                connections=64,
                seconds=SECONDS,
                mix={"list": 4, "create": 3, "update": 2, "delete": 1},
            )
        )
        done.set()
        sampler.join()
        elapsed = time.monotonic() - started

        # No lost writes: every acknowledged task that the load did not delete is there.
        expected = outcome.created - outcome.deleted
        missing = []
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for task_id in expected:
                # Find the owner by trying the users the load used.
                for index in range(8):
                    user = f"soak-user-{index}"
                    got = client.get(f"/api/{user}/tasks/{task_id}", headers=bearer(SECRET, user))
                    if got.status_code == 200:
                        break
                else:
                    missing.append(task_id)

    total = sum(outcome.counts.values())
    print(
        f"\nsoak: {elapsed:.0f}s, {total} requests ({total / elapsed:.0f}/s), "
        f"counts={outcome.counts}, created={len(outcome.created)}, deleted={len(outcome.deleted)}"
    )
    warm = [rss for when, rss in samples if when - started >= min(30, SECONDS / 5)]
    if warm:
        print(f"soak: RSS first/last/max after warm-up: {warm[0]}/{warm[-1]}/{max(warm)} KiB")
    assert outcome.errors == [], outcome.errors[:10]
    assert outcome.transport_errors == 0
    assert missing == []
    assert warm, "too short to sample memory"
    assert max(warm) <= warm[0] * 1.2, (warm[0], max(warm))
