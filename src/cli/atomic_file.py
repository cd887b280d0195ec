"""Write a file so that its name only ever shows a complete version: the old one until the
new one is whole, flushed and renamed over it (a temporary file beside it, then
`rename`). A crash mid-way leaves the old file untouched and, at worst, a
`.NAME.*.partial` file beside it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that replaces `path` when the block ends without an exception.

    A new file is private (0600: it holds users' data); a replaced file keeps its mode.
    Raises OSError (e.g. the directory does not exist or is not writable).
    """
    directory = path.absolute().parent
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            with contextlib.suppress(FileNotFoundError):
                temporary.chmod(stat.S_IMODE(path.stat().st_mode))
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is written.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
