"""What the log says about a replica that stops answering: once when replication starts
failing (an error, or no confirmed sync for too long), once when it recovers, and whether
the final sync at shutdown reached the replica — never with the replica's keys.

With an unreachable endpoint /config/database said "error … the replica has confirmed no
sync for 46 s" while the log said nothing, at run time nor at shutdown. Real Litestream,
a real S3 server (moto) behind a loopback forwarder that the tests cut and restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.replication import Replication
from tests.netfaults import Forwarder
from tests.replica_servers import MotoS3, connect, insert, s3_config

pytestmark = pytest.mark.usefixtures("replica_env")

STALL = 2.0  # seconds without a confirmed sync that count as failing, in these tests
FAILING = "is failing"
RECOVERED = "has recovered"
FINAL_OK = "final sync at shutdown done"
FINAL_FAILED = "final sync at shutdown failed"


def _wait(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def _said(caplog: pytest.LogCaptureFixture, text: str, level: int | None = None) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("src.replication")
        and text in record.getMessage()
        and (level is None or record.levelno == level)
    ]


@pytest.fixture
def forwarder(moto_s3: MotoS3) -> Iterator[list[Forwarder]]:
    """A forwarder to moto (a list: a test replaces it with one on the same port)."""
    forwarders = [Forwarder(("127.0.0.1", moto_s3.port))]
    yield forwarders
    for each in forwarders:
        each.close()


def _replicating(
    moto: MotoS3, forwarder: Forwarder, tmp_path: Path, **limits: float
) -> tuple[Replication, str]:
    bucket = moto.new_bucket()
    url = moto.url(bucket, endpoint=f"http://127.0.0.1:{forwarder.port}")
    config = s3_config(moto, bucket, tmp_path, url=url, stall_timeout=STALL, **limits)
    replication = Replication(config, tmp_path / "todo.db")
    replication.start()
    assert replication.wait_ready(30)
    conn = connect(tmp_path / "todo.db")
    insert(conn, 5)
    conn.close()
    assert _wait(lambda: (replication.status().lag_seconds or 99) < 1, 15), replication.status()
    return replication, config.masked_url


def _no_keys(caplog: pytest.LogCaptureFixture, moto: MotoS3) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert moto.secret not in message and moto.key_id not in message, message


def test_a_failing_replica_is_logged_once_and_so_is_its_recovery(
    moto_s3: MotoS3,
    forwarder: list[Forwarder],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    replication, masked = _replicating(moto_s3, forwarder[0], tmp_path, stop_timeout=5.0)
    try:
        assert not _said(caplog, FAILING)
        port = forwarder[0].port
        forwarder[0].close()  # the endpoint now refuses: Litestream retries without a word
        assert _wait(lambda: _said(caplog, FAILING), STALL + 10), caplog.text
        time.sleep(3)  # three more heartbeats: still one line
        [failing] = _said(caplog, FAILING, logging.WARNING)
        assert failing.startswith(f"Replication to {masked} is failing: ")
        assert "confirmed no sync" in failing
        assert replication.status().state == "error"

        forwarder.append(Forwarder(("127.0.0.1", moto_s3.port), port=port))
        assert _wait(lambda: _said(caplog, RECOVERED), 20), caplog.text
        time.sleep(2)
        [recovered] = _said(caplog, RECOVERED, logging.INFO)
        assert recovered.startswith(f"Replication to {masked} has recovered")
        assert len(_said(caplog, FAILING)) == 1
        assert replication.status().state == "replicating"
    finally:
        replication.stop()
    assert _said(caplog, FINAL_OK, logging.INFO)
    assert not _said(caplog, FINAL_FAILED)
    _no_keys(caplog, moto_s3)


def test_a_final_sync_that_fails_at_shutdown_is_logged(
    moto_s3: MotoS3,
    forwarder: list[Forwarder],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reported case: the endpoint stops answering (accepts, never replies), the
    status says so, and a stop's final sync cannot reach it."""
    caplog.set_level(logging.INFO)
    replication, masked = _replicating(moto_s3, forwarder[0], tmp_path, stop_timeout=3.0)
    forwarder[0].mode = "silent"
    conn = connect(tmp_path / "todo.db")
    insert(conn, 5)  # changes the replica will not get
    conn.close()
    assert _wait(lambda: _said(caplog, FAILING), STALL + 10), caplog.text
    last_sync = replication.status().last_sync_at
    assert last_sync is not None
    [failing] = _said(caplog, FAILING, logging.WARNING)
    assert f"Changes made since {last_sync} are not in the replica yet" in failing

    replication.stop()
    [final] = _said(caplog, FINAL_FAILED, logging.ERROR)
    assert final.startswith(f"Replication to {masked}: the final sync at shutdown failed (")
    assert f"changes made since {last_sync} may be missing from the replica" in final
    assert not _said(caplog, FINAL_OK)
    assert len(_said(caplog, FAILING)) == 1  # the stop is reported once, by its own line
    _no_keys(caplog, moto_s3)
