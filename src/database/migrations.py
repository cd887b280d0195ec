"""Schema migrations (Alembic), safe when several workers start at once, and never run
over tables this version did not create (src.database.schema)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from src.config.settings import APP_DIR
from src.database.schema import VERSION_TABLE, SchemaState, inspect_schema, refuse

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_DIR = APP_DIR / "alembic"
# The newest revision under alembic/versions (tests/test_migrations.py checks that it is
# Alembic's head, so a new migration cannot leave it behind). A database already there
# needs neither Alembic nor its script directory at start-up: 100-250 ms of every start.
HEAD_REVISION = "0001"
# Any constant works; it only has to be the same in every worker.
_PG_LOCK_KEY = 7_860_001
_MYSQL_LOCK_NAME = "todo_backend_migrations"
_MYSQL_LOCK_WAIT_SECONDS = 120

logger = logging.getLogger(__name__)


# Alembic is imported where it is used: it costs ~90 ms at import, and migrations run
# in the background after the server already answers.


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def check_schema(connection: Connection) -> SchemaState:
    """Raise SchemaConflict unless migrating this database to head is safe."""
    state = inspect_schema(connection, known_revisions())
    conflict = refuse(state, head_revision())
    if conflict is not None:
        raise conflict
    return state


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold a database-wide lock for the duration of a migration, then commit.

    PostgreSQL: a transaction-level advisory lock. MySQL: a named lock (its DDL commits
    implicitly, so a transaction could not hold it). SQLite: the transaction itself is
    begun with BEGIN IMMEDIATE (see the engine's begin hook), which excludes other writers.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
    elif dialect in ("mysql", "mariadb"):
        got = connection.exec_driver_sql(
            f"SELECT GET_LOCK('{_MYSQL_LOCK_NAME}', {_MYSQL_LOCK_WAIT_SECONDS})"
        ).scalar()
        if got != 1:
            raise TimeoutError("another worker held the migration lock for too long")
    else:
        connection.exec_driver_sql("SELECT 1")  # begins the IMMEDIATE transaction now
    try:
        yield
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        if dialect in ("mysql", "mariadb"):
            connection.exec_driver_sql(f"SELECT RELEASE_LOCK('{_MYSQL_LOCK_NAME}')")
            connection.commit()


def at_head(connection: Connection) -> bool:
    """Whether the database's only revision is HEAD_REVISION (read, nothing written)."""
    try:
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return False
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        rows = connection.execute(sa.select(version.c.version_num)).all()
    finally:
        connection.rollback()
    return [str(row[0]) for row in rows] == [HEAD_REVISION]


@dataclass(frozen=True)
class Upgrade:
    """The revision a database was at before a migration, and the one it is at after."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade(engine: Engine) -> Upgrade:
    """Apply every pending migration; says what changed (`python -m src migrate` reports
    "already at the newest revision" rather than "migrated" when nothing did).

    Raises SchemaConflict (nothing written) when the database holds tables of another
    layout or a revision this version does not know.
    """
    with engine.connect() as connection:
        if at_head(connection):
            return Upgrade(HEAD_REVISION, HEAD_REVISION)
    from alembic import command

    with engine.connect() as connection:
        with migration_lock(connection):
            check_schema(connection)
            config = alembic_config()
            config.attributes["connection"] = connection
            before = current_revision(connection)
            command.upgrade(config, "head")
            after = current_revision(connection)
        if before != after:
            logger.info("Database migrated from %s to %s", before or "empty", after)
        return Upgrade(before, after)


def upgrade_to_head(engine: Engine) -> str | None:
    """`upgrade`, for callers that need only the revision the database is now at."""
    return upgrade(engine).after
