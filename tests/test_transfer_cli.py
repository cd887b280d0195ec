"""`python -m src export | import | copy` as real subprocesses on SQLite, PostgreSQL and MariaDB:
10 000-task round trips with every field equal, idempotent re-runs, interrupted runs
finished by a re-run, refused input, atomic export files, and the configured database
(never a silent fallback)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from src.models.task import TaskRecord
from src.services.task_lines import encode_task
from tests.conftest import MYSQL_ADMIN_USER, MYSQL_HOST, MYSQL_PORT, mysql_url, wait_until
from tests.server import ROOT, clean_env
from tests.test_transfer import engine_for, make_tasks, seed, stored_tasks

PASSWORD = "Never-Print-Me-7x"  # loopback PostgreSQL trusts; the password is only carried


def cli_env(tmp_path: Path, **env: str) -> dict[str, str]:
    env.setdefault("SQLITE_PATH", str(tmp_path / "app.db"))
    return {**clean_env(HOME=str(tmp_path / "home"), **env), "PYTHONPATH": str(ROOT)}


def cli(
    tmp_path: Path, *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "src", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, **env),
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def with_password(pg_url: str) -> str:
    return pg_url.replace("postgres@", f"postgres:{PASSWORD}@")


@contextlib.contextmanager
def engine(url: str, tmp_path: Path) -> Iterator[Engine]:
    created = engine_for(url, tmp_path)
    try:
        yield created
    finally:
        created.dispose()


def count(url: str, tmp_path: Path) -> int:
    with engine(url, tmp_path) as e, e.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())


def line(task: TaskRecord, **changes: object) -> bytes:
    """The task's export line (no line end) with fields changed; None removes a field."""
    document = json.loads(encode_task(task))
    document.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del document[key]
    return json.dumps(document).encode()


TASKS = make_tasks(10_000)
EXPECTED = sorted(TASKS, key=lambda task: task.id)


def test_copy_round_trips_10000_tasks_through_all_three(
    tmp_path: Path, pg_url: str, mysql_database: str
) -> None:
    app_db = f"sqlite:///{tmp_path / 'app.db'}"
    back_db = f"sqlite:///{tmp_path / 'back.db'}"
    my_url = mysql_url(mysql_database)
    with engine(app_db, tmp_path) as app:
        seed(app, TASKS)

    # The configured database (here the app's SQLite file) to PostgreSQL, via a pasted URL.
    first = cli(tmp_path, "copy", "--to", f"  '{with_password(pg_url)}'\n")
    assert first.returncode == 0, err(first)
    assert "10000 added" in err(first)
    assert PASSWORD not in err(first) + first.stdout.decode()
    # PostgreSQL (--from) to MariaDB, then MariaDB (the configured primary) back to SQLite.
    second = cli(tmp_path, "copy", "--from", pg_url, "--to", my_url)
    assert second.returncode == 0, err(second)
    third = cli(tmp_path, "copy", "--to", back_db, DATABASE_URL=my_url)
    assert third.returncode == 0, err(third)
    for url in (pg_url, my_url, back_db):
        with engine(url, tmp_path) as copied:
            assert stored_tasks(copied) == EXPECTED, url
    # (Re-running a copy adds nothing: the interrupted-copy tests below show it.)


def test_export_import_round_trips_10000_tasks_through_all_three(
    tmp_path: Path, pg_url: str, mysql_database: str
) -> None:
    my_url = mysql_url(mysql_database)
    with engine(pg_url, tmp_path) as pg:
        seed(pg, TASKS)
    exported = tmp_path / "tasks.jsonl"

    out = cli(tmp_path, "export", "--output", str(exported), DATABASE_URL=with_password(pg_url))
    assert out.returncode == 0, err(out)
    assert "Exported 10000 tasks" in err(out) and PASSWORD not in err(out)
    lines = exported.read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(encode_task(task) for task in TASKS)
    first = json.loads(lines[0])
    assert first["completed"] is (first["status"] == "completed")

    loaded = cli(tmp_path, "import", str(exported), DATABASE_URL=my_url)
    assert loaded.returncode == 0, err(loaded)
    assert "10000 added" in err(loaded)
    # MariaDB to stdout, into SQLite from stdin.
    piped = cli(tmp_path, "export", DATABASE_URL=my_url)
    assert piped.returncode == 0, err(piped)
    assert sorted(piped.stdout.splitlines(keepends=True)) == sorted(lines)
    into_sqlite = cli(tmp_path, "import", "-", stdin=piped.stdout)
    assert into_sqlite.returncode == 0, err(into_sqlite)
    for url in (my_url, f"sqlite:///{tmp_path / 'app.db'}"):
        with engine(url, tmp_path) as loaded_engine:
            assert stored_tasks(loaded_engine) == EXPECTED, url

    again = cli(tmp_path, "import", str(exported), DATABASE_URL=my_url)
    assert again.returncode == 0, err(again)
    assert "0 added, 0 replaced by a newer version, 10000 already identical" in err(again)
    assert count(my_url, tmp_path) == 10_000


