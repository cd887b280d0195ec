"""The README's run command on a fresh copy of the repository: it sets itself up (a new
.venv from requirements.txt) and serves the status page on the SQLite default.

The copy holds what a clone would (tracked files plus new ones git does not ignore), so
nothing from this checkout's .venv, caches or local databases can help it along.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.server import ROOT, clean_env, free_port, stop

SETUP_AND_START_SECONDS = 100  # creating .venv is most of it (about 15 s here)


def _clone_files() -> list[str]:
    """What a clone would hold: git's tracked and not-ignored files; outside a git checkout
    (an unpacked archive), everything but what .gitignore names and .git itself."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if listed.returncode == 0:
        return [name for name in listed.stdout.decode().split("\0") if name]
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if ".git" in parts or any(fnmatch(part, rule) for part in parts for rule in ignored):
            continue
        names.append(path.relative_to(ROOT).as_posix())
    return names


@pytest.fixture
def fresh_copy() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="todo-fresh-"))
    copy = base / "todo-backend"
    for name in _clone_files():
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not there
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    try:
        yield copy
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_readme_run_command_serves_the_status_page_on_sqlite(fresh_copy: Path) -> None:
    assert not (fresh_copy / ".venv").exists()
    assert "`./scripts/serve`" in (fresh_copy / "README.md").read_text()
    port = free_port()
    env = clean_env(PORT=str(port), HOME=str(fresh_copy.parent / "home"))
    env.pop("VIRTUAL_ENV", None)
    log_path = fresh_copy.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["./scripts/serve"], cwd=fresh_copy, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SETUP_AND_START_SECONDS
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        page = httpx.get(url + "/", timeout=5)
        head = httpx.head(url + "/", timeout=5)
        facts = httpx.get(url + "/", headers={"Accept": "application/json"}, timeout=5).json()
    finally:
        stop(process)
    assert page.status_code == 200 and head.status_code == 200
    assert "SQLite" in page.text and "DATABASE_URL is not set." in page.text
    assert facts["database"]["type"] == "sqlite"
    # The copy's own interpreter and the copy's own data directory.
    assert (fresh_copy / ".venv" / "bin" / "python").exists()
    assert facts["database"]["sqlite_path"] == str(fresh_copy / "data" / "todo.db")
