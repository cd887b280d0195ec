"""`python -m src import FILE` (`-` for stdin): load a JSON Lines export into the configured
database, idempotent by id (newest `updated_at` wins, `src.database.transfer`).

The whole file is validated first, with the API's rules (`src.services.task_lines`); one
bad line and nothing is written, and every bad line (up to `MAX_REPORTED`) is named.
Only then is the table migrated and the file written, batch by batch, each batch a
transaction of its own. Standard input (or a pipe) is spooled to a temporary file so it
can be read twice. Exit 0 done, 1 failed, 2 bad input or usage.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from src.cli.databases import (
    EXIT_USAGE,
    CommandError,
    Database,
    configured_database,
    connect,
    migrate,
    opened,
)
from src.cli.reporting import Progress, report_conflicts, summary
from src.config.settings import load_settings
from src.core.logging import configure_logging
from src.core.plural import counted
from src.database.transfer import TransferFailed, TransferReport, in_batches, write_batches
from src.models.task import TaskRecord
from src.services.task_lines import LineError, read_tasks

MAX_REPORTED = 20


def import_tasks(*, file: str, batch_size: int) -> int:
    settings = load_settings()
    configure_logging("warning", settings.log_format)
    report: TransferReport | None = None
    try:
        with _input(file) as stream, opened(configured_database(settings, reading=False)) as db:
            connect(db, settings)
            count = _validate(stream, file)
            if count == 0:
                print(f"{_name(file)} has no tasks; nothing was imported.", file=sys.stderr)
                return 0
            migrate(db)
            stream.seek(0)
            report = TransferReport()
            _write(db, stream, batch_size, report)
    except CommandError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        done = report.read if report is not None else 0
        print(
            f"Interrupted after {counted(done, 'task')}; every batch written is complete. "
            "Run the same command again to finish: tasks already imported are left as they are.",
            file=sys.stderr,
        )
        return 1
    print(
        f"Merged the {counted(report.read, 'task')} of {_name(file)} into {db.label}: "
        f"{summary(report)}.",
        file=sys.stderr,
    )
    return report_conflicts(report)


def _name(file: str) -> str:
    return "standard input" if file == "-" else file


@contextlib.contextmanager
def _input(file: str) -> Iterator[IO[bytes]]:
    try:
        source: IO[bytes] = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.", EXIT_USAGE) from exc
    with contextlib.ExitStack() as stack:
        if file != "-":
            stack.enter_context(source)
        if not source.seekable():
            spool = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(source, spool)
            spool.seek(0)
            source = spool
        yield source


def _validate(stream: IO[bytes], file: str) -> int:
    """How many tasks the file holds; CommandError naming the bad lines if any."""
    count = 0
    errors: list[LineError] = []
    for item in read_tasks(stream):
        if isinstance(item, LineError):
            errors.append(item)
            if len(errors) == MAX_REPORTED:
                break
        else:
            count += 1
    if not errors:
        return count
    more = " (stopped there; there may be more)" if len(errors) == MAX_REPORTED else ""
    lines = "\n".join(f"  {error}" for error in errors)
    raise CommandError(
        f"Nothing was imported: {_name(file)} has {counted(len(errors), 'invalid line')}{more}. "
        f"Fix {'it' if len(errors) == 1 else 'them'} and run the import again:\n{lines}",
        EXIT_USAGE,
    )


def _records(stream: IO[bytes]) -> Iterator[TaskRecord]:
    for item in read_tasks(stream):
        if isinstance(item, LineError):
            # Valid a moment ago: the file changed while it was being imported.
            raise CommandError(f"The file changed during the import: {item}")
        yield item


def _write(db: Database, stream: IO[bytes], batch_size: int, report: TransferReport) -> None:
    progress = Progress("Imported")
    try:
        write_batches(
            db.engine,
            in_batches(_records(stream), batch_size),
            on_progress=progress.report,
            report=report,
        )
    except TransferFailed as failed:
        cause = failed.__cause__
        if isinstance(cause, CommandError):
            raise cause from None
        raise CommandError(
            f"Writing to {db.label} failed after {counted(failed.report.read, 'task')} (those are "
            f"imported, each batch whole): {db.failure(cause or failed)} Run the same command "
            "again to finish."
        ) from failed
