"""Replication while the app runs: rows written under load survive a stop and a wiped
disk, a kill -9 loses at most about two sync intervals, one replicator per database
whatever the number of workers, a dead Litestream is restarted, and nothing can make the
app's stop hang."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.replication import Replication
from src.replication.binary import litestream
from src.replication.restore import restore_database
from tests.replica_servers import (
    ROOT,
    MotoS3,
    Writer,
    config_for,
    connect,
    insert,
    integrity,
    litestream_children,
    pid_alive,
    rows,
    s3_config,
)

pytestmark = pytest.mark.usefixtures("replica_env")
WORKER = ROOT / "tests" / "replication_worker.py"


def _wait(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def _restore_elsewhere(config: Any, tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"wiped-{name}" / "todo.db"
    target.parent.mkdir()
    result = restore_database(config, target, litestream())
    assert result.outcome == "restored", result
    assert integrity(target) == "ok"
    return target


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_stop_under_write_load_loses_no_acknowledged_row(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="src.replication")
    if kind == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        config = s3_config(moto, moto.new_bucket(), tmp_path)
    else:
        config = config_for(f"file://{tmp_path}/replica", tmp_path)
    db = tmp_path / "todo.db"
    replication = Replication(config, db)
    replication.start()
    assert replication.wait_ready(30)
    with Writer(db) as writer:
        time.sleep(1.5)
    acked = writer.acked
    assert len(acked) > 50
    status = replication.status()
    assert status.state == "replicating", status
    assert status.lag_seconds is not None and status.last_sync_at is not None
    started = time.monotonic()
    replication.stop()  # SIGTERM: Litestream's final sync
    assert time.monotonic() - started < config.stop_timeout + 5
    assert "final sync at shutdown done" in caplog.text
    assert "final sync at shutdown failed" not in caplog.text
    restored = _restore_elsewhere(config, tmp_path, kind)
    assert [r[0] for r in rows(restored)] == acked


def _worker(db: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=str(db.parent),
    )


class Lines:
    """The JSON lines a worker prints, read in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.items: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self.items.append(json.loads(line))
            except ValueError:
                continue

    def last(self) -> dict[str, Any]:
        return self.items[-1] if self.items else {}


