"""Engines per backend. `create_engine` only ever receives a URL object the resolver accepted
(or the SQLite locator produced); nothing here parses strings.
"""

from __future__ import annotations

import math
import sqlite3
import ssl
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, create_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, QueuePool

from src.config.settings import APP_NAME, Settings
from src.database import liveness
from src.database.concurrency import SQLITE_WORKERS
from src.database.deadline import DeadlineWatchdog
from src.database.option_files import check_option_files, unreadable_contents

# Providers drop idle connections (Neon after 5 minutes, some proxies sooner); recycle first.
POOL_RECYCLE_SECONDS = 240
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A WAL file's checkpoints happen off the event loop: Litestream's, for a file it
# replicates, or src.database.checkpointer's thread for the file the app serves. SQLite's
# own auto-checkpoint at its default 1000 pages ran inside nearly every few-hundredth
# COMMIT, on the event loop; Litestream's documentation (docs/SQLITE_INTERNALS.md)
# suggests 10000: the connection's own checkpoint stays as a backstop.
WAL_AUTOCHECKPOINT_PAGES = 10000
# A file Litestream replicates is checkpointed by Litestream (0.5.17: PASSIVE from 1000
# WAL pages at each monitor tick, TRUNCATE from 121 359) while it holds a read transaction
# between its checkpoints, so a connection's own checkpoint can free nothing there and
# only lengthens the COMMIT that runs it — each COMMIT once the WAL is past the limit,
# which a create load crosses between two of Litestream's once-a-second checkpoints (12-15
# thousand pages a second here): creates with the replica on went from 0.85 to 0.97 of
# off with this backstop instead of 10000 (bench.replication, three A-B-B-A runs each).
# The backstop is Litestream's own TRUNCATE threshold: reached only when it is not running.
LITESTREAM_WAL_AUTOCHECKPOINT_PAGES = 121_359
# Execution option telling the SQLite begin hook to take the write lock up front.
SQLITE_WRITE = "todo_sqlite_write"


