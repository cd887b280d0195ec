"""Keys from a JWKS endpoint (Better Auth's `/api/auth/jwks`), cached.

Fetches run off the event loop with a hard deadline, one at a time. The set is kept for
`ttl` seconds; past that it is refreshed, and while the endpoint is down the last good
set keeps being used. A token whose `kid` is not in the set (the keys were rotated)
triggers a fetch at once: concurrent misses share it, and fetches are at least
`min_interval` apart so that a flood of made-up `kid`s cannot hammer the auth server.
When that fetch fails the token can be neither accepted nor refused: `KeysUnavailable`
(503), never a 401 that would sign the user out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from src.auth.tokens import JWKS_ALGORITHMS, InvalidToken, KeysUnavailable, pyjwt

if TYPE_CHECKING:
    from jwt import PyJWK

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 3.0
TTL_SECONDS = 600.0
MIN_INTERVAL_SECONDS = 1.0
# After a failed fetch: how long requests needing keys fail fast, and how long a stale
# set is used without asking again.
FAILURE_COOLDOWN_SECONDS = 1.0
STALE_RETRY_SECONDS = 30.0
MAX_KID_SHOWN = 64
# Algorithms a JWK without `alg` can be used with, by key type (and curve). Better Auth
# always names the algorithm; other JWKS publishers may not.
_FAMILIES: dict[tuple[object, object], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "PS256"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
}


def public_url(url: str) -> str:
    """The URL without user info, query or fragment (for logs and the status page)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class _Fetch:
    started: float
    finished: float
    ok: bool


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        ttl: float = TTL_SECONDS,
        min_interval: float = MIN_INTERVAL_SECONDS,
        failure_cooldown: float = FAILURE_COOLDOWN_SECONDS,
        stale_retry: float = STALE_RETRY_SECONDS,
    ) -> None:
        # Raises PyJWKClientError for anything but http(s); the caller reports it.
        self._jwt = pyjwt()
        self._client = self._jwt.PyJWKClient(
            url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": "todo-backend"}
        )
        self.url = url
        self._timeout = timeout
        self._ttl = ttl
        self._min_interval = min_interval
        self._failure_cooldown = failure_cooldown
        self._stale_retry = stale_retry
        # (kid or None, algorithm) → key; a key without `kid` is only found by algorithm.
        self._keys: dict[tuple[str | None, str], PyJWK] = {}
        self._kids: set[str] = set()
        self._fetched_at: float | None = None  # last successful fetch
        self._last: _Fetch | None = None
        self.fetches = 0  # completed fetches, successful or not (for tests and the log)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def key_count(self) -> int:
        return len(self._keys)

    async def key_for(self, kid: object, algorithm: str) -> PyJWK:
        """The key that must have signed a token with this header.

        Raises InvalidToken when the set (fetched after the token arrived, if the `kid`
        was new) has no such key, or the key is not for `algorithm`; KeysUnavailable
        when the set is needed and cannot be fetched.
        """
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's 'kid' header is not a string.")
        arrived = time.monotonic()
        if self._stale(arrived):
            await self._refresh(arrived, kid=None, algorithm=None)
        key = self._match(kid, algorithm)
        if key is None and self._is_new(kid, algorithm):
            # Perhaps the keys were rotated since the last fetch.
            await self._refresh(arrived, kid=kid, algorithm=algorithm)
            key = self._match(kid, algorithm)
        if key is not None:
            return key
        if kid is not None and kid in self._kids:
            raise InvalidToken("The token's algorithm does not match its signing key.")
        if kid is None:
            raise InvalidToken(
                f"The token has no 'kid' and the JWKS has no single {algorithm} key for it."
            )
        raise InvalidToken(f"The token's signing key ({kid[:MAX_KID_SHOWN]!r}) is not in the JWKS.")

    async def warm(self) -> None:
        """Fetch once ahead of the first request; failures are only logged."""
        with contextlib.suppress(KeysUnavailable):
            await self._refresh(time.monotonic(), kid=None, algorithm=None)

    def _stale(self, now: float) -> bool:
        if self._fetched_at is None:
            return True
        if now - self._fetched_at <= self._ttl:
            return False
        # Stale, but usable: after a failure, ask again only every `stale_retry` seconds.
        last = self._last
        return last is None or last.ok or now - last.finished >= self._stale_retry

    def _is_new(self, kid: str | None, algorithm: str) -> bool:
        if kid is not None:
            return kid not in self._kids
        # No kid: ambiguous (several keys of the algorithm) is not a rotation.
        return not any(alg == algorithm for _, alg in self._keys)

    def _match(self, kid: str | None, algorithm: str) -> PyJWK | None:
        if kid is not None:
            return self._keys.get((kid, algorithm))
        # No kid: acceptable only when exactly one key could have signed it.
        candidates = [key for (_, alg), key in self._keys.items() if alg == algorithm]
        return candidates[0] if len(candidates) == 1 else None

    def _lock_for_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _refresh(self, arrived: float, *, kid: str | None, algorithm: str | None) -> None:
        """Make sure a fetch that began after `arrived` has answered, unless the answer is
        already known. `algorithm` None: a periodic refresh, for which a stale set will
        do; otherwise the token's key is missing and only a fetch can tell."""
        wanted = algorithm is not None
        lock = self._lock_for_loop()
        if not wanted and self._keys and lock.locked():
            return  # a fetch is under way; the set in hand serves meanwhile
        async with lock:
            if self._answered(arrived, kid, algorithm):
                return
            last = self._last
            if last is not None:
                wait = last.started + self._min_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self._fetch_now()
        if self._last is not None and not self._last.ok and (wanted or not self._keys):
            raise KeysUnavailable(
                f"The signing keys could not be fetched from {public_url(self.url)}."
            )

    def _answered(self, arrived: float, kid: str | None, algorithm: str | None) -> bool:
        """Whether what this request waits for is known without another fetch (or the
        endpoint has just failed, so asking again now would only wait again)."""
        if algorithm is not None and not self._is_new(kid, algorithm):
            return True  # another request's fetch brought the key
        last = self._last
        if last is None:
            return False
        if not last.ok:
            just_failed = time.monotonic() - last.finished < self._failure_cooldown
            if last.finished >= arrived or just_failed:
                if algorithm is None and self._keys:
                    return True
                raise KeysUnavailable(
                    f"The signing keys could not be fetched from {public_url(self.url)}."
                )
            return False
        if algorithm is None:
            return not self._stale(time.monotonic())
        return last.started >= arrived  # a fetch that began after the token arrived

    async def _fetch_now(self) -> None:
        started = time.monotonic()
        try:
            keys = await asyncio.wait_for(
                asyncio.to_thread(self._fetch), timeout=self._timeout + 1.0
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "no keys from there now"
            self.fetches += 1
            self._last = _Fetch(started, time.monotonic(), ok=False)
            logger.warning("JWKS fetch from %s failed: %s", public_url(self.url), _describe(exc))
            return
        self.fetches += 1
        self._keys = keys
        self._kids = {kid for kid, _ in keys if kid is not None}
        self._fetched_at = time.monotonic()
        self._last = _Fetch(started, self._fetched_at, ok=True)
        logger.info("JWKS from %s: %d usable key(s)", public_url(self.url), len(self._kids))

    def _fetch(self) -> dict[tuple[str | None, str], PyJWK]:
        data = self._client.fetch_data()
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise self._jwt.PyJWKSetError("The JWKS is not an object with a 'keys' list.")
        keys: dict[tuple[str | None, str], PyJWK] = {}
        for entry in data["keys"]:
            for algorithm in _algorithms_of(entry):
                try:
                    key = self._jwt.PyJWK(entry, algorithm)
                except self._jwt.PyJWTError:
                    continue  # a key we cannot use is not a reason to refuse the others
                keys[(key.key_id, algorithm)] = key
        return keys


def _algorithms_of(entry: object) -> tuple[str, ...]:
    """The accepted algorithms a JWK may verify: its own `alg` if it names one (an HMAC
    or unknown `alg` gives none), else those of its key type; none for encryption keys."""
    if not isinstance(entry, dict) or entry.get("use") not in ("sig", None):
        return ()
    if not isinstance(entry.get("kid"), str | None):
        return ()
    named = entry.get("alg")
    if named is not None:
        return (named,) if named in JWKS_ALGORITHMS else ()
    crv = entry.get("crv") if entry.get("kty") != "RSA" else None
    return _FAMILIES.get((entry.get("kty"), crv), ())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, pyjwt().PyJWTError):
        return str(exc)[:200]
    return f"{type(exc).__name__}: {str(exc)[:200]}"
