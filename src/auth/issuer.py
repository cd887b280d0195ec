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

from src.config.origins import cleaned, origin_of, url_setting_problem
from src.config.settings import BETTER_AUTH_URL_EXAMPLES, Settings

BASE_PATH = "/api/auth"


@dataclass(frozen=True)
class TokenIssuer:
    """`jwks_url`: where the keys are (None: no JWKS). `issuer` / `audiences`: what a
    token's `iss` / `aud` must be (None / empty: not checked). `ignored`: the URL settings
    that are set but unusable, by name (`BETTER_AUTH_URL`); the settings' own warnings say
    why."""

    jwks_url: str | None
    issuer: str | None
    audiences: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def jwks_url_for(base_url: str) -> str | None:
    """Better Auth's JWKS URL for its base URL (`http://localhost:3000` →
    `http://localhost:3000/api/auth/jwks`; a URL with a path is taken as the auth base)."""
    origin = origin_of(base_url)
    if origin is None:
        return None
    path = urlsplit(base_url).path.rstrip("/")
    return f"{origin}{path or BASE_PATH}/jwks"


def resolve_issuer(settings: Settings) -> TokenIssuer:
    """Never raises: an unusable URL is left out and named in `ignored` (the warning
    itself is one of `settings.warnings`, from the same check)."""
    ignored = tuple(
        name
        for name, example in BETTER_AUTH_URL_EXAMPLES.items()
        if url_setting_problem(name, getattr(settings, name.lower()), example) is not None
    )
    base = cleaned(settings.better_auth_url)
    base_origin = origin_of(base) if base is not None else None
    jwks = cleaned(settings.better_auth_jwks_url)
    if jwks is not None and origin_of(jwks) is None:
        jwks = None
    if jwks is None and base is not None and base_origin is not None:
        jwks = jwks_url_for(base)
    issuer = cleaned(settings.better_auth_issuer) or base_origin
    audience = cleaned(settings.better_auth_audience)
    if audience is not None:
        audiences = tuple(a for a in (cleaned(p) for p in audience.split(",")) if a)
    else:
        audiences = (base_origin,) if base_origin else ()
    return TokenIssuer(jwks, issuer, audiences, ignored)
