"""The URL scheme: which backend a value is for, and the one driver we use for it.

Many spellings reach us (`postgres://`, `mysql2://`, `jdbc:`-stripped ones, async
drivers from other stacks); each maps to the sync driver installed here, and the
mapping is reported as a repair rather than applied silently.
"""

from __future__ import annotations

import re
from typing import Literal

Backend = Literal["postgresql", "mysql", "sqlite"]

# Shown in messages as the shape to aim for.
EXAMPLE_URL = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"

SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+._-]{0,39})://")
_SCHEME_COLON = re.compile(r"([A-Za-z][A-Za-z0-9+._-]{0,39}):")
_KEYWORD_DSN = re.compile(r"(host|hostaddr|dbname|user|port|password|service)\s*=", re.I)
# `postgis` (dj-database-url, django-environ) and `psql` (django-environ) are the
# same connection: PostGIS is an extension inside PostgreSQL.
_PG_BASES = frozenset({"postgres", "postgresql", "pgsql", "postgis", "psql"})
_MYSQL_BASES = frozenset({"mysql", "mysql2"})


def map_scheme(scheme: str, source: str) -> tuple[str, Backend, list[str]] | str:
    """Map any spelling we support to the one sync driver installed for it.

    Returns (drivername, backend, repairs), or an error sentence.
    """
    lowered = scheme.lower()
    base, _, driver = lowered.partition("+")
    target: tuple[str, Backend] | None = None
    # Spellings that already mean exactly the target to SQLAlchemy 2.1.
    same: tuple[str, ...] = ()
    if base in _PG_BASES:
        target, same = ("postgresql+psycopg", "postgresql"), ("postgresql", "postgresql+psycopg")
    elif base in _MYSQL_BASES or lowered == "mysql-connector":
        target, same = ("mysql+pymysql", "mysql"), ("mysql+pymysql",)
    elif base == "mariadb":
        target, same = ("mariadb+pymysql", "mysql"), ("mariadb+pymysql",)
    elif base in ("sqlite", "sqlite3") and driver in ("", "pysqlite", "aiosqlite"):
        target, same = ("sqlite+pysqlite", "sqlite"), ("sqlite", "sqlite+pysqlite")
    if target is None:
        return (
            f"The scheme '{lowered}' in {source} is not supported; use postgresql:// "
            "(or postgres://), mysql://, mariadb:// or sqlite:///."
        )
    repairs = ["Wrote the URL scheme in lower case."] if scheme != lowered else []
    if lowered not in same:
        repairs.append(
            f"Used {target[0]}:// for the scheme '{lowered}://' (the driver installed here, "
            "used synchronously)."
        )
    return target[0], target[1], repairs


def not_a_url(text: str, source: str) -> str:
    """Why a value with no `scheme://` is not a URL, naming the likely slip."""
    colon = _SCHEME_COLON.match(text)
    if colon and not isinstance(map_scheme(colon[1], source), str):
        slashes = "///" if colon[1].lower().startswith("sqlite") else "//"
        return (
            f"In {source} the scheme must be followed by ':{slashes}', e.g. "
            f"{'sqlite:///path/to/app.db' if slashes == '///' else EXAMPLE_URL}."
        )
    if _KEYWORD_DSN.match(text):
        return (
            f"{source} looks like a libpq 'key=value' connection string; write it as a "
            f"URL instead: {EXAMPLE_URL}."
        )
    return (
        f"{source} is not a database URL. It should look like {EXAMPLE_URL}, "
        "mysql://USER:PASSWORD@HOST:3306/DBNAME or sqlite:///path/to/app.db."
    )
