"""Where the Better Auth server is and what its tokens must say, from `BETTER_AUTH_URL`
(the one variable a deployer sets) and the explicit overrides.

Facts from better-auth 1.7.25 (its `dist/` sources):
* the key set is served at `{baseURL}{basePath}/jwks`, `basePath` being `/api/auth`
  unless the URL already has a path (`utils/url.mjs`, `withPath`);
* the jwt plugin sets both `iss` and `aud` to the base URL reduced to its origin
  (`context/create-context.mjs` stores `new URL(baseURL).origin`; `plugins/jwt/sign.mjs`
  uses it for both claims).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from src.config.settings import Settings

BASE_PATH = "/api/auth"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class TokenIssuer:
    """`jwks_url`: where the keys are (None: no JWKS). `issuer` / `audiences`: what a
    token's `iss` / `aud` must be (None / empty: not checked). `warnings`: settings that
    were ignored, as sentences for the log."""

    jwks_url: str | None
    issuer: str | None
    audiences: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def cleaned(raw: str | None) -> str | None:
    """A pasted value without surrounding whitespace or quotes; None when nothing is left."""
    value = (raw or "").strip().strip("'\"").strip()
    return value or None


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` as a browser (and Better Auth) writes it: lower case, no
    default port, no path. None when `url` is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def jwks_url_for(base_url: str) -> str | None:
    """Better Auth's JWKS URL for its base URL (`http://localhost:3000` →
    `http://localhost:3000/api/auth/jwks`; a URL with a path is taken as the auth base)."""
    origin = origin_of(base_url)
    if origin is None:
        return None
    path = urlsplit(base_url).path.rstrip("/")
    return f"{origin}{path or BASE_PATH}/jwks"


def resolve_issuer(settings: Settings) -> TokenIssuer:
    """Never raises: an unusable value is left out and explained in `warnings`."""
    warnings: list[str] = []
    base = cleaned(settings.better_auth_url)
    base_origin = None
    if base is not None:
        base_origin = origin_of(base)
        if base_origin is None:
            warnings.append(
                f"BETTER_AUTH_URL {base[:80]!r} is not an http(s) URL such as "
                "https://my-app.vercel.app; it is ignored."
            )
    jwks = cleaned(settings.better_auth_jwks_url)
    if jwks is not None and origin_of(jwks) is None:
        warnings.append("BETTER_AUTH_JWKS_URL is not an http(s) URL; it is ignored.")
        jwks = None
    if jwks is None and base is not None and base_origin is not None:
        jwks = jwks_url_for(base)
    issuer = cleaned(settings.better_auth_issuer) or base_origin
    audience = cleaned(settings.better_auth_audience)
    if audience is not None:
        audiences = tuple(a for a in (cleaned(p) for p in audience.split(",")) if a)
    else:
        audiences = (base_origin,) if base_origin else ()
    return TokenIssuer(jwks, issuer, audiences, tuple(warnings))
