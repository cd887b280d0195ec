"""The databases `export`, `import` and `copy` work on, opened with the app's own rules.

"The configured database" is the primary when `DATABASE_URL` (or the PG* variables) is
set — and only the primary: when it cannot be used the command fails, because the
SQLite fallback would hold other data. Otherwise it is the SQLite file the app uses
(`locate_for`). A URL given on the command line goes through the same resolver (pasted
values repaired, errors as sentences). Nothing printed here contains a password.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from src.config.settings import Settings
from src.core.redaction import redactor
from src.database.engine import create_database_engine
from src.database.failures import classify
from src.database.migrations import upgrade_to_head
from src.database.probe import call_with_deadline, check_connection
from src.database.resolver import resolve_database_url
from src.database.sqlite_locator import locate_for

# Exit codes shared by the data commands.
EXIT_FAILURE = 1
EXIT_USAGE = 2
_PRIMARY = "the primary database"


class CommandError(Exception):
    """Ends a command: `str()` is the sentence to print, `exit_code` 1 or 2."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Database:
    engine: Engine
    url: URL
    label: str  # for sentences: "the primary database (postgresql+psycopg://***@host/db)"
    on_space: bool = False
    primary: bool = False
    source: str = "DATABASE_URL"  # where the URL came from: a variable or --from/--to

    def failure(self, exc: BaseException) -> str:
        """What went wrong, with no secret in it, ending in a full stop."""
        text = classify(exc, self.url, on_space=self.on_space, source=self.source).describe()
        return text if text.endswith(".") else text + "."

    @property
    def sqlite_file(self) -> Path | None:
        if self.url.get_backend_name() != "sqlite" or not self.url.database:
            return None
        return Path(self.url.database).absolute()


def configured_database(settings: Settings, *, reading: bool) -> Database:
    """The database the app is configured to use; `reading`: it must already exist."""
    raw, source = settings.primary_url_input
    redactor.add(*settings.secret_values)
    resolution = resolve_database_url(raw, source=source)
    if resolution.present:
        return _from_resolution(raw, source, settings, reading, _PRIMARY)
    location = locate_for(settings)
    if location.path is None:
        raise CommandError(
            f"{source} is not set and the app has no SQLite file ({location.persistence_note}); "
            f"set {source} or SQLITE_PATH to the database to use."
        )
    if settings.sqlite_replica_url and not location.path.exists():
        # A file created here would count as existing at the server's next start, which
        # would then replicate it over the replica instead of restoring from it.
        raise CommandError(
            f"{location.path} does not exist yet and SQLITE_REPLICA_URL is set: start the "
            "server first, which restores the database from the replica, then run this "
            "command again (while it runs, or after it stopped)."
        )
    database = _open(location.url, None, settings, f"the app's SQLite database {location.path}")
    if reading:
        _require_file(
            database,
            "the app has not stored anything there yet; set SQLITE_PATH or "
            f"{source} to the database that holds the tasks",
        )
    return database


def database_at(raw: str, option: str, settings: Settings, *, reading: bool) -> Database:
    """The database at a URL given as `option` (e.g. "--to")."""
    redactor.add(*settings.secret_values)
    return _from_resolution(raw, option, settings, reading, f"the {option} database")


def _from_resolution(
    raw: str | None, source: str, settings: Settings, reading: bool, role: str
) -> Database:
    resolution = resolve_database_url(raw, source=source)
    redactor.add(*resolution.secrets())
    redactor.add_username(*resolution.usernames())
    if not resolution.present:
        raise CommandError(f"{source} is empty; give a database URL.", EXIT_USAGE)
    if not resolution.ok or resolution.url is None:
        errors = " ".join(resolution.errors)
        message = f"{source} is not usable: {errors}"
        if role == _PRIMARY:
            message += " (This command does not fall back to SQLite, which holds other data.)"
        raise CommandError(message, EXIT_USAGE)
    for repair in resolution.repairs:
        print(f"Note ({source}): {repair}", file=sys.stderr)
    url = resolution.url
    if url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    ):
        raise CommandError(
            f"{source} is an in-memory SQLite database, which vanishes when this command "
            "ends; give a file (sqlite:////absolute/path.db).",
            EXIT_USAGE,
        )
    label = f"{role} ({resolution.masked_url()})"
    database = _open(
        url, resolution.mysql_ssl_mode, settings, label, primary=role == _PRIMARY, source=source
    )
    if reading:
        _require_file(database, f"check the path in {source}")
    return database


