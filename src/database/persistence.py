"""Whether the primary database keeps the tasks across restarts, in words.

`doctor` and `/config/database` describe the database in use (or the one that will be),
not the SQLite fallback file beside it: a server database keeps its data wherever the app
runs; a SQLite file given as the primary URL keeps it as long as its disk does.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

from src.database.sqlite_locator import persistence_of

_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "mariadb": "MySQL/MariaDB"}


def primary_persistence(url: URL, source: str, *, on_space: bool) -> tuple[bool, str]:
    """(persistent, note) for the primary database at `url`, which came from `source`."""
    backend = url.get_backend_name()
    if backend != "sqlite":
        name = _NAMES.get(backend, backend)
        return True, f"The tasks are kept in the primary database ({name}), not in SQLite."
    database = url.database
    if not database or database == ":memory:" or url.query.get("mode") == "memory":
        return False, (
            f"{source} names an in-memory SQLite database: every task is lost when the "
            "process stops."
        )
    return persistence_of(Path(database).absolute(), source, on_space=on_space)
