"""Tokens checked with a JWKS, against a real JWKS endpoint on loopback (a small Python
server that counts its requests): each algorithm, rotation, the auth server down,
`iss`/`aud`. tests/test_betterauth.py runs the same against a real Better Auth."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from src.auth.issuer import jwks_url_for, resolve_issuer
from src.auth.jwks import JwksCache
from src.auth.secret import SECRET_FILENAME
from src.auth.tokens import InvalidToken, KeysUnavailable
from src.config.origins import origin_of
from tests.conftest import TEST_SECRET, make_settings, make_token, running_app, wait_ready

# -- a JWKS endpoint and keys ------------------------------------------------------


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its requests."""

    def __init__(self, port: int = 0) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base_url}/api/auth/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


class Keys:
    """One key per algorithm Better Auth offers, published as Better Auth does (with
    `alg`), plus keys published without `alg` and one that is in no key set."""

    def __init__(self) -> None:
        self.private = {
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "ES512": ec.generate_private_key(ec.SECP521R1()),
            "PS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        }
        self.other_ed = ed25519.Ed25519PrivateKey.generate()

    @staticmethod
    def jwk(private: Any, kid: str, alg: str | None, **extra: Any) -> dict[str, Any]:
        public = private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        if alg is not None:
            data["alg"] = alg
        return {**data, "kid": kid, **extra}

    def jwks(self) -> list[dict[str, Any]]:
        named = [self.jwk(key, alg, alg) for alg, key in self.private.items()]
        return [
            *named,
            # Without `alg`: usable by key type (an RSA key for RS256 and PS256).
            self.jwk(self.private["RS256"], "rsa-no-alg", None, use="sig"),
            self.jwk(self.private["ES256"], "ec-no-alg", None),
            # Never used: an encryption key, and a symmetric one.
            self.jwk(self.other_ed, "enc", "EdDSA", use="enc"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct", "alg": "HS256"},
        ]

    def sign(self, algorithm: str, kid: str | None = "same", **extra: Any) -> str:
        headers = {"kid": algorithm if kid == "same" else kid} if kid is not None else {}
        return jwt.encode(
            claims(**extra), self.private[algorithm], algorithm=algorithm, headers=headers
        )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.keys = keys.jwks()
        yield server


def status_of(client: TestClient, token: str) -> Any:
    return client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})


# -- through the app -----------------------------------------------------------------


