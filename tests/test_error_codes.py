"""What a real server's error means (`code_of`), read from its code, never its text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from src.database.error_codes import Code, code_of
from tests.conftest import MYSQL_ADMIN_PASSWORD, MYSQL_ADMIN_USER, MYSQL_HOST, MYSQL_PORT


@pytest.fixture
def mysql(mysql_database: str) -> Iterator[Any]:
    conn = pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_ADMIN_USER,
        password=MYSQL_ADMIN_PASSWORD,
        database=mysql_database,
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def _error_of(conn: Any, *statements: str) -> pymysql.Error:
    with conn.cursor() as cur:
        for statement in statements[:-1]:
            cur.execute(statement)
        with pytest.raises(pymysql.Error) as caught:
            cur.execute(statements[-1])
    return caught.value


def test_mysql_errors_are_read_by_number_not_by_their_sqlstate(mysql: Any) -> None:
    # PyMySQL sets a SQLSTATE too (42S02, 23000, HY000…), which PostgreSQL's table
    # would misread: the error number decides.
    missing_table = _error_of(mysql, "SELECT * FROM no_such_table")
    assert missing_table.sqlstate is not None  # type: ignore[attr-defined]
    assert code_of(missing_table) is Code.SCHEMA
    duplicate = _error_of(
        mysql,
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1)",
    )
    assert code_of(duplicate) is Code.DUPLICATE
    with pytest.raises(pymysql.Error) as caught:
        pymysql.connect(
            host=MYSQL_HOST,
            port=MYSQL_PORT,
            user=MYSQL_ADMIN_USER,
            password=MYSQL_ADMIN_PASSWORD,
            database="todo_no_such_db_m",
        )
    assert code_of(caught.value) is Code.DATABASE_MISSING


def test_an_unlisted_mysql_number_falls_back_to_a_standard_sqlstate_class(mysql: Any) -> None:
    # 1690 (out of range) has no entry of its own; its SQLSTATE 22003 is the SQL
    # standard's data exception on every server.
    error = _error_of(mysql, "SELECT CAST(0 AS UNSIGNED) - 1")
    assert error.args[0] == 1690
    assert code_of(error) is Code.DATA


@pytest.mark.parametrize(
    ("url", "setting"),
    [
        ("mysql+pymysql://u@db.example:3306/app", "ssl-mode in DATABASE_URL"),
        ("postgresql+psycopg://u@db.example:5432/app", "sslmode in DATABASE_URL"),
    ],
)
def test_a_tls_hint_names_the_backends_own_setting(url: str, setting: str) -> None:
    from sqlalchemy.engine import make_url

    from src.database.failures import Failure, FailureKind, for_source

    failure = for_source(
        Failure(FailureKind.TLS, "handshake failed"),
        make_url(url),
        on_space=False,
        source="DATABASE_URL",
    )
    assert failure.hint is not None and failure.hint.startswith(f"check {setting} ")


def test_a_one_letter_password_is_masked_as_a_token_only() -> None:
    from sqlalchemy.engine import make_url

    from src.database.failures import sanitize

    url = make_url("postgresql+psycopg://u:p@127.0.0.1:5432/db")
    text = 'connection to server at "127.0.0.1", port 5432 failed: password p rejected (u:p@x)'
    cleaned = sanitize(text, url)
    assert "port 5432" in cleaned
    assert "password *** rejected" in cleaned and ":p@" not in cleaned
