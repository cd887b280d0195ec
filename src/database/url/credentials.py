"""The user name and password: placeholders, unencoded characters, JDBC-style options.

A password is taken exactly as written when it holds characters a URL cannot
carry unencoded (it was pasted raw, so decoding would corrupt it), and decoded
otherwise. Placeholders (`<user>`, `[YOUR-PASSWORD]`, `USER`, `your_password`;
see `placeholders`) and masked `****` copies are refused: connecting with them
only produces a confusing authentication failure.
"""

from __future__ import annotations

import re

from src.database.url.cleaning import TEMPLATE
from src.database.url.options import Options
from src.database.url.parts import decode
from src.database.url.placeholders import is_template_word
from src.database.url.scheme import Backend

# Matched against the whole password only: real passwords contain `$`, `<` and `[` too.
_PASSWORD_TEMPLATE = re.compile(
    r"<[^<>]*>|\[[A-Za-z][A-Za-z0-9 _-]*\]|\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|\*{3,}"
)
# What a URL can carry in the user info only percent-encoded.
_RAW_USERINFO = frozenset("@/?#[] ")


def credentials(
    userinfo: str | None, source: str, repairs: list[str], errors: list[str]
) -> tuple[str | None, str | None]:
    """The decoded user name and password (None when absent), or (None, None) on error."""
    if userinfo is None:
        return None, None
    raw_user, colon, raw_password = userinfo.partition(":")
    placeholder = len(errors)
    if TEMPLATE.search(raw_user) or _template_word(raw_user):
        errors.append(_placeholder("user", source))
    if re.fullmatch(r"\*{3,}", raw_password):
        errors.append(
            f"The password in {source} is only asterisks, copied from a masked display; "
            "paste the real password."
        )
    elif _PASSWORD_TEMPLATE.fullmatch(raw_password) or _template_word(raw_password):
        errors.append(_placeholder("password", source))
    if len(errors) > placeholder:
        return None, None
    if any(ch in _RAW_USERINFO for ch in userinfo):
        # A URL cannot hold these unencoded, so this was pasted as-is: take it literally.
        what = "password" if any(ch in _RAW_USERINFO for ch in raw_password) else "user name"
        repairs.append(
            f"The {what} contains characters a URL needs percent-encoded (such as @ / ? #); "
            "it was used exactly as written."
        )
        user, password = raw_user, raw_password
    else:
        decoded_user, decoded_password = decode(raw_user), decode(raw_password)
        if decoded_user is None or decoded_password is None:
            repairs.append(
                "The user name or password contains a %-sequence that is not valid "
                "percent-encoding; it was used exactly as written."
            )
        user = raw_user if decoded_user is None else decoded_user
        password = raw_password if decoded_password is None else decoded_password
    return user, (password if colon else None)


def _placeholder(part: str, source: str) -> str:
    if part == "user":
        return (
            f"The user name in {source} is still a template placeholder; replace it with the "
            "real database user."
        )
    # Raw `@ : / # ?` are fine (the user info is split at the last `@`): telling people to
    # percent-encode would only send them editing a password that needs no change.
    return (
        f"The password in {source} is still a template placeholder; replace it with the real "
        "password (characters such as @ : / # ? may be pasted as they are)."
    )


def _template_word(raw: str) -> bool:
    """A template word as written or once decoded (`YOUR%5FPASSWORD`)."""
    return is_template_word(raw) or is_template_word(decode(raw) or "")


def merge_credentials(
    user: str | None,
    password: str | None,
    opts: Options,
    source: str,
    repairs: list[str],
    errors: list[str],
) -> tuple[str | None, str | None]:
    """Move `?user=`/`?password=` (JDBC style) into the URL, where the driver expects them."""
    merged = []
    for name, current, given in (("user", user, opts.user), ("password", password, opts.password)):
        if given is None:
            merged.append(current)
        elif current:
            errors.append(
                f"{source} gives the {name} both before the host and as the option "
                f"'{name}'; keep only one."
            )
            merged.append(current)
        elif is_template_word(given):
            errors.append(_placeholder(name, source))
            merged.append(None)
        else:
            repairs.append(f"Moved the option '{name}' into the URL's user info.")
            merged.append(given)
    return merged[0], merged[1]


def default_user_notice(
    user: str | None, password: str | None, backend: Backend, source: str, repairs: list[str]
) -> None:
    """Say who logs in when a password comes without a user name (`://:secret@host`)."""
    if user or not password:
        return
    who = (
        "libpq uses PGUSER, else the operating-system user"
        if backend == "postgresql"
        else "PyMySQL uses the operating-system user"
    )
    repairs.append(
        f"{source} gives a password but no user name; the driver logs in as the default "
        f"user ({who}) with that password. Add the user name before ':' if that is not "
        "what you meant."
    )
