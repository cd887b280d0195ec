"""Shared fixtures: the real PostgreSQL and MariaDB on loopback, throwaway databases and
roles, apps built for any configuration, and fake "bad databases" (refusing, hanging).

The suite needs both servers. It fails (it does not skip) when one is unreachable; set
TEST_POSTGRES_URL / TEST_MYSQL_URL to point it at other servers.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from src.application import create_app
from src.config.settings import Settings
from src.core.redaction import redactor
from tests.pgcluster import PgCluster

# Shared with every test module: one S3-protocol server per session.
from tests.replica_servers import moto_s3, replica_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_HOST = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("TEST_MYSQL_PORT", "3306"))
MYSQL_ADMIN_USER = os.environ.get("TEST_MYSQL_USER", "root")
MYSQL_ADMIN_PASSWORD = os.environ.get("TEST_MYSQL_PASSWORD", "")

# A password with every character that breaks naive URL handling.
SPECIAL_PASSWORD = "p@ss:w/rd#?% +x!"
SPECIAL_USER = "todo_Us3r_q7"


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL at {PG_ADMIN}: {exc}")
    try:
        pymysql.connect(
            host=MYSQL_HOST,
            port=MYSQL_PORT,
            user=MYSQL_ADMIN_USER,
            password=MYSQL_ADMIN_PASSWORD,
            connect_timeout=5,
        ).close()
    except pymysql.Error as exc:
        problems.append(f"MariaDB at {MYSQL_HOST}:{MYSQL_PORT}: {exc}")
    if problems:
        raise pytest.UsageError(
            "The test suite needs the real database servers (see README, 'Tests'):\n  "
            + "\n  ".join(problems)
        )


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's own configuration, or writes into the checkout."""
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "PG", "SQLITE_", "BETTER_AUTH_", "SPACE_")) or name in {
            "JWT_SECRET",
            "FALLBACK_DATABASE_URL",
            "CORS_ORIGINS",
            "LOG_FORMAT",
            "LOG_LEVEL",
        }:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    yield
    redactor.clear()


# -- settings and apps ---------------------------------------------------------


def make_settings(tmp_path: Path, **values: Any) -> Settings:
    """Settings for a test: no .env, SQLite inside tmp_path unless said otherwise."""
    values.setdefault("sqlite_path", str(tmp_path / "todo.db"))
    values.setdefault("home", str(tmp_path / "home"))
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def running_app(settings: Settings) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def wait_ready(client: TestClient, timeout: float = 20.0) -> dict[str, Any]:
    ok = wait_until(lambda: client.get("/ready").status_code == 200, timeout)
    report: dict[str, Any] = client.get("/config/database").json()
    assert ok, f"not ready after {timeout}s: {report}"
    return report


def wait_state(client: TestClient, state: str, timeout: float = 40.0) -> None:
    """Until `/config/database` reports `state`; fails with the last report."""
    ok = wait_until(
        lambda: client.get("/config/database").json()["connection_state"] == state, timeout
    )
    assert ok, client.get("/config/database").json()


def wait_decided(client: TestClient, timeout: float = 30.0) -> dict[str, Any]:
    deciding = {"DISCONNECTED", "CONNECTING_PRIMARY", "CONNECTING_FALLBACK"}
    wait_until(
        lambda: client.get("/config/database").json()["connection_state"] not in deciding, timeout
    )
    report: dict[str, Any] = client.get("/config/database").json()
    return report


# -- real servers: throwaway databases and roles -------------------------------


