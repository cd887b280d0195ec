"""Upserting tasks into a database: idempotent by id, the newest `updated_at` wins.

(Interim portable version; replaced by the batch upserts of the transfer commands.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from src.models.task import Task

_TASKS: sa.Table = Task.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_tasks(conn: Connection, records: list[dict[str, Any]]) -> UpsertCounts:
    inserted = updated = unchanged = 0
    for record in records:
        current = conn.execute(
            sa.select(_TASKS.c.updated_at).where(_TASKS.c.id == record["id"])
        ).first()
        if current is None:
            conn.execute(_TASKS.insert().values(**record))
            inserted += 1
        elif record["updated_at"] > current[0]:
            conn.execute(_TASKS.update().where(_TASKS.c.id == record["id"]).values(**record))
            updated += 1
        else:
            unchanged += 1
    return UpsertCounts(inserted, updated, unchanged)
