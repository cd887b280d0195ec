"""Which SQLite file stands in for a configured primary, and the marks that say so.

The app's SQLite file is the natural place for a fallback — unless it holds tasks of its
own: written while no `DATABASE_URL` was set (a database used on purpose), or while it
stood in for another primary. The switch-over moves every task of the fallback into the
primary, so such a file must never stand in for it: a developer's local tasks would land
in production because its URL was mistyped once. The fallback then gets a file of its own
beside it, named for the primary (`<stem>-fallback-<fingerprint><suffix>`), and with a
replica configured, a replica path of its own beside the configured one.

A fallback file is marked with the primary it stands in for (a fingerprint of backend,
host, port and database — never credentials); only a file marked for a primary is moved
into it at that primary's next start. Used as the app's own database again (no
`DATABASE_URL`), a file loses its marks: its tasks are its own from then on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from src.database.sqlite_locator import SqliteLocation

MARKER = sa.Table(
    "todo_fallback_for",
    sa.MetaData(),
    sa.Column("primary_fingerprint", sa.String(64), primary_key=True),
    sa.Column("since", sa.String(40), nullable=False),
)
# Tasks deleted while the file stands in for a primary: the move deletes them there too
# (a copy may be there already: a move that failed at its very end, a crash between its
# two commits), unless the primary's copy changed after the delete.
TOMBSTONES = sa.Table(
    "todo_fallback_deleted",
    sa.MetaData(),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("deleted_at", sa.String(40), nullable=False),
)
_TOMBSTONE_TRIGGER = "todo_fallback_task_deleted"
_CREATE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS todo_fallback_task_deleted AFTER DELETE ON tasks BEGIN
  INSERT OR REPLACE INTO todo_fallback_deleted (id, user_id, deleted_at)
  VALUES (old.id, old.user_id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END
"""
_TASKS = "tasks"


def fingerprint(url: URL) -> str:
    identity = f"{url.get_backend_name()}|{url.host or ''}|{url.port or ''}|{url.database or ''}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def sibling_suffix(primary: URL) -> str:
    """What names the files (and replica path) of `primary`'s own fallback."""
    return f"-fallback-{fingerprint(primary)[:12]}"


def fallback_location(location: SqliteLocation, primary: URL) -> SqliteLocation:
    """Where the fallback for `primary` lives: `location` when its file may stand in for
    `primary` (`may_stand_in`), else a file of its own beside it."""
    if location.path is None or may_stand_in(location.path, primary):
        return location
    own = own_file(location.path, primary)
    return dataclasses.replace(location, path=own, source=f"{location.source} (own fallback)")


def own_file(path: Path, primary: URL) -> Path:
    """The file of `primary`'s own fallback, beside the app's SQLite file `path`."""
    return path.with_name(f"{path.stem}{sibling_suffix(primary)}{path.suffix or '.db'}")


def may_stand_in(path: Path, primary: URL) -> bool:
    """Whether the SQLite file at `path` holds no tasks but `primary`'s: absent, without
    tasks, or marked for `primary` alone. Reads only; raises sqlite3.Error when the file
    cannot be read (the caller's open would fail the same way)."""
    if not path.exists():
        return True
    with closing(sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True)) as db:
        return _holds_only(db, primary)


def claim(engine: Engine, primary: URL) -> bool:
    """Mark the fallback file as standing in for `primary` alone; False (and nothing
    written) when it holds tasks that are not `primary`'s after all."""
    with engine.begin() as connection:  # BEGIN IMMEDIATE: nobody writes in between
        db: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
        if not _holds_only(db, primary):
            return False
        TOMBSTONES.create(connection, checkfirst=True)
        connection.exec_driver_sql(_CREATE_TRIGGER)
        if not recorded(connection, MARKER, primary):
            MARKER.create(connection, checkfirst=True)
            connection.execute(MARKER.delete())
            connection.execute(
                MARKER.insert().values(
                    primary_fingerprint=fingerprint(primary), since=datetime.now(UTC).isoformat()
                )
            )
        return True


def _holds_only(db: sqlite3.Connection, primary: URL) -> bool:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    if _TASKS not in tables or not db.execute("SELECT 1 FROM tasks LIMIT 1").fetchone():
        return True
    if MARKER.name not in tables:
        return False
    marks = {key for (key,) in db.execute("SELECT primary_fingerprint FROM todo_fallback_for")}
    return marks == {fingerprint(primary)}


def release(engine: Engine) -> int:
    """The file is the app's own database now: drop its marks. Returns how many tasks it
    holds that had been written in place of a primary (0 when it had no marks)."""
    with engine.begin() as connection:
        inspector = sa.inspect(connection)
        if not inspector.has_table(MARKER.name):
            return 0
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_TOMBSTONE_TRIGGER}")
        TOMBSTONES.drop(connection, checkfirst=True)
        marked = connection.execute(sa.select(sa.func.count()).select_from(MARKER)).scalar_one()
        connection.execute(MARKER.delete())
        if not marked or not inspector.has_table(_TASKS):
            return 0
        count = connection.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one()
        return int(count)


def recorded(connection: Connection, record: sa.Table, primary: URL) -> bool:
    """Whether `record` (a table keyed by primary fingerprints) names `primary`."""
    if not sa.inspect(connection).has_table(record.name):
        return False
    key = record.c.primary_fingerprint
    found = connection.execute(sa.select(key).where(key == fingerprint(primary))).first()
    return found is not None
