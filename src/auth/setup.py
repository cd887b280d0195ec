"""Decide how tokens are checked, from the settings, once per process.

`build_auth` returns the verifier the requests use and `auth_mode`, a dict for people
(rendered on `/`): `{"mode": "configured" | "generated" | "jwks", "description": …,
"secret_file": str | None}`. Only the generated-secret case touches the disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from src.auth.issuer import TokenIssuer, resolve_issuer
from src.auth.jwks import JwksCache, public_url
from src.auth.secret import MIN_SECRET_LENGTH, load_or_create_secret, new_secret
from src.auth.tokens import JWKS_ALGORITHMS, ExpectedOrigin, TokenVerifier, pyjwt
from src.config.settings import Settings
from src.core.redaction import redactor
from src.database.sqlite_locator import SqliteLocation

logger = logging.getLogger(__name__)

MINT_HINT = "python -m src token --user ID, or ./scripts/token from a checkout, mints one"


@dataclass(frozen=True)
class Auth:
    verifier: TokenVerifier
    mode: dict[str, Any]
    secret: str | None  # the HS256 secret in use, if any


def configured_secret(settings: Settings) -> str | None:
    if settings.better_auth_secret is None:
        return None
    value = settings.better_auth_secret.get_secret_value()
    return value if value.strip() else None


def jwks_url(settings: Settings) -> str | None:
    """`BETTER_AUTH_JWKS_URL`, else the one derived from `BETTER_AUTH_URL`, if usable."""
    return resolve_issuer(settings).jwks_url


def build_jwks(url: str | None) -> JwksCache | None:
    if url is None:
        return None
    try:
        return JwksCache(url)
    except pyjwt().PyJWKClientError:
        logger.warning("The JWKS URL is not an http(s) URL and is ignored: %s", public_url(url))
        return None


def describe_checks(issuer: TokenIssuer) -> str:
    """What the `iss`/`aud` checks are, as a sentence for the status page."""
    if issuer.issuer is None and not issuer.audiences:
        if "BETTER_AUTH_URL" in issuer.ignored:
            return (
                "The 'iss' and 'aud' claims are not checked: correct BETTER_AUTH_URL (your "
                "Better Auth base URL) to check them."
            )
        return (
            "The 'iss' and 'aud' claims are not checked: set BETTER_AUTH_URL (your Better "
            "Auth base URL) to check them."
        )
    iss = f"'iss' must be {issuer.issuer}" if issuer.issuer else "'iss' is not checked"
    aud = (
        f"'aud' must name {' or '.join(issuer.audiences)}"
        if issuer.audiences
        else "'aud' is not checked"
    )
    return (
        f"Claims: {iss} and {aud} (required on JWKS tokens; checked on HS256 tokens "
        "that carry them)."
    )


def describe_ignored(issuer: TokenIssuer) -> str:
    """The URL settings that are set but invalid, as a sentence for the status page (the
    value itself is never shown: it may be a secret pasted into the wrong variable)."""
    names = " and ".join(issuer.ignored)
    verb = "is" if len(issuer.ignored) == 1 else "are"
    return (
        f"{names} {verb} set but invalid (not an http(s) URL), so ignored; "
        "/config/database says what is wrong."
    )


def build_auth(settings: Settings, location: SqliteLocation | None = None) -> Auth:
    """Never raises; may create the generated secret file (local disk only), beside the
    SQLite database at `location` (found by the caller, or here when not given)."""
    try:
        return _build_auth(settings, location)
    except Exception:  # start-up must survive; tokens then need a restart
        logger.exception("Auth set-up failed unexpectedly; using an in-memory secret")
        secret = new_secret()
        redactor.add(secret)
        description = (
            "Auth set-up failed (see the log); tokens are checked with a secret kept in "
            "memory that no one else knows: set BETTER_AUTH_SECRET."
        )
        mode = {"mode": "generated", "description": description, "secret_file": None}
        return Auth(TokenVerifier(secret=secret, jwks=None), mode, secret)


def _build_auth(settings: Settings, location: SqliteLocation | None) -> Auth:
    # An unusable URL setting is logged with the other settings warnings, at start.
    issuer = resolve_issuer(settings)
    jwks = build_jwks(issuer.jwks_url)
    algorithms = ", ".join(JWKS_ALGORITHMS)
    secret = configured_secret(settings)
    if secret is not None:
        redactor.add(secret)
        if len(secret.encode()) < MIN_SECRET_LENGTH:
            logger.warning(
                "%s is shorter than %d bytes; use a longer random secret "
                "(openssl rand -base64 32).",
                settings.secret_setting,
                MIN_SECRET_LENGTH,
            )
        also = f" and {algorithms} tokens with the JWKS at {public_url(jwks.url)}" if jwks else ""
        description = f"Tokens are checked with {settings.secret_setting} (HS256){also}."
        mode: dict[str, Any] = {
            "mode": "configured",
            "description": description,
            "secret_file": None,
        }
    elif jwks is not None:
        description = (
            f"Tokens are checked with the JWKS at {public_url(jwks.url)} ({algorithms}); "
            "HS256 tokens are refused because BETTER_AUTH_SECRET is not set."
        )
        mode = {"mode": "jwks", "description": description, "secret_file": None}
    else:
        stored = load_or_create_secret(settings, location)
        secret = stored.value
        if stored.path is None:
            description = (
                "Tokens are checked with a generated secret kept in memory only: it changes "
                "on every restart and no other process can mint tokens for it; set "
                "BETTER_AUTH_SECRET."
            )
        else:
            description = (
                f"Tokens are checked with a generated secret stored in {stored.path} ({MINT_HINT})."
            )
            if not stored.persistent:
                # Said as the location's own rule: a temp dir lasts until a reboot, not
                # merely until the next restart.
                when = stored.lost_when or "when its disk is wiped"
                description += (
                    f" That file is lost {when}, and every token signed with it stops "
                    "working then; set BETTER_AUTH_SECRET."
                )
            if settings.sqlite_replica_url:
                # The replica restores the database, not the files beside it.
                description += (
                    " The database is replicated but this file is not: after a wiped disk "
                    "every token is invalid; set BETTER_AUTH_SECRET."
                )
                logger.warning("%s", description)
        mode = {
            "mode": "generated",
            "description": description,
            "secret_file": str(stored.path) if stored.path else None,
        }
        if stored.path is not None:
            logger.info(
                "Auth: BETTER_AUTH_SECRET is not set; %s the generated secret in %s (%s).",
                "created" if stored.created else "reusing",
                stored.path,
                MINT_HINT,
            )
    mode["description"] = f"{mode['description']} {describe_checks(issuer)}"
    if issuer.ignored:
        # First: without it the page reads as if the setting had never been made.
        mode["description"] = f"{describe_ignored(issuer)} {mode['description']}"
    logger.info("Auth: %s", mode["description"])
    expected = ExpectedOrigin(issuer.issuer, issuer.audiences)
    return Auth(TokenVerifier(secret=secret, jwks=jwks, expected=expected), mode, secret)