def _worker_env(url: str, interval: float, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LITESTREAM_"))}
    env.update(SQLITE_REPLICA_URL=url, SQLITE_REPLICA_SYNC_INTERVAL=str(interval), **extra)
    return env


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.parametrize(("kind", "interval"), [("file", 0.1), ("s3", 0.1), ("s3", 1.0)], ids=str)
def test_kill_9_under_write_load_loses_at_most_two_sync_intervals(
    kind: str,
    interval: float,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    workers: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if kind == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        bucket = moto.new_bucket()
        url = moto.url(bucket)
        env = _worker_env(
            url, interval, AWS_ACCESS_KEY_ID=moto.key_id, AWS_SECRET_ACCESS_KEY=moto.secret
        )
        config = s3_config(moto, bucket, tmp_path)
    else:
        url = f"file://{tmp_path}/replica"
        env = _worker_env(url, interval)
        config = config_for(url, tmp_path)
    db = tmp_path / "todo.db"
    proc = _worker(db, env, "--write")
    workers.append(proc)
    lines = Lines(proc)
    assert _wait(lambda: lines.last().get("litestream_pid"), 30), lines.items
    # Litestream syncs on a fixed tick from its start: a kill at a fixed delay would
    # always land at the same phase of it, so the delay is drawn.
    time.sleep(2.0 + random.uniform(0, interval))
    child = lines.last()["litestream_pid"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # PR_SET_PDEATHSIG: Litestream dies with the process that started it.
    assert _wait(lambda: not pid_alive(child), 5), "litestream outlived the app"

    local = rows(db)
    restored = rows(_restore_elsewhere(config, tmp_path, kind))
    assert restored, "nothing reached the replica"
    assert [r[0] for r in restored] == [r[0] for r in local[: len(restored)]]  # a prefix
    lost = len(local) - len(restored)
    window = local[-1][1] - restored[-1][1]
    with capsys.disabled():
        print(
            f"\nkill -9, {kind} replica, sync {interval} s: {lost} of {len(local)} rows lost, "
            f"{window * 1000:.0f} ms of writes"
        )
    # Monitor + sync interval; a wide margin for a loaded 2-core machine.
    assert window <= 2 * interval + 1.5, window


def test_two_workers_one_replicator_and_takeover(
    tmp_path: Path, workers: list[subprocess.Popen[str]]
) -> None:
    url = f"file://{tmp_path}/replica"
    env = _worker_env(url, 0.1)
    db = tmp_path / "todo.db"
    procs = [_worker(db, env), _worker(db, env)]
    workers.extend(procs)
    lines = [Lines(p) for p in procs]
    assert _wait(lambda: all(line.last().get("ready") for line in lines), 30)
    pids = {p.pid for p in procs}
    assert _wait(lambda: len(litestream_children(pids)) == 1, 10)
    time.sleep(1.0)
    assert len(litestream_children(pids)) == 1, "two replicators for one database"
    roles = {line.last()["pid"]: line.last()["role"] for line in lines}
    assert sorted(roles.values()) == ["follower", "leader"], roles
    leader = next(p for p in procs if roles[p.pid] == "leader")
    follower = next(p for p in procs if roles[p.pid] == "follower")
    follower_lines = lines[procs.index(follower)]
    assert follower_lines.last()["state"] == "replicating"  # read from the leader's file

    conn = connect(db)
    insert(conn, 20)
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(10)
    assert _wait(lambda: litestream_children({follower.pid}), 10), "no takeover"
    assert _wait(lambda: follower_lines.last().get("role") == "leader", 5)
    insert(conn, 30)
    conn.close()
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(20) == 0
    restored = rows(_restore_elsewhere(config_for(url, tmp_path), tmp_path, "takeover"))
    assert len(restored) == 50


def test_a_dead_litestream_is_restarted(tmp_path: Path) -> None:
    config = config_for(f"file://{tmp_path}/replica", tmp_path)
    db = tmp_path / "todo.db"
    replication = Replication(config, db)
    replication.start()
    try:
        assert replication.wait_ready(30)
        supervisor = replication._supervisor
        assert supervisor is not None and supervisor.pid
        first = supervisor.pid
        conn = connect(db)
        insert(conn, 10)
        os.kill(first, signal.SIGKILL)
        assert _wait(lambda: supervisor.pid not in (None, first), 10)
        assert supervisor.exit_codes == [-9]
        assert "exited with code -9" in (replication.status().last_error or "")
        insert(conn, 10)
        conn.close()
        assert _wait(lambda: replication.status().state == "replicating", 10)
    finally:
        replication.stop()
    assert len(rows(_restore_elsewhere(config, tmp_path, "restart"))) == 20


def test_stop_is_bounded_when_the_endpoint_hangs(
    moto_s3: MotoS3, tmp_path: Path, hung_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing database, an endpoint that accepts and never answers: the app opens
    its database (nothing of the replica is at risk), writes, and stops in bounded time,
    saying that the final sync did not reach the replica."""
    caplog.set_level(logging.INFO, logger="src.replication")
    db = tmp_path / "todo.db"
    conn = connect(db)
    insert(conn, 5)
    bucket = moto_s3.new_bucket()
    url = moto_s3.url(bucket, endpoint=f"http://127.0.0.1:{hung_port}")
    config = s3_config(moto_s3, bucket, tmp_path, url=url, stop_timeout=2.0, watch_timeout=1.0)
    replication = Replication(config, db)
    replication.start()
    assert replication.wait_ready(15)
    assert replication.restore_result and replication.restore_result.outcome == "existing"
    insert(conn, 5)
    conn.close()
    supervisor = replication._supervisor
    assert supervisor is not None
    child = supervisor.pid
    started = time.monotonic()
    replication.stop()
    assert time.monotonic() - started < 2.0 + 5 + 5
    assert child is None or _wait(lambda: not pid_alive(child), 5)
    assert replication.status().state == "stopped"
    assert moto_s3.keys(bucket) == []
    failed = [r for r in caplog.records if "final sync at shutdown failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR, caplog.text
    assert "had not read the database" in failed[0].getMessage()
    assert "changes made since replication started may be missing" in failed[0].getMessage()


def test_a_stop_during_a_hanging_restore_is_bounded_and_starts_nothing(
    moto_s3: MotoS3, tmp_path: Path, hung_port: int
) -> None:
    bucket = moto_s3.new_bucket()
    url = moto_s3.url(bucket, endpoint=f"http://127.0.0.1:{hung_port}")
    config = s3_config(moto_s3, bucket, tmp_path, url=url, list_timeout=3.0)
    db = tmp_path / "todo.db"
    replication = Replication(config, db)
    replication.start()
    time.sleep(0.3)
    started = time.monotonic()
    replication.stop()
    assert time.monotonic() - started < 3.0 + 5 + 3
    assert not replication.database_ready
    time.sleep(0.5)
    assert litestream_children({os.getpid()}) == []
    assert not db.exists()
