"""Moving tasks between databases: read in id order, batch by batch, and merge into a target,
idempotent by id with the newest `updated_at` winning.

The merge rule, for each incoming task:
* no task with that id in the target: inserted;
* the target's task belongs to another user: left alone and counted as a conflict (a
  transfer never moves a task between users);
* identical (every field): unchanged, nothing written;
* the incoming `updated_at` is strictly later: the target's row is replaced (updated);
* otherwise (the target's copy is as new or newer): left alone (skipped).
Duplicates within one batch follow the same rule, in order.

Each batch is one transaction in the target: a batch is written whole or not at all, so an
interrupted transfer leaves only complete rows, and running it again finishes the job
without duplicating anything. The write is the backend's native upsert with the rule in
its condition (`ON CONFLICT … DO UPDATE … WHERE` on PostgreSQL and SQLite, `ON DUPLICATE
KEY UPDATE` with conditional values on MySQL/MariaDB), so a row changed by someone else
between the read and the write is still never overwritten with something older; only
new and newer tasks are sent at all (the statements are in `src.database.task_upsert`).

Reading pages by id (keyset), each page on a short connection of its own: memory stays
at one batch, and no connection is held longer than a batch takes (PostgreSQL engines
sever connections held past the statement timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from src.core.plural import counted
from src.database.engine import SQLITE_WRITE
from src.database.task_upsert import existing_tasks, write_tasks
from src.models.task import TaskRecord, tasks_table

DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 5000
# How many conflicting ids a report keeps, to name them.
CONFLICT_IDS_KEPT = 10

_c = tasks_table.c
_COLUMNS = tuple(_c[name] for name in TaskRecord._fields)
_FIRST_PAGE = sa.select(*_COLUMNS).order_by(_c.id).limit(sa.bindparam("p_limit"))
_NEXT_PAGE = _FIRST_PAGE.where(_c.id > sa.bindparam("p_after", type_=sa.String))


class UpsertCounts(NamedTuple):
    """What happened to each of the records given to `upsert_tasks` (they sum to its length)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    conflicts: int = 0
    conflict_ids: tuple[str, ...] = ()


@dataclass
class TransferReport:
    """Running totals of a transfer; `last_id` is the last id committed (resume point),
    `conflict_ids` the first `CONFLICT_IDS_KEPT` ids left alone because another user owns
    them in the target."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    conflicts: int = 0
    batches: int = 0
    seconds: float = 0.0
    last_id: str | None = None
    conflict_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic, repr=False)

    def add(self, batch: Sequence[TaskRecord], counts: UpsertCounts) -> None:
        self.read += len(batch)
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.unchanged += counts.unchanged
        self.skipped += counts.skipped
        self.conflicts += counts.conflicts
        room = CONFLICT_IDS_KEPT - len(self.conflict_ids)
        self.conflict_ids.extend(counts.conflict_ids[: max(room, 0)])
        self.batches += 1
        self.last_id = batch[-1].id if batch else self.last_id
        self.seconds = time.monotonic() - self.started

    @property
    def written(self) -> int:
        return self.inserted + self.updated


class TransferFailed(Exception):
    """A batch could not be read (`side="source"`) or written (`side="target"`).

    Every batch before it is committed (`report`); the cause is chained (`__cause__`) and
    may carry credentials in its text: classify it with `src.database.failures.classify`
    before showing it.
    """

    def __init__(self, side: Literal["source", "target"], report: TransferReport) -> None:
        super().__init__(f"the {side} database failed after {counted(report.read, 'task')}")
        self.side = side
        self.report = report


def read_batches(
    engine: Engine, batch_size: int = DEFAULT_BATCH_SIZE, *, after_id: str | None = None
) -> Iterator[list[TaskRecord]]:
    """Every task with an id above `after_id` (all when None), in id order, `batch_size`
    at a time. Each page is read on its own short connection; iterating raises what the
    driver raised. ValueError (at once) for a batch size outside 1-`MAX_BATCH_SIZE`."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1-{MAX_BATCH_SIZE}")
    return _pages(engine, batch_size, after_id)


def _pages(engine: Engine, batch_size: int, after_id: str | None) -> Iterator[list[TaskRecord]]:
    while True:
        with engine.connect().execution_options(**{SQLITE_WRITE: False}) as connection:
            if after_id is None:
                result = connection.execute(_FIRST_PAGE, {"p_limit": batch_size})
            else:
                params = {"p_limit": batch_size, "p_after": after_id}
                result = connection.execute(_NEXT_PAGE, params)
            batch = [TaskRecord._make(row) for row in result]
        if not batch:
            return
        yield batch
        if len(batch) < batch_size:
            return
        after_id = batch[-1].id


def upsert_tasks(connection: Connection, records: Sequence[TaskRecord]) -> UpsertCounts:
    """Merge `records` into the tasks table by the rule above, in the caller's transaction.

    Timestamps must be timezone-aware. Two statements at most: one read of the ids
    present, one upsert of the new and newer tasks.
    """
    if not records:
        return UpsertCounts()
    existing = existing_tasks(connection, list({record.id: None for record in records}))
    counts = dict.fromkeys(("inserted", "updated", "unchanged", "skipped", "conflicts"), 0)
    pending: dict[str, TaskRecord] = {}
    conflict_ids: list[str] = []
    for record in records:
        current = pending.get(record.id) or existing.get(record.id)
        outcome = _outcome(current, record)
        counts[outcome] += 1
        if outcome in ("inserted", "updated"):
            pending[record.id] = record
        elif outcome == "conflicts":
            conflict_ids.append(record.id)
    write_tasks(connection, list(pending.values()))
    return UpsertCounts(**counts, conflict_ids=tuple(conflict_ids))


def _outcome(current: TaskRecord | None, incoming: TaskRecord) -> str:
    if current is None:
        return "inserted"
    if current.user_id != incoming.user_id:
        return "conflicts"
    if current == incoming:
        return "unchanged"
    return "updated" if incoming.updated_at > current.updated_at else "skipped"


def in_batches(records: Iterable[TaskRecord], size: int) -> Iterator[list[TaskRecord]]:
    """`records` as lists of `size` (the last may be shorter), read lazily."""
    batch: list[TaskRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_batches(
    target: Engine,
    batches: Iterable[Sequence[TaskRecord]],
    *,
    on_progress: Callable[[TransferReport], None] | None = None,
    report: TransferReport | None = None,
) -> TransferReport:
    """Upsert each batch into `target` in a transaction of its own; raises `TransferFailed`
    (side "source" when iterating `batches` failed, "target" when writing did)."""
    report = TransferReport() if report is None else report
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator, None)
        except Exception as exc:
            raise TransferFailed("source", report) from exc
        if batch is None:
            return report
        try:
            with target.begin() as connection:
                counts = upsert_tasks(connection, batch)
        except Exception as exc:
            raise TransferFailed("target", report) from exc
        report.add(batch, counts)
        if on_progress is not None:
            on_progress(report)


def copy_tasks(
    source: Engine,
    target: Engine,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[TransferReport], None] | None = None,
    after_id: str | None = None,
) -> TransferReport:
    """Copy every task of `source` into `target` (both migrated), batch by batch.

    Idempotent and resumable: running it again after an interruption writes only what is
    missing or newer. `after_id` starts after that id (`TransferReport.last_id` of an
    earlier run) to skip re-reading what was already copied. Raises `TransferFailed`.
    """
    return write_batches(
        target, read_batches(source, batch_size, after_id=after_id), on_progress=on_progress
    )