def create_database_engine(
    url: URL,
    settings: Settings,
    *,
    mysql_ssl_mode: str | None = None,
    probe: bool = False,
    litestream: bool = False,
) -> Engine:
    """The engine for `url`. `probe=True`: no pool (each connect is a fresh connection,
    closed after use), for telling whether the server answers at all. `litestream=True`:
    a SQLite file Litestream replicates (and so checkpoints)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings, litestream)
    if backend == "postgresql":
        return _postgresql_engine(url, settings, probe)
    if backend in ("mysql", "mariadb"):
        return _mysql_engine(url, settings, mysql_ssl_mode, probe)
    raise ValueError(f"unsupported backend {backend!r}")


def _server_pool_options(settings: Settings, probe: bool) -> dict[str, Any]:
    if probe:
        return {"poolclass": NullPool, "echo": settings.database_echo}
    return {
        # A dead pooled connection is found by src.database.liveness instead: a
        # pre-ping per checkout would double the round trips of every request.
        "pool_pre_ping": False,
        "pool_recycle": POOL_RECYCLE_SECONDS,
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        # Waiting for a pooled connection must not outlast a request's patience either.
        "pool_timeout": settings.database_connect_timeout,
        "echo": settings.database_echo,
    }


def postgresql_connect_args(url: URL, settings: Settings) -> dict[str, Any]:
    """psycopg's connection keywords: the URL's own win over these defaults."""
    query = url.query
    defaults: dict[str, Any] = {
        # libpq counts whole seconds and treats anything under 2 as 2.
        "connect_timeout": max(2, math.ceil(settings.database_connect_timeout)),
        "application_name": APP_NAME,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    connect_args = {k: v for k, v in defaults.items() if k not in query}
    # Transaction-mode poolers (Supabase :6543, Neon -pooler, PgBouncer) cannot keep
    # server-side prepared statements between transactions; never prepare.
    connect_args["prepare_threshold"] = None
    return connect_args


def server_pool_options(settings: Settings) -> dict[str, Any]:
    """The pool of a server database (for the asyncio engine too)."""
    return _server_pool_options(settings, probe=False)


def install_server_hooks(engine: Engine, settings: Settings, *, deadline: bool) -> None:
    """The events every pooled server connection goes through (on an asyncio engine, on
    its sync_engine)."""
    if deadline:
        # The watchdog first: it bounds the liveness ping too.
        DeadlineWatchdog(engine, settings.database_statement_timeout)
    liveness.install(engine)


def _postgresql_engine(url: URL, settings: Settings, probe: bool) -> Engine:
    connect_args = postgresql_connect_args(url, settings)
    engine = create_engine(url, connect_args=connect_args, **_server_pool_options(settings, probe))
    if not probe:
        install_server_hooks(engine, settings, deadline=True)
    return engine


def _mysql_engine(url: URL, settings: Settings, ssl_mode: str | None, probe: bool) -> Engine:
    query = url.query
    timeout = max(1, math.ceil(settings.database_connect_timeout))
    io_timeout = max(1, math.ceil(settings.database_statement_timeout))
    connect_args: dict[str, Any] = {
        k: v
        for k, v in {
            "connect_timeout": timeout,
            # PyMySQL reads the handshake with read_timeout: without it a server that
            # accepts and never answers would hold the thread forever.
            "read_timeout": io_timeout,
            "write_timeout": io_timeout,
            "charset": "utf8mb4",
            "program_name": APP_NAME,
        }.items()
        if k not in query
    }
    if ssl_mode == "DISABLED":
        connect_args["ssl_disabled"] = True
    engine = create_engine(url, connect_args=connect_args, **_server_pool_options(settings, probe))
    contexts: list[ssl.SSLContext] = []

    @event.listens_for(engine, "do_connect")
    def _files_then_tls(_d: Any, _r: Any, _a: Any, cparams: dict[str, Any]) -> None:
        # At connect, not here: a file that cannot be read is then a classified
        # connect failure naming its option, never an exception out of engine creation.
        if ssl_mode == "DISABLED":
            return  # PyMySQL reads none of the TLS files then
        check_option_files(query)
        if ssl_mode is not None:
            if not contexts:
                contexts.append(_mysql_ssl_context(ssl_mode, query))
            cparams["ssl"] = contexts[0]

    if not probe:
        liveness.install(engine)
    return engine


def _mysql_ssl_context(mode: str, query: Any) -> ssl.SSLContext:
    def _opt(name: str) -> str | None:
        value = query.get(name)
        return value if isinstance(value, str) else None

    try:
        context = ssl.create_default_context(cafile=_opt("ssl_ca"), capath=_opt("ssl_capath"))
    except OSError as error:  # ssl.SSLError included: not a CA file
        need = "PEM CA certificates"
        raise unreadable_contents(("ssl_ca", "ssl_capath"), query, error, need) from error
    if _opt("ssl_cert"):
        try:
            context.load_cert_chain(_opt("ssl_cert") or "", _opt("ssl_key"))
        except OSError as error:
            need = "a PEM certificate and its private key"
            raise unreadable_contents(("ssl_cert", "ssl_key"), query, error, need) from error
    if mode == "REQUIRED":
        # REQUIRED means encrypted but not verified, exactly as the mysql client does.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "VERIFY_CA":
        context.check_hostname = False
    return context


def _sqlite_engine(url: URL, settings: Settings, litestream: bool) -> Engine:
    in_memory = url.query.get("mode") == "memory" or url.database in (None, "", ":memory:")
    options: dict[str, Any] = {"echo": settings.database_echo}
    if in_memory:
        # One pooled connection: writers on a shared-cache memory database fail at once
        # with "database table is locked" (busy_timeout does not apply), so serialise.
        options.update(
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=settings.database_connect_timeout,
        )
    else:
        # Sized to the work limiter (src.database.concurrency), with room for the
        # manager's probes: an SQLite connection is cheap to keep, costly to reopen
        # (pragmas, WAL check) on every request.
        options.update(
            pool_size=SQLITE_WORKERS,
            max_overflow=4,
            pool_timeout=settings.database_connect_timeout,
        )
    engine = create_engine(
        url,
        connect_args={
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            # Autocommit at the driver level; transactions are begun explicitly below so
            # that writers can take the lock with BEGIN IMMEDIATE.
            "isolation_level": None,
        },
        **options,
    )
    _install_sqlite_hooks(
        engine,
        wal=not in_memory,
        autocheckpoint=(
            LITESTREAM_WAL_AUTOCHECKPOINT_PAGES if litestream else WAL_AUTOCHECKPOINT_PAGES
        ),
    )
    if in_memory and (url.database or "").startswith("file:"):
        # Only a named shared-cache database outlives a connection; `sqlite://` and
        # `:memory:` are private to their one pooled connection (and opening them by
        # name here would create files called "None?" or ":memory:?").
        _keep_memory_database_alive(engine, url)
    return engine


def _keep_memory_database_alive(engine: Engine, url: URL) -> None:
    """A shared-cache memory database vanishes with its last connection; the pool may
    drop its connection (invalidation, recycling), so hold one outside the pool."""
    query = "&".join(f"{k}={v}" for k, v in url.query.items() if k != "uri")
    keeper = sqlite3.connect(f"{url.database}?{query}", uri=True, check_same_thread=False)
    event.listen(engine, "engine_disposed", lambda _engine: keeper.close())


def _install_sqlite_hooks(engine: Engine, *, wal: bool, autocheckpoint: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY
        # without waiting (its snapshot is stale); writers lock up front instead.
        write = connection.get_execution_options().get(SQLITE_WRITE, True)
        # On the driver's connection: a full SQLAlchemy execution of BEGIN would cost more
        # than the query it opens. SQLite errors here (SQLITE_BUSY) reach the caller as
        # sqlite3 errors, which src.database.error_codes reads like any other.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL, retrying while another process holds the file.

    Changing the journal mode needs an exclusive lock and SQLite reports SQLITE_BUSY
    for it without consulting the busy handler, so a second worker (or the locator's
    probe) opening the file at the same moment would otherwise fail its first connection.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def checkpoint_sqlite(engine: Engine, *, truncate: bool = True) -> None:
    """Fold the WAL back into the database file so a copied file is complete.

    `truncate=False` while Litestream replicates the file: it holds a read transaction
    on the WAL, so TRUNCATE would only wait out the busy timeout (a PASSIVE checkpoint
    copies what it can and returns).
    """
    if engine.url.get_backend_name() != "sqlite":
        return
    mode = "TRUNCATE" if truncate else "PASSIVE"
    # On the raw driver connection (autocommit): inside a transaction the checkpoint
    # could not truncate the log.
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})")  # type: ignore[union-attr]
    finally:
        raw.close()
