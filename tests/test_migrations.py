"""Migrations: applied at start-up and by `python -m src migrate`, safe when workers race."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from src.database.migrations import head_revision
from tests.server import ROOT, clean_env


def _urls(tmp_path: Path, pg_url: str, mysql_database: str) -> dict[str, str]:
    return {
        "sqlite": f"sqlite:///{tmp_path / 'race.db'}",
        "postgresql": pg_url,
        "mysql": f"mysql://root@127.0.0.1:3306/{mysql_database}",
    }


def _check_schema(url: str) -> None:
    from src.database.resolver import resolve_database_url

    resolved = resolve_database_url(url)
    assert resolved.url is not None
    engine = create_engine(resolved.url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("select version_num from alembic_version")).all()
            assert versions == [(head_revision(),)]
            columns = {c["name"] for c in inspect(conn).get_columns("tasks")}
            assert columns == {
                "id",
                "user_id",
                "title",
                "description",
                "status",
                "created_at",
                "updated_at",
            }
            indexes = {i["name"] for i in inspect(conn).get_indexes("tasks")}
            assert {"ix_tasks_user_created", "ix_tasks_user_status_created"} <= indexes
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_concurrent_migrate_commands_agree(
    tmp_path: Path, backend: str, pg_url: str, mysql_database: str
) -> None:
    url = _urls(tmp_path, pg_url, mysql_database)[backend]
    env = {
        **clean_env(DATABASE_URL=url, HOME=str(tmp_path), DATABASE_FALLBACK="never"),
        "PYTHONPATH": str(ROOT),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "src", "migrate"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    # One of them migrated; the others found it done (under the lock, or after it).
    migrated = [out for out in outputs if "Migrated the primary database to revision" in out]
    assert len(migrated) == 1, outputs
    assert "(it had no tables of this app)" in migrated[0]
    already = "The primary database is already at the newest revision"
    assert sum(already in out for out in outputs) == 3, outputs
    _check_schema(url)


def test_migrate_says_when_there_was_nothing_to_do(tmp_path: Path) -> None:
    env = {
        **clean_env(SQLITE_PATH=str(tmp_path / "todo.db"), HOME=str(tmp_path)),
        "PYTHONPATH": str(ROOT),
    }

    def migrate() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "src", "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = migrate()
    assert f"Migrated the SQLite database {tmp_path / 'todo.db'} to revision" in first
    again = migrate()
    assert "Migrated" not in again
    assert f"is already at the newest revision, {head_revision()}: nothing was changed" in again


def test_plain_alembic_command_uses_the_app_rules(tmp_path: Path, pg_url: str) -> None:
    env = {**clean_env(DATABASE_URL=f"'{pg_url}'\n", HOME=str(tmp_path)), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "alembic"),
            "-c",
            str(ROOT / "alembic.ini"),
            "upgrade",
            "head",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    _check_schema(pg_url)


def test_downgrade_and_upgrade_round_trip(tmp_path: Path, mysql_database: str) -> None:
    from alembic import command

    from src.database.migrations import alembic_config, migration_lock
    from src.database.resolver import resolve_database_url

    resolved = resolve_database_url(f"mysql://root@127.0.0.1:3306/{mysql_database}")
    assert resolved.url is not None
    engine = create_engine(resolved.url)
    try:
        for target in ("head", "base", "head"):
            with engine.connect() as conn, migration_lock(conn):
                config = alembic_config()
                config.attributes["connection"] = conn
                (command.upgrade if target == "head" else command.downgrade)(config, target)
    finally:
        engine.dispose()
    _check_schema(f"mysql://root@127.0.0.1:3306/{mysql_database}")


def test_the_start_up_shortcut_knows_the_newest_migration() -> None:
    """upgrade_to_head skips Alembic for a database at HEAD_REVISION; a new migration
    under alembic/versions must move it, or databases would never be upgraded."""
    from src.database.migrations import HEAD_REVISION

    assert head_revision() == HEAD_REVISION


def test_a_database_at_head_is_not_handed_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from src.database import migrations

    engine = create_engine(f"sqlite:///{tmp_path / 'head.db'}")
    assert migrations.upgrade_to_head(engine) == migrations.HEAD_REVISION  # migrates
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into tasks (id, user_id, title, status, created_at, "
                "updated_at) values ('k', 'u', 't', 'pending', '2026-01-01', "
                "'2026-01-01')"
            )
        )

    def no_alembic(*_: object) -> None:
        raise AssertionError("Alembic was consulted for a database at head")

    monkeypatch.setattr(migrations, "alembic_config", no_alembic)
    assert migrations.upgrade_to_head(engine) == migrations.HEAD_REVISION
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from tasks")).scalar_one() == 1
    # One revision behind (here: none recorded over our table) still goes through Alembic.
    with engine.begin() as conn:
        conn.execute(text("delete from alembic_version"))
    with pytest.raises(AssertionError, match="consulted"):
        migrations.upgrade_to_head(engine)