def test_every_better_auth_algorithm_and_every_refusal(
    tmp_path: Path, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = make_settings(tmp_path, better_auth_jwks_url=jwks_server.url)
    with running_app(settings) as (app, client):
        wait_ready(client)
        mode = app.state.auth_mode
        accepted = {alg: keys.sign(alg) for alg in ("EdDSA", "ES256", "ES512", "PS256", "RS256")}
        accepted["RS256, key without alg"] = keys.sign("RS256", "rsa-no-alg")
        accepted["PS256, key without alg"] = jwt.encode(
            claims(), keys.private["RS256"], algorithm="PS256", headers={"kid": "rsa-no-alg"}
        )
        accepted["ES256, key without alg"] = keys.sign("ES256", "ec-no-alg")
        for name, token in accepted.items():
            response = status_of(client, token)
            assert response.status_code == 200, (name, response.text)
        for _ in range(20):
            assert status_of(client, keys.sign("EdDSA")).status_code == 200
        # Fetched once (warm-up), not per request.
        assert jwks_server.requests == 1

        refusals = {
            "kid of another algorithm": keys.sign("ES256", "EdDSA"),
            "PS256 with a key published for RS256": jwt.encode(
                claims(), keys.private["RS256"], algorithm="PS256", headers={"kid": "RS256"}
            ),
            "signed by a key not in the set": jwt.encode(
                claims(), keys.other_ed, algorithm="EdDSA", headers={"kid": "EdDSA"}
            ),
            "an encryption key": jwt.encode(
                claims(), keys.other_ed, algorithm="EdDSA", headers={"kid": "enc"}
            ),
            "HS256 without a secret": make_token(),
            "HS256 with the JWKS's symmetric key": jwt.encode(
                claims(), b"secret", algorithm="HS256", headers={"kid": "oct"}
            ),
            "HS256 keyed with a public key": jwt.encode(
                claims(), keys.jwks()[0]["x"] * 2, algorithm="HS256", headers={"kid": "EdDSA"}
            ),
            "ES384 (not offered by Better Auth)": jwt.encode(
                claims(), ec.generate_private_key(ec.SECP384R1()), algorithm="ES384"
            ),
            "no kid, several ES256 keys": keys.sign("ES256", None),
            "expired": keys.sign("ES512", exp=int(time.time()) - 120),
            "no exp": jwt.encode(
                {"sub": "alice"}, keys.private["EdDSA"], algorithm="EdDSA", headers={"kid": "EdDSA"}
            ),
        }
        for name, token in refusals.items():
            response = status_of(client, token)
            assert response.status_code == 401, (name, response.text)
            expected = "TOKEN_EXPIRED" if name == "expired" else "UNAUTHORIZED"
            assert response.json()["code"] == expected, name
            assert response.headers["www-authenticate"].startswith("Bearer")
        # Only the encryption key's kid was new (it is not a signing key): one fetch.
        assert jwks_server.requests == 2
    assert mode["mode"] == "jwks"
    assert mode["secret_file"] is None
    assert jwks_server.url in mode["description"]
    assert "ES512" in mode["description"] and "PS256" in mode["description"]
    assert not list(tmp_path.glob(f"**/{SECRET_FILENAME}"))


def test_a_rotated_key_is_fetched_at_once(
    tmp_path: Path, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = make_settings(tmp_path, better_auth_jwks_url=jwks_server.url)
    with running_app(settings) as (_, client):
        wait_ready(client)
        assert status_of(client, keys.sign("EdDSA")).status_code == 200
        before = jwks_server.requests
        jwks_server.keys = [*keys.jwks(), keys.jwk(keys.other_ed, "rotated", "EdDSA")]
        rotated = jwt.encode(claims(), keys.other_ed, algorithm="EdDSA", headers={"kid": "rotated"})
        response = status_of(client, rotated)
        assert response.status_code == 200, response.text
        assert jwks_server.requests == before + 1
        # A kid that is in no set: asked once more (at least a second later), then 401.
        response = status_of(client, keys.sign("EdDSA", "made-up"))
        assert response.status_code == 401
        assert "is not in the JWKS" in response.json()["error"]
        assert jwks_server.requests == before + 2


def test_auth_server_down_at_start_then_up(tmp_path: Path, keys: Keys, refused_port: int) -> None:
    base = f"http://127.0.0.1:{refused_port}"
    settings = make_settings(tmp_path, better_auth_url=base)
    with running_app(settings) as (_, client):
        wait_ready(client)
        started = time.monotonic()
        response = status_of(client, keys.sign("EdDSA", iss=base, aud=base))
        assert time.monotonic() - started < 5
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "AUTH_UNAVAILABLE"
        assert int(response.headers["retry-after"]) >= 1
        # Requests without a usable token are still plain 401s.
        assert client.get("/api/alice/tasks").status_code == 401
        with JwksServer(refused_port) as server:
            server.keys = keys.jwks()
            time.sleep(1.1)  # past the failure cool-down
            token = keys.sign("EdDSA", iss=base, aud=base)
            assert status_of(client, token).status_code == 200


def test_auth_server_down_later(tmp_path: Path, keys: Keys, jwks_server: JwksServer) -> None:
    settings = make_settings(tmp_path, better_auth_jwks_url=jwks_server.url)
    with running_app(settings) as (_, client):
        wait_ready(client)
        assert status_of(client, keys.sign("EdDSA")).status_code == 200
        jwks_server.status = 500
        # Known keys keep working (a token not seen before: no verified-token cache).
        assert status_of(client, keys.sign("ES512")).status_code == 200
        assert status_of(client, keys.sign("PS256")).status_code == 200
        # A new kid cannot be told from a forged one: 503, not 401.
        rotated = jwt.encode(claims(), keys.other_ed, algorithm="EdDSA", headers={"kid": "new"})
        response = status_of(client, rotated)
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "AUTH_UNAVAILABLE"
        assert response.headers["retry-after"]


def test_jwks_and_secret_together(tmp_path: Path, keys: Keys, jwks_server: JwksServer) -> None:
    settings = make_settings(
        tmp_path, better_auth_jwks_url=jwks_server.url, better_auth_secret=TEST_SECRET
    )
    with running_app(settings) as (app, client):
        wait_ready(client)
        assert status_of(client, make_token()).status_code == 200
        assert status_of(client, keys.sign("EdDSA")).status_code == 200
        assert app.state.auth_mode["mode"] == "configured"
        assert "JWKS" in app.state.auth_mode["description"]


def test_better_auth_url_gives_the_jwks_and_the_expected_iss_and_aud(
    tmp_path: Path, keys: Keys, jwks_server: JwksServer
) -> None:
    base = jwks_server.base_url
    settings = make_settings(tmp_path, better_auth_url=base + "/")
    with running_app(settings) as (app, client):
        wait_ready(client)
        assert status_of(client, keys.sign("EdDSA", iss=base, aud=base)).status_code == 200
        assert status_of(client, keys.sign("ES256", iss=base, aud=[base, "x"])).status_code == 200
        for name, token in {
            "no iss": keys.sign("EdDSA", aud=base),
            "no aud": keys.sign("EdDSA", iss=base),
            "foreign issuer": keys.sign("EdDSA", iss="https://evil.example", aud=base),
            "foreign audience": keys.sign("EdDSA", iss=base, aud="https://other.example"),
            "issuer with a path": keys.sign("EdDSA", iss=base + "/api/auth", aud=base),
        }.items():
            response = status_of(client, token)
            assert response.status_code == 401, (name, response.text)
            assert response.json()["code"] == "UNAUTHORIZED"
        description = app.state.auth_mode["description"]
    assert jwks_server.url in description
    assert f"'iss' must be {base}" in description


def test_explicit_issuer_and_audience_override(
    tmp_path: Path, keys: Keys, jwks_server: JwksServer
) -> None:
    settings = make_settings(
        tmp_path,
        better_auth_url="https://auth.example.com",
        better_auth_jwks_url=jwks_server.url,
        better_auth_issuer="https://issuer.example",
        better_auth_audience="todo-api, https://other.example",
    )
    with running_app(settings) as (_, client):
        wait_ready(client)
        good = keys.sign("EdDSA", iss="https://issuer.example", aud="todo-api")
        assert status_of(client, good).status_code == 200
        also = keys.sign("ES512", iss="https://issuer.example", aud="https://other.example")
        assert status_of(client, also).status_code == 200
        base = keys.sign("EdDSA", iss="https://auth.example.com", aud="https://auth.example.com")
        assert status_of(client, base).status_code == 401


def test_invalid_urls_are_ignored(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, better_auth_jwks_url="file:///etc/passwd", better_auth_url="localhost:3000"
    )
    with running_app(settings) as (app, client):
        wait_ready(client)
        assert app.state.auth_mode["mode"] == "generated"
        assert "not checked" in app.state.auth_mode["description"]
    issuer = resolve_issuer(settings)
    assert issuer.jwks_url is None
    assert issuer.ignored == ("BETTER_AUTH_URL", "BETTER_AUTH_JWKS_URL")
    assert len(settings.warnings) == 2


# -- the pieces ------------------------------------------------------------------------


def test_origin_and_jwks_url_as_better_auth_derives_them() -> None:
    # better-auth 1.7.25: the origin for iss/aud, `/api/auth` appended unless a path is there.
    cases = {
        "http://localhost:3000": ("http://localhost:3000", "http://localhost:3000/api/auth/jwks"),
        "http://localhost:3000/": ("http://localhost:3000", "http://localhost:3000/api/auth/jwks"),
        "HTTPS://App.Example.com:443": (
            "https://app.example.com",
            "https://app.example.com/api/auth/jwks",
        ),
        "https://app.example.com/api/auth/": (
            "https://app.example.com",
            "https://app.example.com/api/auth/jwks",
        ),
        "https://example.com/auth": ("https://example.com", "https://example.com/auth/jwks"),
        "http://[::1]:8080": ("http://[::1]:8080", "http://[::1]:8080/api/auth/jwks"),
    }
    for url, (origin, jwks) in cases.items():
        assert origin_of(url) == origin, url
        assert jwks_url_for(url) == jwks, url
    for bad in ("localhost:3000", "ftp://x", "http://", "https://x:99999", "/api/auth"):
        assert origin_of(bad) is None, bad
        assert jwks_url_for(bad) is None, bad


def test_the_cache_shares_fetches_and_keeps_a_floor_between_them(
    keys: Keys, jwks_server: JwksServer
) -> None:
    async def scenario() -> None:
        cache = JwksCache(jwks_server.url, min_interval=0.5, failure_cooldown=0.2)
        assert (await cache.key_for("EdDSA", "EdDSA")).key_id == "EdDSA"
        assert jwks_server.requests == 1
        # Concurrent misses of one new kid share one fetch.
        jwks_server.keys = [*keys.jwks(), keys.jwk(keys.other_ed, "new", "EdDSA")]
        found = await asyncio.gather(*(cache.key_for("new", "EdDSA") for _ in range(10)))
        assert {key.key_id for key in found} == {"new"}
        assert jwks_server.requests == 2
        # A flood of made-up kids: at most one fetch per floor interval.
        started = time.monotonic()
        results = await asyncio.gather(
            *(cache.key_for(f"bogus-{n}", "EdDSA") for n in range(30)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(r, InvalidToken) for r in results)
        assert jwks_server.requests - 2 <= elapsed / 0.5 + 1
        # The endpoint failing: the last good set keeps working, a new kid is 503.
        jwks_server.status = 500
        await asyncio.sleep(0.6)
        assert (await cache.key_for("new", "EdDSA")).key_id == "new"
        with pytest.raises(KeysUnavailable):
            await cache.key_for("newer", "EdDSA")
        # Straight after a failure, misses fail fast instead of asking again.
        before = jwks_server.requests
        with pytest.raises(KeysUnavailable):
            await cache.key_for("newest", "EdDSA")
        assert jwks_server.requests == before

    asyncio.run(scenario())


def test_the_cache_refreshes_after_its_ttl_and_survives_a_stale_set(
    keys: Keys, jwks_server: JwksServer
) -> None:
    async def scenario() -> None:
        cache = JwksCache(jwks_server.url, ttl=0.2, min_interval=0, stale_retry=0.2)
        assert (await cache.key_for("EdDSA", "EdDSA")).key_id == "EdDSA"
        jwks_server.keys = [keys.jwk(keys.other_ed, "only", "EdDSA")]
        await asyncio.sleep(0.3)
        # Past the TTL the set is fetched again: a key that left it is gone.
        with pytest.raises(InvalidToken):
            await cache.key_for("EdDSA", "EdDSA")
        # No kid: the only key of the algorithm.
        assert (await cache.key_for(None, "EdDSA")).key_id == "only"
        jwks_server.status = 500
        await asyncio.sleep(0.3)
        assert (await cache.key_for("only", "EdDSA")).key_id == "only"

    asyncio.run(scenario())


def test_a_hung_key_server_is_given_up_on_quickly(hung_port: int) -> None:
    async def scenario() -> None:
        hung = JwksCache(f"http://127.0.0.1:{hung_port}/jwks", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            await hung.key_for("ed", "EdDSA")
        assert time.monotonic() - started < 2.5
        # Failing again straight away does not wait again.
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            await hung.key_for("ed", "EdDSA")
        assert time.monotonic() - started < 0.2
        # Requests arriving while a fetch hangs share its failure.
        await asyncio.sleep(1.1)
        started = time.monotonic()
        results = await asyncio.gather(
            *(hung.key_for("ed", "EdDSA") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, KeysUnavailable) for r in results)
        assert time.monotonic() - started < 2.5

    asyncio.run(scenario())
