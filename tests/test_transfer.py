"""The transfer core (src.database.transfer) on the real servers: the merge rule (new,
newer, identical, older, another user's id), duplicates, whole batches, and reading in
id order; plus the JSON Lines format round-tripping every field exactly.

Helpers here (`make_tasks`, `backend_engine`, `stored_tasks`, `seed`) are shared with
tests/test_transfer_cli.py.
"""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from src.database.engine import create_database_engine
from src.database.migrations import upgrade_to_head
from src.database.resolver import resolve_database_url
from src.database.task_upsert import write_tasks
from src.database.transfer import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    TransferFailed,
    TransferReport,
    copy_tasks,
    read_batches,
    upsert_tasks,
    write_batches,
)
from src.models.task import TaskRecord, tasks_table
from src.services.task_lines import encode_task, parse_task, read_tasks
from tests.conftest import BACKENDS, make_settings, mysql_url

USERS = ("alice", "bob@example.com", "Zoë 🌍 用户", "u-" + "x" * 253, "12345", "a b")
TITLES = (
    "Buy milk",
    "Écrire à Zoë — café ☕",
    "🎉🎂🥳 party",
    "日本語のタスク",
    "שלום עולם",
    'quotes " and \\ backslash',
    "e\u0301 combining",
    "T" * 255,
)
DESCRIPTIONS = (None, None, "", "line one\r\nline two\ttab", "emoji 👩‍👩‍👧‍👦 family", "D" * 10_000)
BASE = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def make_tasks(count: int, *, seed: int = 7) -> list[TaskRecord]:
    """`count` varied tasks (several users, unicode, null and long descriptions, distinct
    microseconds), deterministic for a seed."""
    rnd = random.Random(seed)
    tasks = []
    for i in range(count):
        created = BASE + timedelta(seconds=rnd.randrange(10**7), microseconds=rnd.randrange(10**6))
        updated = created + timedelta(microseconds=rnd.choice((0, 1, rnd.randrange(10**11))))
        description = DESCRIPTIONS[i % 5] if i % 997 else DESCRIPTIONS[5]
        tasks.append(
            TaskRecord(
                id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                title=f"{TITLES[i % len(TITLES)][:240]} {i}" if i % 8 else TITLES[7],
                description=description,
                status=rnd.choice(("pending", "completed")),
                user_id=USERS[i % len(USERS)],
                created_at=created,
                updated_at=updated,
            )
        )
    return tasks


def engine_for(url: str, tmp_path: Path) -> Engine:
    resolution = resolve_database_url(url)
    assert resolution.ok and resolution.url is not None, resolution.errors
    engine = create_database_engine(
        resolution.url, make_settings(tmp_path), mysql_ssl_mode=resolution.mysql_ssl_mode
    )
    upgrade_to_head(engine)
    return engine


