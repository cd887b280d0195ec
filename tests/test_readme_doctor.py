"""The `doctor` transcripts in README.md ("Real output, on a Space") are what `doctor`
prints today: each `$ …` command is run with `SPACE_ID` set and its output compared line
by line (a transcript may stop early; it may not differ), so the README cannot drift.
The app directory is shown as a Space has it, /home/user/app."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from src.config.settings import APP_DIR
from tests.server import ROOT, clean_env

README = ROOT / "README.md"
FENCE = re.compile(r"^```\n(\$ [^\n]*python -m src doctor[^\n]*)\n(.*?)^```$", re.M | re.S)
SPACE_APP_DIR = "/home/user/app"
# The wrong-password transcript was recorded against a password-checking server.
RECORDED = {"port": "60933", "user": "todo_Us3r_q7", "database": "todo_scram"}


def transcripts() -> list[tuple[str, list[str]]]:
    text = README.read_text(encoding="utf-8")
    return [(m[1][2:], m[2].rstrip("\n").splitlines()) for m in FENCE.finditer(text)]


@pytest.fixture(scope="module")
def app_root() -> Iterator[Path]:
    """Where doctor runs from: the checkout, unless the checkout is in the temporary
    directory (a CI clone in /tmp), where the default SQLite file would be described as
    temporary rather than as a Space's container disk; then a copy outside it."""
    temporary = Path(tempfile.gettempdir()).resolve()
    if not ROOT.resolve().is_relative_to(temporary):
        yield ROOT
        return
    base = Path.home() if not Path.home().resolve().is_relative_to(temporary) else Path("/var")
    copy = base / ".cache" / f"todo-readme-doctor-{os.getpid()}"
    try:
        for part in ("src", "alembic"):
            shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "alembic.ini", copy / "alembic.ini")
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_the_readme_has_doctor_transcripts() -> None:
    assert len(transcripts()) >= 5


@pytest.mark.parametrize(
    ("command", "expected"), transcripts(), ids=[f"{i}" for i, _ in enumerate(transcripts())]
)
def test_doctor_prints_what_the_readme_shows(
    command: str,
    expected: list[str],
    tmp_path: Path,
    scram_cluster: dict[str, Any],
    app_root: Path,
) -> None:
    if RECORDED["port"] in command:
        command = command.replace(RECORDED["port"], str(scram_cluster["port"]))
    shell = command.replace("python -m src", f"{sys.executable} -m src")
    result = subprocess.run(
        ["bash", "-c", shell],
        cwd=app_root,
        env=clean_env(HOME=str(tmp_path / "home"), SPACE_ID="you/todo-backend"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    app_dir = APP_DIR if app_root == ROOT else app_root
    shown = result.stdout.replace(str(app_dir), SPACE_APP_DIR)
    shown = shown.replace(f"port {scram_cluster['port']}", f"port {RECORDED['port']}")
    shown = shown.replace(f":{scram_cluster['port']}/", f":{RECORDED['port']}/")
    lines = shown.rstrip("\n").splitlines()
    assert lines[: len(expected)] == expected, result.stdout + result.stderr
