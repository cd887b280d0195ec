"""What a driver error is, read from its type and code — never from its message text.

Sources: PostgreSQL's SQLSTATE table (Appendix A of the PostgreSQL manual, "PostgreSQL
Error Codes"), the MySQL/MariaDB server and client error references (`ER_*` and `CR_*`
codes), and SQLite's result codes (sqlite.org/rescode.html). `error_chain` walks what a
failure was raised from, because SQLAlchemy wraps the driver's error (`.orig`) and
PyMySQL raises its timeout while handling the socket's (`__context__`).
"""

from __future__ import annotations

import socket
import sqlite3
import ssl
from collections.abc import Iterator
from enum import StrEnum

from sqlalchemy import exc as sa_exc


class Code(StrEnum):
    """One name for what went wrong, whichever backend said it."""

    CANNOT_CONNECT = "cannot_connect"  # no connection could be opened
    TERMINATED = "terminated"  # the server ended the session before running our statement
    CONNECTION_LOST = "connection_lost"  # the connection broke; the statement may have run
    TIMEOUT = "timeout"  # the statement (or our deadline) ran out of time
    LOCK_TIMEOUT = "lock_timeout"  # waited too long for a lock another transaction holds
    CONFLICT = "conflict"  # deadlock / serialization failure: rolled back, safe to retry
    OVERLOADED = "overloaded"  # too many connections, out of memory, pool exhausted
    AUTHENTICATION = "authentication_failed"
    DATABASE_MISSING = "database_missing"
    TLS = "tls"
    DATA = "data"  # the server refused a value (encoding, range, length)
    DUPLICATE = "duplicate"  # unique key violation
    SCHEMA = "schema"  # a table or column this app needs is missing
    STORAGE = "storage"  # disk full, read-only, I/O error, corrupt file
    OTHER = "other"


# PostgreSQL: exact SQLSTATEs first, then classes (the first two characters).
_PG_STATES = {
    "57P01": Code.TERMINATED,  # admin_shutdown (pg_terminate_backend, Neon scale-to-zero)
    "57P02": Code.TERMINATED,  # crash_shutdown
    "57P05": Code.TERMINATED,  # idle_session_timeout
    "57P03": Code.CANNOT_CONNECT,  # cannot_connect_now (starting up, shutting down)
    "57014": Code.TIMEOUT,  # query_canceled (statement_timeout)
    "55P03": Code.LOCK_TIMEOUT,  # lock_not_available (lock_timeout, NOWAIT)
    "40001": Code.CONFLICT,  # serialization_failure
    "40P01": Code.CONFLICT,  # deadlock_detected
    "25P03": Code.TERMINATED,  # idle_in_transaction_session_timeout
    "3D000": Code.DATABASE_MISSING,
    "42P01": Code.SCHEMA,  # undefined_table
    "42703": Code.SCHEMA,  # undefined_column
    "23505": Code.DUPLICATE,
}
# SQLSTATE classes the SQL standard defines, so MySQL's mean the same.
_STANDARD_CLASSES = {
    "08": Code.CONNECTION_LOST,  # connection_exception
    "22": Code.DATA,  # data_exception
    "28": Code.AUTHENTICATION,  # invalid_authorization_specification
}
_PG_CLASSES = {
    **_STANDARD_CLASSES,
    "53": Code.OVERLOADED,  # insufficient_resources (too_many_connections, disk_full…)
    "58": Code.STORAGE,  # system_error (I/O)
}
# MySQL / MariaDB server (ER_*) and client (CR_*) codes.
_MYSQL_CODES = {
    2002: Code.CANNOT_CONNECT,  # CR_CONNECTION_ERROR (socket)
    2003: Code.CANNOT_CONNECT,  # CR_CONN_HOST_ERROR
    2005: Code.CANNOT_CONNECT,  # CR_UNKNOWN_HOST
    2006: Code.TERMINATED,  # CR_SERVER_GONE_ERROR: PyMySQL raises it when sending fails
    2013: Code.CONNECTION_LOST,  # CR_SERVER_LOST (a timeout when raised from one)
    2014: Code.CONNECTION_LOST,  # CR_COMMANDS_OUT_OF_SYNC
    2055: Code.CONNECTION_LOST,  # CR_SERVER_LOST_EXTENDED
    1927: Code.TERMINATED,  # ER_CONNECTION_KILLED (MariaDB KILL)
    4031: Code.TERMINATED,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8 wait_timeout)
    1053: Code.TERMINATED,  # ER_SERVER_SHUTDOWN
    2026: Code.TLS,  # CR_SSL_CONNECTION_ERROR
    1045: Code.AUTHENTICATION,  # ER_ACCESS_DENIED_ERROR
    1044: Code.AUTHENTICATION,  # ER_DBACCESS_DENIED_ERROR
    1698: Code.AUTHENTICATION,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    1130: Code.AUTHENTICATION,  # ER_HOST_NOT_PRIVILEGED: no account for this client host
    1251: Code.AUTHENTICATION,  # ER_NOT_SUPPORTED_AUTH_MODE
    1862: Code.AUTHENTICATION,  # ER_MUST_CHANGE_PASSWORD_LOGIN
    2059: Code.AUTHENTICATION,  # CR_AUTH_PLUGIN_CANNOT_LOAD (PyMySQL lacks the plugin)
    3118: Code.AUTHENTICATION,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
    4151: Code.AUTHENTICATION,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
    3159: Code.TLS,  # ER_SECURE_TRANSPORT_REQUIRED (MySQL require_secure_transport)
    1049: Code.DATABASE_MISSING,  # ER_BAD_DB_ERROR
    1040: Code.OVERLOADED,  # ER_CON_COUNT_ERROR
    1203: Code.OVERLOADED,  # ER_TOO_MANY_USER_CONNECTIONS
    1205: Code.LOCK_TIMEOUT,  # ER_LOCK_WAIT_TIMEOUT
    1213: Code.CONFLICT,  # ER_LOCK_DEADLOCK
    3024: Code.TIMEOUT,  # ER_QUERY_TIMEOUT (MySQL max_execution_time)
    1969: Code.TIMEOUT,  # ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
    1146: Code.SCHEMA,  # ER_NO_SUCH_TABLE
    1054: Code.SCHEMA,  # ER_BAD_FIELD_ERROR
    1062: Code.DUPLICATE,  # ER_DUP_ENTRY
    1366: Code.DATA,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (Incorrect string value)
    1406: Code.DATA,  # ER_DATA_TOO_LONG
    1264: Code.DATA,  # ER_WARN_DATA_OUT_OF_RANGE
    1292: Code.DATA,  # ER_TRUNCATED_WRONG_VALUE
    1265: Code.DATA,  # WARN_DATA_TRUNCATED
    1114: Code.STORAGE,  # ER_RECORD_FILE_FULL
    1021: Code.STORAGE,  # ER_DISK_FULL
}
# SQLite primary result codes (the low byte of the extended code).
_SQLITE_CODES = {
    5: Code.LOCK_TIMEOUT,  # SQLITE_BUSY (after busy_timeout)
    6: Code.LOCK_TIMEOUT,  # SQLITE_LOCKED
    7: Code.OVERLOADED,  # SQLITE_NOMEM
    8: Code.STORAGE,  # SQLITE_READONLY
    10: Code.STORAGE,  # SQLITE_IOERR
    11: Code.STORAGE,  # SQLITE_CORRUPT
    13: Code.STORAGE,  # SQLITE_FULL
    14: Code.STORAGE,  # SQLITE_CANTOPEN
    19: Code.DUPLICATE,  # SQLITE_CONSTRAINT (the only constraints are keys)
    26: Code.STORAGE,  # SQLITE_NOTADB
}


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error SQLAlchemy wrapped, and what each was raised from."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, sa_exc.DBAPIError):
            stack.append(current.orig)
        stack.extend((current.__cause__, current.__context__))


