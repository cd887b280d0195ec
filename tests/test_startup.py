"""Start-up decisions through the real app (ASGI, lifespan), on the real servers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from src.models import Task
from tests.conftest import make_settings, mysql_url, running_app, wait_decided, wait_ready
from tests.netfaults import Forwarder

FAST = {"database_connect_timeout": 1, "database_retry_delay_ms": 100}


def store_and_read_task(app: Any) -> None:
    """Write a row through the engine the app chose, and read it back."""
    from src.models.task import utc_now

    engine = app.state.database.engine
    task_id = uuid.uuid4().hex
    with Session(engine) as session:
        session.add(Task(id=task_id, user_id="u", title="héllo ✓", created_at=utc_now()))
        session.commit()
    with Session(engine) as session:
        assert session.exec(select(Task.title).where(Task.id == task_id)).one() == "héllo ✓"


UNUSABLE = [
    None,
    "",
    "   \n",
    "None",
    "null",
    "undefined",
    "''",
    "garbage",
    "mongodb://user:pw@mongo.example.com:27017/app",
    "redis://localhost:6379/0",
    "postgresql://user:password@host:port/dbname",
    "postgresql://postgres:[YOUR-PASSWORD]@db.abcdefgh.supabase.co:5432/postgres",
    "postgresql://<user>:<password>@<host>/<db>",
    "${DATABASE_URL}",
    "sqlite://todo.db",
    "postgresql://u:p@h:99999/db",
    "postgresql://u:p@h:5432/db?sslmode=required",
]


@pytest.mark.parametrize("raw", UNUSABLE)
def test_unusable_url_starts_on_sqlite_and_says_why(tmp_path: Path, raw: str | None) -> None:
    settings = make_settings(tmp_path, database_url=raw)
    with running_app(settings) as (app, client):
        report = wait_ready(client)
        store_and_read_task(app)
    assert report["database_type"] == "sqlite"
    assert report["connection_state"] == "FALLBACK_CONNECTED"
    assert report["fallback_active"] is True
    assert report["fallback_reason"]
    assert report["sqlite_path"] == str(tmp_path / "todo.db")
    present = raw is not None and raw.strip().strip("'") not in ("", "None", "null", "undefined")
    assert report["primary_url_present"] is present
    if present:
        assert report["validation_errors"], report
        assert "invalid" in report["fallback_reason"]
    else:
        assert "not set" in report["fallback_reason"]


def test_sqlite_default_is_healthy_not_degraded(tmp_path: Path) -> None:
    with running_app(make_settings(tmp_path)) as (_, client):
        wait_ready(client)
        health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["database_type"] == "sqlite"


def pg_variants(url: str) -> list[str]:
    bare = url.removeprefix("postgresql://")
    return [
        url,
        "postgres://" + bare,
        f'"{url}"',
        f"'{url}'",
        f"  {url}\n",
        f"{url}\r\n",
        f"psql '{url}'",
        f"DATABASE_URL={url}",
        f'export DATABASE_URL="{url}"',
        "\ufeff" + url,
        url + "?sslmode=disable&application_name=todo-test&connect_timeout=3",
        url + "?sslmode=prefer&channel_binding=prefer",
        url + "?pgbouncer=true&connection_limit=1",
        "POSTGRESQL+ASYNCPG://" + bare + "?ssl=disable",
    ]


def test_postgresql_variants_all_reach_postgresql(tmp_path: Path, pg_url: str) -> None:
    for index, raw in enumerate(pg_variants(pg_url)):
        settings = make_settings(tmp_path / str(index), database_url=raw, **FAST)
        with running_app(settings) as (app, client):
            report = wait_ready(client)
            assert report["database_type"] == "postgresql", (raw, report)
            assert report["current_driver"] == "postgresql+psycopg"
            assert report["fallback_active"] is False
            with app.state.database.engine.connect() as conn:
                assert conn.execute(text("select current_database()")).scalar() in pg_url
        assert (client.get("/health").status_code, index) == (200, index)


def test_raw_special_password_is_used_exactly(
    tmp_path: Path, scram_cluster: dict[str, Any]
) -> None:
    c = scram_cluster
    # Pasted raw, unencoded: the resolver must split at the last @ and keep every byte.
    raw = f"postgres://{c['user']}:{c['password']}@{c['host']}:{c['port']}/{c['database']}"
    encoded = (
        f"postgresql://{c['user']}:{quote(c['password'], safe='')}@{c['host']}:{c['port']}"
        f"/{c['database']}"
    )
    for index, url in enumerate([raw, encoded]):
        settings = make_settings(tmp_path / str(index), database_url=url, **FAST)
        with running_app(settings) as (app, client):
            report = wait_ready(client)
            assert report["connection_state"] == "PRIMARY_CONNECTED", report
            store_and_read_task(app)
            body = client.get("/config/database").text
        assert c["password"] not in body and quote(c["password"], safe="") not in body
        assert c["user"] not in body


def test_wrong_password_is_an_authentication_failure(
    tmp_path: Path, scram_cluster: dict[str, Any]
) -> None:
    c = scram_cluster
    url = f"postgresql://{c['user']}:not-the-password@{c['host']}:{c['port']}/{c['database']}"
    settings = make_settings(tmp_path, database_url=url, database_startup_retries=3, **FAST)
    started = time.monotonic()
    with running_app(settings) as (_, client):
        report = wait_ready(client)
    assert report["fallback_active"] is True
    assert report["last_error_kind"] == "authentication_failed"
    assert "authentication" in report["fallback_reason"]
    # Not transient: no point in retrying a wrong password.
    assert report["connection_attempts_count"] == 2  # one primary attempt + the SQLite check
    assert time.monotonic() - started < 5
    assert c["user"] not in str(report)


def test_a_wrong_pgpassword_is_named_in_the_hint(
    tmp_path: Path, scram_cluster: dict[str, Any]
) -> None:
    c = scram_cluster
    settings = make_settings(
        tmp_path,
        pghost=c["host"],
        pgport=str(c["port"]),
        pguser=c["user"],
        pgpassword="bad",
        pgdatabase=c["database"],
        **FAST,
    )
    with running_app(settings) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "authentication_failed"
    assert "check PGUSER and PGPASSWORD" in report["fallback_reason"]
    assert "DATABASE_URL" not in report["fallback_reason"] + report["last_error"]


def test_missing_database_is_reported(tmp_path: Path, pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/todo_no_such_db"
    with running_app(make_settings(tmp_path, database_url=url, **FAST)) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "database_missing"


def test_a_setting_the_server_refuses_is_a_configuration_error(tmp_path: Path, pg_url: str) -> None:
    url = pg_url + "?options=-c%20statement_timeout%3Dabc"
    settings = make_settings(tmp_path, database_url=url, database_startup_retries=3, **FAST)
    with running_app(settings) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "configuration", report
    assert "host and port" not in report["fallback_reason"]
    assert "options=-c name=value" in report["fallback_reason"]
    # The server answered: retrying the same setting cannot help.
    assert report["connection_attempts_count"] == 2  # the primary once, then SQLite


def test_tls_required_but_not_offered_is_a_tls_failure(tmp_path: Path, pg_url: str) -> None:
    # The machine's server has ssl=off.
    url = pg_url + "?sslmode=require"
    with running_app(make_settings(tmp_path, database_url=url, **FAST)) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "tls"


def test_a_missing_mysql_database_is_reported_as_missing(
    tmp_path: Path, mysql_database: str
) -> None:
    # PyMySQL gives the error a SQLSTATE (42000) that means nothing definite: the
    # error number (1049) must decide.
    url = mysql_url(mysql_database).rsplit("/", 1)[0] + "/todo_no_such_db_m"
    with running_app(make_settings(tmp_path, database_url=url, **FAST)) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "database_missing", report
    assert "create it or fix the database name in DATABASE_URL" in report["fallback_reason"]


def test_a_wrong_mysql_password_is_an_authentication_failure(
    tmp_path: Path, mysql_special_user: tuple[str, str], mysql_database: str
) -> None:
    user, _ = mysql_special_user
    url = f"mysql://{user}:not-the-password@127.0.0.1:3306/{mysql_database}"
    with running_app(make_settings(tmp_path, database_url=url, **FAST)) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "authentication_failed", report
    assert user not in str(report)


def test_an_unreadable_tls_file_is_a_configuration_error_not_a_crash(
    tmp_path: Path, mysql_database: str
) -> None:
    url = mysql_url(mysql_database) + "?ssl-mode=VERIFY_CA&ssl_ca=/todo/no/such/ca.pem"
    settings = make_settings(tmp_path, database_url=url, database_startup_retries=3, **FAST)
    with running_app(settings) as (_, client):
        report = wait_ready(client)
    assert report["last_error_kind"] == "configuration", report
    assert "fix the option 'ssl_ca' in DATABASE_URL" in report["fallback_reason"]
    assert "host and port" not in report["fallback_reason"]
    assert report["connection_attempts_count"] == 2  # not retried: the file will not appear


@pytest.mark.parametrize("scheme", ["mysql", "mysql2", "mariadb", "MySQL+PyMySQL"])
def test_mysql_schemes_reach_mariadb(
    tmp_path: Path, scheme: str, mysql_special_user: tuple[str, str], mysql_database: str
) -> None:
    user, password = mysql_special_user
    url = f"{scheme}://{user}:{password}@127.0.0.1:3306/{mysql_database}?reconnect=true"
    with running_app(make_settings(tmp_path, database_url=url, **FAST)) as (app, client):
        report = wait_ready(client)
        assert report["database_type"] == "mysql", report
        store_and_read_task(app)
        body = client.get("/config/database").text
    assert password not in body and user not in body


def test_refused_primary_falls_back_within_the_retry_budget(
    tmp_path: Path, refused_port: int
) -> None:
    url = f"postgresql://u:pw@127.0.0.1:{refused_port}/db"
    settings = make_settings(tmp_path, database_url=url, database_startup_retries=3, **FAST)
    started = time.monotonic()
    with running_app(settings) as (_, client):
        assert client.get("/health").status_code == 200
        report = wait_ready(client)
        elapsed = time.monotonic() - started
    assert report["fallback_active"] is True
    assert report["last_error_kind"] == "unreachable"
    # The first attempt, 3 retries, then the SQLite check.
    assert report["connection_attempts_count"] == 5
    assert elapsed < 3 * 2 + 1


def test_hung_primary_does_not_block_health_and_falls_back(tmp_path: Path, hung_port: int) -> None:
    url = f"postgresql://u:pw@127.0.0.1:{hung_port}/db"
    settings = make_settings(tmp_path, database_url=url, database_startup_retries=2, **FAST)
    started = time.monotonic()
    with running_app(settings) as (_, client):
        health = client.get("/health")
        assert time.monotonic() - started < 2
        assert health.status_code == 200
        assert health.json()["database_status"] == "CONNECTING_PRIMARY"
        # A data request during the decision waits at most the connect timeout, then 503.
        report = wait_ready(client, timeout=20)
    assert report["last_error_kind"] == "timeout"
    assert report["fallback_active"] is True
    # 2 attempts, each bounded by max(2 s libpq minimum, timeout + 1 s), plus one delay.
    assert time.monotonic() - started < 2 * 3 + 2


def test_invalid_only_keeps_retrying_then_uses_the_primary(
    tmp_path: Path, refused_port: int, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/{database}"
    settings = make_settings(tmp_path, database_url=url, database_fallback="invalid-only", **FAST)
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        assert report["connection_state"] == "PRIMARY_UNAVAILABLE"
        assert report["fallback_active"] is False
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["code"] == "NOT_READY"
        assert client.get("/health").status_code == 200
        forwarder = Forwarder(("127.0.0.1", 5432), port=refused_port)
        try:
            report = wait_ready(client, timeout=30)
            assert report["connection_state"] == "PRIMARY_CONNECTED"
            assert report["fallback_active"] is False
        finally:
            forwarder.close()


def test_never_policy_reports_instead_of_falling_back(tmp_path: Path, refused_port: int) -> None:
    url = f"postgresql://u:pw@127.0.0.1:{refused_port}/db"
    settings = make_settings(tmp_path, database_url=url, database_fallback="never", **FAST)
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        ready = client.get("/ready")
    assert report["fallback_active"] is False
    assert report["sqlite_path"] is None
    assert ready.status_code == 503
    assert report["last_error_kind"] == "unreachable"
    assert not (tmp_path / "todo.db").exists()


def test_never_policy_without_a_url_is_a_connection_error(tmp_path: Path) -> None:
    with running_app(make_settings(tmp_path, database_fallback="never")) as (_, client):
        report = wait_decided(client)
        health = client.get("/health")
        ready = client.get("/ready")
    assert report["connection_state"] == "CONNECTION_ERROR"
    assert "DATABASE_URL is not set" in report["state_reason"]
    assert health.status_code == 503
    assert ready.status_code == 503
    assert "not set" in ready.json()["error"]


def test_invalid_only_still_falls_back_for_an_invalid_url(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, database_url="mongodb://x/y", database_fallback="invalid-only"
    )
    with running_app(settings) as (_, client):
        report = wait_ready(client)
    assert report["fallback_active"] is True
