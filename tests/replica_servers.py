"""Real replica back ends for the replication tests: an S3-protocol server (moto_server,
run as its own process on loopback, checking signatures against the keys it issued), file
replicas, and a writer that commits rows the way the app does (WAL, busy_timeout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from src.config.settings import Settings
from src.replication import ReplicaConfig, replica_config
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]
MOTO_SERVER = Path(sys.executable).with_name("moto_server")
# Variables a developer's shell (or this machine) may carry that would change what the
# replication code sees; each test states what it wants instead.
_REPLICA_ENV_PREFIXES = ("AWS_", "LITESTREAM_", "GOOGLE_APPLICATION_CREDENTIALS")
# moto_server authenticates every request after this many (used to issue the keys).
_UNAUTHENTICATED_SETUP_CALLS = 3
_ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


@pytest.fixture
def replica_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_REPLICA_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@dataclass
class MotoS3:
    endpoint: str
    port: int
    key_id: str
    secret: str
    process: subprocess.Popen[bytes]

    def client(self, key_id: str | None = None, secret: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id or self.key_id,
            aws_secret_access_key=secret or self.secret,
            config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

    def new_bucket(self) -> str:
        name = f"todo-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def new_user(self) -> tuple[str, str, str]:
        """A user with valid keys and no permission at all: (name, key id, secret)."""
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )
        name = f"user-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return name, key["AccessKeyId"], key["SecretAccessKey"]

    def allow_everything(self, user: str) -> None:
        boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        ).put_user_policy(UserName=user, PolicyName="all", PolicyDocument=_ALLOW_ALL)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in the bucket; [] for a bucket that does not exist."""
        client = self.client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
        except client.exceptions.NoSuchBucket:
            return []

    def bucket_exists(self, bucket: str) -> bool:
        return bucket in {b["Name"] for b in self.client().list_buckets().get("Buckets", [])}

    def url(self, bucket: str, path: str = "db", endpoint: str | None = None) -> str:
        return f"s3://{bucket}/{path}?endpoint={endpoint or self.endpoint}&region=us-east-1"


def start_moto(
    port: int | None = None, log: Path | None = None, *, authenticate: bool = True
) -> MotoS3:
    """A moto_server on loopback with authentication on (unless told otherwise), and an
    admin key for it."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if authenticate:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_UNAUTHENTICATED_SETUP_CALLS)
    out = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    setup = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            iam = boto3.client("iam", **setup)
            iam.create_user(UserName="todo-admin")
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)
    key = iam.create_access_key(UserName="todo-admin")["AccessKey"]
    if not authenticate:
        return MotoS3(endpoint, port, "AKIAANYKEYWORKS", "any-secret-works", process)
    iam.put_user_policy(
        UserName="todo-admin",
        PolicyName="all",
        PolicyDocument=_ALLOW_ALL,
    )
    return MotoS3(endpoint, port, key["AccessKeyId"], key["SecretAccessKey"], process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = start_moto(log=tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        stop_process(server.process)


def config_for(url: str, tmp_path: Path, **values: Any) -> ReplicaConfig:
    """A replica configuration from real Settings, with short test time limits."""
    limits = {
        k: values.pop(k)
        for k in (
            "list_timeout",
            "restore_timeout",
            "stop_timeout",
            "retry_initial",
            "retry_max",
            "watch_timeout",
            "stall_timeout",
        )
        if k in values
    }
    values.setdefault("sqlite_replica_sync_interval", 0.1)
    settings = Settings(_env_file=None, sqlite_replica_url=url, home=str(tmp_path), **values)  # type: ignore[call-arg]
    config = replica_config(settings)
    assert config is not None
    limits.setdefault("list_timeout", 5.0)
    limits.setdefault("stop_timeout", 5.0)
    limits.setdefault("retry_initial", 0.3)
    limits.setdefault("retry_max", 1.0)
    return dataclasses.replace(config, **limits)


def s3_config(moto: MotoS3, bucket: str, tmp_path: Path, **values: Any) -> ReplicaConfig:
    values.setdefault("aws_access_key_id", moto.key_id)
    values.setdefault("aws_secret_access_key", moto.secret)
    url = values.pop("url", None) or moto.url(bucket, values.pop("path", "db"))
    return config_for(url, tmp_path, **values)


# -- the database side -------------------------------------------------------------


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection configured as the app configures SQLite."""
    conn = sqlite3.connect(db_path, timeout=5.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS task (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
        "at REAL NOT NULL)"
    )
    return conn


def rows(db_path: Path) -> list[tuple[int, float]]:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        return [
            (int(r[0]), float(r[1])) for r in conn.execute("SELECT id, at FROM task ORDER BY id")
        ]
    finally:
        conn.close()


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def insert(conn: sqlite3.Connection, n: int, title: str = "task") -> list[int]:
    ids = []
    for _ in range(n):
        cur = conn.execute("INSERT INTO task (title, at) VALUES (?, ?)", (title, time.time()))
        ids.append(int(cur.lastrowid or 0))
    return ids


class Writer:
    """Commits one row every `pause` seconds in a thread until stopped; `acked` lists the
    ids whose commit returned."""

    def __init__(self, db_path: Path, pause: float = 0.005) -> None:
        self.conn = connect(db_path)
        self.pause = pause
        self.acked: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.acked.extend(insert(self.conn, 1))
            time.sleep(self.pause)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


def litestream_children(parent_pids: set[int]) -> list[int]:
    """Pids of `litestream replicate` processes whose parent is one of `parent_pids`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if (
            ppid in parent_pids
            and b"replicate" in cmdline
            and any(part.endswith(b"litestream") for part in cmdline)
        ):
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
