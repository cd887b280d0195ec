"""Bounded blocking calls: nothing that talks to a database may wait longer than we allow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine

from src.database.engine import SQLITE_WRITE

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], timeout: float, *, name: str = "db-call") -> T:
    """Run `fn` in a daemon thread and give up waiting after `timeout` seconds.

    Drivers have their own timeouts, but not for every phase (a server that accepts a
    TCP connection and never answers can stall a handshake); the caller must not stall
    with it. An abandoned call finishes on its own, bounded by the driver's timeouts.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no answer from the database within {timeout:g} s")
    if failure:
        raise failure[0]
    return outcome[0]


def check_connection(engine: Engine) -> None:
    """Open a connection and run a trivial query; raises what the driver raised."""
    with engine.connect().execution_options(**{SQLITE_WRITE: False}) as connection:
        connection.exec_driver_sql("SELECT 1")