def test_a_copy_killed_mid_run_finishes_when_run_again(tmp_path: Path, pg_url: str) -> None:
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, TASKS)
    process = subprocess.Popen(
        [sys.executable, "-m", "src", "copy", "--to", pg_url, "--batch-size", "20"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def copied() -> int:
            with contextlib.suppress(sa.exc.DBAPIError):
                return count(pg_url, tmp_path)
            return 0

        assert wait_until(lambda: copied() > 0, timeout=60, step=0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the copy finished before it was killed"
    done = copied()
    assert 0 < done < 10_000 and done % 20 == 0  # whole batches only

    rerun = cli(tmp_path, "copy", "--to", pg_url)
    assert rerun.returncode == 0, err(rerun)
    assert f"{10_000 - done} added" in err(rerun)
    assert f"{done} already identical" in err(rerun)
    with engine(pg_url, tmp_path) as pg:
        assert stored_tasks(pg) == EXPECTED


def test_a_batch_the_target_refuses_stops_the_copy_and_a_rerun_completes(
    tmp_path: Path, mysql_database: str
) -> None:
    tasks = sorted(make_tasks(2000, seed=3), key=lambda task: task.id)
    my_url = mysql_url(mysql_database)
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, tasks)
    engine_for(my_url, tmp_path).dispose()  # migrated, so the trigger has a table
    admin = pymysql.connect(
        host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_ADMIN_USER, database=mysql_database
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON tasks FOR EACH ROW "
                f"IF NEW.id = '{tasks[1234].id}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF"
            )
        failed = cli(tmp_path, "copy", "--to", my_url, "--batch-size", "100")
        assert failed.returncode == 1
        assert "failed after 1200 tasks" in err(failed), err(failed)
        assert "refused by the test" in err(failed)
        assert "Run the same command again" in err(failed)
        assert count(my_url, tmp_path) == 1200
        with admin.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_one")
    finally:
        admin.close()
    rerun = cli(tmp_path, "copy", "--to", my_url, "--batch-size", "100")
    assert rerun.returncode == 0, err(rerun)
    assert "800 added" in err(rerun) and "1200 already identical" in err(rerun)
    with engine(my_url, tmp_path) as my:
        assert stored_tasks(my) == tasks


def test_counts_of_one_are_said_in_the_singular(tmp_path: Path) -> None:
    """`import` of a file with one bad line said "has 1 invalid lines"; `export` of one
    task, "Exported 1 tasks"."""
    good, other = make_tasks(2)
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_bytes(line(good) + b"\n" + line(other, title="   ") + b"\n")
    refused = cli(tmp_path, "import", str(bad_file))
    assert refused.returncode == 2, err(refused)
    assert "has 1 invalid line. Fix it and run the import again:" in err(refused), err(refused)
    one_file = tmp_path / "one.jsonl"
    one_file.write_bytes(line(good) + b"\n")
    imported = cli(tmp_path, "import", str(one_file))
    assert imported.returncode == 0, err(imported)
    assert "Merged the 1 task of" in err(imported), err(imported)
    exported = cli(tmp_path, "export", "--output", str(tmp_path / "out.jsonl"))
    assert exported.returncode == 0, err(exported)
    assert "Exported 1 task from" in err(exported), err(exported)
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    copied = cli(tmp_path, "copy", "--to", target)
    assert copied.returncode == 0, err(copied)
    assert "Copied 1 task from" in err(copied), err(copied)


def test_bad_lines_are_refused_by_number_and_nothing_is_written(
    tmp_path: Path, pg_url: str
) -> None:
    tasks = make_tasks(6)
    lines = [
        line(tasks[0]),
        b'{"id": "not json"',
        line(tasks[1]),
        line(tasks[2], title="   "),
        b'{"title":"' + b"x" * 300_000 + b'"}',
        line(tasks[3]),
        line(tasks[4], completed=tasks[4].status != "completed"),
        line(tasks[5]),
    ]
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_bytes(b"\n".join(lines))
    result = cli(tmp_path, "import", str(bad_file), DATABASE_URL=pg_url)
    assert result.returncode == 2, err(result)
    message = err(result)
    assert "Nothing was imported" in message and "4 invalid lines" in message
    assert "Line 2 is not valid JSON" in message
    assert "Line 4, field title: must contain a character other than whitespace" in message
    assert "Line 5 is longer than 262144 bytes" in message
    assert "Line 7, field completed: status" in message and "contradict" in message
    with psycopg.connect(pg_url) as connection:  # not even migrated
        assert connection.execute("SELECT to_regclass('tasks')").fetchone() == (None,)


def test_import_accepts_bom_crlf_blank_lines_completed_alone_and_keeps_the_newest_duplicate(
    tmp_path: Path,
) -> None:
    a, b, c = make_tasks(3)
    b_newer = b._replace(title="b newer", updated_at=b.updated_at.replace(year=2030))

    content = b"\xef\xbb\xbf" + b"\r\n".join(
        [
            line(a, status=None),  # completed alone
            b"",
            b"   ",
            line(b_newer, completed=None),  # status alone
            line(b),  # older duplicate after the newer one: ignored
            line(c, description=None),  # description absent: null
        ]
    )
    path = tmp_path / "windows.jsonl"
    path.write_bytes(content + b"\r\n")
    for batch_size in ("1", "500"):  # duplicates across batches and within one
        result = cli(tmp_path, "import", str(path), "--batch-size", batch_size)
        assert result.returncode == 0, err(result)
        with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
            stored = {task.id: task for task in stored_tasks(app)}
        assert stored == {a.id: a, b.id: b_newer, c.id: c._replace(description=None)}
        (tmp_path / "app.db").unlink()


def test_an_interrupted_export_never_leaves_a_truncated_file(tmp_path: Path) -> None:
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, TASKS)
    output = tmp_path / "export.jsonl"
    output.write_bytes(b"the previous export\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "src", "export", "--output", str(output), "--batch-size", "1"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def partial_written() -> bool:
        return any(p.stat().st_size > 0 for p in tmp_path.glob(".export.jsonl.*.partial"))

    try:
        assert wait_until(partial_written, timeout=60, step=0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the export finished before it was killed"
    assert output.read_bytes() == b"the previous export\n"

    finished = cli(tmp_path, "export", "--output", str(output))
    assert finished.returncode == 0, err(finished)
    assert sorted(output.read_bytes().splitlines(keepends=True)) == sorted(
        encode_task(task) for task in TASKS
    )


def test_an_empty_export_does_not_replace_a_file_with_data_unless_forced(tmp_path: Path) -> None:
    engine_for(f"sqlite:///{tmp_path / 'app.db'}", tmp_path).dispose()  # migrated, empty
    output = tmp_path / "backup.jsonl"
    output.write_bytes(encode_task(make_tasks(1)[0]))
    refused = cli(tmp_path, "export", "--output", str(output))
    assert refused.returncode == 1
    assert "--force" in err(refused)
    assert output.read_bytes() == encode_task(make_tasks(1)[0])
    assert list(tmp_path.glob(".backup.jsonl.*")) == []
    forced = cli(tmp_path, "export", "--output", str(output), "--force")
    assert forced.returncode == 0, err(forced)
    assert output.read_bytes() == b""


def test_an_unreachable_primary_fails_and_never_uses_sqlite(
    tmp_path: Path, refused_port: int
) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{refused_port}/todo"
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, make_tasks(3))
    tasks_file = tmp_path / "t.jsonl"
    tasks_file.write_bytes(encode_task(make_tasks(1, seed=99)[0]))
    for args in (("export",), ("import", str(tasks_file)), ("copy", "--to", "sqlite:///x.db")):
        result = cli(tmp_path, *args, DATABASE_URL=url)
        assert result.returncode == 1, (args, err(result))
        assert "Cannot connect to the primary database" in err(result)
        assert "does not fall back to SQLite" in err(result)
        assert PASSWORD not in err(result) and result.stdout == b""
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        assert len(stored_tasks(app)) == 3
    assert not (tmp_path / "x.db").exists()


def test_usage_errors_are_sentences_with_exit_code_2(tmp_path: Path, pg_url: str) -> None:
    engine_for(f"sqlite:///{tmp_path / 'app.db'}", tmp_path).dispose()
    same_pg = pg_url.replace("127.0.0.1", "localhost")
    cases = [
        (("copy", "--to", pg_url), {"DATABASE_URL": same_pg}, "same database"),
        (("copy", "--to", "sqlite:///app.db"), {}, "same database"),
        (("copy", "--to", "postgresql://u:pw@host:port/db"), {}, "placeholder"),
        (("copy", "--to", "sqlite://"), {}, "in-memory"),
        (("export",), {"DATABASE_URL": "mongodb://db/x"}, "not supported"),
        (("import", str(tmp_path / "missing.jsonl")), {}, "Cannot read"),
        (("copy", "--to", pg_url, "--batch-size", "0"), {}, "--batch-size"),
    ]
    for args, env, expected in cases:
        result = cli(tmp_path, *args, **env)
        assert result.returncode == 2, (args, err(result))
        assert expected in err(result), (args, err(result))
        assert "Traceback" not in err(result)


def test_a_missing_source_is_reported_not_exported_as_empty(tmp_path: Path, pg_url: str) -> None:
    no_file = cli(tmp_path, "export")
    assert no_file.returncode == 1
    assert f"There is no SQLite database at {tmp_path / 'app.db'}" in err(no_file)
    assert not (tmp_path / "app.db").exists()
    no_table = cli(tmp_path, "export", DATABASE_URL=pg_url)
    assert no_table.returncode == 1
    assert "has no tasks table" in err(no_table) and no_table.stdout == b""


def test_a_fallback_that_was_handed_over_says_where_its_tasks_went(
    tmp_path: Path, pg_url: str
) -> None:
    from src.database.fallback_file import claim
    from src.database.promotion import move_tasks

    with (
        engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as fallback,
        engine(pg_url, tmp_path) as primary,
    ):
        url = primary.url
        assert claim(fallback, url)
        seed(fallback, make_tasks(3))
        assert move_tasks(fallback, primary, url).seen == 3
    result = cli(tmp_path, "export")
    assert result.returncode == 1
    assert "its tasks were moved there at 20" in err(result), err(result)
    assert "never run" not in err(result)


def test_a_task_id_owned_by_another_user_is_left_alone_and_named(tmp_path: Path) -> None:
    theirs, mine = make_tasks(2)
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, [theirs._replace(user_id="mallory")])
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        encode_task(theirs._replace(title="hijack", user_id="alice")) + encode_task(mine)
    )
    result = cli(tmp_path, "import", str(path))
    assert result.returncode == 1, err(result)
    assert "1 added" in err(result)
    assert "Left out 1 task(s)" in err(result) and theirs.id in err(result)
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        assert stored_tasks(app) == sorted(
            [theirs._replace(user_id="mallory"), mine], key=lambda t: t.id
        )


def test_a_refused_login_names_the_option_that_gave_the_url(tmp_path: Path) -> None:
    """The hint sends the operator to the URL that failed (--to, --from), not to a
    DATABASE_URL that was never set."""
    with engine(f"sqlite:///{tmp_path / 'app.db'}", tmp_path) as app:
        seed(app, make_tasks(2))
    wrong = f"mysql://u:WrongPw%40x@{MYSQL_HOST}:{MYSQL_PORT}/db"
    cases = (
        (("copy", "--to", wrong), "--to"),
        (("copy", "--from", wrong, "--to", f"sqlite:///{tmp_path / 'x.db'}"), "--from"),
    )
    for args, option in cases:
        result = cli(tmp_path, *args)
        assert result.returncode == 1, (args, err(result))
        assert "authentication_failed" in err(result), err(result)
        assert f"check the user name and password in {option}" in err(result), err(result)
        assert "DATABASE_URL" not in err(result)
        assert "WrongPw" not in err(result)
