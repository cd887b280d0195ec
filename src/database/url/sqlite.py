"""A SQLite URL: the path after `sqlite:`, with the slash count people get wrong."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL

from src.database.url.masking import RedactedURL
from src.database.url.parts import decode


def sqlite_url(rest: str, drivername: str, source: str, repairs: list[str]) -> URL | list[str]:
    """The URL from everything after `sqlite://`, or the errors that prevent it.

    Repairs made on the way are appended to `repairs`.
    """
    path, question, _ = rest.partition("?")
    errors: list[str] = []
    if question:
        # The engine sets timeouts and thread checks itself, and URI options such as
        # mode=ro silently do nothing without uri=true, so none are accepted.
        errors.append(
            f"{source} has options after '?' but SQLite URLs take none here; remove "
            "everything from the '?' on (e.g. sqlite:////data/app.db)."
        )
    if path == ":memory:":
        repairs.append("Read sqlite://:memory: as the in-memory database sqlite:///:memory:.")
        path = "/:memory:"
    if path == "":
        database = None  # sqlite:// is SQLAlchemy's spelling of in-memory
    elif not path.startswith("/"):
        shown = f"sqlite:///{path}" if re.fullmatch(r"[\w.-]{1,80}", path) else "sqlite:///FILE"
        errors.append(
            f"{source} uses two slashes after 'sqlite:'; use three for a relative path "
            f"({shown}) or four for an absolute one (sqlite:////data/app.db)."
        )
        database = None
    else:
        database = decode(path[1:])
        if database is None:
            errors.append(f"The SQLite path in {source} has a %-escape that is not valid UTF-8.")
        elif not database or database.endswith("/"):
            errors.append(
                f"{source} names no SQLite file after 'sqlite:///'; use "
                "sqlite:///app.db (or sqlite:// for a temporary in-memory database)."
            )
        elif re.search(r"(^|/)~", database):
            errors.append(
                f"{source} uses '~' in the SQLite path, which is not expanded; use an "
                "absolute path such as sqlite:////home/user/app.db."
            )
    if errors:
        return errors
    return RedactedURL.create(drivername, database=database)
