"""Moving the fallback's tasks into the primary, once the primary answers.

Idempotent by task id, the newest `updated_at` wins (src.database.transfer upserts), and
done under SQLite's write lock: the fallback's rows are read, upserted into the primary
batch by batch, then deleted from the fallback, all in one SQLite write transaction. Two
workers sharing the file therefore never move the same rows twice, writes to the
fallback wait meanwhile, and a failure half-way deletes nothing (the primary's upserts
are harmless to repeat).

A fallback file remembers which primary it stood in for (a fingerprint of backend, host,
port and database — never credentials), so that tasks left in it by an earlier run are
moved into that primary at its next start, and a SQLite database that was never a
fallback is never emptied into a newly configured server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from src.database.transfer import DEFAULT_BATCH_SIZE, upsert_tasks
from src.models.task import TaskRecord, tasks_table

_MARKER = sa.Table(
    "todo_fallback_for",
    sa.MetaData(),
    sa.Column("primary_fingerprint", sa.String(64), primary_key=True),
    sa.Column("since", sa.String(40), nullable=False),
)
_TASKS = tasks_table
_COLUMNS = tuple(_TASKS.c[name] for name in TaskRecord._fields)


@dataclass(frozen=True)
class PromotionReport:
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    kept_newer: int = 0  # the primary's copy was as new or newer
    conflicts: int = 0  # ids another user owns in the primary: left in the fallback

    def describe(self) -> str:
        text = (
            f"moved {self.seen - self.conflicts} task(s) from the SQLite fallback into the "
            f"primary ({self.inserted} new, {self.updated} updated, {self.kept_newer} already "
            "as new in the primary)"
        )
        if self.conflicts:
            text += (
                f"; {self.conflicts} task(s) stayed in the fallback because their ids belong "
                "to another user in the primary"
            )
        return text


def fingerprint(url: URL) -> str:
    identity = f"{url.get_backend_name()}|{url.host or ''}|{url.port or ''}|{url.database or ''}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def mark_fallback_for(engine: Engine, primary: URL) -> None:
    """Record in the fallback file which primary it stands in for."""
    with engine.begin() as connection:
        _MARKER.create(connection, checkfirst=True)
        key = fingerprint(primary)
        exists = connection.execute(
            sa.select(_MARKER.c.primary_fingerprint).where(_MARKER.c.primary_fingerprint == key)
        ).first()
        if exists is None:
            connection.execute(
                _MARKER.insert().values(
                    primary_fingerprint=key, since=datetime.now(UTC).isoformat()
                )
            )


def move_tasks(
    fallback: Engine, primary: Engine, *, only_for: URL | None = None
) -> PromotionReport:
    """Upsert every task of `fallback` into `primary`, then delete them from `fallback`.

    With `only_for`, nothing happens unless `fallback` was marked as standing in for
    that primary. Raises what the databases raise (nothing is deleted then).
    """
    with fallback.connect() as source, source.begin():  # BEGIN IMMEDIATE: the write lock
        if not sa.inspect(source).has_table(_TASKS.name):
            return PromotionReport()
        if only_for is not None and not _marked_for(source, only_for):
            return PromotionReport()
        report, conflicts = _copy(source, primary)
        if conflicts:
            source.execute(_TASKS.delete().where(_TASKS.c.id.not_in(conflicts)))
        else:
            source.execute(_TASKS.delete())
            if sa.inspect(source).has_table(_MARKER.name):
                source.execute(_MARKER.delete())
        return report


def _marked_for(source: Connection, primary: URL) -> bool:
    if not sa.inspect(source).has_table(_MARKER.name):
        return False
    key = fingerprint(primary)
    row = source.execute(
        sa.select(_MARKER.c.primary_fingerprint).where(_MARKER.c.primary_fingerprint == key)
    ).first()
    return row is not None


def _copy(source: Connection, primary: Engine) -> tuple[PromotionReport, list[str]]:
    seen = inserted = updated = kept = 0
    conflicts: list[str] = []
    rows = source.execute(sa.select(*_COLUMNS).order_by(_TASKS.c.id))
    while batch := [TaskRecord._make(row) for row in rows.fetchmany(DEFAULT_BATCH_SIZE)]:
        with primary.begin() as target:
            counts = upsert_tasks(target, batch)
        seen += len(batch)
        inserted += counts.inserted
        updated += counts.updated
        kept += counts.unchanged + counts.skipped
        conflicts += counts.conflict_ids
    return PromotionReport(seen, inserted, updated, kept, len(conflicts)), conflicts
