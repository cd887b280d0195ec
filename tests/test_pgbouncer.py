"""Through a real PgBouncer in transaction mode — what Supabase's and Neon's poolers are:
the app works (no server-side prepared statements), and neither a server connection the
pooler loses nor a restart of the pooler itself reaches a request as a 503."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import PG_ADMIN, TEST_SECRET, bearer, make_settings, running_app, wait_ready
from tests.server import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
_AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


class PgBouncer:
    def __init__(self, database: str) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="todo-pgbouncer-"))
        (self.base / "users.txt").write_text('"postgres" ""\n')
        (self.base / "pgbouncer.ini").write_text(
            f"[databases]\n{database} = host=127.0.0.1 port=5432 dbname={database} "
            "user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            "auth_type = any\n"
            f"auth_file = {self.base / 'users.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 4\n"
            "server_check_delay = 0\n"
            # Drivers set these at connect; a transaction pooler must let them through.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.base / 'log'}\n"
        )
        shutil.chown(self.base, "postgres", "postgres")
        for child in self.base.iterdir():
            shutil.chown(child, "postgres", "postgres")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*_AS_POSTGRES, PGBOUNCER, str(self.base / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer",
                    autocommit=True,
                    connect_timeout=2,
                    prepare_threshold=None,
                ):
                    return
            except psycopg.Error:
                assert time.monotonic() < deadline, (self.base / "log").read_text()
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # immediate shutdown
            self.process.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def bouncer(pg_database: str) -> Iterator[PgBouncer]:
    pooler = PgBouncer(pg_database)
    try:
        yield pooler
    finally:
        pooler.close()


@pytest.fixture
def client(tmp_path: Path, bouncer: PgBouncer, pg_database: str) -> Iterator[TestClient]:
    url = f"postgresql://postgres@127.0.0.1:{bouncer.port}/{pg_database}?pgbouncer=true"
    settings = make_settings(
        tmp_path, database_url=url, better_auth_secret=TEST_SECRET, database_fallback="never"
    )
    with running_app(settings) as (_, test_client):
        wait_ready(test_client)
        yield test_client


def _crud_round(client: TestClient, n: int) -> list[int]:
    alice = bearer("alice")
    created = client.post("/api/alice/tasks", json={"title": f"t{n}"}, headers=alice)
    statuses = [created.status_code]
    if created.status_code == 201:
        task = created.json()["id"]
        for response in (
            client.put(f"/api/alice/tasks/{task}", json={"title": f"e{n}"}, headers=alice),
            client.patch(f"/api/alice/tasks/{task}/complete", headers=alice),
            client.get("/api/alice/tasks", headers=alice),
        ):
            statuses.append(response.status_code)
    return statuses


def test_the_app_works_through_a_transaction_pooler(client: TestClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        rounds = list(pool.map(lambda n: _crud_round(client, n), range(40)))
    assert all(statuses == [201, 200, 200, 200] for statuses in rounds), rounds
    listing = client.get("/api/alice/tasks?limit=100", headers=bearer("alice")).json()
    assert len(listing) == 40 and all(task["completed"] for task in listing)


def test_server_connections_lost_behind_the_pooler_reach_no_request(
    client: TestClient, pg_database: str
) -> None:
    statuses: list[int] = []
    for n in range(5):
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (pg_database,),
            )
        statuses += _crud_round(client, n)
    assert 503 not in statuses, statuses


def test_a_restarted_pooler_reaches_no_request(client: TestClient, bouncer: PgBouncer) -> None:
    assert _crud_round(client, 0) == [201, 200, 200, 200]
    bouncer.stop()
    bouncer.start()
    statuses: list[int] = []
    for n in range(1, 4):
        statuses += _crud_round(client, n)
    assert 503 not in statuses, statuses
    state = client.get("/config/database").json()["connection_state"]
    assert state == "PRIMARY_CONNECTED"