def code_of(exc: BaseException) -> Code:
    """The first thing along the chain that has a definite meaning."""
    invalidated = False
    for error in error_chain(exc):
        code = _code_of_one(error)
        if code is not None and code is not Code.OTHER:
            return code
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            # The dialect saw the connection closed or broken (psycopg reports a socket
            # closed under a statement without SQLSTATE).
            invalidated = True
    return Code.CONNECTION_LOST if invalidated else Code.OTHER


def timed_out(exc: BaseException) -> bool:
    """Whether a socket or our own deadline timed out somewhere along the chain."""
    return any(isinstance(e, TimeoutError | socket.timeout) for e in error_chain(exc))


def _code_of_one(error: BaseException) -> Code | None:
    if isinstance(error, sa_exc.TimeoutError):
        return Code.OVERLOADED  # the connection pool had no connection to give
    if isinstance(error, sa_exc.DBAPIError):
        return None  # its .orig says more
    if _is_mysql_error(error):
        # Before the SQLSTATE: PyMySQL sets one too, but MySQL's SQLSTATEs are coarse
        # (1049 unknown database and 1146 unknown table are both 42xxx) and do not
        # mean what PostgreSQL's tables below say; its error number is the precise code.
        return _mysql_code(error)
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _PG_STATES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2], Code.OTHER)
    if _is_psycopg_operational(error):
        # psycopg raises OperationalError without a SQLSTATE when the connection itself
        # failed (closed under a statement, unreadable socket): the server said nothing.
        return Code.CONNECTION_LOST
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return _SQLITE_CODES.get(code & 0xFF, Code.OTHER) if isinstance(code, int) else None
    if isinstance(error, UnicodeEncodeError):
        return Code.DATA  # a driver could not encode the value in the connection charset
    if isinstance(error, ssl.SSLError):
        return Code.TLS
    if isinstance(error, TimeoutError | socket.timeout):
        return Code.TIMEOUT
    if isinstance(error, socket.gaierror | ConnectionRefusedError):
        return Code.CANNOT_CONNECT
    if isinstance(error, ConnectionError | BrokenPipeError):
        return Code.CONNECTION_LOST
    return None


def _mysql_code(error: BaseException) -> Code | None:
    number = error.args[0] if error.args else None
    code = _MYSQL_CODES.get(number) if isinstance(number, int) else None
    if code is None:
        # Only the classes the SQL standard fixes mean the same on both servers.
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            code = _STANDARD_CLASSES.get(sqlstate[:2])
    if code is Code.CONNECTION_LOST and timed_out(error):
        return Code.TIMEOUT  # PyMySQL's read_timeout
    return code


def _is_psycopg_operational(error: BaseException) -> bool:
    return type(error).__module__.startswith("psycopg") and any(
        cls.__name__ == "OperationalError" for cls in type(error).__mro__
    )


def _is_mysql_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("pymysql")
