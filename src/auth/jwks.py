"""Keys from a JWKS endpoint (Better Auth's `/api/auth/jwks`), cached.

Fetches happen off the event loop with a hard deadline, one at a time, and rarely:
the set is kept for `ttl` seconds, an unknown `kid` triggers at most one re-fetch per
`cooldown`, and a failed fetch is not retried for `failure_cooldown` seconds (requests
meanwhile fail fast). A stale set keeps being used while the endpoint is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from src.auth.tokens import JWKS_ALGORITHMS, InvalidToken, KeysUnavailable, pyjwt

if TYPE_CHECKING:
    from jwt import PyJWK

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 3.0
TTL_SECONDS = 600.0
COOLDOWN_SECONDS = 30.0
FAILURE_COOLDOWN_SECONDS = 5.0


def public_url(url: str) -> str:
    """The URL without user info, query or fragment (for logs and the status page)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class JwksCache:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        ttl: float = TTL_SECONDS,
        cooldown: float = COOLDOWN_SECONDS,
        failure_cooldown: float = FAILURE_COOLDOWN_SECONDS,
    ) -> None:
        # Raises PyJWKClientError for anything but http(s); the caller reports it.
        self._jwt = pyjwt()
        self._client = self._jwt.PyJWKClient(
            url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": "todo-backend"}
        )
        self.url = url
        self._timeout = timeout
        self._ttl = ttl
        self._cooldown = cooldown
        self._failure_cooldown = failure_cooldown
        self._keys: list[PyJWK] = []
        self._by_kid: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at = -math.inf
        self._attempts = 0  # completed fetches, successful or not
        self._failed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def key_count(self) -> int:
        return len(self._keys)

    async def key_for(self, kid: object, algorithm: str) -> PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's 'kid' header is not a string.")
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > self._ttl:
            await self._refresh(stale_ok=self._fetched_at is not None)
        key = self._match(kid, algorithm)
        if key is None and time.monotonic() - self._attempted_at >= self._cooldown:
            # Perhaps the keys were rotated since the last fetch.
            await self._refresh(stale_ok=True)
            key = self._match(kid, algorithm)
        if key is None:
            raise InvalidToken(f"The token's signing key ({str(kid)[:64]!r}) is not in the JWKS.")
        if key.algorithm_name != algorithm:
            raise InvalidToken("The token's algorithm does not match its signing key.")
        return key

    async def warm(self) -> None:
        """Fetch once ahead of the first request; failures are only logged."""
        with contextlib.suppress(KeysUnavailable):
            await self._refresh(stale_ok=True)

    def _match(self, kid: str | None, algorithm: str) -> PyJWK | None:
        if kid is not None:
            return self._by_kid.get(kid)
        # No kid: acceptable only when exactly one key could have signed it.
        candidates = [k for k in self._keys if k.algorithm_name == algorithm]
        return candidates[0] if len(candidates) == 1 else None

    def _lock_for_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _refresh(self, *, stale_ok: bool) -> None:
        attempts_before = self._attempts
        async with self._lock_for_loop():
            recently = self._attempts != attempts_before or (
                self._failed and time.monotonic() - self._attempted_at < self._failure_cooldown
            )
            # Skipped when another request fetched while this one waited for the lock, or
            # when the endpoint just failed: requests fail fast instead of piling up.
            if not recently:
                await self._fetch_now()
        if self._failed and not (stale_ok and self._keys):
            raise KeysUnavailable(
                f"The signing keys could not be fetched from {public_url(self.url)}."
            )

    async def _fetch_now(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            keys = await asyncio.wait_for(
                asyncio.to_thread(self._fetch), timeout=self._timeout + 1.0
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "no keys from there now"
            self._attempts += 1
            self._failed = True
            logger.warning("JWKS fetch from %s failed: %s", public_url(self.url), _describe(exc))
            return
        self._attempts += 1
        self._failed = False
        self._keys = keys
        self._by_kid = {key.key_id: key for key in keys if key.key_id}
        self._fetched_at = time.monotonic()
        logger.info("JWKS from %s: %d usable key(s)", public_url(self.url), len(keys))

    def _fetch(self) -> list[PyJWK]:
        data = self._client.fetch_data()
        return [
            key
            for key in self._jwt.PyJWKSet.from_dict(data).keys
            if key.public_key_use in ("sig", None) and key.algorithm_name in JWKS_ALGORITHMS
        ]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, pyjwt().PyJWTError):
        return str(exc)[:200]
    return f"{type(exc).__name__}: {str(exc)[:200]}"
