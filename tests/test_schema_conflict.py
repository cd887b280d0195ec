"""A reachable primary is never abandoned (issue: "a reachable primary whose schema can't
be migrated is silently abandoned"). On the real servers: a foreign `tasks` table or an
unknown schema revision is refused with the reason — readiness 503, data routes 503,
nothing written to SQLite, the user's table untouched — and `doctor --connect`, `migrate`
and `alembic upgrade head` all say so and exit non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import (
    PG_ADMIN,
    ROOT,
    TEST_SECRET,
    _mysql_admin,
    bearer,
    make_settings,
    mysql_url,
    running_app,
    wait_decided,
    wait_ready,
)
from tests.server import clean_env

# What older apps of this kind create.
FOREIGN_PG = "CREATE TABLE tasks (id serial PRIMARY KEY, title text, completed boolean)"
FOREIGN_MYSQL = (
    "CREATE TABLE tasks (id INT AUTO_INCREMENT PRIMARY KEY, title TEXT, completed BOOLEAN)"
)


def _pg(database: str, *statements: str) -> list[tuple[object, ...]]:
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    rows: list[tuple[object, ...]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            if cursor.description:
                rows = cursor.fetchall()
    return rows


@pytest.mark.parametrize("policy", ["auto", "invalid-only", "never"])
def test_foreign_tasks_table_is_refused_and_nothing_goes_to_sqlite(
    tmp_path: Path, pg_url: str, pg_database: str, policy: str
) -> None:
    _pg(pg_database, FOREIGN_PG, "INSERT INTO tasks (title, completed) VALUES ('mine', true)")
    sqlite_file = tmp_path / "todo.db"
    settings = make_settings(
        tmp_path,
        database_url=pg_url,
        database_fallback=policy,
        better_auth_secret=TEST_SECRET,
        database_connect_timeout=2,
    )
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        assert report["connection_state"] == "CONNECTION_ERROR", report
        assert report["fallback_active"] is False
        assert report["last_error_kind"] == "schema_incompatible"
        assert "already has a table named 'tasks'" in report["state_reason"]
        assert "completed boolean" in report["last_error"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "tasks" in ready.json()["error"]
        response = client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice"))
        assert response.status_code == 503
        assert response.json()["code"] == "DATABASE_UNAVAILABLE"
        page = client.get("/").text
        assert "already has a table named" in page
    assert not sqlite_file.exists()
    assert _pg(pg_database, "SELECT title, completed FROM tasks") == [("mine", True)]
    columns = _pg(
        pg_database,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks' "
        "ORDER BY ordinal_position",
    )
    assert [c[0] for c in columns] == ["id", "title", "completed"]


def test_renaming_the_foreign_table_needs_no_restart(
    tmp_path: Path, pg_url: str, pg_database: str
) -> None:
    """What the refusal says is true: the app tries the primary again by itself."""
    _pg(pg_database, FOREIGN_PG)
    settings = make_settings(
        tmp_path, database_url=pg_url, better_auth_secret=TEST_SECRET, database_connect_timeout=2
    )
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        assert report["connection_state"] == "CONNECTION_ERROR", report
        assert "no restart" in report["last_error"] and "then restart" not in report["last_error"]
        _pg(pg_database, "ALTER TABLE tasks RENAME TO tasks_old")
        report = wait_ready(client, timeout=20)
        assert report["connection_state"] == "PRIMARY_CONNECTED", report
        created = client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice"))
        assert created.status_code == 201, created.text
    assert not (tmp_path / "todo.db").exists()


def test_unknown_revision_is_refused(tmp_path: Path, pg_url: str, pg_database: str) -> None:
    _pg(
        pg_database,
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('9f3e2a1b7c4d')",
    )
    settings = make_settings(tmp_path, database_url=pg_url, database_connect_timeout=2)
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        assert report["connection_state"] == "CONNECTION_ERROR", report
        assert "'9f3e2a1b7c4d'" in report["state_reason"]
        assert client.get("/ready").status_code == 503
    assert not (tmp_path / "todo.db").exists()
    assert _pg(pg_database, "SELECT version_num FROM alembic_version") == [("9f3e2a1b7c4d",)]


def test_foreign_table_on_mariadb_is_refused(tmp_path: Path, mysql_database: str) -> None:
    admin = _mysql_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"USE `{mysql_database}`")
            cursor.execute(FOREIGN_MYSQL)
    finally:
        admin.close()
    settings = make_settings(
        tmp_path, database_url=mysql_url(mysql_database), database_connect_timeout=2
    )
    with running_app(settings) as (_, client):
        report = wait_decided(client)
        assert report["connection_state"] == "CONNECTION_ERROR", report
        assert report["last_error_kind"] == "schema_incompatible"
    assert not (tmp_path / "todo.db").exists()


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=clean_env(HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "todo.db"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_connect_checks_the_schema(tmp_path: Path, pg_url: str, pg_database: str) -> None:
    fine = _cli(tmp_path, "src", "doctor", "--connect", DATABASE_URL=pg_url)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "schema:     no tables of this app yet" in fine.stdout
    _pg(pg_database, FOREIGN_PG)
    refused = _cli(tmp_path, "src", "doctor", "--connect", DATABASE_URL=pg_url)
    assert refused.returncode == 1, refused.stdout
    assert "a 'tasks' table of another layout" in refused.stdout
    assert "NO database will be used" in refused.stdout


def test_migrate_never_succeeds_on_another_database(tmp_path: Path, refused_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{refused_port}/todo"
    quick = {"DATABASE_URL": url, "DATABASE_STARTUP_RETRIES": "0", "DATABASE_FALLBACK": "auto"}
    migrate = _cli(tmp_path, "src", "migrate", **quick)
    assert migrate.returncode == 1
    assert "Not migrated: the primary database could not be used" in migrate.stderr
    assert "Migrated" not in migrate.stdout
    alembic = _cli(tmp_path, "alembic", "upgrade", "head", **quick)
    assert alembic.returncode != 0
    assert "Not migrated" in alembic.stderr
    assert not (tmp_path / "todo.db").exists()


def test_migrate_refuses_a_foreign_table(tmp_path: Path, pg_url: str, pg_database: str) -> None:
    _pg(pg_database, FOREIGN_PG)
    migrate = _cli(tmp_path, "src", "migrate", DATABASE_URL=pg_url)
    assert migrate.returncode == 1
    assert "already has a table named 'tasks'" in migrate.stderr
    alembic = _cli(tmp_path, "alembic", "upgrade", "head", DATABASE_URL=pg_url)
    assert alembic.returncode != 0
    assert "already has a table named 'tasks'" in alembic.stderr
    done = _cli(tmp_path, "src", "migrate")  # no primary: the app's SQLite is the one
    assert done.returncode == 0, done.stderr
    assert "Migrated the SQLite database" in done.stdout
