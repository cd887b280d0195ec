"""The generated HS256 secret, used when no `BETTER_AUTH_SECRET` is configured.

It lives beside the SQLite database (the same location the database manager chooses,
found by the same write probe), in `.todo-jwt-secret` with mode 0600, so tokens minted
with `python -m src token` survive restarts exactly as long as the data does. Created
with O_CREAT|O_EXCL: when several workers start at once, one writes it and the others
read that one. When the only location is in memory, the secret is kept in memory too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from src.config.settings import Settings
from src.core.redaction import redactor
from src.database.sqlite_locator import SqliteLocation, locate_for

logger = logging.getLogger(__name__)

SECRET_FILENAME = ".todo-jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 32
_MAX_FILE_BYTES = 4096
# How long a reader waits for a worker that created the file to finish writing it.
_WRITER_GRACE_SECONDS = 2.0
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class StoredSecret:
    value: str
    path: Path | None  # None: kept in memory only
    created: bool
    persistent: bool
    note: str  # why it is (not) kept, for people
    lost_when: str | None = None  # when a location that is not kept loses the file


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def secret_location(
    settings: Settings, location: SqliteLocation | None = None
) -> tuple[Path | None, SqliteLocation]:
    """Where the secret file goes: the directory of the SQLite database the app would use
    (`location`, when the caller has found it already), and that location."""
    location = location or locate_for(settings)
    if location.path is None:
        return None, location
    return location.path.parent / SECRET_FILENAME, location


def load_or_create_secret(
    settings: Settings, location: SqliteLocation | None = None
) -> StoredSecret:
    """The stored secret (created on first use). Never raises: falls back to memory."""
    path, found = secret_location(settings, location)
    if path is None:
        return _in_memory(f"no writable location was found ({found.persistence_note})")
    try:
        value, created = _read_or_create(path)
    except OSError as exc:
        return _in_memory(f"{path} could not be used ({exc.strerror or exc})")
    redactor.add(value)
    return StoredSecret(
        value, path, created, found.persistent, found.persistence_note, found.lost_when
    )


def _in_memory(why: str) -> StoredSecret:
    value = new_secret()
    redactor.add(value)
    logger.warning("The generated JWT secret is kept in memory only: %s", why)
    return StoredSecret(value, None, True, False, why)


def _read_or_create(path: Path) -> tuple[str, bool]:
    value = new_secret()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except FileExistsError:
        existing = _read_existing(path)
        if existing is not None:
            return existing, False
        logger.warning("%s is empty or damaged; writing a new secret into it", path)
        _replace(path, value)
        # Re-read: another worker may have replaced it at the same moment.
        return _read_existing(path) or value, True
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return value, True


def _read_existing(path: Path) -> str | None:
    deadline = time.monotonic() + _WRITER_GRACE_SECONDS
    while True:
        value = _read_once(path)
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def _read_once(path: Path) -> str | None:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            logger.warning("%s was readable by others; restricting it to mode 0600", path)
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        raw = os.read(fd, _MAX_FILE_BYTES)
    finally:
        os.close(fd)
    value = raw.decode("ascii", errors="replace").strip()
    if len(value) < MIN_SECRET_LENGTH or not value.isprintable() or " " in value:
        return None
    return value


def _replace(path: Path, value: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
