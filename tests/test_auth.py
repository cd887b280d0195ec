"""Bearer JWTs: the HS256 secret (configured or generated), a JWKS, and every way a
token is refused. Auth does not depend on the database, so these run on SQLite."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from fastapi.testclient import TestClient

from src.auth import secret as secret_store
from src.auth.secret import SECRET_FILENAME, load_or_create_secret
from src.auth.setup import build_auth
from src.auth.tokens import InvalidToken, TokenVerifier
from src.cli.token import parse_ttl
from src.core.redaction import redactor
from src.database.sqlite_locator import locate_sqlite
from tests.conftest import TEST_SECRET, bearer, make_settings, make_token, running_app, wait_ready
from tests.server import ROOT, clean_env

# -- helpers -------------------------------------------------------------------


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(header)}.{b64(payload)}."


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def status_of(client: TestClient, token: str | None, *, raw: str | None = None) -> Any:
    headers = {}
    if raw is not None:
        headers["Authorization"] = raw
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get("/api/alice/tasks", headers=headers)


@pytest.fixture
def hs_client(tmp_path: Path) -> Iterator[TestClient]:
    with running_app(make_settings(tmp_path, better_auth_secret=TEST_SECRET)) as (_, client):
        wait_ready(client)
        yield client


# -- HS256 ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_every_unauthorized_case_is_401(hs_client: TestClient) -> None:
    now = int(time.time())
    cases: dict[str, tuple[str | None, str | None]] = {
        "no header": (None, None),
        "empty header": (None, ""),
        "basic auth": (None, "Basic YWxpY2U6cHc="),
        "bearer without token": (None, "Bearer "),
        "token without scheme": (None, make_token()),
        "garbage": ("garbage", None),
        "three garbage parts": ("a.b.c", None),
        "bad signature": (make_token(secret="another-secret-" + "z" * 40), None),
        "tampered payload": (
            make_token().split(".")[0]
            + "."
            + b64(claims(sub="alice", admin=True))
            + "."
            + make_token().split(".")[2],
            None,
        ),
        "expired": (make_token(ttl=-120), None),
        "alg none": (unsigned({"alg": "none", "typ": "JWT"}, claims()), None),
        "alg None": (unsigned({"alg": "None"}, claims()), None),
        "alg NONE signed": (unsigned({"alg": "NONE"}, claims()) + "c2ln", None),
        "no alg": (unsigned({"typ": "JWT"}, claims()), None),
        "HS512 not allowed": (make_token(algorithm="HS512"), None),
        "HS384 not allowed": (make_token(algorithm="HS384"), None),
        "missing subject": (make_token(None), None),
        "empty subject": (make_token(""), None),
        "missing exp": (make_token(exp=None), None),
        "exp not a number": (make_token(exp="tomorrow"), None),
        "not yet valid": (make_token(nbf=now + 600), None),
        "issued in the future": (make_token(iat=now + 600), None),
        "subject too long": (make_token("a" * 256), None),
        "huge token": ("x" * 20_000, None),
    }
    for name, (token, raw) in cases.items():
        response = status_of(hs_client, token, raw=raw)
        assert response.status_code == 401, (name, response.text)
        body = response.json()
        assert body["code"] == ("TOKEN_EXPIRED" if name == "expired" else "UNAUTHORIZED"), name
        assert body["error"], name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert TEST_SECRET not in response.text


def test_valid_tokens_and_leeway(hs_client: TestClient) -> None:
    assert status_of(hs_client, make_token()).status_code == 200
    # Clocks may disagree by 30 s.
    assert status_of(hs_client, make_token(ttl=-10)).status_code == 200
    assert status_of(hs_client, make_token(nbf=int(time.time()) + 10)).status_code == 200
    assert status_of(hs_client, make_token(ttl=-45)).json()["code"] == "TOKEN_EXPIRED"
    # Scheme is case-insensitive; Better Auth's aud/iss claims are fine.
    lower = hs_client.get("/api/alice/tasks", headers={"Authorization": f"bearer {make_token()}"})
    assert lower.status_code == 200
    with_aud = make_token(aud="http://localhost:3000", iss="http://localhost:3000")
    assert status_of(hs_client, with_aud).status_code == 200
    both = make_token("alice", user_id="mallory")
    assert status_of(hs_client, both).status_code == 200


@pytest.mark.parametrize(
    ("claims_", "user"),
    [
        ({"user_id": "carol"}, "carol"),
        ({"userId": "carol"}, "carol"),
        ({"id": "carol"}, "carol"),
        ({"sub": 123}, "123"),
        ({"id": 42}, "42"),
        ({"userId": -7}, "-7"),
        ({"sub": "", "userId": "carol"}, "carol"),
        ({"userId": "carol", "id": "mallory"}, "carol"),
        ({"user_id": "carol", "userId": "mallory"}, "carol"),
    ],
)
def test_the_subject_claim_spellings(
    hs_client: TestClient, claims_: dict[str, Any], user: str
) -> None:
    # sub, else user_id, userId, id; integers as their decimal string (PyJWT alone
    # refuses a numeric `sub`).
    token = make_token(None, **claims_)
    response = hs_client.post(
        f"/api/{user}/tasks", json={"title": "mine"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == user


@pytest.mark.parametrize(
    "claims_",
    [{"sub": True}, {"sub": 1.5}, {"sub": ["alice"]}, {"userId": {"id": 1}}, {"id": False}],
)
def test_subjects_of_other_types_are_refused(
    hs_client: TestClient, claims_: dict[str, Any]
) -> None:
    response = status_of(hs_client, make_token(None, **claims_))
    assert response.status_code == 401, response.text
    assert "claim is not a string or an integer" in response.json()["error"]


def test_hs256_tokens_carrying_iss_or_aud_must_match_better_auth_url(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, better_auth_secret=TEST_SECRET, better_auth_url="https://Auth.Example.com/"
    )
    with running_app(settings) as (app, client):
        wait_ready(client)
        ours = "https://auth.example.com"
        assert status_of(client, make_token()).status_code == 200  # hand-rolled: no iss/aud
        assert status_of(client, make_token(iss=ours, aud=ours)).status_code == 200
        assert status_of(client, make_token(aud=["other", ours])).status_code == 200
        for name, token in {
            "foreign issuer": make_token(iss="https://evil.example"),
            "foreign audience": make_token(aud="https://other.example"),
            "audience list without ours": make_token(aud=["a", "b"]),
            "audience not a string": make_token(aud=5),
        }.items():
            response = status_of(client, token)
            assert response.status_code == 401, (name, response.text)
            assert response.json()["code"] == "UNAUTHORIZED", name
        description = app.state.auth_mode["description"]
    assert f"'iss' must be {ours}" in description
    assert f"'aud' must name {ours}" in description


def test_unchecked_iss_and_aud_are_said_on_the_status_page(hs_client: TestClient) -> None:
    page = hs_client.get("/", headers={"Accept": "application/json"}).json()
    assert "'iss' and 'aud' claims are not checked" in page["auth"]["description"]
    assert "BETTER_AUTH_URL" in page["auth"]["description"]


def test_auth_comes_before_validation_and_the_database(hs_client: TestClient) -> None:
    # No token: 401 even when the rest of the request is wrong too.
    assert hs_client.get("/api/alice/tasks?limit=0").status_code == 401
    assert hs_client.post("/api/alice/tasks", json={"nope": 1}).status_code == 401
    assert hs_client.get("/api/" + "u" * 300 + "/tasks").status_code == 401
    # Valid token for someone else: 403 before anything else is looked at.
    response = hs_client.post("/api/bob/tasks", json={"nope": 1}, headers=bearer("alice"))
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"


def test_configured_mode_is_described(tmp_path: Path) -> None:
    with running_app(make_settings(tmp_path, jwt_secret=TEST_SECRET)) as (app, client):
        wait_ready(client)
        mode = app.state.auth_mode
        assert status_of(client, make_token()).status_code == 200
    assert mode["mode"] == "configured"
    assert mode["secret_file"] is None
    # The variable that was set, not its alias (it said BETTER_AUTH_SECRET).
    assert "Tokens are checked with JWT_SECRET (HS256)" in mode["description"]
    assert TEST_SECRET not in json.dumps(mode)
    assert not (tmp_path / SECRET_FILENAME).exists()


def test_verified_tokens_are_cached_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(secret=TEST_SECRET, jwks=None)
    token = make_token(ttl=60)
    assert asyncio.run(verifier.verify(token)) == "alice"
    calls = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1))
    assert asyncio.run(verifier.verify(token)) == "alice"  # from the cache
    assert calls == []
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 60 + 31)
    with pytest.raises(InvalidToken) as refused:
        asyncio.run(verifier.verify(token))
    assert refused.value.expired


# -- the generated secret ---------------------------------------------------------


def test_generated_secret_is_stored_0600_beside_sqlite_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    db_dir = tmp_path / "db"
    settings = make_settings(tmp_path, sqlite_path=str(db_dir / "todo.db"))
    with running_app(settings) as (app, client):
        wait_ready(client)
        mode = app.state.auth_mode
        path = db_dir / SECRET_FILENAME
        assert mode["mode"] == "generated"
        assert mode["secret_file"] == str(path)
        assert str(path) in mode["description"]
        assert "python -m src token" in mode["description"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = path.read_text().strip()
        assert len(secret) >= 64
        token = make_token(secret=secret)
        created = client.post(
            "/api/alice/tasks",
            json={"title": "before"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201
    assert "created the generated secret" in caplog.text
    caplog.clear()
    # A restart reuses the same secret: the old token still works.
    with running_app(make_settings(tmp_path, sqlite_path=str(db_dir / "todo.db"))) as (app, client):
        wait_ready(client)
        assert path.read_text().strip() == secret
        listed = client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        assert [t["title"] for t in listed.json()] == ["before"]
    assert "reusing the generated secret" in caplog.text
    redactor.add(secret)  # cleared by the fixture after the test; check the logs
    assert secret not in caplog.text


def test_a_generated_secret_that_is_not_kept_says_when_it_is_lost(tmp_path: Path) -> None:
    # pytest's tmp_path is in the temp dir: cleared at a reboot, not at every restart.
    with running_app(make_settings(tmp_path)) as (app, client):
        wait_ready(client)
        description = app.state.auth_mode["description"]
    assert "lost when the temporary directory is cleared (at a reboot" in description
    assert "does not survive a restart" not in description
    assert "set BETTER_AUTH_SECRET" in description
    # On a Space, the container disk goes at every restart.
    space = make_settings(tmp_path / "space", space_id="me/todo", sqlite_path=None)
    app_dir = tmp_path / "space" / "app"
    app_dir.mkdir(parents=True)
    location = locate_sqlite(
        configured=None,
        app_dir=app_dir,
        home=None,
        tmp_dir=tmp_path / "elsewhere",
        on_space=True,
        data_dir=tmp_path / "no-data",
        mountinfo=tmp_path / "no-mountinfo",
    )
    assert location.lost_when == "at every restart and rebuild of the Space"
    described = build_auth(space, location).mode["description"]
    assert "lost at every restart and rebuild of the Space" in described


def test_in_memory_sqlite_keeps_the_secret_in_memory(tmp_path: Path) -> None:
    with running_app(make_settings(tmp_path, sqlite_path=":memory:")) as (app, client):
        wait_ready(client)
        mode = app.state.auth_mode
    assert mode["mode"] == "generated"
    assert mode["secret_file"] is None
    assert "memory" in mode["description"]
    assert "restart" in mode["description"]
    assert not list(tmp_path.glob(f"**/{SECRET_FILENAME}"))


def test_workers_starting_at_once_agree_on_one_secret(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_secret(settings))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.value for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert (tmp_path / SECRET_FILENAME).read_text().strip() == results[0].value


def test_damaged_or_loose_secret_files_are_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secret_store, "_WRITER_GRACE_SECONDS", 0.1)
    path = tmp_path / SECRET_FILENAME
    path.write_text("")
    stored = load_or_create_secret(make_settings(tmp_path))
    assert stored.path == path and len(stored.value) >= 32
    assert path.read_text().strip() == stored.value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    path.chmod(0o644)
    again = load_or_create_secret(make_settings(tmp_path))
    assert again.value == stored.value and not again.created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_symlinked_secret_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("s" * 64)
    (tmp_path / SECRET_FILENAME).symlink_to(target)
    stored = load_or_create_secret(make_settings(tmp_path))
    assert stored.path is None  # kept in memory rather than trusting the link
    assert stored.value != "s" * 64


# -- python -m src token ----------------------------------------------------------


def test_parse_ttl() -> None:
    assert parse_ttl("30s") == 30
    assert parse_ttl("15m") == 900
    assert parse_ttl("1h") == 3600
    assert parse_ttl("7d") == 7 * 86400
    assert parse_ttl("3600") == 3600
    assert parse_ttl("2H") == 7200
    for bad in ("", "0s", "1y", "-5m", "1.5h", "h", "400d"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


def run_token_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "src", "token", *args],
        cwd=tmp_path,
        env={**clean_env(HOME=str(tmp_path / "home"), **env), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_cli_uses_the_servers_generated_secret(tmp_path: Path) -> None:
    db = tmp_path / "db" / "todo.db"
    result = run_token_cli(tmp_path, "--user", "alice", "--ttl", "30s", SQLITE_PATH=str(db))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    secret = (db.parent / SECRET_FILENAME).read_text().strip()
    payload = jwt.decode(token, secret, algorithms=["HS256"])
    assert payload["sub"] == "alice"
    assert payload["exp"] - payload["iat"] == 30
    assert secret not in result.stdout + result.stderr
    # The server started afterwards accepts it.
    with running_app(make_settings(tmp_path, sqlite_path=str(db))) as (_, client):
        wait_ready(client)
        assert status_of(client, token).status_code == 200


def test_token_cli_with_configured_secret_and_refusals(tmp_path: Path) -> None:
    result = run_token_cli(tmp_path, "--user", "bob", "--ttl", "7d", JWT_SECRET=TEST_SECRET)
    assert result.returncode == 0, result.stderr
    payload = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert payload["sub"] == "bob" and payload["exp"] - payload["iat"] == 7 * 86400

    jwks_only = run_token_cli(
        tmp_path, "--user", "bob", BETTER_AUTH_JWKS_URL="http://127.0.0.1:9/jwks"
    )
    assert jwks_only.returncode == 1
    assert jwks_only.stdout == ""
    assert "BETTER_AUTH_SECRET" in jwks_only.stderr

    memory = run_token_cli(tmp_path, "--user", "bob", SQLITE_PATH=":memory:")
    assert memory.returncode == 1
    assert "BETTER_AUTH_SECRET" in memory.stderr

    bad_ttl = run_token_cli(tmp_path, "--user", "bob", "--ttl", "forever", JWT_SECRET=TEST_SECRET)
    assert bad_ttl.returncode == 2
    assert "--ttl" in bad_ttl.stderr


def test_token_cli_names_the_secret_setting_it_signed_with(tmp_path: Path) -> None:
    """With JWT_SECRET set it said "signed with BETTER_AUTH_SECRET"."""
    other = "another-secret-" + "y" * 40
    for env, used, secret in (
        ({"JWT_SECRET": TEST_SECRET}, "JWT_SECRET", TEST_SECRET),
        ({"BETTER_AUTH_SECRET": TEST_SECRET}, "BETTER_AUTH_SECRET", TEST_SECRET),
        # Both: BETTER_AUTH_SECRET wins, for the value and in the message.
        (
            {"JWT_SECRET": other, "BETTER_AUTH_SECRET": TEST_SECRET},
            "BETTER_AUTH_SECRET",
            TEST_SECRET,
        ),
    ):
        result = run_token_cli(tmp_path, "--user", "bob", **env)
        assert result.returncode == 0, result.stderr
        # Standard output is the token alone; the rest is on standard error.
        assert result.stdout.count("\n") == 1, result.stdout
        assert jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "bob"
        assert result.stderr.strip().endswith(f"signed with {used}."), (env, result.stderr)


def test_token_cli_refuses_user_ids_no_request_path_accepts(tmp_path: Path) -> None:
    """`token --user 'a/b'` minted a token that no request could use."""
    candidates = {
        "a/b": False,
        " alice": False,
        "alice\u3000": False,  # ideographic space: Unicode White_Space, as on the API
        "a\tb": False,
        "a\x7fb": False,
        "x" * 256: False,
        "": False,
        "a b": True,
        "user@example.com": True,
        "x" * 255: True,
    }
    settings = make_settings(tmp_path, jwt_secret=TEST_SECRET)
    with running_app(settings) as (_, client):
        wait_ready(client)
        for user, usable in candidates.items():
            result = run_token_cli(tmp_path, "--user", user, JWT_SECRET=TEST_SECRET)
            path = f"/api/{quote(user, safe='')}/tasks"
            if usable:
                assert result.returncode == 0, (user, result.stderr)
                token = result.stdout.strip()
                response = client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200, (user, response.text)
                continue
            assert result.returncode == 2, (user, result.stdout)
            assert result.stdout == ""
            assert "--user must be 1 to 255 characters, without surrounding whitespace" in (
                result.stderr
            )
            # The API refuses the same id in its paths (with any token).
            response = client.get(path, headers=bearer("alice"))
            assert response.status_code in (400, 404), (user, response.text)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_secret_env_values_are_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    short = "short-secret"
    with running_app(make_settings(tmp_path, better_auth_secret=short)) as (_, client):
        wait_ready(client)
        token = make_token(secret=short)
        assert status_of(client, token).status_code == 200
        logging.getLogger("test").warning("leak attempt: %s", short)
    assert short not in caplog.text
    assert "shorter than 32 bytes" in caplog.text
    assert os.environ.get("BETTER_AUTH_SECRET") is None
