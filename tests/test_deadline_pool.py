"""The deadline watchdog under repetition: a thousand database calls cut off at their
deadline leave the pool with no connection checked out, none leaked on the server and
no watchdog entry behind."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from sqlalchemy import exc, text

from src.database.deadline import Deadline, DeadlineWatchdog, request_deadline
from src.database.engine import create_database_engine
from src.database.resolver import resolve_database_url
from tests.conftest import PG_ADMIN, make_settings

FAILURES = 1000
CONCURRENCY = 10
DEADLINE = 0.05


def test_a_thousand_cut_off_calls_leak_nothing(tmp_path: Path, pg_url: str) -> None:
    # The server notices a vanished client within 10 ms even while it sleeps, so the
    # cut-off backends go away instead of piling up against max_connections.
    url = (
        pg_url + "?application_name=todo-deadline-test"
        "&options=-c%20client_connection_check_interval%3D10"
    )
    resolution = resolve_database_url(url)
    assert resolution.url is not None, resolution.errors
    settings = make_settings(tmp_path, database_pool_size=CONCURRENCY, database_max_overflow=0)
    engine = create_database_engine(resolution.url, settings)
    watchdogs = [
        listener.__self__
        for listener in engine.pool.dispatch.checkout
        if isinstance(getattr(listener, "__self__", None), DeadlineWatchdog)
    ]
    assert len(watchdogs) == 1
    watchdog: DeadlineWatchdog = watchdogs[0]
    threads_before = threading.active_count()

    def hang_once(_: int) -> str:
        request_deadline.set(Deadline.after(DEADLINE))
        try:
            with engine.connect() as conn:
                conn.execute(text("select pg_sleep(30)"))
        except exc.DBAPIError as error:
            return "disconnect" if error.connection_invalidated else type(error.orig).__name__
        return "finished"

    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        outcomes = list(pool.map(hang_once, range(FAILURES)))
    elapsed = time.monotonic() - started
    try:
        assert outcomes.count("disconnect") == FAILURES, set(outcomes)
        assert watchdog.fired >= FAILURES
        # Every call ended near its deadline, not at pg_sleep's 30 s.
        assert elapsed < FAILURES / CONCURRENCY * (DEADLINE + 0.25)
        assert engine.pool.checkedout() == 0
        assert watchdog._held == {}
        # The pool still works afterwards.
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
        time.sleep(0.3)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            server_side = admin.execute(
                "select count(*) from pg_stat_activity"
                " where application_name = 'todo-deadline-test'"
            ).fetchone()
        assert server_side is not None and server_side[0] <= CONCURRENCY
        assert threading.active_count() <= threads_before + 1  # the watchdog thread
    finally:
        engine.dispose()
    print(f"\n{FAILURES} cut-off calls in {elapsed:.1f} s, watchdog fired {watchdog.fired} times")
