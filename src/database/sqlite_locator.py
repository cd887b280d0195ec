"""Where the embedded SQLite database lives (SPEC §4).

Candidates are tried in order; the first that passes a real write probe wins, because a
directory that looks writable proves nothing (a Space's FUSE bucket lists as writable and
still refuses uid 1000). No environment variable is read here: settings passes everything in.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

if TYPE_CHECKING:
    from src.config.settings import Settings

APP_SLUG = "todo-backend"
PROBE_PREFIX = ".todo-probe-"
_COMPANIONS = ("-wal", "-shm", "-journal")
# File systems that die with the container; pseudo file systems never pass the probe anyway.
_EPHEMERAL_FS = frozenset({"overlay", "aufs", "tmpfs", "ramfs", "devtmpfs", "squashfs"})
MEMORY_NOTE = (
    "No writable location was found, so the database is IN MEMORY: every task is lost when the "
    "process stops or restarts; make a directory writable and set SQLITE_PATH, or set DATABASE_URL."
)


@dataclass(frozen=True)
class SqliteLocation:
    path: Path | None
    source: str
    persistent: bool
    persistence_note: str
    rejected: tuple[str, ...] = ()
    # Fixed per location so every engine built from `url` reaches the same in-memory database.
    memory_name: str = field(default_factory=lambda: f"todo-memory-{secrets.token_hex(8)}")
    # When a location that is not persistent loses its files ("when the process stops"),
    # for what is kept beside the database (the generated token secret).
    lost_when: str | None = None

    @property
    def is_memory(self) -> bool:
        return self.path is None

    @property
    def url(self) -> URL:
        if self.path is not None:
            return URL.create("sqlite+pysqlite", database=str(self.path))
        # Shared cache lets every connection of the process see one database; pysqlite only
        # passes the query on as URI parameters when `uri=true` is among them.
        query = {"mode": "memory", "cache": "shared", "uri": "true"}
        return URL.create("sqlite+pysqlite", database=f"file:{self.memory_name}", query=query)


class _Unusable(Exception):
    """A rung that cannot even be tried; the message is the reason."""


def _describe(exc: BaseException, *, name_file: bool = True) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        named = name_file and exc.filename
        return f"{exc.filename}: {exc.strerror}" if named else exc.strerror
    return str(exc) or type(exc).__name__


def _lock_file(path: Path) -> None:
    if sys.platform == "win32":
        return  # no fcntl there; BEGIN IMMEDIATE already proved SQLite's own locking
    import fcntl

    # SQLite locks with fcntl (lockf); start-up coordination may use flock. Both must work.
    with path.open("r+b") as handle:
        for lock in (fcntl.lockf, fcntl.flock):
            lock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock(handle, fcntl.LOCK_UN)


def _probe_directory(directory: Path) -> str | None:
    # Unique per process and call, so concurrent workers never trip over each other's probe.
    probe = directory / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.db"
    step = f"create a file in {directory}"
    try:
        # Created by hand first: the OS error says why (SQLite would only say "unable to open").
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        step = f"open a probe database in {directory}"
        conn = sqlite3.connect(probe, timeout=0.5, isolation_level=None)
        try:
            step = f"use WAL journaling in {directory}"
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            if mode != "wal":
                return f"SQLite cannot use WAL journaling in {directory} (it stayed {mode!r})"
            step = f"write and lock a probe database in {directory}"
            conn.execute("CREATE TABLE probe (x INTEGER)")
            conn.execute("INSERT INTO probe VALUES (1)")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            # A second reader exercises the -shm shared memory that WAL depends on.
            step = f"read the probe database back from a second connection in {directory}"
            other = sqlite3.connect(probe, timeout=0.5)
            try:
                if other.execute("SELECT count(*) FROM probe").fetchone()[0] != 1:
                    return f"a second connection did not see the probe row in {directory}"
            finally:
                other.close()
        finally:
            conn.close()
        step = f"lock a file in {directory}"
        _lock_file(probe)
    except (OSError, sqlite3.Error, ValueError) as exc:
        return f"cannot {step} ({_describe(exc, name_file=False)})"
    finally:
        for suffix in ("", *_COMPANIONS):
            with contextlib.suppress(OSError):
                probe.with_name(probe.name + suffix).unlink()
    return None


def _probe_existing(db_path: Path) -> str | None:
    if not db_path.is_file():
        return f"{db_path} exists but is not a regular file"
    for suffix in _COMPANIONS:
        companion = db_path.with_name(db_path.name + suffix)
        if companion.exists() and not os.access(companion, os.R_OK | os.W_OK):
            return f"{companion} exists and this process cannot read and write it"
    try:
        # mode=rw never creates. SQLite silently opens a write-protected file read-only and
        # even grants BEGIN IMMEDIATE, so only a real (rolled back) page write tells.
        conn = sqlite3.connect(f"{db_path.as_uri()}?mode=rw", uri=True, timeout=1.0)
        conn.isolation_level = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        # Another worker holding the write lock proves the file usable; rejecting it here
        # would send concurrent workers to different databases.
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None
        return f"cannot write the existing {db_path} ({_describe(exc)})"
    except (OSError, sqlite3.Error, ValueError) as exc:
        return f"cannot open the existing {db_path} ({_describe(exc)})"
    return None


def probe_writable(db_path: Path) -> str | None:
    """None when SQLite can create, write, lock and delete files beside `db_path` (whose
    directory must exist) and, if `db_path` exists, write it; else a one-line reason."""
    try:
        if "\x00" in str(db_path):
            return "the path contains a NUL character"
        os.fsencode(db_path)  # a name the file system cannot hold raises here, not later
        db_path = db_path.absolute()
        if not db_path.parent.is_dir():
            return f"{db_path.parent} is not a directory"
        reason = _probe_directory(db_path.parent)
        if reason is None and db_path.exists():
            reason = _probe_existing(db_path)
        return reason
    except (OSError, sqlite3.Error, ValueError) as exc:
        return _describe(exc)


def _subdir(base: Path | None, what: str, sub: Path, mode: int = 0o777) -> Path:
    """`base/sub`, created if needed; `base` itself must already exist."""
    if base is None:
        raise _Unusable(f"{what} is not set")
    if not base.is_dir():
        raise _Unusable(f"{base} does not exist or is not a directory")
    path = base / sub
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def _private_tmp(tmp_dir: Path) -> Path:
    path = _subdir(tmp_dir, "the temp directory", Path(APP_SLUG), 0o700)
    # The temp dir is shared: a directory planted there by someone else could read or swap
    # our database.
    if sys.platform != "win32" and (path.is_symlink() or path.lstat().st_uid != os.geteuid()):
        raise _Unusable(f"{path} belongs to another user or is a symlink")
    return path


def _configured_path(raw: str, home: Path | None, filename: str) -> Path:
    # `~` is expanded against the HOME settings passed in; expanduser would read the env.
    if raw == "~" or raw.startswith("~/"):
        if home is None:
            raise _Unusable(f"{raw!r} starts with ~ but HOME is not set")
        path = home / raw[2:]
    elif raw.startswith("~"):
        raise _Unusable(f"{raw!r}: only ~/ (this user's home) is understood")
    else:
        path = Path(raw)
    path = Path.cwd() / path
    if raw.endswith(("/", os.sep)) or path.is_dir():
        path = path / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _volume_of(path: Path, mountinfo: Path) -> str | None:
    """The mount holding `path` when it is real storage rather than the container's disk."""
    try:
        target = path.resolve()
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, RuntimeError, ValueError):
        return None
    point, fstype = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or "-" not in fields[6:-1]:
            continue
        # Mount points escape space, tab, newline and backslash as octal (\040).
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        # `>=`: a later mount on the same point shadows the earlier one.
        if _within(target, Path(mount)) and len(mount) >= len(point):
            point, fstype = mount, fields[fields.index("-", 6) + 1]
    if point in ("", "/") or fstype.split(".")[0] in _EPHEMERAL_FS:
        return None
    return f"{point}, {fstype}"


