"""Which connection keywords the installed libpq accepts, their values, and which hold secrets."""

from __future__ import annotations

from functools import cache

# Keyword list of libpq 15, used only if psycopg cannot report the runtime one.
_LIBPQ_FALLBACK_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "channel_binding",
        "gssencmode",
        "gsslib",
        "krbsrvname",
        "target_session_attrs",
        "service",
        "replication",
    }
)
# Keywords whose values come from a fixed set (libpq-connect.html, "Parameter Key Words").
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PG_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": SSLMODES,
    "channel_binding": ("disable", "prefer", "require"),
    "gssencmode": ("disable", "prefer", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
    "ssl_min_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "ssl_max_protocol_version": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
    "sslsni": ("0", "1"),
    "sslcompression": ("0", "1"),
    "gssdelegation": ("0", "1"),
    "load_balance_hosts": ("disable", "random"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}
PG_INTEGERS = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
REQUIRE_AUTH_METHODS = frozenset(
    {"password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"}
)

# libpq marks these "D" (debug) rather than "*", yet they are as good as a password.
EXTRA_SECRET_KEYWORDS = frozenset({"scram_client_key", "scram_server_key"})


@cache
def libpq_keywords() -> tuple[frozenset[str], frozenset[str]]:
    """All keywords the runtime libpq accepts, and those whose value is secret.

    Read from the libpq psycopg is linked against, because the valid set changes
    between libpq versions (e.g. `sslnegotiation` needs libpq 17).
    """
    try:
        # Imported lazily: a broken driver install must not break importing this module.
        import psycopg.pq

        defaults = psycopg.pq.Conninfo.get_defaults()
        keywords = frozenset(o.keyword.decode() for o in defaults)
        secret = frozenset(o.keyword.decode() for o in defaults if o.dispchar == b"*")
    except Exception:  # noqa: BLE001 - any driver trouble means: use the built-in list
        return _LIBPQ_FALLBACK_KEYWORDS, frozenset({"password", "sslpassword"})
    return keywords, secret | (EXTRA_SECRET_KEYWORDS & keywords)
