"""MySQL/MariaDB (PyMySQL) URL options: the few PyMySQL takes, and TLS as `ssl-mode`.

PyMySQL has no `ssl-mode` keyword and refuses options it does not know, so TLS
settings in every common spelling are taken out of the query and returned as one
`mysql_ssl_mode`, which the engine turns into PyMySQL's TLS arguments. A
spelling whose meaning for PyMySQL differs from the user's intent is an error.
`charset` must hold all of Unicode (`text_encoding`): `utf8` becomes `utf8mb4`.
"""

from __future__ import annotations

from src.database.url.options import (
    TRUE_WORDS,
    Options,
    is_int,
    name_of,
    parse_query,
    take_credential,
)
from src.database.url.text_encoding import mysql_charset

# Options other tools put in shared URLs that mean nothing to PyMySQL and have no
# security effect, with the reason shown to the user.
_MYSQL_DROPPED = {
    "reconnect": "a ClearDB/JDBC setting; the pool reconnects by itself",
    "connection_limit": "a Prisma pool setting; this app sizes its own pool",
    "pool_timeout": "a Prisma pool setting",
}

# Options SQLAlchemy's MySQL dialect passes to PyMySQL (the ssl_* ones folded into
# PyMySQL's `ssl` dict), with the kind of value each needs.
_MYSQL_KEPT: dict[str, str] = {
    "ssl_ca": "path",
    "ssl_cert": "path",
    "ssl_key": "path",
    "ssl_capath": "path",
    "ssl_cipher": "text",
    "ssl_check_hostname": "bool",
    "charset": "charset",
    "connect_timeout": "timeout",
    "read_timeout": "timeout",
    "write_timeout": "timeout",
    "init_command": "text",
    "unix_socket": "path",
}
_MYSQL_SSL_MODE_KEYS = frozenset({"ssl-mode", "ssl_mode", "sslmode"})
_MYSQL_MODES = {
    "DISABLED": "DISABLED",
    "DISABLE": "DISABLED",
    "REQUIRED": "REQUIRED",
    "REQUIRE": "REQUIRED",
    "VERIFY_CA": "VERIFY_CA",
    "VERIFY_IDENTITY": "VERIFY_IDENTITY",
    "VERIFY_FULL": "VERIFY_IDENTITY",
}

# SQLAlchemy parses these with `asbool`; anything else raises at connect time.
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"})


def mysql_options(text: str | None, source: str) -> Options:
    """Keep the options PyMySQL understands; turn ssl-mode into `mysql_ssl_mode`."""
    opts = Options()
    if not text:
        return opts
    pairs, opts.repairs, opts.errors = parse_query(text, source)
    modes: set[str] = set()
    for key, value in pairs:
        lowered = key.lower()
        if lowered in _MYSQL_DROPPED:
            opts.repairs.append(
                f"Removed the option '{lowered}' ({_MYSQL_DROPPED[lowered]}), which PyMySQL "
                "would refuse."
            )
        elif lowered in ("user", "password"):
            take_credential(opts, lowered, value)
        elif lowered in _MYSQL_SSL_MODE_KEYS or lowered in ("ssl", "ssl_disabled"):
            mode = _mysql_mode(opts, lowered, value, source)
            if mode is not None:
                modes.add(mode)
                opts.repairs.append(
                    f"Took the TLS setting {name_of(key)} out of the URL (PyMySQL would "
                    f"refuse it); the connection will use ssl-mode {mode}."
                )
        elif lowered == "charset" and key == lowered:
            mysql_charset(opts, value, source)
        elif lowered in _MYSQL_KEPT and key == lowered:
            if _mysql_value_ok(_MYSQL_KEPT[lowered], value):
                opts.query[lowered] = value
            else:
                opts.errors.append(_mysql_value_error(lowered, _MYSQL_KEPT[lowered], source))
        else:
            opts.errors.append(_mysql_unknown(key, source))
    if len(modes) > 1:
        opts.errors.append(
            f"{source} sets conflicting TLS modes (for example ssl-mode and ssl_disabled); "
            "keep one ssl-mode option."
        )
    elif modes:
        opts.mysql_ssl_mode = modes.pop()
    return opts


def _mysql_mode(opts: Options, key: str, value: str, source: str) -> str | None:
    lowered = value.lower()
    if key == "ssl":
        if lowered in TRUE_WORDS:
            return "REQUIRED"
        opts.errors.append(
            f"The option 'ssl' in {source} cannot be translated safely for PyMySQL; replace "
            "it with ssl-mode=REQUIRED (or VERIFY_IDENTITY, or DISABLED if the server has "
            "no TLS)."
        )
        return None
    if key == "ssl_disabled":
        if lowered in TRUE_WORDS:
            return "DISABLED"
        opts.errors.append(
            f"The option 'ssl_disabled' in {source} does not turn TLS on with PyMySQL "
            "(any value disables it); remove it and use ssl-mode=REQUIRED instead."
        )
        return None
    normalised = value.strip().upper().replace("-", "_")
    if normalised in _MYSQL_MODES:
        return _MYSQL_MODES[normalised]
    if normalised in ("PREFERRED", "PREFER"):
        opts.errors.append(
            f"The ssl-mode PREFERRED in {source} cannot be honoured by PyMySQL (it has no "
            "'try TLS, else plain' mode); choose ssl-mode=REQUIRED or ssl-mode=DISABLED."
        )
        return None
    opts.errors.append(
        f"The TLS option {name_of(key)} in {source} has an invalid value; use one of "
        "DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY."
    )
    return None


def _mysql_value_ok(kind: str, value: str) -> bool:
    if kind == "timeout":
        return is_int(value, 1, 31_536_000)
    if kind == "bool":
        return value.lower() in _BOOL_WORDS
    return bool(value)


def _mysql_value_error(key: str, kind: str, source: str) -> str:
    need = {
        "timeout": "a whole number of seconds from 1 to 31536000",
        "bool": "true or false",
    }.get(kind, "a non-empty value")
    return f"The option '{key}' in {source} must be {need}."


def _mysql_unknown(key: str, source: str) -> str:
    lowered = key.lower()
    if lowered == "sslaccept":
        return (
            f"The option 'sslaccept' in {source} is a Prisma TLS setting that PyMySQL does "
            "not understand; replace it with ssl-mode=VERIFY_IDENTITY (for strict) or "
            "ssl-mode=REQUIRED."
        )
    if "ssl" in lowered or "tls" in lowered:
        return (
            f"The TLS option {name_of(key)} in {source} is not understood by PyMySQL; use "
            "ssl-mode=REQUIRED, VERIFY_CA or VERIFY_IDENTITY (and ssl_ca=/path/to/ca.pem) "
            "instead."
        )
    kept = ", ".join(sorted(_MYSQL_KEPT))
    return (
        f"The option {name_of(key)} in {source} is not supported for MySQL here; remove it. "
        f"Supported options: ssl-mode, {kept}."
    )