def _persistence(
    source: str,
    path: Path,
    on_space: bool,
    tmp_dir: Path,
    mountinfo: Path,
    advice: str | None = None,
) -> tuple[bool, str, str | None]:
    """(persistent, note, when its files are lost); `advice` replaces the chain's advice
    (set SQLITE_PATH…) for a file the chain did not choose."""
    if source == "tmp" or _within(path, tmp_dir):
        return (
            False,
            f"{path} is in the temporary directory, which is cleared on reboot (on a Space, on "
            "every restart); "
            + (advice or "set SQLITE_PATH to a kept location or set DATABASE_URL."),
            "when the temporary directory is cleared (at a reboot; on a Space, at every restart)",
        )
    if not on_space:
        return (
            True,
            f"{path} survives restarts while this disk is kept (in a container: a volume).",
            None,
        )
    volume = _volume_of(path, mountinfo)
    if volume is not None:
        return True, f"{path} is on a mounted volume ({volume}), so it survives restarts.", None
    return (
        False,
        f"On a Hugging Face Space, {path} is on the container disk, which is wiped on every "
        "restart and rebuild; "
        + (
            advice
            or "to keep data, set SQLITE_REPLICA_URL (replicated to a bucket) or DATABASE_URL "
            "(an external database). A Storage Bucket mounted at /data has refused writes "
            "from the Space's uid 1000."
        ),
        "at every restart and rebuild of the Space",
    )


