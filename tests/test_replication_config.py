"""SQLITE_REPLICA_URL and the files and environment Litestream gets: what is accepted,
what is refused and why, what is masked, what never leaves the process."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from src.config.settings import Settings
from src.core.redaction import redactor
from src.replication import replica_config, replica_url
from src.replication.binary import EXPECTED_VERSION, litestream, locate
from src.replication.litestream_config import child_environment, render, run_directory
from src.replication.replica_url import SCHEMES, mask, parse

pytestmark = pytest.mark.usefixtures("replica_env")


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


VALID = [
    "s3://bucket/path/db",
    "s3://bucket",
    "s3://my-bucket/todo?endpoint=https://acct.r2.cloudflarestorage.com&region=auto",
    "s3://b/p?endpoint=127.0.0.1:9000&forcePathStyle=true&skipVerify=false",
    "s3://b/p?endpoint=http://localhost:9000&force-path-style=true&partSize=5242880",
    "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/todo/db",
    "file:///var/backups/todo",
    "gs://bucket/todo",
    "abs://account@container/todo",
    "sftp://user:pa%40ss@host.example:2222/backups/todo",
    "webdav://user:pw@dav.example/todo",
    "webdavs://dav.example/todo",
    "nats://user:pw@nats.example:4222/todo-bucket",
    "oss://bucket.oss-cn-hangzhou.aliyuncs.com/todo",
    "  'S3://Bucket/db'  ",
]


@pytest.mark.parametrize("url", VALID)
def test_litestream_replica_urls_are_accepted(url: str) -> None:
    config = replica_config(_settings(sqlite_replica_url=url))
    assert config is not None
    assert config.errors == (), config.errors
    assert config.valid and config.scheme in SCHEMES


INVALID = {
    "http://bucket/db": "not a Litestream replica type",
    "mongodb://x/y": "not a Litestream replica type",
    "bucket/db": "is not a URL",
    "s3:///db": "needs a bucket",
    "s3://bucket/db?endpont=http://x": "not one Litestream knows",
    "s3://bucket/db?forcePathStyle=yes": "must be true or false",
    "s3://bucket/db?endpoint=ftp://host": "must be http(s)://host",
    "s3://bucket/db?endpoint=http://host:99999": "not valid",
    "s3://KEY:SECRET@bucket/db": "do not go in the URL",
    "s3://<your-bucket>/db": "placeholder",
    "s3://${BUCKET}/db": "placeholder",
    "file://relative/dir": "three slashes",
    "file:///": "needs a directory",
    "file:///dir?x=1": "takes no ?options",
    "abs://container/db": "abs://ACCOUNT@container",
    "sftp://host/db": "sftp://user@host",
    "nats://host:4222": "nats://server/bucket",
    "s3://bucket/a b": "spaces",
    "s3://bucket:notaport/db": "not a valid URL",
}


@pytest.mark.parametrize(("url", "expected"), sorted(INVALID.items()))
def test_invalid_urls_give_a_sentence_naming_the_problem(url: str, expected: str) -> None:
    config = replica_config(_settings(sqlite_replica_url=url))
    assert config is not None and not config.valid and config.replica is None
    assert any(expected in error for error in config.errors), config.errors
    assert all(error.endswith(".") for error in config.errors)


def test_unset_or_blank_means_no_replication() -> None:
    assert replica_config(_settings()) is None
    assert replica_config(_settings(sqlite_replica_url="   ")) is None


def test_a_password_in_the_url_is_masked_everywhere_and_registered() -> None:
    config = replica_config(
        _settings(sqlite_replica_url="sftp://backup:s3cr3t-Pa55@host.example/todo")
    )
    assert config is not None and config.valid
    assert config.masked_url == "sftp://***@host.example/todo"
    for text in (repr(config), str(config), repr(config.replica)):
        assert "s3cr3t-Pa55" not in text
    assert redactor.redact("failed: s3cr3t-Pa55") == "failed: ***"
    # The invalid form is masked as well.
    bad = replica_config(_settings(sqlite_replica_url="s3://AKIA:hunter2-secret@bucket/x"))
    assert bad is not None and "hunter2" not in " ".join(bad.errors) + bad.masked_url


@settings(max_examples=150, deadline=None)
@given(
    scheme=st.sampled_from([*SCHEMES, "http", "S3", "x"]),
    password=st.text(min_size=1, max_size=30).filter(lambda s: s.strip()),
    rest=st.text(max_size=40),
)
def test_parsing_never_raises_and_never_shows_the_password(
    scheme: str, password: str, rest: str
) -> None:
    from urllib.parse import quote

    raw = f"{scheme}://user:{quote(password, safe='')}@host/{rest}"
    parsed, errors = parse(raw)
    assert parsed is not None or errors
    shown = mask(raw)
    # Only Azure's account name (not a secret) is kept; the password never is.
    kept = "user" if scheme.lower() == "abs" else "***"
    assert shown.split("@", 1)[0] == f"{scheme}://{kept}"
    for error in errors:
        assert f":{quote(password, safe='')}@" not in error


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=8),
    where=st.sampled_from(["endpoint", "option", "fragment"]),
    key=st.sampled_from(["access-key-id", "secret-access-key", "token", "x"]),
)
def test_a_secret_in_the_query_is_never_shown(secret: str, where: str, key: str) -> None:
    """Keys pasted into the endpoint's userinfo or as options of their own: refused, and
    masked in the refusal, in `masked_url` and everywhere these are printed."""
    secret = f"Zq9{secret}"  # never a word of the messages themselves
    query = {
        "endpoint": f"endpoint=https://AKIA:{secret}@minio.example:9000&region=auto",
        "option": f"endpoint=https://minio.example:9000&{key}={secret}",
        "fragment": f"endpoint=https://minio.example:9000#{secret}",
    }[where]
    raw = f"s3://bucket/todo?{query}"
    config = replica_config(_settings(sqlite_replica_url=raw))
    assert config is not None
    shown = " ".join([config.masked_url, *config.errors, *config.warnings, mask(raw)])
    assert secret not in shown
    assert "minio.example:9000" in config.masked_url  # the endpoint's host stays visible


@settings(max_examples=150, deadline=None)
@given(
    head=st.text(alphabet="abcXYZ0129", min_size=2, max_size=8),
    cut=st.sampled_from("/?#"),
    tail=st.text(alphabet="abcXYZ0129", min_size=2, max_size=8),
    scheme=st.sampled_from(["sftp", "webdavs", "nats", "s3"]),
)
def test_an_unencoded_password_that_cuts_the_url_is_never_shown(
    head: str, cut: str, tail: str, scheme: str
) -> None:
    """`/`, `?` or `#` in a password pasted unencoded end the authority early for a
    parser: the message must still not quote any piece of it."""
    password = f"Zq{head}{cut}{tail}"
    raw = f"{scheme}://alice:{password}@127.0.0.1:2222/path"
    _, errors = parse(raw)
    config = replica_config(_settings(sqlite_replica_url=raw))
    assert config is not None
    shown = " ".join([mask(raw), config.masked_url, *errors, *config.errors])
    assert f"Zq{head}" not in shown and f"{tail}@" not in shown


def test_the_known_options_stay_visible() -> None:
    raw = "s3://bucket/todo?endpoint=https://minio.example:9000&region=auto&forcePathStyle=true"
    assert mask(raw) == raw


def test_credentials_come_from_settings_in_litestreams_order() -> None:
    both = replica_config(
        _settings(
            sqlite_replica_url="s3://b/db",
            aws_access_key_id="AKIAAWS",
            aws_secret_access_key="aws-secret-value",
            litestream_access_key_id="AKIALS",
            litestream_secret_access_key="ls-secret-value",
        )
    )
    assert both is not None and both.valid
    assert both.env["AWS_ACCESS_KEY_ID"] == "AKIAAWS"
    assert both.env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-value"
    assert any("differ" in w for w in both.warnings)
    only_ls = replica_config(
        _settings(
            sqlite_replica_url="s3://b/db",
            litestream_access_key_id="AKIALS",
            litestream_secret_access_key="ls-secret-value",
        )
    )
    assert only_ls is not None and only_ls.env["AWS_ACCESS_KEY_ID"] == "AKIALS"
    assert redactor.redact("x ls-secret-value y") == "x *** y"
    half = replica_config(_settings(sqlite_replica_url="s3://b/db", aws_access_key_id="AKIA"))
    assert half is not None and not half.valid
    none = replica_config(_settings(sqlite_replica_url="s3://b/db"))
    assert none is not None and none.valid and "default credential chain" in none.warnings[0]


def test_aws_ca_bundle_is_dropped_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("AWS_PROFILE", "someone-else")
    monkeypatch.setenv("LOG_LEVEL", "error")
    config = replica_config(Settings(_env_file=None, sqlite_replica_url="s3://b/db"))  # type: ignore[call-arg]
    assert config is not None
    assert any("AWS_CA_BUNDLE" in w and "not passed" in w for w in config.warnings)
    env = child_environment(config, Path("/tmp"))
    assert set(env) == {"PATH", "LANG", "HOME"}


def test_region_and_endpoint_settings_fill_what_the_url_leaves_out() -> None:
    config = replica_config(
        _settings(
            sqlite_replica_url="s3://b/db",
            aws_region="eu-west-3",
            litestream_s3_endpoint="https://s3.example.net",
        )
    )
    assert config is not None and config.replica is not None
    assert config.replica_fields == {"region": "eu-west-3"}
    assert config.replica.option("endpoint") == "https://s3.example.net"


def test_the_config_file_is_private_literal_yaml(tmp_path: Path) -> None:
    db = tmp_path / "we$ird dir" / 'to"do.db'
    config = replica_config(
        _settings(
            sqlite_replica_url="nats://u:p%24ss@nats.example/bkt",
            sqlite_replica_sync_interval=10,
        )
    )
    assert config is not None and config.valid
    parsed = yaml.safe_load(render(config, db, shutdown_sync_timeout=9))
    entry = parsed["dbs"][0]
    assert entry["path"] == str(db)
    assert entry["replica"]["url"] == "nats://nats.example/bkt"
    assert entry["replica"]["password"] == "p$ss"
    assert entry["replica"]["sync-interval"] == "10000ms"
    assert entry["monitor-interval"] == "1000ms"
    assert parsed["logging"] == {"level": "debug", "type": "json", "stderr": True}
    with run_directory(config, db) as (path, env):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert env["HOME"] == str(path.parent)
        kept = path.parent
    assert not kept.exists()


def test_a_killed_process_run_directory_is_swept(tmp_path: Path) -> None:
    """SIGKILL skips the cleanup of a run directory (whose YAML may hold credentials):
    the next run removes those of processes that are gone, and no other."""
    import os
    import tempfile

    gone = subprocess.Popen(["true"])
    gone.wait()
    root = Path(tempfile.gettempdir())
    orphan = root / f"todo-litestream-{gone.pid}-test"
    alive = root / f"todo-litestream-{os.getpid()}-test"
    for directory in (orphan, alive):
        directory.mkdir(mode=0o700)
        (directory / "litestream.yml").write_text("secret")
    try:
        config = replica_config(_settings(sqlite_replica_url=f"file://{tmp_path}/replica"))
        assert config is not None
        with run_directory(config, tmp_path / "todo.db"):
            pass
        assert not orphan.exists()
        assert alive.exists()
    finally:
        for directory in (orphan, alive):
            shutil.rmtree(directory, ignore_errors=True)


def test_litestream_comes_from_the_pinned_wheel(tmp_path: Path) -> None:
    path = locate()
    assert ".venv" in str(path) or "site-packages" in str(path) or "/bin/" in str(path)
    found = litestream()
    assert found.version == EXPECTED_VERSION
    # Litestream itself accepts the file we write (it refuses unknown durations, etc.).
    config = replica_config(_settings(sqlite_replica_url=f"file://{tmp_path}/replica"))
    assert config is not None
    with run_directory(config, tmp_path / "todo.db") as (config_path, env):
        out = subprocess.run(
            [str(found.path), "databases", "-no-expand-env", "-config", str(config_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
    assert out.returncode == 0, out.stderr
    assert str(tmp_path / "todo.db") in out.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "s3://bucket/todo?endpoint=https://x.example&region=auto",
            "s3://bucket/todo-f?endpoint=https://x.example&region=auto",
        ),
        ("s3://bucket", "s3://bucket/todo-f"),
        ("s3://bucket/", "s3://bucket/todo-f"),
        ("file:///srv/replica/", "file:///srv/replica-f"),
        ("sftp://u:p%40ss@host:22/backups/todo", "sftp://u:p%40ss@host:22/backups/todo-f"),
        ("abs://account@container", "abs://account@container/todo-f"),
        # An access point's name is the path's first segment: never renamed.
        (
            "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap",
            "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/todo-f",
        ),
        (
            "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/db",
            "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/ap/db-f",
        ),
    ],
)
def test_a_file_beside_the_database_replicates_beside_its_replica(url: str, expected: str) -> None:
    assert replica_url.beside(url, "-f") == expected
    # The derived URL is as valid as the configured one.
    assert replica_url.parse(expected)[1] == replica_url.parse(url)[1]


@pytest.mark.parametrize("detail", ["full", "minimal"])
def test_a_refused_replica_url_shows_no_key_in_the_app(
    tmp_path: Path, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import make_settings, running_app, wait_state

    raw = (
        "s3://bucket/todo?endpoint=https://AKIAQQQ:SecretInEndpoint@127.0.0.1:9"
        "&secret-access-key=SecretAsOption"
    )
    settings = make_settings(tmp_path, sqlite_replica_url=raw, status_detail=detail)
    with running_app(settings) as (_, client):
        wait_state(client, "CONNECTION_ERROR")
        shown = client.get("/config/database").text + client.get("/").text
        shown += client.get("/ready").text
    shown += caplog.text
    assert "SecretInEndpoint" not in shown and "SecretAsOption" not in shown
    assert "AKIAQQQ" not in shown
