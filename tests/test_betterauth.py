"""End to end with a real Better Auth (npm `better-auth` 1.7.25, jwt plugin, email and
password, SQLite through better-sqlite3, run by Node): tokens obtained the way a
frontend obtains them, verified by the backend through `BETTER_AUTH_URL` alone.

One Better Auth process per key algorithm, shared by the tests of this module; the
EdDSA one rotates its key every 2 s and is stopped and restarted (same port, same
database) to take the auth server away. The README's frontend code is run by Node in
`test_the_readme_frontend_code_works`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from tests.better_auth import (
    PACKAGE_DIR,
    BetterAuth,
    SetupError,
    User,
    ensure_node_modules,
    installed_problem,
    wait_for_new_kid,
)
from tests.conftest import make_settings, running_app, wait_ready
from tests.server import clean_env, run_server

ALGORITHMS = ("EdDSA", "ES256", "ES512", "PS256", "RS256")
ROTATION_SECONDS = 2
# The first test's setup may run `npm ci` (a native build: minutes on a slow machine).
if installed_problem() is not None:
    pytestmark = pytest.mark.timeout(900)


class Servers:
    """Better Auth processes, started on first use, one per algorithm."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: dict[str, BetterAuth] = {}

    def get(self, alg: str) -> BetterAuth:
        if alg not in self.running:
            rotation = ROTATION_SECONDS if alg == "EdDSA" else None
            self.running[alg] = BetterAuth(self.workdir, alg, rotation).start()
        server = self.running[alg]
        if server.process is None:  # a test stopped it and failed before restarting it
            server.start()
        return server

    def stop_all(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    try:
        ensure_node_modules()
    except SetupError as exc:
        pytest.fail(str(exc), pytrace=False)
    running = Servers(tmp_path_factory.mktemp("better-auth"))
    try:
        yield running
    finally:
        running.stop_all()


@contextmanager
def backend(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    with running_app(make_settings(tmp_path, **settings)) as (_, client):
        wait_ready(client)
        yield client


def call(client: TestClient, method: str, path: str, token: str, **kwargs: Any) -> Any:
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def tasks_of(user: User) -> str:
    return f"/api/{user.id}/tasks"


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


# -- the whole cycle, for each algorithm -------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_tasks_with_better_auth_tokens(servers: Servers, tmp_path: Path, alg: str) -> None:
    auth = servers.get(alg)
    alice = auth.sign_up("alice")
    again = auth.sign_in(alice.email)  # a second session, as from another browser
    from_endpoint, from_header = again.token(), again.session_jwt()
    for token in (from_endpoint, from_header):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == alg and header["kid"], header
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == alice.id
    with backend(tmp_path, better_auth_url=auth.url) as client:
        base = tasks_of(alice)
        assert call(client, "GET", base, from_header).status_code == 200
        created = call(client, "POST", base, from_endpoint, json={"title": "Buy milk"})
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["user_id"] == alice.id and task["completed"] is False
        url = f"{base}/{task['id']}"
        listed = call(client, "GET", f"{base}?completed=false", from_endpoint)
        assert [t["id"] for t in listed.json()] == [task["id"]]
        assert listed.headers["x-total-count"] == "1"
        assert call(client, "GET", url, from_header).json() == task
        updated = call(client, "PUT", url, from_endpoint, json={"completed": True, "title": "Oat"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["status"] == "completed" and updated.json()["title"] == "Oat"
        toggled = call(client, "PATCH", f"{url}/complete", from_endpoint)
        assert toggled.json()["completed"] is False
        assert call(client, "DELETE", url, from_endpoint).status_code == 204
        assert_error(call(client, "GET", url, from_endpoint), 404, "TASK_NOT_FOUND")
        # Another user's token on alice's path, and on their own.
        bob = auth.sign_up("bob").token()
        assert_error(call(client, "GET", base, bob), 403, "FORBIDDEN")
        assert_error(call(client, "POST", base, bob, json={"title": "x"}), 403, "FORBIDDEN")
        assert call(client, "GET", f"/api/{auth_subject(bob)}/tasks", bob).status_code == 200


def auth_subject(token: str) -> str:
    subject: str = jwt.decode(token, options={"verify_signature": False})["sub"]
    return subject


# -- claims ---------------------------------------------------------------------------------


def test_expired_and_foreign_tokens_are_refused(servers: Servers, tmp_path: Path) -> None:
    auth = servers.get("ES256")
    alice = auth.sign_up("alice")
    now = int(time.time())
    with backend(tmp_path, better_auth_url=auth.url) as client:
        base = tasks_of(alice)
        assert call(client, "GET", base, auth.sign({"sub": alice.id})).status_code == 200
        expired = auth.sign({"sub": alice.id, "iat": now - 1000, "exp": now - 120})
        response = call(client, "GET", base, expired)
        assert_error(response, 401, "TOKEN_EXPIRED")
        assert response.headers["www-authenticate"].startswith("Bearer")
        for claims in (
            {"aud": "https://other-app.example"},
            {"iss": "https://evil.example"},
            {"aud": ["https://other-app.example"]},
        ):
            response = call(client, "GET", base, auth.sign({"sub": alice.id, **claims}))
            assert_error(response, 401, "UNAUTHORIZED")
            assert "not" in response.json()["error"], claims
        description = client.get("/", headers={"Accept": "application/json"}).json()["auth"]
        assert f"'iss' must be {auth.url}" in description["description"]

    # Only the JWKS URL, no BETTER_AUTH_URL: nothing to compare iss/aud with, and the
    # status page says so.
    jwks = f"{auth.url}/api/auth/jwks"
    with backend(tmp_path / "jwks-only", better_auth_jwks_url=jwks) as client:
        foreign = auth.sign({"sub": alice.id, "aud": "https://other-app.example"})
        assert call(client, "GET", tasks_of(alice), foreign).status_code == 200
        page = client.get("/", headers={"Accept": "application/json"}).json()
        assert "'iss' and 'aud' claims are not checked" in page["auth"]["description"]


def test_hand_rolled_hs256_tokens_with_the_shared_secret(servers: Servers, tmp_path: Path) -> None:
    # A frontend signing its own tokens with jose and BETTER_AUTH_SECRET, the user id
    # spelled as various frontends spell it.
    auth = servers.get("EdDSA")
    settings = {"better_auth_url": auth.url, "better_auth_secret": auth.secret}
    with backend(tmp_path, **settings) as client:
        for claims, user in (
            ({"sub": "u-sub"}, "u-sub"),
            ({"user_id": "u-user_id"}, "u-user_id"),
            ({"userId": "u-userId"}, "u-userId"),
            ({"id": "u-id"}, "u-id"),
            ({"sub": 123}, "123"),
            ({"userId": 456}, "456"),
            ({"sub": "u-iss", "iss": auth.url, "aud": auth.url}, "u-iss"),
        ):
            token = auth.hs256(claims)
            assert jwt.get_unverified_header(token)["alg"] == "HS256"
            response = call(client, "POST", f"/api/{user}/tasks", token, json={"title": "t"})
            assert response.status_code == 201, (claims, response.text)
            assert response.json()["user_id"] == user
        foreign = auth.hs256({"sub": "u", "aud": "https://other-app.example"})
        assert_error(call(client, "GET", "/api/u/tasks", foreign), 401, "UNAUTHORIZED")
        assert_error(call(client, "GET", "/api/u/tasks", auth.hs256({})), 401, "UNAUTHORIZED")


# -- rotation and outages -----------------------------------------------------------------


def test_rotation_and_the_auth_server_going_away(servers: Servers, tmp_path: Path) -> None:
    auth = servers.get("EdDSA")
    alice, bob = auth.sign_up("alice"), auth.sign_up("bob")
    first, bob_first = alice.token(), bob.token()
    while jwt.get_unverified_header(first)["kid"] != jwt.get_unverified_header(bob_first)["kid"]:
        first, bob_first = alice.token(), bob.token()  # a rotation fell in between
    auth.stop()
    try:
        with backend(tmp_path, better_auth_url=auth.url) as client:
            # Down when the backend starts: 503, which a frontend retries, not a 401.
            response = call(client, "GET", tasks_of(alice), first)
            assert_error(response, 503, "AUTH_UNAVAILABLE")
            assert int(response.headers["retry-after"]) >= 1
            failed_at = time.monotonic()
            auth.start()  # same port, same database, same keys
            time.sleep(max(0.0, failed_at + 1.1 - time.monotonic()))
            assert call(client, "GET", tasks_of(alice), first).status_code == 200

            # Rotation: a token signed with the new key is accepted at once.
            rotated = wait_for_new_kid(alice, jwt.get_unverified_header(first)["kid"])
            started = time.monotonic()
            response = call(client, "GET", tasks_of(alice), rotated)
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < 5  # one fetch (after the 1 s floor at most)

            # Down later: keys already fetched keep working; a key never seen is a 503.
            newer = wait_for_new_kid(alice, jwt.get_unverified_header(rotated)["kid"])
            auth.stop()
            assert call(client, "GET", tasks_of(bob), bob_first).status_code == 200
            response = call(client, "GET", tasks_of(alice), newer)
            assert_error(response, 503, "AUTH_UNAVAILABLE")
            assert response.headers["retry-after"]
    finally:
        if auth.process is None:
            auth.start()


# -- the README's frontend code ----------------------------------------------------------


def test_the_readme_frontend_code_works(servers: Servers, tmp_path: Path) -> None:
    """frontend/todo-api.mjs and frontend/backend-token.mjs (quoted verbatim in README.md,
    see tests/test_readme.py) run by Node against Better Auth and the backend server,
    over real HTTP with CORS, configured as the README says."""
    auth = servers.get("EdDSA")
    # Option B's secret is one of its own, not Better Auth's (README: "A shared secret").
    api_secret = secrets.token_urlsafe(32)
    assert api_secret != auth.secret
    env = clean_env(
        HOME=str(tmp_path / "home"),
        SQLITE_PATH=str(tmp_path / "todo.db"),
        BETTER_AUTH_URL=auth.url,
        JWT_SECRET=api_secret,
        CORS_ORIGINS=f"{auth.url}/",  # pasted from the address bar, trailing slash and all
    )
    with run_server(env, cwd=tmp_path) as server:
        server.wait_ready()
        preflight = httpx.options(
            f"{server.base_url}/api/someone/tasks",
            headers={
                "Origin": auth.url,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == auth.url
        stranger = httpx.options(
            f"{server.base_url}/api/someone/tasks",
            headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in stranger.headers

        result = subprocess.run(
            ["node", "frontend-check.mjs"],
            cwd=PACKAGE_DIR,
            env=clean_env(
                NEXT_PUBLIC_BETTER_AUTH_URL=auth.url,
                NEXT_PUBLIC_API_URL=server.base_url,
                JWT_SECRET=api_secret,
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr + server.logs()
    seen = json.loads(result.stdout)
    user = seen["userId"]
    for token in (seen["token"], seen["headerToken"]):
        assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
        assert auth_subject(token) == user
    tasks = seen["tasks"]
    assert tasks["created"]["title"] == "Buy milk" and tasks["created"]["user_id"] == user
    assert [t["id"] for t in tasks["listed"]] == [tasks["created"]["id"]]
    assert tasks["updated"]["title"] == "Buy oat milk"
    assert tasks["toggled"]["completed"] is True
    assert [t["id"] for t in tasks["done"]] == [tasks["created"]["id"]]
    assert seen["viaSecret"]["user_id"] == user
    assert seen["otherUser"] == {
        "status": 403,
        "code": "FORBIDDEN",
        "message": "This token does not give access to this user's tasks.",
    }
    # A proxy's HTML error page is an ApiError with its status, not a SyntaxError.
    assert seen["brokenProxy"] == {
        "status": 502,
        "code": None,
        "retryAfter": 7,
        "message": "HTTP 502 (not a JSON response)",
    }
    assert seen["signedOut"]["status"] == 401
    statuses = [(r["method"], r["status"]) for r in seen["requests"]]
    assert statuses == [
        ("POST", 201),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 200),
        ("PATCH", 200),
        ("GET", 200),
        ("DELETE", 204),
        ("POST", 201),
        ("GET", 403),
    ]
    assert {r["cors"] for r in seen["requests"]} == {auth.url}


# -- set-up ---------------------------------------------------------------------------------


def test_without_node_the_suite_fails_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SetupError) as failure:
        ensure_node_modules()
    message = str(failure.value)
    assert "Node.js 20" in message and "npm ci" in message and "tests/betterauth" in message
