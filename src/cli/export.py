"""`python -m src export [--output FILE]`: every task of every user as JSON Lines
(`src.services.task_lines`), read in id order one batch at a time (constant memory).

To stdout by default; with `--output` the file appears under its name only once complete
(`atomic_output`), and an export of no tasks never replaces a non-empty file unless
`--force` says so (an empty database is more often the wrong one than a wiped one).
The count goes to stderr. Exit 0 done, 1 failed, 2 bad usage.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from src.cli.atomic_file import atomic_output
from src.cli.databases import (
    EXIT_USAGE,
    CommandError,
    Database,
    configured_database,
    connect,
    opened,
    require_tasks,
)
from src.cli.reporting import Progress
from src.config.settings import load_settings
from src.core.logging import configure_logging
from src.core.plural import counted
from src.database.transfer import read_batches
from src.services.task_lines import encode_task


def export(*, output: str | None, force: bool, batch_size: int) -> int:
    settings = load_settings()
    configure_logging("warning", settings.log_format)
    try:
        with opened(configured_database(settings, reading=True)) as database:
            connect(database, settings)
            require_tasks(database)
            if output is None:
                count = _export_to_stdout(database, batch_size)
                where = "standard output"
            else:
                count = _export_to_file(database, Path(output), batch_size, force=force)
                where = output
    except CommandError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    print(f"Exported {counted(count, 'task')} from {database.label} to {where}.", file=sys.stderr)
    return 0


def _write_all(database: Database, out: IO[bytes], batch_size: int) -> int:
    progress = Progress("Exported")
    count = 0
    try:
        for batch in read_batches(database.engine, batch_size):
            out.write(b"".join(encode_task(record) for record in batch))
            count += len(batch)
            progress.count(count)
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(
            f"Reading {database.label} failed after {counted(count, 'task')}: "
            f"{database.failure(exc)}"
        ) from exc
    return count


def _export_to_stdout(database: Database, batch_size: int) -> int:
    out = sys.stdout.buffer
    try:
        count = _write_all(database, out, batch_size)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop, and keep Python from complaining about
        # the unflushable stdout at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CommandError("Standard output was closed before the export finished.") from None
    return count


def _export_to_file(database: Database, path: Path, batch_size: int, *, force: bool) -> int:
    if path.is_dir():
        raise CommandError(f"--output {path} is a directory; give a file name.", EXIT_USAGE)
    try:
        with atomic_output(path) as out:
            count = _write_all(database, out, batch_size)
            if count == 0 and not force and path.is_file() and path.stat().st_size > 0:
                raise CommandError(
                    f"{database.label} has no tasks, so {path} (which has data) was left "
                    "as it was; check the configured database, or pass --force to replace it."
                )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CommandError(f"Cannot write {path}: {reason}.") from exc
    return count
