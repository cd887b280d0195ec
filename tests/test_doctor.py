"""`python -m src doctor`: explains the configuration; the exit code says if the primary is used."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import PG_ADMIN, SPECIAL_PASSWORD, SPECIAL_USER
from tests.server import ROOT, clean_env


def doctor(tmp_path: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "src", "doctor", "--json", *args],
        cwd=tmp_path,
        env={**clean_env(HOME=str(tmp_path / "home"), **env), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout), result.stderr


def test_nothing_configured(tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path, SQLITE_PATH=str(tmp_path / "t.db"))
    assert code == 1
    assert report["backend"] is None
    assert report["would_fall_back"] is True
    assert report["fallback_reason"] == "DATABASE_URL is not set."
    assert report["sqlite_path"] == str(tmp_path / "t.db")
    # pytest's tmp_path lives in the temp dir, which is cleared: not persistent.
    assert report["persistent"] is False
    assert report["persistence_note"]
    assert report["sqlite_role"] == "database"
    assert set(report) >= {
        "backend",
        "url",
        "repairs",
        "errors",
        "would_fall_back",
        "fallback_reason",
        "sqlite_path",
        "persistent",
    }


def test_pasted_psql_command_is_repaired_and_connects(tmp_path: Path, pg_url: str) -> None:
    code, report, _ = doctor(tmp_path, "--connect", DATABASE_URL=f"  psql '{pg_url}'\n")
    assert code == 0, report
    assert report["backend"] == "postgresql"
    assert report["repairs"]
    assert report["connect"]["ok"] is True
    assert report["would_fall_back"] is False
    assert report["url"].startswith("postgresql+psycopg://***@127.0.0.1")


def test_persistence_describes_the_primary_when_it_will_be_used(tmp_path: Path) -> None:
    """Not the SQLite file (here in the temp dir) that only a fallback would use."""
    url = "postgresql://app:pw@db.example.com:5432/app"
    code, report, _ = doctor(tmp_path, DATABASE_URL=url, SQLITE_PATH=str(tmp_path / "t.db"))
    assert code == 0 and report["primary_will_be_used"] is True
    assert report["persistent"] is True
    assert "primary database (PostgreSQL)" in report["persistence_note"]
    assert "temporary directory" not in report["persistence_note"]
    assert report["sqlite_role"] == "fallback"
    text = _text(tmp_path, DATABASE_URL=url, SQLITE_PATH=str(tmp_path / "t.db"))
    assert "temporary directory" not in text
    assert "data:       The tasks are kept in the primary database (PostgreSQL)" in text
    assert f"fallback:   SQLite at {tmp_path / 't.db'}, only if the primary cannot" in text

    never = {"DATABASE_URL": url, "DATABASE_FALLBACK": "never"}
    code, report, _ = doctor(tmp_path, **never, SQLITE_PATH=str(tmp_path / "t.db"))
    assert report["persistent"] is True and report["sqlite_role"] is None
    assert "fallback:   none (DATABASE_FALLBACK=never)" in _text(tmp_path, **never)


def test_a_replicated_sqlite_file_is_described_by_its_replica(tmp_path: Path) -> None:
    """A file in the temp dir (a Space's disk) survives restarts through its replica; an
    invalid replica URL protects nothing, so the file's own facts stand."""
    replica = f"file://{tmp_path}/replica"
    code, report, _ = doctor(
        tmp_path, SQLITE_PATH=str(tmp_path / "t.db"), SQLITE_REPLICA_URL=replica
    )
    assert code == 1 and report["sqlite_role"] == "database"
    assert report["persistent"] is True
    assert report["persistence_note"].startswith(f"Replicated to {replica} every 1 s")
    assert "temporary directory" not in report["persistence_note"]

    invalid = "s3://bucket/x?bogus=1"
    code, report, _ = doctor(
        tmp_path, SQLITE_PATH=str(tmp_path / "t.db"), SQLITE_REPLICA_URL=invalid
    )
    assert report["persistent"] is False
    assert "temporary directory" in report["persistence_note"]
    assert report["replication"]["errors"]


def test_a_sqlite_primary_is_described_as_the_file_it_is(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'primary.db'}"
    code, report, _ = doctor(tmp_path, DATABASE_URL=url)
    assert code == 0
    assert report["persistent"] is False  # pytest's tmp_path is in the temp dir
    assert "primary.db is in the temporary directory" in report["persistence_note"]
    assert "point DATABASE_URL at a file" in report["persistence_note"]


def _text(tmp_path: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "src", "doctor"],
        cwd=tmp_path,
        env={**clean_env(HOME=str(tmp_path / "home"), **env), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


def test_placeholder_is_an_error_with_a_sentence(tmp_path: Path) -> None:
    url = "postgresql://postgres:[YOUR-PASSWORD]@db.abcdefghijkl.supabase.co:5432/postgres"
    code, report, _ = doctor(tmp_path, DATABASE_URL=url)
    assert code == 1
    assert report["errors"]
    assert any("placeholder" in error.lower() for error in report["errors"]), report["errors"]
    assert report["would_fall_back"] is True


def test_unreachable_primary_is_classified(tmp_path: Path, refused_port: int) -> None:
    url = f"postgresql://u:pw@127.0.0.1:{refused_port}/db"
    code, report, _ = doctor(tmp_path, "--connect", DATABASE_URL=url, SPACE_ID="me/todo")
    assert code == 1
    assert report["connect"]["kind"] == "unreachable"
    assert report["would_fall_back"] is True
    # On a Space the hint names the outbound port rule.
    assert "8080" in report["connect"]["error"]


def test_wrong_password_is_classified_and_never_shown(
    tmp_path: Path, scram_cluster: dict[str, Any]
) -> None:
    c = scram_cluster
    url = f"postgresql://{c['user']}:{SPECIAL_PASSWORD}x@{c['host']}:{c['port']}/{c['database']}"
    code, report, stderr = doctor(tmp_path, "--connect", DATABASE_URL=url)
    assert code == 1
    assert report["connect"]["kind"] == "authentication_failed"
    text = json.dumps(report) + stderr
    assert SPECIAL_USER not in text
    assert SPECIAL_PASSWORD not in text


def test_a_refused_login_from_the_pg_variables_names_them(
    tmp_path: Path, scram_cluster: dict[str, Any]
) -> None:
    c = scram_cluster
    code, report, _ = doctor(
        tmp_path,
        "--connect",
        PGHOST=c["host"],
        PGPORT=str(c["port"]),
        PGUSER=c["user"],
        PGPASSWORD="bad",
        PGDATABASE=c["database"],
    )
    assert code == 1
    assert report["connect"]["kind"] == "authentication_failed"
    assert "check PGUSER and PGPASSWORD" in report["connect"]["error"]
    assert "DATABASE_URL" not in report["connect"]["error"] + report["fallback_reason"]


def test_mysql_connect_errors_are_read_by_their_number(
    tmp_path: Path, mysql_special_user: tuple[str, str], mysql_database: str
) -> None:
    user, password = mysql_special_user
    base = "mysql://root@127.0.0.1:3306"
    _, report, _ = doctor(tmp_path, "--connect", DATABASE_URL=f"{base}/todo_no_such_db_m")
    assert report["connect"]["kind"] == "database_missing", report["connect"]
    assert "create it or fix the database name" in report["connect"]["error"]

    wrong = f"mysql://{user}:bad@127.0.0.1:3306/{mysql_database}"
    _, report, stderr = doctor(tmp_path, "--connect", DATABASE_URL=wrong)
    assert report["connect"]["kind"] == "authentication_failed", report["connect"]
    assert user not in json.dumps(report) + stderr

    # 1044: a real user, a database it has no rights on.
    other = f"mysql://{quote(user)}:{quote(password, safe='')}@127.0.0.1:3306/mysql"
    _, report, stderr = doctor(tmp_path, "--connect", DATABASE_URL=other)
    assert report["connect"]["kind"] == "authentication_failed", report["connect"]
    assert user not in json.dumps(report) + stderr
    assert password not in json.dumps(report) + stderr


@pytest.mark.parametrize(
    "options",
    ["-c statement_timeout=abc", "-c todo_no_such_setting=1", "-c work_mem=1", "garbage"],
)
def test_a_setting_the_server_refuses_is_configuration_not_the_host(
    tmp_path: Path, pg_url: str, options: str
) -> None:
    url = f"{pg_url}?options={quote(options, safe='')}"
    _, report, _ = doctor(tmp_path, "--connect", DATABASE_URL=url)
    assert report["connect"]["kind"] == "configuration", report["connect"]
    error = report["connect"]["error"]
    assert "options=-c name=value) in DATABASE_URL" in error
    assert "host and port" not in error and "Supabase" not in error


def test_a_login_the_server_refuses_is_authentication_not_the_host(
    tmp_path: Path, pg_database: str
) -> None:
    role = f"todo_nl_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
        admin.execute(f'CREATE ROLE "{role}_c" LOGIN')
        admin.execute(f'REVOKE CONNECT ON DATABASE "{pg_database}" FROM PUBLIC')
    try:
        for user in (role, f"{role}_c"):  # no LOGIN; no CONNECT privilege
            url = f"postgresql://{user}@127.0.0.1:5432/{pg_database}"
            _, report, stderr = doctor(tmp_path, "--connect", DATABASE_URL=url)
            assert report["connect"]["kind"] == "authentication_failed", report["connect"]
            assert user not in json.dumps(report) + stderr
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}_c"')


def test_a_tls_file_the_url_names_that_cannot_be_read_names_its_option(
    tmp_path: Path, mysql_database: str
) -> None:
    base = f"mysql://root@127.0.0.1:3306/{mysql_database}"
    not_pem = tmp_path / "not-a-certificate.pem"
    not_pem.write_text("hello\n")
    cases = {
        "?ssl_ca=/todo/no/such/ca.pem": ("ssl_ca", "does not exist"),
        # With ssl-mode the TLS context is built by the app: that failed outside the
        # connect attempt and ended doctor with a traceback.
        "?ssl-mode=VERIFY_CA&ssl_ca=/todo/no/such/ca.pem": ("ssl_ca", "does not exist"),
        f"?ssl-mode=VERIFY_CA&ssl_ca={not_pem}": ("ssl_ca", "could not be loaded for TLS"),
        f"?ssl-mode=REQUIRED&ssl_cert={tmp_path}": ("ssl_cert", "is a directory"),
        f"?ssl_capath={not_pem}": ("ssl_capath", "is not a directory"),
    }
    for query, (option, why) in cases.items():
        code, report, stderr = doctor(tmp_path, "--connect", DATABASE_URL=base + query)
        assert code == 1 and "Traceback" not in stderr, stderr
        assert report["connect"]["kind"] == "configuration", (query, report["connect"])
        error = report["connect"]["error"]
        assert f"fix the option '{option}' in DATABASE_URL" in error, error
        assert why in error and "host and port" not in error, error


def test_never_policy_means_no_database(tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path, DATABASE_URL="mongodb://x/y", DATABASE_FALLBACK="never")
    assert code == 1
    assert report["would_fall_back"] is False
    assert report["persistent"] is None
    assert report["persistence_note"] is None and report["sqlite_role"] is None


def test_reveal_password_only_on_a_terminal(tmp_path: Path) -> None:
    url = f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@db.example.com:5432/app"
    code, report, stderr = doctor(tmp_path, "--reveal-password", DATABASE_URL=url)
    assert code == 0
    assert SPECIAL_PASSWORD not in json.dumps(report)
    assert "not a terminal" in stderr

    # Now with a real pseudo-terminal as stdout.
    primary, secondary = pty.openpty()
    env = {**clean_env(HOME=str(tmp_path), DATABASE_URL=url), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "src", "doctor", "--json", "--reveal-password"],
        cwd=tmp_path,
        env=env,
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(30)
    os.close(primary)
    shown = json.loads(output.decode())["url"]
    assert shown.startswith(f"postgresql+psycopg://{SPECIAL_USER}:")
    assert "***" not in shown


def test_a_reader_that_closes_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`python -m src doctor --connect | head -3` ended with a BrokenPipeError traceback.
    Here the pipe's reader is gone before the command writes its first byte, which is what
    a `head` that has had its lines does to the rest of the output (whatever the timing)."""
    env = {
        **clean_env(HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "t.db")),
        "PYTHONPATH": str(ROOT),
    }
    for command in (
        ["doctor", "--connect"],
        ["doctor", "--json"],
        ["token", "--user", "alice"],
    ):
        read_end, write_end = os.pipe()
        os.close(read_end)
        process = subprocess.Popen(
            [sys.executable, "-m", "src", *command],
            cwd=tmp_path,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
        os.close(write_end)
        _, stderr = process.communicate(timeout=60)
        text = stderr.decode()
        assert "Traceback" not in text and "BrokenPipeError" not in text, (command, text)
        assert "Exception ignored" not in text, (command, text)
        # What a shell reports for a process SIGPIPE killed.
        assert process.returncode == 141, (command, process.returncode, text)

    # The shell pipeline as reported.
    pipeline = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m src doctor --connect | head -3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(pipeline.stdout.splitlines()) == 3
    assert "Traceback" not in pipeline.stderr, pipeline.stderr


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_url_creates_no_file(tmp_path: Path, url: str) -> None:
    code, report, _ = doctor(tmp_path, "--connect", DATABASE_URL=url)
    assert code == 0 and report["connect"]["ok"] is True
    assert {p.name for p in tmp_path.iterdir()} <= {"home"}
