"""No password and no database user name in any log line, response body or exception text.

Each scenario starts the app with credentials that are easy to spot, exercises every
system endpoint (and a failing task request), and searches everything it produced.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from src.database.resolver import resolve_database_url
from tests.conftest import (
    SPECIAL_PASSWORD,
    SPECIAL_USER,
    bearer,
    make_settings,
    running_app,
    wait_decided,
)

FAST = {"database_connect_timeout": 1, "database_retry_delay_ms": 100}
NEEDLES = (SPECIAL_PASSWORD, quote(SPECIAL_PASSWORD, safe=""), SPECIAL_USER)


def _scenarios(
    scram: dict[str, Any], refused: int, hung: int, mysql: tuple[str, str, str]
) -> dict[str, str]:
    c = scram
    my_user, my_password, my_db = mysql
    return {
        "right password, raw": (
            f"postgres://{c['user']}:{c['password']}@{c['host']}:{c['port']}/{c['database']}"
        ),
        "wrong password": (
            f"postgresql://{c['user']}:{c['password']}x@{c['host']}:{c['port']}/{c['database']}"
        ),
        "refused": f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@127.0.0.1:{refused}/db",
        "hung": f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@127.0.0.1:{hung}/db",
        "unsupported scheme": f"mongodb://{SPECIAL_USER}:{SPECIAL_PASSWORD}@mongo:27017/app",
        "bad option": (
            f"postgresql://{SPECIAL_USER}:{SPECIAL_PASSWORD}@db.example.com/app?sslmode=required"
        ),
        "mariadb": f"mysql://{my_user}:{my_password}@127.0.0.1:3306/{my_db}",
    }


@pytest.fixture
def mysql_creds(mysql_special_user: tuple[str, str], mysql_database: str) -> tuple[str, str, str]:
    return (*mysql_special_user, mysql_database)


@pytest.mark.parametrize(
    "scenario",
    [
        "right password, raw",
        "wrong password",
        "refused",
        "hung",
        "unsupported scheme",
        "bad option",
        "mariadb",
    ],
)
def test_no_credentials_anywhere(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    scenario: str,
    scram_cluster: dict[str, Any],
    refused_port: int,
    hung_port: int,
    mysql_creds: tuple[str, str, str],
) -> None:
    url = _scenarios(scram_cluster, refused_port, hung_port, mysql_creds)[scenario]
    needles = (*NEEDLES, mysql_creds[0]) if scenario == "mariadb" else NEEDLES
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        tmp_path, database_url=url, database_startup_retries=2, log_level="debug", **FAST
    )
    produced: list[str] = []
    with running_app(settings) as (app, client):
        wait_decided(client)
        for path in ("/", "/health", "/ready", "/config/database", "/openapi.json"):
            produced.append(client.get(path).text)
            produced.append(client.get(path, headers={"Accept": "application/json"}).text)
        produced.append(
            client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice")).text
        )
        manager = app.state.database
        produced.append(repr(manager.resolution))
        produced.append(str(manager.resolution.masked_url()))
        produced.extend(manager.resolution.errors + manager.resolution.repairs)
        produced.append(repr(manager.status))
        if manager.engine is not None:
            produced.append(repr(manager.engine))
            produced.append(str(manager.engine.url))
    produced.append(caplog.text)
    everything = "\n".join(produced)
    for needle in needles:
        assert needle not in everything, f"{scenario}: {needle!r} leaked"


def test_exception_text_of_a_failed_connection_is_sanitised(scram_cluster: dict[str, Any]) -> None:
    from sqlalchemy import create_engine

    from src.database.failures import classify

    c = scram_cluster
    url = f"postgresql://{c['user']}:{c['password']}x@{c['host']}:{c['port']}/{c['database']}"
    resolved = resolve_database_url(url)
    assert resolved.url is not None
    engine = create_engine(resolved.url)
    try:
        with pytest.raises(Exception) as caught:
            engine.connect()
    finally:
        engine.dispose()
    # The raw driver text names the user; the classified failure must not.
    assert SPECIAL_USER in str(caught.value)
    failure = classify(caught.value, resolved.url)
    assert SPECIAL_USER not in failure.describe()
    assert SPECIAL_PASSWORD not in failure.describe()
    assert failure.kind.value == "authentication_failed"