def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database; yields its name."""
    name = f"todo_t_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    host = PG_ADMIN.split("@", 1)[1].split("/", 1)[0]
    return f"postgresql://postgres@{host}/{pg_database}"


@pytest.fixture
def pg_special_role(pg_database: str) -> Iterator[tuple[str, str]]:
    """A role whose password has `@ : / # ? % + space`, owning the fresh database."""
    with _pg_admin() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{SPECIAL_USER}"')
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(SPECIAL_USER), psycopg.sql.Literal(SPECIAL_PASSWORD)
            )
        )
        conn.execute(f'ALTER DATABASE "{pg_database}" OWNER TO "{SPECIAL_USER}"')
    yield SPECIAL_USER, SPECIAL_PASSWORD
    with _pg_admin() as conn:
        conn.execute(f'ALTER DATABASE "{pg_database}" OWNER TO postgres')
        conn.execute(f'DROP ROLE IF EXISTS "{SPECIAL_USER}"')


def _mysql_admin() -> Any:
    return pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_ADMIN_USER,
        password=MYSQL_ADMIN_PASSWORD,
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture
def mysql_database() -> Iterator[str]:
    name = f"todo_t_{uuid.uuid4().hex[:10]}"
    conn = _mysql_admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield name
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture
def mysql_special_user(mysql_database: str) -> Iterator[tuple[str, str]]:
    """A MariaDB user (passwords are checked over TCP) with the special password."""
    user = f"todo_my_{uuid.uuid4().hex[:6]}"
    conn = _mysql_admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (SPECIAL_PASSWORD,))
            cur.execute(f"GRANT ALL ON `{mysql_database}`.* TO '{user}'@'%'")
        yield user, SPECIAL_PASSWORD
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    finally:
        conn.close()


# -- bad databases -------------------------------------------------------------


@pytest.fixture
def refused_port() -> int:
    """A loopback port with nothing listening: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A loopback listener that accepts connections and never says a word."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="session")
def scram_cluster() -> Iterator[dict[str, Any]]:
    """A throwaway PostgreSQL cluster that really checks passwords (SCRAM on loopback).

    The machine's own server trusts loopback, so only this one can tell a right password
    from a wrong one. Yields host, port, and a user/password/database that work.
    """
    cluster = PgCluster(auth="scram-sha-256")
    database = "todo_scram"
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(SPECIAL_USER), psycopg.sql.Literal(SPECIAL_PASSWORD)
            )
        )
        conn.execute(f'CREATE DATABASE {database} OWNER "{SPECIAL_USER}"')
    try:
        yield {
            "host": "127.0.0.1",
            "port": cluster.port,
            "user": SPECIAL_USER,
            "password": SPECIAL_PASSWORD,
            "database": database,
            "admin_url": cluster.admin_url(),
        }
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def stoppable_cluster() -> Iterator[PgCluster]:
    """A trust-auth cluster of our own that a test may stop and start (the machine's
    shared server must never be stopped). A test that stops it starts it again."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.close()


# -- the task API on every backend --------------------------------------------

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
BACKENDS = ("sqlite", "postgresql", "mariadb")


def make_token(
    user: str | None = "alice",
    *,
    secret: str = TEST_SECRET,
    ttl: int = 3600,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A JWT for `user` (as `sub`); `exp=None` leaves the expiry out."""
    import time

    import jwt

    payload: dict[str, Any] = {"iat": int(time.time()), "exp": int(time.time()) + ttl}
    if user is not None:
        payload["sub"] = user
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


def bearer(user: str = "alice", **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, **kwargs)}"}


def mysql_url(database: str) -> str:
    from urllib.parse import quote

    password = f":{quote(MYSQL_ADMIN_PASSWORD, safe='')}" if MYSQL_ADMIN_PASSWORD else ""
    user = quote(MYSQL_ADMIN_USER, safe="")
    return f"mysql://{user}{password}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


@pytest.fixture(params=BACKENDS)
def backend_app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[FastAPI, TestClient, str]]:
    """A ready app on a fresh database of each backend, with TEST_SECRET configured.

    Yields (app, client, backend); `bearer(user)` gives headers it accepts.
    """
    backend: str = request.param
    url: str | None = None
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
    elif backend == "mariadb":
        url = mysql_url(request.getfixturevalue("mysql_database"))
    settings = make_settings(
        tmp_path,
        database_url=url,
        better_auth_secret=TEST_SECRET,
        # A server backend that fails must fail the test, not quietly become SQLite.
        database_fallback="auto" if url is None else "never",
    )
    with running_app(settings) as (app, client):
        report = wait_ready(client)
        expected = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql"}[backend]
        assert report["database_type"] == expected, report
        yield app, client, backend