def persistence_of(
    path: Path, source: str, *, on_space: bool, mountinfo: Path = Path("/proc/self/mountinfo")
) -> tuple[bool, str]:
    """Whether a SQLite file at `path` survives restarts, and the sentence that says so,
    for a file named by `source` (DATABASE_URL) rather than found by the chain."""
    advice = f"point {source} at a file on a disk that is kept, or at a server database."
    tmp_dir = Path(tempfile.gettempdir())
    persistent, note, _ = _persistence("path", path, on_space, tmp_dir, mountinfo, advice)
    return persistent, note


def locate_sqlite(
    *,
    configured: str | None,
    app_dir: Path,
    home: Path | None,
    tmp_dir: Path,
    on_space: bool,
    data_dir: Path = Path("/data"),
    filename: str = "todo.db",
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> SqliteLocation:
    """The first location that passes `probe_writable`, else in-memory. Never raises."""
    raw = (configured or "").strip()
    if raw == ":memory:":
        note = "SQLITE_PATH=:memory: asks for an in-memory database: nothing survives a restart."
        return SqliteLocation(None, "SQLITE_PATH", False, note)
    rungs: list[tuple[str, Callable[[], Path]]] = [
        ("SQLITE_PATH", lambda: _configured_path(raw, home, filename)),
        # /data is never created: without a volume there it would just be container disk.
        ("/data", lambda: _subdir(data_dir, "/data", Path()) / filename),
        ("./data", lambda: _subdir(app_dir, "the app directory", Path("data")) / filename),
        ("home", lambda: _subdir(home, "HOME", Path(".local/share", APP_SLUG), 0o700) / filename),
        ("tmp", lambda: _private_tmp(tmp_dir) / filename),
    ]
    rejected: list[str] = []
    for source, prepare in rungs[0 if raw else 1 :]:
        try:
            path = prepare()
            reason = probe_writable(path)
            if reason is None:
                persistent, note, lost = _persistence(source, path, on_space, tmp_dir, mountinfo)
                return SqliteLocation(
                    path, source, persistent, note, tuple(rejected), lost_when=lost
                )
        except Exception as exc:  # noqa: BLE001 - start-up must survive whatever a rung throws
            reason = _describe(exc)
        rejected.append(f"{source}: {reason}")
    return SqliteLocation(None, "memory", False, MEMORY_NOTE, tuple(rejected))


def locate_for(settings: Settings) -> SqliteLocation:
    """The chain as the app walks it: one definition for the server, the generated token
    secret (kept beside the database) and `doctor`."""
    # Imported here: the rest of this module takes plain arguments and stands alone.
    from src.config.settings import APP_DIR

    return locate_sqlite(
        configured=settings.sqlite_path_setting,
        app_dir=APP_DIR,
        home=settings.home_dir,
        tmp_dir=Path(tempfile.gettempdir()),
        on_space=settings.on_space,
    )