def backend_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path, name: str) -> str:
    """A fresh, empty database of `backend` (fixtures give one per test of each server)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return mysql_url(request.getfixturevalue("mysql_database"))


def seed(engine: Engine, tasks: list[TaskRecord]) -> None:
    """Bulk insert, independently of the code under test."""
    with engine.begin() as connection:
        connection.execute(sa.insert(tasks_table), [task._asdict() for task in tasks])


def stored_tasks(engine: Engine) -> list[TaskRecord]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*(tasks_table.c[f] for f in TaskRecord._fields)))
        return sorted((TaskRecord._make(row) for row in rows), key=lambda task: task.id)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(backend_url(request, request.param, tmp_path, "target"), tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(f"sqlite:///{tmp_path / 'source.db'}", tmp_path)
    yield engine
    engine.dispose()


def _later(task: TaskRecord, microseconds: int = 1, **changes: str) -> TaskRecord:
    return task._replace(
        updated_at=task.updated_at + timedelta(microseconds=microseconds), **changes
    )


def test_merge_rule_newest_wins_both_ways(source: Engine, target: Engine) -> None:
    older, newer, same, tie, mine, theirs, fresh = make_tasks(7)
    seed(source, [_later(older, title="newer in source"), newer, same, tie, mine, fresh])
    seed(
        target,
        [
            older,
            _later(newer, 1, title="newer in target"),
            same,
            tie._replace(title="same instant, other text"),
            mine._replace(user_id="mallory"),
            theirs,
        ],
    )
    report = copy_tasks(source, target)
    assert (report.read, report.inserted, report.updated) == (6, 1, 1)
    assert (report.unchanged, report.skipped, report.conflicts) == (1, 2, 1)
    assert report.conflict_ids == [mine.id]
    in_target = {task.id: task for task in stored_tasks(target)}
    assert in_target[older.id].title == "newer in source"
    assert in_target[newer.id].title == "newer in target"
    assert in_target[tie.id].title == "same instant, other text"
    assert in_target[mine.id].user_id == "mallory"  # never moved to another user
    assert in_target[fresh.id] == fresh
    assert len(in_target) == 7

    # And back: the source ends up with the newest of each, the conflict still refused.
    back = copy_tasks(target, source)
    assert (back.inserted, back.updated, back.conflicts) == (1, 1, 1)
    in_source = {task.id: task for task in stored_tasks(source)}
    assert in_source[newer.id].title == "newer in target"
    assert in_source[theirs.id] == theirs
    again = copy_tasks(source, target)
    assert again.inserted == again.updated == 0


def test_duplicates_within_a_batch_newest_wins_in_either_order(target: Engine) -> None:
    a, b = make_tasks(2)
    a_newer, b_newer = _later(a, 5, title="a newer"), _later(b, 5, title="b newer")
    with target.begin() as connection:
        counts = upsert_tasks(connection, [a, a_newer, b_newer, b, b_newer])
    assert counts.inserted == 2 and counts.updated == 1
    assert counts.unchanged == 1 and counts.skipped == 1
    assert stored_tasks(target) == sorted([a_newer, b_newer], key=lambda t: t.id)


def test_the_upsert_statement_itself_enforces_the_rule(target: Engine) -> None:
    """What guards a row changed by another writer between the read and the write."""
    older, newer, theirs = make_tasks(3)
    seed(target, [older, _later(newer, 9, title="newest"), theirs])
    incoming = [
        _later(older, 1, title="replaces"),
        _later(newer, 9, title="same instant"),
        _later(theirs, 1, user_id="mallory", title="hijack"),
    ]
    with target.begin() as connection:
        write_tasks(connection, incoming)
    stored = {task.id: task for task in stored_tasks(target)}
    assert stored[older.id] == incoming[0]
    assert stored[newer.id].title == "newest"
    assert stored[theirs.id] == theirs


def test_a_failing_batch_writes_nothing_of_itself(target: Engine) -> None:
    tasks = make_tasks(25)
    # NOT NULL refuses it on every backend, in the middle of the second batch.
    bad = tasks[17]._replace(title=None)  # type: ignore[arg-type]
    batches = [tasks[0:10], [*tasks[10:17], bad, *tasks[18:20]], tasks[20:]]
    with pytest.raises(TransferFailed) as failed:
        write_batches(target, batches)
    assert failed.value.side == "target"
    assert failed.value.report.read == 10
    assert stored_tasks(target) == sorted(tasks[:10], key=lambda t: t.id)
    # Run again without the bad row: finishes, nothing duplicated.
    batches[1][7] = tasks[17]
    report = write_batches(target, batches)
    assert (report.inserted, report.unchanged) == (15, 10)
    assert stored_tasks(target) == sorted(tasks, key=lambda t: t.id)


def test_reads_every_task_in_id_order_in_batches(target: Engine) -> None:
    tasks = make_tasks(1003)
    seed(target, tasks)
    batches = list(read_batches(target, 100))
    assert [len(batch) for batch in batches] == [100] * 10 + [3]
    ids = [task.id for batch in batches for task in batch]
    assert ids == sorted(task.id for task in tasks)
    resumed = list(read_batches(target, 500, after_id=ids[499]))
    assert [task.id for batch in resumed for task in batch] == ids[500:]
    with pytest.raises(ValueError):
        read_batches(target, 0)


def test_the_command_line_limits_are_the_cores() -> None:
    from src.cli import main

    assert (main._DEFAULT_BATCH, main._MAX_BATCH) == (DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE)


def test_progress_reports_every_batch(source: Engine, tmp_path: Path) -> None:
    seed(source, make_tasks(250))
    other = engine_for(f"sqlite:///{tmp_path / 'other.db'}", tmp_path)
    seen: list[int] = []
    report = copy_tasks(source, other, batch_size=100, on_progress=lambda r: seen.append(r.read))
    assert seen == [100, 200, 250]
    assert isinstance(report, TransferReport) and report.batches == 3
    assert report.last_id == max(task.id for task in make_tasks(250))
    other.dispose()


# -- the JSON Lines format ------------------------------------------------------


def test_lines_round_trip_every_field_exactly() -> None:
    tasks = make_tasks(500)
    data = b"".join(encode_task(task) for task in tasks)
    back = list(read_tasks(io.BytesIO(data)))
    assert back == tasks
    line = encode_task(tasks[0]).decode()
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert '"created_at":"2025-' in line and "+00:00" in line


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))


@settings(max_examples=200, deadline=None)
@given(
    title=_text.map(lambda s: s.strip()).filter(lambda s: 0 < len(s) <= 255 and s == s.strip()),
    description=st.none() | _text.filter(lambda s: len(s) <= 10_000),
    micro=st.integers(0, 10**15),
)
def test_any_valid_task_survives_a_line(title: str, description: str | None, micro: int) -> None:
    task = make_tasks(1)[0]
    task = task._replace(
        title=title,
        description=description,
        updated_at=task.created_at + timedelta(microseconds=micro),
    )
    # (str.strip removes a superset of the White_Space the API trims: nothing left to trim.)
    assert parse_task(encode_task(task).rstrip(b"\n"), 1) == task


def test_offsets_are_converted_and_ids_lower_cased() -> None:
    line = (
        b'{"id":"0F8FAD5B-D9CB-469F-A165-70867728950E","title":"  t  ","completed":true,'
        b'"user_id":"u","created_at":"2025-01-01T05:30:00.000001+05:30",'
        b'"updated_at":"2025-01-01T00:00:00.000002Z"}'
    )
    task = parse_task(line, 4)
    assert task.id == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert task.title == "t" and task.status == "completed" and task.description is None
    assert task.created_at == datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert task.created_at.utcoffset() == timedelta(0)
