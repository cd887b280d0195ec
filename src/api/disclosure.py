"""How much the public system endpoints say: `STATUS_DETAIL=full` or `minimal`.

`/` and `/config/database` answer anyone, and on a public Space anyone is the internet.
`minimal` keeps what a visitor needs to know — the state, the reason, whether data
persists — and replaces what identifies the deployment (host names, database names, file
paths) with placeholders, and drops the connection history and the rejected locations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from src.config.settings import APP_DIR, Settings
from src.database.manager import DatabaseManager
from src.database.resolver import server_hosts

HIDDEN = "<hidden>"


class Disclosure:
    def __init__(self, settings: Settings, manager: DatabaseManager) -> None:
        self.minimal = settings.status_detail == "minimal"
        self._names: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        if self.minimal:
            self._names = {k: v for k, v in _identifiers(settings, manager).items() if len(k) >= 2}
            self._pattern = _compile(self._names)

    @property
    def mode(self) -> str:
        return "minimal" if self.minimal else "full"

    def text(self, value: str | None) -> str | None:
        if value is None or self._pattern is None:
            return value
        return self._pattern.sub(lambda m: self._names.get(m[0], HIDDEN), value)

    def texts(self, values: Iterable[str]) -> list[str]:
        return [self.text(v) or "" for v in values]


def _identifiers(settings: Settings, manager: DatabaseManager) -> dict[str, str]:
    found: dict[str, str] = {}
    url = manager.resolution.url
    if url is not None:
        for host, _ in server_hosts(url):
            found[host] = "<path>" if host.startswith("/") else "<host>"
        if url.database:
            found[url.database] = "<database>"
    location = manager.status.sqlite
    paths: list[Path] = [APP_DIR]
    if location is not None and location.path is not None:
        paths += [location.path, location.path.parent]
    if settings.home_dir is not None:
        paths.append(settings.home_dir)
    for path in paths:
        found[str(path)] = "<path>"
    return found


def _compile(names: dict[str, str]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(names, key=len, reverse=True))
    # Whole names only: a database called "db" must not hide "db" inside other words.
    return re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w-])")
