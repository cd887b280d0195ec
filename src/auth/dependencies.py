"""The bearer token of a request: `bearer_token(request)` is the verified token's user.

`async` and without I/O (except a rare, bounded JWKS fetch), so it adds no thread-pool
hop to a request. It is also the security scheme the OpenAPI document shows (the
Authorize button on /docs). The path's user is checked against it in
src.api.task_requests.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPBearer

from src.auth.tokens import InvalidToken, KeysUnavailable, TokenVerifier
from src.http.errors import ApiError

# Seconds: a failed key fetch is retried after a second (src.auth.jwks).
AUTH_RETRY_AFTER = "2"


def _unauthorized(message: str, *, expired: bool = False, invalid: bool = True) -> ApiError:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(
        401,
        "TOKEN_EXPIRED" if expired else "UNAUTHORIZED",
        message,
        headers={"WWW-Authenticate": challenge},
    )


class BearerToken(HTTPBearer):
    """The `Authorization: Bearer <JWT>` header, verified; yields the user id.

    A subclass of HTTPBearer so that OpenAPI documents the scheme (the Authorize
    button on /docs) while the header is parsed and checked in a single call.
    """

    def __init__(self) -> None:
        super().__init__(
            bearerFormat="JWT",
            scheme_name="BearerAuth",
            description="A Better Auth JWT: from its jwt plugin (EdDSA, ES256, ES512, PS256 or "
            "RS256, checked with the JWKS of BETTER_AUTH_URL), or HS256 signed with "
            "BETTER_AUTH_SECRET. `python -m src token --user ID` mints an HS256 one.",
            auto_error=False,
        )

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        header = request.headers.get("authorization")
        if not header:
            raise _unauthorized(
                "Authentication required: send Authorization: Bearer <token>.", invalid=False
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("The Authorization header must be 'Bearer <token>'.")
        verifier: TokenVerifier | None = getattr(request.app.state, "auth", None)
        if verifier is None:
            raise ApiError(
                503, "STARTING", "The service is starting; try again.", headers={"Retry-After": "1"}
            )
        try:
            return await verifier.verify(token)
        except InvalidToken as exc:
            raise _unauthorized(exc.message, expired=exc.expired) from None
        except KeysUnavailable as exc:
            # Not a 401: the token may well be good, and a 401 signs the user out.
            raise ApiError(
                503, "AUTH_UNAVAILABLE", str(exc), headers={"Retry-After": AUTH_RETRY_AFTER}
            ) from None


bearer_token = BearerToken()
