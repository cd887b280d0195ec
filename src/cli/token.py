"""`python -m src token --user ID [--ttl 1h]`: print a JWT the server accepts.

Only the token goes to standard output (for `TOKEN=$(…)`); what it is valid for, and
every refusal, goes to standard error. The user id must be one the API's paths accept
(src.auth.user_id). Signed with BETTER_AUTH_SECRET (or JWT_SECRET) when it is set, else
with the generated secret from the same file the server uses (created now if the server
has not run yet). With only a JWKS configured there is no secret to sign with: the
identity provider mints tokens.
"""

from __future__ import annotations

import re
import sys

from src.auth.secret import load_or_create_secret
from src.auth.setup import configured_secret, jwks_url
from src.auth.tokens import mint_token
from src.auth.user_id import USER_ID_RULE, is_user_id
from src.config.settings import load_settings
from src.core.logging import configure_logging

_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 366 * 86400


def parse_ttl(text: str) -> int:
    """`30s`, `15m`, `1h`, `7d` (or plain seconds) → seconds; ValueError otherwise."""
    match = _TTL.match(text)
    if match is None:
        raise ValueError(f"--ttl {text!r} is not a duration like 30s, 15m, 1h or 7d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"--ttl must be between 1s and {MAX_TTL_SECONDS // 86400}d")
    return seconds


def token(*, user: str, ttl: str) -> int:
    settings = load_settings()
    configure_logging("warning", settings.log_format)
    if not is_user_id(user):
        # A token for such an id would be valid, yet no request path could name its user.
        print(
            f"--user {USER_ID_RULE}, as the user id in the API's paths "
            "(/api/{user_id}/tasks); no request could use a token for this one.",
            file=sys.stderr,
        )
        return 2
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    secret = configured_secret(settings)
    source = settings.secret_setting
    if secret is None:
        if jwks_url(settings) is not None:
            print(
                "Cannot mint a token: tokens are verified with Better Auth's keys "
                "(BETTER_AUTH_URL or BETTER_AUTH_JWKS_URL) and no BETTER_AUTH_SECRET is set, "
                "so tokens come from Better Auth itself (sign in through the frontend); set "
                "BETTER_AUTH_SECRET to mint HS256 tokens here.",
                file=sys.stderr,
            )
            return 1
        stored = load_or_create_secret(settings)
        if stored.path is None:
            print(
                "Cannot mint a token the server would accept: no writable location was found "
                "for the generated secret, so each server process keeps its own in memory. "
                "Set BETTER_AUTH_SECRET (for the server and for this command).",
                file=sys.stderr,
            )
            return 1
        secret, source = stored.value, f"the generated secret in {stored.path}"
    print(mint_token(secret, user, seconds))
    print(f"Valid for {seconds} s for user {user!r}; signed with {source}.", file=sys.stderr)
    return 0
