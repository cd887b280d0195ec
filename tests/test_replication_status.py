"""What the status says, from Litestream's own log lines (copied from a real 0.5.17 run)
and from the status file every worker reads."""

from __future__ import annotations

from pathlib import Path

from src.core.redaction import redactor
from src.replication.status import StatusFile, from_record, stall_after
from src.replication.sync_log import SyncTracker

# Real lines from `litestream replicate` (JSON logging, debug level).
BEHIND = (
    '{"time":"2026-12-01T22:44:02.699913313Z","level":"DEBUG","msg":"replica sync",'
    '"system":"store","db":"todo.db","replica":"file","txid":{"replica":"0000000000000002",'
    '"db":"0000000000000003"}}'
)
UPLOADED = (
    '{"time":"2026-12-01T22:44:02.704955688Z","level":"DEBUG","msg":"ltx file uploaded",'
    '"system":"store","db":"todo.db","replica":"file","level":0,"minTXID":"0000000000000003",'
    '"maxTXID":"0000000000000003","size":235}'
)
CAUGHT_UP = (
    '{"time":"2026-12-01T22:44:02.805882097Z","level":"DEBUG","msg":"replica sync",'
    '"system":"store","db":"todo.db","replica":"file","txid":{"replica":"0000000000000003",'
    '"db":"0000000000000003"}}'
)
DB_SYNC = (
    '{"time":"2026-12-01T22:41:02.5325636Z","level":"DEBUG","msg":"db sync","system":"store",'
    '"db":"todo.db","status":"ok"}'
)
MONITOR_ERROR = (
    '{"time":"2026-12-01T22:50:00Z","level":"ERROR","msg":"monitor error","db":"todo.db",'
    '"replica":"s3","error":"calc pos: operation error S3: ListObjectsV2, https response '
    "error StatusCode: 403, RequestID: 7NMRbDMc, HostID: 9Gjj=, api error AccessDenied: "
    'Access Denied key=hunter2-secret-value","consecutive_errors":1}'
)


def test_a_sync_counts_from_when_it_started_once_its_uploads_completed() -> None:
    tracker = SyncTracker()
    tracker.feed(DB_SYNC, now=99.0)
    assert tracker.watching.is_set()
    tracker.feed(BEHIND, now=100.0)
    assert tracker.snapshot().last_sync_at is None
    tracker.feed(UPLOADED, now=100.2)
    assert tracker.snapshot().last_sync_at == 100.0  # what was local at 100.0 is uploaded
    tracker.feed(CAUGHT_UP, now=101.0)
    snap = tracker.snapshot()
    assert snap.last_sync_at == 101.0 and snap.replica_txid == snap.db_txid == 3


def test_an_error_line_is_sanitised_and_marks_failing_until_a_sync_works() -> None:
    redactor.add("hunter2-secret-value")
    tracker = SyncTracker()
    tracker.feed(MONITOR_ERROR, now=10.0)
    snap = tracker.snapshot()
    assert snap.failing and snap.last_error
    assert "hunter2" not in snap.last_error and "RequestID" not in snap.last_error
    assert "AccessDenied" in snap.last_error
    tracker.feed(CAUGHT_UP, now=11.0)
    assert not tracker.snapshot().failing
    tracker.feed(b"panic: runtime error: invalid memory address\n", now=12.0)
    assert tracker.snapshot().failing


def test_a_replicator_without_a_recent_sync_is_reported_as_failing(tmp_path: Path) -> None:
    record = {
        "format": 1,
        "state": "replicating",
        "replica_url": "s3://b/db",
        "last_sync_at": 1000.0,
        "sync_interval": 1.0,
        "database_ready": True,
        "restore": {"outcome": "restored", "duration_ms": 12},
    }
    fresh = from_record(record, "follower", now=1000.5)
    assert fresh is not None and fresh.state == "replicating" and fresh.lag_seconds == 0.5
    assert fresh.last_sync_at == "1970-01-01T00:16:40.000+00:00"
    stale = from_record(record, "follower", now=1000.0 + stall_after(1.0) + 1)
    assert stale is not None and stale.state == "error"
    assert stale.last_error and "no sync" in stale.last_error
    # The leader's own threshold, when it writes one, is every worker's; the stall is
    # named first, before an earlier error that may be long over.
    record = {**record, "stall_after": 5.0, "last_error": "Litestream exited with code -9"}
    fresh = from_record(record, "follower", now=1004.0)
    assert fresh is not None and fresh.state == "replicating"
    stale = from_record(record, "follower", now=1006.0)
    assert stale is not None and stale.state == "error"
    assert stale.last_error == (
        "the replica has confirmed no sync for 6 s (endpoint unreachable or not answering?); "
        "last error: Litestream exited with code -9"
    )

    file = StatusFile(tmp_path / "status.json")
    assert file.read() is None
    file.write({"state": "restoring"})
    first = file.read()
    assert first == {"format": 1, "state": "restoring"}
    assert file.read() is first  # unchanged file: served from the cache
    file.write({"state": "replicating"})
    assert file.read() == {"format": 1, "state": "replicating"}
    assert not list(tmp_path.glob("status.json.*"))  # no temporary file left
