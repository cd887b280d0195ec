"""Where SQLite lives: real directories, real sqlite3, and a real unprivileged user.

The test suite runs as root here, and root ignores file permissions, so every test about
an unwritable location runs the locator in a subprocess as uid 1000 (the uid a Hugging Face
Space runs as) via `setpriv`. When the suite itself runs unprivileged, the same subprocess
runs as the current user and "owned by root" becomes "write bits removed".
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import QueuePool

from src.database import sqlite_locator
from src.database.sqlite_locator import (
    PROBE_PREFIX,
    SqliteLocation,
    locate_sqlite,
    probe_writable,
)

REPO = Path(__file__).resolve().parents[1]
LOCATOR_FILE = REPO / "src" / "database" / "sqlite_locator.py"
SPACE_UID = 1000
IS_ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")

# Loads the locator from a file (so it can come from a read-only app copy, and importing
# the `src` package's other modules cannot interfere), calls it and prints JSON.
RUNNER = """
import importlib.util, json, os, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("locator_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
kwargs = json.loads(sys.argv[2])
repeat = kwargs.pop("repeat", 1)
for key in ("app_dir", "home", "tmp_dir", "data_dir", "mountinfo"):
    if kwargs.get(key) is not None:
        kwargs[key] = Path(kwargs[key])
out = []
for _ in range(repeat):
    loc = module.locate_sqlite(**kwargs)
    out.append({
        "uid": os.geteuid(),
        "path": None if loc.path is None else str(loc.path),
        "source": loc.source,
        "persistent": loc.persistent,
        "note": loc.persistence_note,
        "rejected": list(loc.rejected),
    })
print(json.dumps(out))
"""


def _as_runner(argv: list[str]) -> list[str]:
    """Run `argv` as the Space's uid when we are root, else as ourselves."""
    if IS_ROOT:
        assert SETPRIV is not None
        uid = str(SPACE_UID)
        return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    return argv


def _runner_argv(locator_file: Path, kwargs: dict[str, Any]) -> list[str]:
    return _as_runner([sys.executable, "-B", "-c", RUNNER, str(locator_file), json.dumps(kwargs)])


def _runner_env() -> dict[str, str]:
    # The locator reads no environment; a bogus HOME proves it by making any leak visible.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    if "PYTHONPATH" in os.environ:  # how this interpreter finds its packages
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.fixture(scope="session")
def unprivileged() -> None:
    """Skip unless a subprocess can really run the interpreter without root's powers."""
    if IS_ROOT and SETPRIV is None:
        pytest.skip("running as root without setpriv: cannot test permissions")
    check = "import os, sqlalchemy; print(os.geteuid())"
    argv = _as_runner([sys.executable, "-B", "-c", check])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd="/", env=_runner_env())
    except OSError as exc:
        pytest.skip(f"cannot start the interpreter for the permission tests: {exc}")
    if done.returncode != 0:
        pytest.skip(f"interpreter not usable unprivileged: {done.stderr.strip()[-300:]}")
    assert done.stdout.strip() == (str(SPACE_UID) if IS_ROOT else str(os.geteuid()))


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A world-traversable directory (pytest's tmp_path is root-only, unusable by uid 1000).

    On teardown it also checks that no probe file was left anywhere inside.
    """
    root = Path(tempfile.mkdtemp(prefix="locator-test-"))
    root.chmod(0o755)
    try:
        yield root
        leftovers = list(root.rglob(f"{PROBE_PREFIX}*"))
        assert leftovers == [], f"probe files left behind: {leftovers}"
    finally:
        for dirpath, _, _ in os.walk(root):
            Path(dirpath).chmod(0o755)
        shutil.rmtree(root)


def runner_dir(path: Path) -> Path:
    """A directory the unprivileged runner owns and can write (a Space's HOME)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    if IS_ROOT:
        os.chown(path, SPACE_UID, SPACE_UID)
    return path


def foreign_dir(path: Path, mode: int = 0o755) -> Path:
    """A directory the runner can read but not write (root-owned, like a Space's app dir)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode if IS_ROOT else mode & ~0o222)
    return path


def foreign_file(path: Path) -> Path:
    """A file the runner can read but not write (root-owned 0o644)."""
    path.chmod(0o644 if IS_ROOT else 0o444)
    return path


def shared_tmp(path: Path) -> Path:
    """Like /tmp: writable by everyone, sticky."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o1777)
    return path


def readonly_app_copy(dest: Path) -> Path:
    """The Space layout: the app copied by root, readable but not writable by uid 1000."""
    shutil.copytree(
        REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for dirpath, _, filenames in os.walk(dest):
        for name in filenames:
            foreign_file(Path(dirpath) / name)
        foreign_dir(Path(dirpath))
    return dest


def write_mountinfo(path: Path, *mounts: tuple[str, str]) -> Path:
    """A mountinfo file in the kernel's format: overlay root plus (mount point, fstype)."""
    lines = [
        "571 493 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u",
        "572 571 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
    ]
    for number, (point, fstype) in enumerate(mounts, start=600):
        escaped = point.replace("\\", "\\134").replace(" ", "\\040")
        lines.append(f"{number} 571 0:{number} / {escaped} rw,nosuid,nodev - {fstype} src rw")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_locator(locator_file: Path = LOCATOR_FILE, **kwargs: Any) -> dict[str, Any]:
    """Call locate_sqlite unprivileged in a fresh process and return its result."""
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    kwargs.setdefault("configured", None)
    done = subprocess.run(
        _runner_argv(locator_file, kwargs),
        capture_output=True,
        text=True,
        cwd="/",
        env=_runner_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    expected_uid = SPACE_UID if IS_ROOT else os.geteuid()
    assert [r["uid"] for r in results] == [expected_uid]
    return results[0]


def space_layout(sandbox: Path) -> dict[str, Path]:
    """Root-owned read-only app, /data a root-owned FUSE mount, HOME owned by uid 1000."""
    data = foreign_dir(sandbox / "bucket")
    return {
        "app_dir": readonly_app_copy(sandbox / "app"),
        "home": runner_dir(sandbox / "home" / "user"),
        "tmp_dir": shared_tmp(sandbox / "tmp"),
        "data_dir": data,
        "mountinfo": write_mountinfo(sandbox / "mountinfo", (str(data), "fuse")),
    }


# -- the Space situation ----------------------------------------------------------------


@pytest.mark.usefixtures("unprivileged")
@pytest.mark.parametrize("data_dir_exists", [True, False])
def test_space_lands_in_home_and_says_it_is_not_persistent(
    sandbox: Path, data_dir_exists: bool
) -> None:
    layout = space_layout(sandbox)
    if not data_dir_exists:
        layout["data_dir"] = sandbox / "no-volume"
    app_copy = layout["app_dir"] / "src" / "database" / "sqlite_locator.py"

    result = run_locator(app_copy, on_space=True, **layout)

    expected = layout["home"] / ".local" / "share" / "todo-backend" / "todo.db"
    assert result["source"] == "home"
    assert result["path"] == str(expected)
    assert result["persistent"] is False
    assert "wiped on every restart and rebuild" in result["note"]
    assert [r.split(":")[0] for r in result["rejected"]] == ["/data", "./data"]
    assert str(layout["data_dir"]) in result["rejected"][0]
    if data_dir_exists:  # a FUSE bucket that refuses uid 1000 says so in plain words
        assert "Permission denied" in result["rejected"][0]
    assert "Permission denied" in result["rejected"][1]
    assert not (layout["app_dir"] / "data").exists()
    assert expected.parent.is_dir()
    assert expected.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.usefixtures("unprivileged")
def test_off_space_the_home_rung_is_persistent(sandbox: Path) -> None:
    layout = space_layout(sandbox)

    result = run_locator(on_space=False, **layout)

    assert result["source"] == "home"
    assert result["persistent"] is True
    assert [r.split(":")[0] for r in result["rejected"]] == ["/data", "./data"]


@pytest.mark.usefixtures("unprivileged")
@pytest.mark.parametrize("on_space", [True, False])
def test_unwritable_home_falls_to_tmp_which_is_never_persistent(
    sandbox: Path, on_space: bool
) -> None:
    layout = space_layout(sandbox)
    layout["home"] = foreign_dir(sandbox / "root-home")

    result = run_locator(on_space=on_space, **layout)

    assert result["source"] == "tmp"
    assert result["path"] == str(layout["tmp_dir"] / "todo-backend" / "todo.db")
    assert result["persistent"] is False
    assert "temporary directory" in result["note"]
    assert [r.split(":")[0] for r in result["rejected"]] == ["/data", "./data", "home"]


@pytest.mark.usefixtures("unprivileged")
def test_nothing_writable_ends_in_memory_and_says_so_loudly(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout["home"] = foreign_dir(sandbox / "root-home")
    layout["tmp_dir"] = foreign_dir(sandbox / "root-tmp")

    result = run_locator(on_space=True, **layout)

    assert result["source"] == "memory"
    assert result["path"] is None
    assert result["persistent"] is False
    assert "IN MEMORY" in result["note"]
    assert [r.split(":")[0] for r in result["rejected"]] == ["/data", "./data", "home", "tmp"]


@pytest.mark.usefixtures("unprivileged")
def test_home_unset_is_a_rejected_rung_not_a_crash(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout.pop("home")

    result = run_locator(on_space=True, home=None, **layout)

    assert result["source"] == "tmp"
    assert "home: HOME is not set" in result["rejected"]


# -- each rung wins once the earlier ones are unusable --------------------------------


@pytest.mark.usefixtures("unprivileged")
def test_writable_data_dir_wins_and_a_fuse_mount_there_is_persistent(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout["data_dir"] = runner_dir(sandbox / "volume")
    layout["mountinfo"] = write_mountinfo(sandbox / "mounts", (str(layout["data_dir"]), "fuse"))

    result = run_locator(on_space=True, **layout)

    assert result["source"] == "/data"
    assert result["path"] == str(layout["data_dir"] / "todo.db")
    assert result["persistent"] is True
    assert "mounted volume" in result["note"]
    assert result["rejected"] == []


@pytest.mark.usefixtures("unprivileged")
def test_writable_app_dir_wins_when_data_dir_is_unusable(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout["app_dir"] = runner_dir(sandbox / "own-app")

    result = run_locator(on_space=False, **layout)

    assert result["source"] == "./data"
    assert result["path"] == str(layout["app_dir"] / "data" / "todo.db")
    assert result["persistent"] is True
    assert [r.split(":")[0] for r in result["rejected"]] == ["/data"]


@pytest.mark.usefixtures("unprivileged")
def test_writable_configured_path_wins_over_everything(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout["data_dir"] = runner_dir(sandbox / "volume")
    target = runner_dir(sandbox / "chosen") / "mine.db"

    result = run_locator(on_space=False, configured=f"  {target}  ", **layout)

    assert result["source"] == "SQLITE_PATH"
    assert result["path"] == str(target)
    assert result["rejected"] == []


@pytest.mark.usefixtures("unprivileged")
def test_configured_path_in_an_unwritable_dir_falls_through_with_a_reason(
    sandbox: Path,
) -> None:
    layout = space_layout(sandbox)
    target = foreign_dir(sandbox / "locked") / "todo.db"

    result = run_locator(on_space=True, configured=str(target), **layout)

    assert result["source"] == "home"
    assert result["rejected"][0].startswith("SQLITE_PATH: ")
    assert str(target.parent) in result["rejected"][0]
    assert not target.exists()


@pytest.mark.usefixtures("unprivileged")
def test_existing_foreign_database_in_a_writable_dir_is_rejected(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    open_dir = sandbox / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    existing = open_dir / "todo.db"
    sqlite3.connect(existing).close()
    foreign_file(existing)

    result = run_locator(on_space=False, configured=str(existing), **layout)

    assert result["source"] == "home"
    assert result["rejected"][0].startswith("SQLITE_PATH: cannot write the existing")
    assert existing.stat().st_size == 0


@pytest.mark.usefixtures("unprivileged")
def test_existing_database_with_a_foreign_wal_file_is_rejected(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    layout["data_dir"] = runner_dir(sandbox / "volume")
    db = layout["data_dir"] / "todo.db"
    sqlite3.connect(db).close()
    if IS_ROOT:
        os.chown(db, SPACE_UID, SPACE_UID)
    (layout["data_dir"] / "todo.db-wal").write_bytes(b"")
    foreign_file(layout["data_dir"] / "todo.db-wal")

    result = run_locator(on_space=False, **layout)

    assert result["source"] == "home"
    assert result["rejected"][0].startswith("/data: ")
    assert "todo.db-wal" in result["rejected"][0]


@pytest.mark.usefixtures("unprivileged")
def test_tmp_dir_planted_by_another_user_is_not_used(sandbox: Path) -> None:
    if not IS_ROOT:
        pytest.skip("needs a second user to plant the directory")
    layout = space_layout(sandbox)
    layout["home"] = foreign_dir(sandbox / "root-home")
    planted = layout["tmp_dir"] / "todo-backend"
    planted.mkdir()
    planted.chmod(0o777)

    result = run_locator(on_space=False, **layout)

    assert result["source"] == "memory"
    assert "belongs to another user" in result["rejected"][-1]


@pytest.mark.usefixtures("unprivileged")
def test_concurrent_processes_choose_the_same_path(sandbox: Path) -> None:
    layout = space_layout(sandbox)
    kwargs: dict[str, Any] = {k: str(v) for k, v in layout.items()}
    kwargs.update(on_space=True, configured=None, repeat=15)
    procs = [
        subprocess.Popen(
            _runner_argv(LOCATOR_FILE, kwargs),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env=_runner_env(),
        )
        for _ in range(3)
    ]
    paths: set[str] = set()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        paths.update(r["path"] for r in json.loads(out))

    assert paths == {str(layout["home"] / ".local/share/todo-backend/todo.db")}


# -- in-process behaviour (no permissions involved) --------------------------------------


def locate_in(tmp_path: Path, **overrides: Any) -> SqliteLocation:
    kwargs: dict[str, Any] = {
        "configured": None,
        "app_dir": tmp_path / "app-missing",
        "home": None,
        "tmp_dir": tmp_path / "tmp-missing",
        "on_space": False,
        "data_dir": tmp_path / "data-missing",
        "mountinfo": write_mountinfo(tmp_path / "mountinfo"),
    }
    kwargs.update(overrides)
    return locate_sqlite(**kwargs)


def test_tilde_is_expanded_against_the_given_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    nested = locate_in(tmp_path, configured="~/dbs/my.db", home=home)
    bare = locate_in(tmp_path, configured="~", home=home)

    assert nested.path == home / "dbs" / "my.db"
    assert nested.source == "SQLITE_PATH"
    assert bare.path == home / "todo.db"


def test_tilde_without_home_or_for_another_user_is_rejected(tmp_path: Path) -> None:
    no_home = locate_in(tmp_path, configured="~/x.db")
    other_user = locate_in(tmp_path, configured="~alice/x.db", home=tmp_path)

    assert no_home.is_memory
    assert "HOME is not set" in no_home.rejected[0]
    assert other_user.rejected[0].startswith("SQLITE_PATH: ")
    assert "~/" in other_user.rejected[0]


def test_relative_and_directory_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    existing_dir = tmp_path / "existing"
    existing_dir.mkdir()

    relative = locate_in(tmp_path, configured="rel/app.db")
    directory = locate_in(tmp_path, configured=str(existing_dir))
    new_directory = locate_in(tmp_path, configured="new-dir/")

    assert relative.path == tmp_path / "rel" / "app.db"
    assert directory.path == existing_dir / "todo.db"
    assert new_directory.path == tmp_path / "new-dir" / "todo.db"
    assert (tmp_path / "new-dir").is_dir()


def test_memory_is_explicitly_configurable(tmp_path: Path) -> None:
    location = locate_in(tmp_path, configured=":memory:", tmp_dir=tmp_path)

    assert location.is_memory
    assert location.source == "SQLITE_PATH"
    assert location.persistent is False


def test_blank_configured_value_is_not_a_rung(tmp_path: Path) -> None:
    location = locate_in(tmp_path, configured="   ")

    assert not any(r.startswith("SQLITE_PATH") for r in location.rejected)


def test_absent_data_dir_is_never_created(tmp_path: Path) -> None:
    location = locate_in(tmp_path, tmp_dir=tmp_path)

    assert location.source == "tmp"
    assert not (tmp_path / "data-missing").exists()
    assert location.rejected[0].startswith("/data: ")


@pytest.mark.parametrize(
    "configured", ["bad\x00path.db", "/proc/self/nope/x.db", "fifo", "\ud800.db"]
)
def test_hostile_configured_values_never_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo")

    location = locate_in(tmp_path, configured=configured, tmp_dir=tmp_path)

    assert location.source == "tmp"
    assert location.rejected[0].startswith("SQLITE_PATH: ")


def test_existing_database_locked_by_another_writer_is_still_chosen(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        location = locate_in(tmp_path, configured=str(db))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert location.path == db
    assert location.rejected == ()


def test_existing_file_that_is_not_a_database_is_rejected_and_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "todo.db"
    notes.write_text("my notes, not a database")

    location = locate_in(tmp_path, configured=str(notes), tmp_dir=tmp_path)

    assert location.source == "tmp"
    assert "not a database" in location.rejected[0]
    assert notes.read_text() == "my notes, not a database"


def test_probe_leaves_the_directory_exactly_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())

    assert probe_writable(tmp_path / "todo.db") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert probe_writable(tmp_path / "missing" / "todo.db") is not None
    assert not (tmp_path / "missing").exists()


def test_a_directory_where_the_database_should_be_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "todo.db").mkdir()

    reason = probe_writable(tmp_path / "todo.db")

    assert reason is not None
    assert "not a regular file" in reason


@pytest.mark.parametrize(("squatted", "step"), [("-wal", "WAL"), ("-shm", "")])
def test_a_probe_failing_midway_reports_the_step_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squatted: str, step: str
) -> None:
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    monkeypatch.setattr(secrets, "token_hex", lambda _n: "fixed")
    probe = tmp_path / f"{PROBE_PREFIX}4242-fixed.db"
    # A directory squatting on a name SQLite needs for WAL makes the probe fail part-way.
    (tmp_path / f"{probe.name}{squatted}").mkdir()

    reason = probe_writable(tmp_path / "todo.db")

    assert reason is not None
    assert reason.startswith("cannot ")
    assert step in reason
    assert str(tmp_path) in reason
    assert not probe.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{probe.name}{squatted}"]


# -- persistence and mounts ---------------------------------------------------------------


def test_on_space_a_fuse_volume_is_persistent_and_overlay_is_not(tmp_path: Path) -> None:
    volume = tmp_path / "my volume"  # a space, to exercise mountinfo's \040 escape
    volume.mkdir()
    fuse_mounts = write_mountinfo(tmp_path / "fuse", (str(volume), "fuse"))
    overlay_only = write_mountinfo(tmp_path / "overlay")

    on_volume = locate_in(tmp_path, data_dir=volume, on_space=True, mountinfo=fuse_mounts)
    on_root = locate_in(tmp_path, data_dir=volume, on_space=True, mountinfo=overlay_only)
    off_space = locate_in(tmp_path, data_dir=volume, on_space=False, mountinfo=overlay_only)

    assert (on_volume.source, on_volume.persistent) == ("/data", True)
    assert f"{volume}, fuse" in on_volume.persistence_note
    assert (on_root.source, on_root.persistent) == ("/data", False)
    assert "wiped on every restart and rebuild" in on_root.persistence_note
    assert off_space.persistent is True


@pytest.mark.parametrize(
    ("mounts", "expected"),
    [
        ([("/data", "fuse")], True),
        ([("/data", "fuse.hf-mount")], True),
        ([("/data", "ext4")], True),
        ([("/data", "nfs4")], True),
        ([("/data", "tmpfs")], False),
        ([("/data", "overlay")], False),
        ([("/dat", "fuse")], False),  # a prefix of the name is not a parent directory
        ([("/data", "fuse"), ("/data/app", "tmpfs")], False),  # the longest mount point wins
        ([("/data/app", "tmpfs"), ("/data", "fuse")], False),  # in any line order
        ([("/data", "tmpfs"), ("/data", "fuse")], True),  # a later mount shadows an earlier
        ([], False),
    ],
)
def test_mountinfo_longest_prefix(
    tmp_path: Path, mounts: list[tuple[str, str]], expected: bool
) -> None:
    mountinfo = write_mountinfo(tmp_path / "mountinfo", *mounts)

    volume = sqlite_locator._volume_of(Path("/data/app/todo.db"), mountinfo)

    assert (volume is not None) is expected


def test_literal_hf_mount_line_and_unreadable_mountinfo(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "25 1 0:30 / / rw,relatime - overlay overlay rw,lowerdir=/a\n"
        "36 25 0:32 / /data rw,nosuid,nodev - fuse hf-mount rw,user_id=0,group_id=0\n"
    )

    assert sqlite_locator._volume_of(Path("/data/todo.db"), mountinfo) == "/data, fuse"
    assert sqlite_locator._volume_of(Path("/home/user/todo.db"), mountinfo) is None
    assert sqlite_locator._volume_of(Path("/data/todo.db"), tmp_path / "absent") is None


def test_a_configured_path_inside_tmp_is_not_persistent(tmp_path: Path) -> None:
    location = locate_in(tmp_path, configured=str(tmp_path / "x.db"), tmp_dir=tmp_path)

    assert location.source == "SQLITE_PATH"
    assert location.persistent is False


# -- URLs ---------------------------------------------------------------------------------


def test_file_url_points_at_the_file(tmp_path: Path) -> None:
    location = SqliteLocation(tmp_path / "a b.db", "tmp", False, "n")

    assert location.url.drivername == "sqlite+pysqlite"
    assert location.url.database == str(tmp_path / "a b.db")
    assert not location.is_memory


def test_memory_url_shares_one_database_across_connections_and_threads() -> None:
    location = SqliteLocation(None, "memory", False, "n")
    # Each read of `.url` builds a new URL; it must name the same database every time, or
    # two engines made from it would see two databases.
    assert location.url is not location.url
    assert location.url.database == location.url.database
    assert location.url.query == location.url.query
    assert make_url(location.url.render_as_string()) == location.url
    engine = create_engine(
        location.url, poolclass=QueuePool, connect_args={"check_same_thread": False}
    )
    other_engine = create_engine(
        SqliteLocation(None, "memory", False, "n").url, poolclass=QueuePool
    )
    try:
        with engine.connect() as first, engine.connect() as second:
            assert first.connection.dbapi_connection is not second.connection.dbapi_connection
            first.execute(text("CREATE TABLE shared (x INTEGER)"))
            first.execute(text("INSERT INTO shared VALUES (42)"))
            first.commit()

            seen: list[object] = []
            errors: list[BaseException] = []

            def read_from_another_thread() -> None:
                try:
                    seen.append(second.execute(text("SELECT x FROM shared")).scalar_one())
                except BaseException as exc:
                    errors.append(exc)

            worker = threading.Thread(target=read_from_another_thread)
            worker.start()
            worker.join(10)
            assert errors == []
            assert seen == [42]
            second.rollback()

            with other_engine.connect() as unrelated:
                tables = unrelated.execute(text("SELECT name FROM sqlite_master")).all()
                assert tables == []
    finally:
        engine.dispose()
        other_engine.dispose()
