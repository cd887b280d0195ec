"""Verify and mint JWTs.

HS256 with the shared secret; from a JWKS every asymmetric algorithm Better Auth offers
(`jwks.keyPairConfig.alg`: EdDSA, ES256, ES512, PS256, RS256 — see
/work/shared/research/better_auth_tokens.md). Nothing else is accepted: never `none`,
never an HMAC algorithm with a JWKS key. `exp` is required, clocks may differ by 30 s.
`iss` and `aud` must be the expected values on JWKS tokens when those are known, and
are checked on HS256 tokens that carry them (hand-rolled tokens often do not). The user
is `sub`, else `user_id`, `userId`, `id`; an integer is taken as its decimal string.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src.auth.jwks import JwksCache

HMAC_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("EdDSA", "ES256", "ES512", "PS256", "RS256")
LEEWAY_SECONDS = 30
SUBJECT_CLAIMS = ("sub", "user_id", "userId", "id")
MAX_SUBJECT_LENGTH = 255
# Far above any real JWT; longer headers are refused before any parsing.
MAX_TOKEN_LENGTH = 16 * 1024
# Verified tokens remembered (by their exact text) until they expire.
_CACHE_SIZE = 1024
# `verify_sub` off: PyJWT 2.x refuses a non-string `sub` itself (api_jwt.py,
# `_validate_sub`), before `subject_of` could take an integer id as its decimal string;
# `subject_of` checks the type instead. `iss`/`aud` are checked by `_check_origin`
# (PyJWT would refuse any `aud` when no audience is expected). Every other check stays on.
_DECODE_OPTIONS: Any = {
    "require": ["exp"],
    "verify_sub": False,
    "verify_aud": False,
    "verify_iss": False,
}


def pyjwt() -> ModuleType:
    """PyJWT, imported on first use: it loads `cryptography`, which would add a tenth
    of a second to every process start (and worker spawn) for no request served."""
    import jwt
    from jwt.warnings import InsecureKeyLengthWarning

    # A short configured secret is reported once at start-up (src.auth.setup), not by a
    # warning on every request.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    return jwt


class InvalidToken(Exception):
    """The token cannot be accepted; `message` is safe to show the client."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


class KeysUnavailable(Exception):
    """The JWKS could not be fetched, so the token can be neither accepted nor refused."""


@dataclass(frozen=True)
class ExpectedOrigin:
    """What `iss` must equal and what `aud` must contain (one of); None / () = unchecked."""

    issuer: str | None = None
    audiences: tuple[str, ...] = ()


class TokenVerifier:
    """Turns a bearer token into a user id, or raises `InvalidToken` (401) or
    `KeysUnavailable` (503: the key server cannot be asked).

    Keys are prepared once (the HMAC secret as bytes, JWKS keys as key objects), and a
    token already verified is answered from a small cache until its `exp`.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        jwks: JwksCache | None,
        expected: ExpectedOrigin | None = None,
    ) -> None:
        self._jwt = pyjwt()
        self._secret = secret.encode() if secret else None
        self._jwks = jwks
        self._expected = expected or ExpectedOrigin()
        self._cache: dict[str, tuple[str, float]] = {}

    @property
    def jwks(self) -> JwksCache | None:
        return self._jwks

    @property
    def expected(self) -> ExpectedOrigin:
        return self._expected

    async def verify(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            subject, expires = cached
            if time.time() < expires:
                return subject
            del self._cache[token]
            raise InvalidToken("The token has expired.", expired=True)
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The token is too long.")
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The token is not a valid JWT.") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm in HMAC_ALGORITHMS and self._secret is not None:
            key, from_jwks = self._secret, False
        elif algorithm in JWKS_ALGORITHMS and self._jwks is not None:
            key, from_jwks = await self._jwks.key_for(header.get("kid"), str(algorithm)), True
        else:
            raise InvalidToken(f"Tokens signed with {str(algorithm)[:20]!r} are not accepted.")
        payload = _decode(jwt, token, key, str(algorithm))
        _check_origin(payload, self._expected, required=from_jwks)
        subject = subject_of(payload)
        self._remember(token, subject, payload["exp"])
        return subject

    def _remember(self, token: str, subject: str, exp: Any) -> None:
        try:
            expires = float(min(int(exp), 2**53)) + LEEWAY_SECONDS
        except (TypeError, ValueError, OverflowError):
            return
        if len(self._cache) >= _CACHE_SIZE:
            # Drop the oldest entry (dicts keep insertion order).
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (subject, expires)


def _decode(jwt: Any, token: str, key: Any, algorithm: str) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            leeway=LEEWAY_SECONDS,
            options=_DECODE_OPTIONS,
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The token has expired.", expired=True) from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"The token has no {exc.claim!r} claim.") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("The token signature is invalid.") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("The token is not valid yet.") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"The token is invalid ({_short(exc)}).") from None
    return payload


def _short(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:120]


def _check_origin(payload: dict[str, Any], expected: ExpectedOrigin, *, required: bool) -> None:
    """`iss` equal to the expected issuer and `aud` (a string or a list of strings)
    naming one of the expected audiences; a missing claim passes unless `required`."""
    if expected.issuer is not None and (required or "iss" in payload):
        issuer = payload.get("iss")
        if issuer is None:
            raise InvalidToken(f"The token has no 'iss' claim (expected {expected.issuer!r}).")
        if issuer != expected.issuer:
            raise InvalidToken(
                f"The token was issued by {str(issuer)[:80]!r}, not by {expected.issuer!r}."
            )
    if expected.audiences and (required or "aud" in payload):
        audience = payload.get("aud")
        if audience is None:
            raise InvalidToken(
                f"The token has no 'aud' claim (expected {expected.audiences[0]!r})."
            )
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not all(isinstance(a, str) for a in named):
            raise InvalidToken("The token's 'aud' claim is not a string or a list of strings.")
        if not set(named) & set(expected.audiences):
            raise InvalidToken(
                f"The token is meant for {str(audience)[:80]!r}, not for "
                f"{' or '.join(repr(a) for a in expected.audiences)}."
            )


def subject_of(payload: dict[str, Any]) -> str:
    """The user id: the first of `SUBJECT_CLAIMS` that is present and not empty. A
    string is taken as it is, an integer (not a bool, not a float) as its decimal string;
    any other type is refused rather than skipped."""
    for claim in SUBJECT_CLAIMS:
        value = payload.get(claim)
        if value is None or value == "":
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise InvalidToken(f"The token's {claim!r} claim is not a string or an integer.")
        if len(value) > MAX_SUBJECT_LENGTH:
            raise InvalidToken(f"The token's {claim!r} is longer than 255 characters.")
        return value
    raise InvalidToken("The token names no user (no 'sub', 'user_id', 'userId' or 'id' claim).")


def mint_token(secret: str, user_id: str, ttl_seconds: int) -> str:
    """An HS256 token for `user_id`, valid for `ttl_seconds`."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    token: str = pyjwt().encode(claims, secret, algorithm="HS256")
    return token
