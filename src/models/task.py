"""The task table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

TITLE_MAX = 255
DESCRIPTION_MAX = 10_000
USER_ID_MAX = 255


class TaskStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds on every backend, returned timezone-aware.

    SQLite and MySQL DATETIME have no time zone; storing UTC everywhere and attaching
    the offset on the way out gives identical results on all three databases.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_user_created", "user_id", "created_at"),
        sa.Index("ix_tasks_user_status_created", "user_id", "status", "created_at"),
        # The migration picks an exact, no-pad collation for the server it runs on.
        {"mysql_charset": "utf8mb4"},
    )

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(max_length=USER_ID_MAX)
    title: str = Field(max_length=TITLE_MAX)
    description: str | None = Field(default=None, sa_type=sa.Text)
    status: str = Field(default=TaskStatus.PENDING.value, max_length=16)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


tasks_table: sa.Table = Task.__table__  # type: ignore[attr-defined]


class TaskRecord(NamedTuple):
    """One task as stored: a row of `tasks_table`, its columns in this order."""

    id: str
    title: str
    description: str | None
    status: str
    user_id: str
    created_at: datetime
    updated_at: datetime


# The table's columns in TaskRecord's order, for selecting rows that become records.
RECORD_COLUMNS = tuple(tasks_table.c[name] for name in TaskRecord._fields)
