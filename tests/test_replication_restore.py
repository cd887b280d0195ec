"""The start-up decision against real replicas: a file replica, moto_server (S3 protocol,
signatures checked), a refused port, a silent listener, a missing bucket, bad keys.

What must hold: a readable replica is restored whole and checked; an empty one is a first
deploy; an unreadable one is reported quickly, with the reason, and nothing is written —
not to the replica, not in place of the database — until a later attempt can read it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from src.replication import Replication, doctor_check
from src.replication.binary import litestream
from src.replication.restore import restore_database
from tests.replica_servers import (
    MotoS3,
    config_for,
    connect,
    insert,
    integrity,
    rows,
    s3_config,
    start_moto,
    stop_process,
)

pytestmark = pytest.mark.usefixtures("replica_env")


def _seed(config_db: Path, replication: Replication, n: int) -> None:
    """Write n rows through a running replication and stop it (final sync)."""
    assert replication.wait_ready(30), replication.status()
    conn = connect(config_db)
    insert(conn, n)
    conn.close()
    replication.stop()


def test_first_deploy_then_restore_from_a_file_replica(tmp_path: Path) -> None:
    config = config_for(f"file://{tmp_path}/replica", tmp_path)
    db = tmp_path / "a" / "todo.db"
    db.parent.mkdir()
    first = Replication(config, db)
    first.start()
    assert first.wait_ready(30)
    assert first.restore_result is not None and first.restore_result.outcome == "first_deploy"
    _seed(db, first, 250)
    assert first.status().state == "stopped"

    wiped = tmp_path / "b" / "todo.db"
    wiped.parent.mkdir()
    result = restore_database(config, wiped, litestream())
    assert result.outcome == "restored", result
    assert result.rows == 250 and result.bytes and result.bytes > 0
    assert integrity(wiped) == "ok"
    assert [r[0] for r in rows(wiped)] == list(range(1, 251))
    assert not list(wiped.parent.glob("*.restoring*"))
    # A database already there is never touched.
    again = restore_database(config, wiped, litestream())
    assert again.outcome == "existing"


def test_restore_from_s3_and_doctor(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    config = s3_config(moto_s3, bucket, tmp_path)
    assert doctor_check(config, timeout=10).status == "empty"
    db = tmp_path / "todo.db"
    replication = Replication(config, db)
    replication.start()
    _seed(db, replication, 300)
    assert any(key.startswith("db/") and key.endswith(".ltx") for key in moto_s3.keys(bucket))

    report = doctor_check(config, timeout=10)
    assert report.status == "ok" and report.files and report.bytes, report
    wiped = tmp_path / "wiped" / "todo.db"
    wiped.parent.mkdir()
    result = restore_database(config, wiped, litestream())
    assert result.outcome == "restored" and result.rows == 300, result
    assert integrity(wiped) == "ok"


def _unreadable_cases(moto: MotoS3, tmp_path: Path, refused: int, hung: int) -> dict[str, object]:
    good = moto.new_bucket()
    return {
        "missing bucket": s3_config(moto, f"absent-{good}", tmp_path),
        "unknown key id": s3_config(moto, good, tmp_path, aws_access_key_id="AKIANOTAKEY0000"),
        "wrong secret": s3_config(moto, good, tmp_path, aws_secret_access_key="not-the-secret"),
        "refused port": s3_config(
            moto, good, tmp_path, url=moto.url(good, endpoint=f"http://127.0.0.1:{refused}")
        ),
        "silent endpoint": s3_config(
            moto, good, tmp_path, url=moto.url(good, endpoint=f"http://127.0.0.1:{hung}")
        ),
    }


EXPECTED_CODES = {
    "missing bucket": "no_bucket",
    "unknown key id": "bad_key_id",
    "wrong secret": "bad_secret",
    "refused port": "refused",
    "silent endpoint": "timeout",
}


def test_each_unreadable_replica_is_reported_quickly_and_left_alone(
    moto_s3: MotoS3,
    tmp_path: Path,
    refused_port: int,
    hung_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A good replica in the same bucket the bad-key cases point at: it must not change.
    cases = _unreadable_cases(moto_s3, tmp_path, refused_port, hung_port)
    good_config = cases["unknown key id"]
    bucket = good_config.replica.host  # type: ignore[union-attr]
    seed_db = tmp_path / "seed.db"
    seeding = Replication(s3_config(moto_s3, bucket, tmp_path), seed_db)
    seeding.start()
    _seed(seed_db, seeding, 40)
    before = moto_s3.keys(bucket)
    assert before

    timings = {}
    for name, config in cases.items():
        config = dataclasses.replace(config, list_timeout=2.0)  # type: ignore[type-var]
        db = tmp_path / name.replace(" ", "-") / "todo.db"
        db.parent.mkdir()
        start = time.monotonic()
        result = restore_database(config, db, litestream())
        timings[name] = time.monotonic() - start
        assert result.outcome == "unreadable", (name, result)
        assert result.code == EXPECTED_CODES[name], (name, result)
        assert result.reason and moto_s3.secret not in result.reason
        assert not result.safe_to_open
        assert not db.exists() and not list(db.parent.iterdir()), name
        # The hard deadline is kept (2 s here), with room for a loaded machine.
        assert timings[name] < 2.0 + 8.0, (name, timings[name])
    with capsys.disabled():
        print("\ntime to 'unreadable':", {k: round(v, 2) for k, v in timings.items()})
    assert moto_s3.keys(bucket) == before
    assert not moto_s3.bucket_exists(f"absent-{bucket}")


def test_a_later_attempt_succeeds_once_the_replica_is_readable(
    tmp_path: Path, refused_port: int
) -> None:
    """The endpoint is down at start: the database stays closed and nothing is created;
    when a server comes up on that very port, the next attempt decides."""
    url = f"s3://later/db?endpoint=http://127.0.0.1:{refused_port}&region=us-east-1"
    db = tmp_path / "todo.db"
    config = config_for(
        url,
        tmp_path,
        aws_access_key_id="AKIAANYKEYWORKS",
        aws_secret_access_key="any-secret-works",
        retry_initial=0.3,
        retry_max=0.5,
    )
    replication = Replication(config, db)
    replication.start()
    server = None
    try:
        assert replication.wait_decided(15)
        status = replication.status()
        assert status.state == "unreadable" and not status.database_ready
        assert status.restore and status.restore["code"] == "refused"
        assert not replication.wait_ready(1.0)
        assert not db.exists()

        server = start_moto(port=refused_port, authenticate=False)
        server.client().create_bucket(Bucket="later")
        assert replication.wait_ready(20), replication.status()
        result = replication.restore_result
        assert result is not None and result.outcome == "first_deploy"
        assert replication.status().state in {"replicating", "restoring"}
    finally:
        replication.stop()
        if server is not None:
            stop_process(server.process)


def test_retrying_restores_once_access_is_granted(moto_s3: MotoS3, tmp_path: Path) -> None:
    """Keys that may not read the bucket (yet) hold a good replica: the app waits,
    nothing is written, and once the keys are granted access the retry restores the
    replica rather than starting empty."""
    bucket = moto_s3.new_bucket()
    seed_db = tmp_path / "seed" / "todo.db"
    seed_db.parent.mkdir()
    seeding = Replication(s3_config(moto_s3, bucket, tmp_path), seed_db)
    seeding.start()
    _seed(seed_db, seeding, 75)
    before = moto_s3.keys(bucket)

    user, key_id, secret = moto_s3.new_user()
    db = tmp_path / "todo.db"
    waiting = Replication(
        s3_config(
            moto_s3, bucket, tmp_path, aws_access_key_id=key_id, aws_secret_access_key=secret
        ),
        db,
    )
    waiting.start()
    try:
        assert waiting.wait_decided(15)
        status = waiting.status()
        assert status.state == "unreadable" and not status.database_ready
        assert status.restore and status.restore["code"] == "access_denied"
        assert not waiting.wait_ready(1.0) and not db.exists()
        assert moto_s3.keys(bucket) == before

        moto_s3.allow_everything(user)
        assert waiting.wait_ready(20), waiting.status()
        result = waiting.restore_result
        assert result is not None and result.outcome == "restored" and result.rows == 75
        assert len(rows(db)) == 75
    finally:
        waiting.stop()


def test_doctor_reports_why_it_cannot_read(moto_s3: MotoS3, tmp_path: Path, hung_port: int) -> None:
    bucket = moto_s3.new_bucket()
    bad = doctor_check(s3_config(moto_s3, bucket, tmp_path, aws_secret_access_key="wrong"), 5)
    assert bad.status == "unreadable" and bad.code == "bad_secret"
    start = time.monotonic()
    hung = doctor_check(
        s3_config(
            moto_s3,
            bucket,
            tmp_path,
            url=moto_s3.url(bucket, endpoint=f"http://127.0.0.1:{hung_port}"),
        ),
        timeout=1.5,
    )
    assert hung.status == "unreadable" and hung.code == "timeout"
    assert time.monotonic() - start < 1.5 + 8
    invalid = doctor_check(config_for("s3://b/x?bogus=1", tmp_path))
    assert invalid.status == "invalid" and "bogus" in (invalid.reason or "")
    assert moto_s3.keys(bucket) == []


@pytest.mark.slow
@pytest.mark.parametrize("n", [10_000, 100_000])
def test_restore_time(
    n: int, moto_s3: MotoS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restore figures for the README (not a pass/fail timing beyond a wide bound)."""
    bucket = moto_s3.new_bucket()
    targets = {
        "file": config_for(f"file://{tmp_path}/replica", tmp_path),
        "s3": s3_config(moto_s3, bucket, tmp_path),
    }
    for kind, config in targets.items():
        db = tmp_path / f"src-{kind}" / "todo.db"
        db.parent.mkdir()
        replication = Replication(config, db)
        replication.start()
        assert replication.wait_ready(30)
        conn = connect(db)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO task (title, at) VALUES (?, ?)",
            ((f"task number {i} with a typical title", time.time()) for i in range(n)),
        )
        conn.execute("COMMIT")
        conn.close()
        replication.stop()
        wiped = tmp_path / f"wiped-{kind}" / "todo.db"
        wiped.parent.mkdir()
        result = restore_database(config, wiped, litestream())
        assert result.outcome == "restored" and result.rows == n
        with capsys.disabled():
            print(f"\nrestore {n} rows / {result.bytes} bytes from {kind}: {result.duration_ms} ms")
        assert result.duration_ms < 120_000