def _open(
    url: URL,
    ssl_mode: str | None,
    settings: Settings,
    label: str,
    *,
    primary: bool = False,
    source: str = "DATABASE_URL",
) -> Database:
    engine = create_database_engine(url, settings, mysql_ssl_mode=ssl_mode)
    return Database(engine, url, label, settings.on_space, primary, source)


def _require_file(database: Database, advice: str) -> None:
    path = database.sqlite_file
    if path is not None and not path.is_file():
        database.engine.dispose()
        raise CommandError(f"There is no SQLite database at {path}: {advice}.")


@contextlib.contextmanager
def opened(database: Database) -> Iterator[Database]:
    """Disposes of the engine (its pool, its watchdog) when the command is done."""
    try:
        yield database
    finally:
        database.engine.dispose()


def connect(database: Database, settings: Settings) -> None:
    """Fail with a sentence unless a connection works within the connect timeout."""
    try:
        call_with_deadline(
            lambda: check_connection(database.engine), settings.database_connect_timeout + 1.0
        )
    except Exception as exc:
        message = f"Cannot connect to {database.label}: {database.failure(exc)}"
        if database.primary:
            # The server would start on SQLite; a data command there would see other data.
            message += " (This command does not fall back to SQLite, which holds other data.)"
        raise CommandError(message) from exc


def require_tasks(database: Database) -> None:
    """A source must have the tasks table: an empty export of a wrong database helps no one."""
    try:
        present = sa.inspect(database.engine).has_table("tasks")
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(f"Cannot read {database.label}: {database.failure(exc)}") from exc
    if not present:
        moved = _handed_over_at(database)
        if moved is not None:
            raise CommandError(
                f"{database.label} holds no tasks: it stood in for the configured database "
                f"while that was unreachable, and its tasks were moved there at {moved}."
            )
        raise CommandError(
            f"{database.label} has no tasks table: the app has never run on it. "
            "Check that this is the right database (`python -m src migrate` creates the table)."
        )


def _handed_over_at(database: Database) -> str | None:
    if database.url.get_backend_name() != "sqlite":
        return None
    from src.database.promotion import handed_over_at  # only for a SQLite source

    try:
        return handed_over_at(database.engine)
    except sa.exc.SQLAlchemyError:
        return None


def migrate(database: Database) -> None:
    try:
        upgrade_to_head(database.engine)
    except Exception as exc:
        raise CommandError(
            f"Cannot prepare the tasks table in {database.label}: {database.failure(exc)}"
        ) from exc


def same_database(one: Database, other: Database) -> bool:
    """Whether two connected databases are the same one (however each URL spells it)."""
    backend = one.url.get_backend_name()
    if backend != other.url.get_backend_name():
        return False
    if backend == "sqlite":
        a, b = one.sqlite_file, other.sqlite_file
        if a is None or b is None:
            return False
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    return _server_identity(one.engine) == _server_identity(other.engine)


def _server_identity(engine: Engine) -> tuple[object, ...]:
    # The server's start time (PostgreSQL) or host, port and data directory (MySQL), with
    # the database: true for one database whichever host name, proxy or pooler leads to it.
    if engine.dialect.name == "postgresql":
        query = "SELECT current_database(), pg_postmaster_start_time()"
    else:
        query = "SELECT DATABASE(), @@hostname, @@port, @@datadir"
    with engine.connect() as connection:
        return tuple(connection.exec_driver_sql(query).one())
