"""The floor: the fastest honest implementation of the benchmarked part of the contract.

Raw Starlette, PyJWT and the database driver (sqlite3 or psycopg), with none of the
app's layers, doing everything the app does for the two benchmarked routes and
`/health`:

* the same SQL text the app's SQLAlchemy statements compile to, the same transactions
  (SQLite writes in BEGIN IMMEDIATE; PostgreSQL reads and the insert in autocommit), the
  same `X-Total-Count` rule (count only when the page cannot tell: src.services.tasks);
* the same JSON (src.api.tasks `_document`: key order, ISO 8601 UTC with microseconds
  and `+00:00`, compact, UTF-8), the same headers (X-Request-ID echoed or generated,
  nosniff, Referrer-Policy, Cache-Control, Location on 201, CORS through Starlette's middleware);
* the same checks: the body (strict JSON object, `title` trimmed to 1-255 characters,
  `description` up to 10 000, no NUL or lone surrogate, at most 64 KiB), the query
  (`status`, `limit` 1-100, `offset`), the bearer token (HS256 through PyJWT, `exp`
  required, 30 s leeway, subject from `sub`/`user_id`/`id`, verified tokens remembered
  until they expire, as src.auth.tokens does) and the path's user against the token's;
* the same server: uvicorn with httptools and uvloop, under the app's bounded-head
  protocol (src.http.protocol), proxy headers on, no access log.

Where it runs the statements is what makes it a floor. SQLite: on the event loop thread,
over one connection opened at start-up (WAL and the app's pragmas); a statement takes
well under a millisecond, less than a hop to a worker thread would. Nothing else runs
between two statements of one request (no await between them), so a list's page and
count see one state without an explicit read transaction. PostgreSQL: in the thread pool,
over a small pool of psycopg connections (BENCH_PG_POOL, default 8), a worker thread per
connection.

    BENCH_DATABASE=sqlite:////path/todo.db (or postgresql://…) BETTER_AUTH_SECRET=… \\
        python -m bench.floor --port 8001

The schema is the app's: run the app (or `python -m src migrate`) on the database first.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from src.http.protocol import BoundedHttpToolsProtocol, HeadLimits
from src.schemas.text import WHITESPACE

T = TypeVar("T")

DATABASE = os.environ.get("BENCH_DATABASE", "")
SECRET = os.environ.get("BETTER_AUTH_SECRET", "").encode()
IS_SQLITE = DATABASE.startswith("sqlite:")
PG_POOL = int(os.environ.get("BENCH_PG_POOL", "8"))

# What the app's statements compile to (src.services.tasks), per dialect.
_COLUMNS = (
    "tasks.id, tasks.title, tasks.description, tasks.status, tasks.user_id, "
    "tasks.created_at, tasks.updated_at"
)
if IS_SQLITE:
    PAGE = (
        f"SELECT {_COLUMNS} \nFROM tasks \nWHERE tasks.user_id = ? "
        "ORDER BY tasks.created_at DESC, tasks.id DESC\n LIMIT ? OFFSET ?"
    )
    PAGE_STATUS = (
        f"SELECT {_COLUMNS} \nFROM tasks \nWHERE tasks.user_id = ? AND tasks.status = ? "
        "ORDER BY tasks.created_at DESC, tasks.id DESC\n LIMIT ? OFFSET ?"
    )
    COUNT = "SELECT count(*) AS count_1 \nFROM tasks \nWHERE tasks.user_id = ?"
    COUNT_STATUS = COUNT + " AND tasks.status = ?"
    INSERT = (
        "INSERT INTO tasks (id, user_id, title, description, status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
else:
    _USER = "tasks.user_id = %(p_user)s::VARCHAR"
    _STATUS = " AND tasks.status = %(p_status)s::VARCHAR"
    _ORDER = (
        " ORDER BY tasks.created_at DESC, tasks.id DESC \n"
        " LIMIT %(p_limit)s::INTEGER OFFSET %(p_offset)s::INTEGER"
    )
    PAGE = f"SELECT {_COLUMNS} \nFROM tasks \nWHERE {_USER}{_ORDER}"
    PAGE_STATUS = f"SELECT {_COLUMNS} \nFROM tasks \nWHERE {_USER}{_STATUS}{_ORDER}"
    COUNT = f"SELECT count(*) AS count_1 \nFROM tasks \nWHERE {_USER}"
    COUNT_STATUS = COUNT + _STATUS
    INSERT = (
        "INSERT INTO tasks (id, user_id, title, description, status, created_at, updated_at) "
        "VALUES (%(id)s::VARCHAR, %(user_id)s::VARCHAR, %(title)s::VARCHAR, "
        "%(description)s::VARCHAR, %(status)s::VARCHAR, "
        "%(created_at)s::TIMESTAMP WITHOUT TIME ZONE, %(updated_at)s::TIMESTAMP WITHOUT TIME ZONE)"
    )

# -- the database ------------------------------------------------------------------

_sqlite: sqlite3.Connection | None = None
_pg_pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
_pg_limiter: anyio.CapacityLimiter | None = None


def _open_sqlite() -> sqlite3.Connection:
    conn = sqlite3.connect(DATABASE.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _with_pg(work: Callable[[Any], T]) -> T:
    try:
        conn = _pg_pool.get_nowait()
    except queue.Empty:
        import psycopg

        conn = psycopg.connect(DATABASE, autocommit=True, prepare_threshold=None)
    try:
        return work(conn)
    finally:
        _pg_pool.put(conn)


async def run(work: Callable[[Any], T]) -> T:
    """`work(connection)`: SQLite inline on the loop, PostgreSQL on a pool thread."""
    if _sqlite is not None:
        return work(_sqlite)
    return await anyio.to_thread.run_sync(_with_pg, work, limiter=_pg_limiter)


def _sqlite_iso(value: str) -> str:
    # SQLAlchemy stores SQLite DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC).
    if len(value) == 26:
        return f"{value[:10]}T{value[11:]}+00:00"
    return datetime.fromisoformat(value).isoformat(timespec="microseconds") + "+00:00"


def _iso(value: Any) -> str:
    if isinstance(value, str):
        return _sqlite_iso(value)
    return str(value.isoformat(timespec="microseconds")) + "+00:00"


def _document(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[1],
        "description": row[2],
        "status": row[3],
        "completed": row[3] == "completed",
        "user_id": row[4],
        "created_at": _iso(row[5]),
        "updated_at": _iso(row[6]),
    }


def _page(user: str, status: str, limit: int, offset: int) -> Callable[[Any], Any]:
    if IS_SQLITE:
        args: Any = (user, limit, offset) if status == "all" else (user, status, limit, offset)
        count_args: Any = (user,) if status == "all" else (user, status)
    else:
        args = count_args = {"p_user": user, "p_status": status, "p_limit": limit}
        args = {**args, "p_offset": offset}
    page, count = (PAGE, COUNT) if status == "all" else (PAGE_STATUS, COUNT_STATUS)

    def work(conn: Any) -> tuple[list[Any], int]:
        rows = conn.execute(page, args).fetchall()
        if 0 < len(rows) < limit or (not rows and offset == 0):
            return rows, offset + len(rows)  # a partial page ends the list
        return rows, int(conn.execute(count, count_args).fetchone()[0])

    return work


_INSERT_NAMES = ("id", "user_id", "title", "description", "status", "created_at", "updated_at")


def _insert(record: tuple[Any, ...]) -> Callable[[Any], None]:
    """`record` in INSERT's column order."""
    if not IS_SQLITE:
        params = dict(zip(_INSERT_NAMES, record, strict=True))

        def pg_work(conn: Any) -> None:
            conn.execute(INSERT, params)

        return pg_work

    def work(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(INSERT, record)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    return work


# -- HTTP ----------------------------------------------------------------------------

_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cache-Control": "no-store",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CONTROL_OR_SLASH = re.compile(r"[\x00-\x1f\x7f/]")
_tokens: dict[str, tuple[str, float]] = {}


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _json(
    request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    incoming = request.headers.get("x-request-id")
    request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    return Response(
        _encode(body),
        status,
        {**(headers or {}), "X-Request-ID": request_id, **_SECURITY},
        media_type="application/json",
    )


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}


def _subject(token: str) -> str:
    cached = _tokens.get(token)
    if cached is not None and time.time() < cached[1]:
        return cached[0]
    if len(token) > 16 * 1024:
        raise _Refused(401, "UNAUTHORIZED", "The token is too long.")
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            leeway=30,
            options={"require": ["exp"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise _Refused(401, "TOKEN_EXPIRED", "The token has expired.") from None
    except jwt.PyJWTError:
        raise _Refused(401, "UNAUTHORIZED", "The token is invalid.") from None
    for claim in ("sub", "user_id", "id"):
        value = claims.get(claim)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value and len(value) <= 255:
            if len(_tokens) >= 1024:
                del _tokens[next(iter(_tokens))]
            _tokens[token] = (value, float(claims["exp"]) + 30)
            return value
    raise _Refused(401, "UNAUTHORIZED", "The token names no user.")


def _authorised_user(request: Request) -> str:
    user = str(request.path_params["user_id"])
    if not 0 < len(user) <= 255 or user.strip(WHITESPACE) != user or _CONTROL_OR_SLASH.search(user):
        raise _Refused(400, "VALIDATION_ERROR", "Invalid user id.")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Refused(401, "UNAUTHORIZED", "Authentication required.")
    if _subject(token) != user:
        raise _Refused(403, "FORBIDDEN", "This token does not give access to this user's tasks.")
    return user


def _text(value: Any, name: str, maximum: int, *, trim: bool) -> str:
    if not isinstance(value, str):
        raise _Refused(400, "VALIDATION_ERROR", f"{name} must be a string.")
    if trim:
        value = value.strip(WHITESPACE)
    if (trim and not value) or len(value) > maximum or "\x00" in value:
        raise _Refused(400, "VALIDATION_ERROR", f"Invalid {name}.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise _Refused(400, "VALIDATION_ERROR", f"Invalid {name}.") from None
    return str(value)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _Refused(400, "VALIDATION_ERROR", f"Invalid {name}.")
    return value


async def list_tasks(request: Request) -> Response:
    user = _authorised_user(request)
    status = request.query_params.get("status", "all")
    if status not in ("all", "pending", "completed"):
        raise _Refused(400, "VALIDATION_ERROR", "Invalid status.")
    limit = _int(request, "limit", 100, 1, 100)
    offset = _int(request, "offset", 0, 0, 1_000_000)
    rows, total = await run(_page(user, status, limit, offset))
    return _json(request, [_document(row) for row in rows], headers={"X-Total-Count": str(total)})


async def create_task(request: Request) -> Response:
    user = _authorised_user(request)
    body = await request.body()
    if len(body) > 64 * 1024:
        raise _Refused(413, "PAYLOAD_TOO_LARGE", "The request body is larger than 64 KiB.")
    try:
        data = json.loads(body)
    except ValueError:
        raise _Refused(400, "VALIDATION_ERROR", "The body is not JSON.") from None
    if not isinstance(data, dict) or "title" not in data or set(data) - {"title", "description"}:
        raise _Refused(400, "VALIDATION_ERROR", "Expected {title, description?}.")
    title = _text(data["title"], "title", 255, trim=True)
    description = data.get("description")
    if description is not None:
        description = _text(description, "description", 10_000, trim=False)
    now = datetime.now(UTC).replace(tzinfo=None)
    stored: Any = now.isoformat(" ", "microseconds") if IS_SQLITE else now
    task_id = str(uuid.uuid4())
    await run(_insert((task_id, user, title, description, "pending", stored, stored)))
    row = (task_id, title, description, "pending", user, stored, stored)
    location = f"/api/{quote(user, safe='')}/tasks/{task_id}"
    return _json(request, _document(row), 201, {"Location": location})


async def tasks(request: Request) -> Response:
    try:
        if request.method == "GET":
            return await list_tasks(request)
        return await create_task(request)
    except _Refused as refused:
        body = {"error": refused.message, "code": refused.code}
        return _json(request, body, refused.status, refused.headers)


async def health(request: Request) -> Response:
    return _json(request, {"status": "healthy"})


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global _sqlite, _pg_limiter
    if IS_SQLITE:
        _sqlite = _open_sqlite()
    else:
        _pg_limiter = anyio.CapacityLimiter(PG_POOL)
    yield
    if _sqlite is not None:
        _sqlite.close()
    while not _pg_pool.empty():
        _pg_pool.get_nowait().close()


app = Starlette(
    routes=[
        Route("/api/{user_id}/tasks", tasks, methods=["GET", "POST"]),
        Route("/health", health),
    ],
    middleware=[
        Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Total-Count", "Retry-After"],
            max_age=600,
        )
    ],
    lifespan=lifespan,
)


class FloorProtocol(BoundedHttpToolsProtocol):
    """The app's protocol, with its default limits (no settings to read)."""

    limits = HeadLimits()


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve the floor (see the module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http=FloorProtocol,
        proxy_headers=True,
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
