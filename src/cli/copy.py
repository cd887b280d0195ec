"""`python -m src copy --to URL [--from URL]`: copy every task from the configured database
(or `--from`) into another, idempotent by id (newest `updated_at` wins) and resumable:
each batch is its own transaction, so after an interruption the same command finishes
the job without duplicating anything.

Both URLs go through the app's resolver; the target is migrated first; copying a
database onto itself is refused (checked on the servers themselves, so two spellings of
one database are caught). Exit 0 done, 1 failed (or some tasks conflicted), 2 bad usage.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from src.cli.databases import (
    EXIT_USAGE,
    CommandError,
    Database,
    configured_database,
    connect,
    database_at,
    migrate,
    opened,
    require_tasks,
    same_database,
)
from src.cli.reporting import Progress, report_conflicts, summary
from src.config.settings import Settings, load_settings
from src.core.logging import configure_logging
from src.core.plural import counted
from src.database.transfer import TransferFailed, TransferReport, copy_tasks


def copy(*, to: str, source: str | None, batch_size: int) -> int:
    settings = load_settings()
    configure_logging("warning", settings.log_format)
    progress = Progress("Copied")
    report = TransferReport()

    def on_progress(current: TransferReport) -> None:
        nonlocal report
        report = current
        progress.report(current)

    try:
        with contextlib.ExitStack() as stack:
            origin, target = _open_both(stack, settings, to, source)
            migrate(target)
            report = _copy(origin, target, batch_size, on_progress)
    except CommandError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(
            f"Interrupted after {counted(report.read, 'task')}; every batch written is "
            "complete. Run the same command again to finish: tasks already copied are left as "
            "they are.",
            file=sys.stderr,
        )
        return 1
    print(
        f"Copied {counted(report.read, 'task')} from {origin.label} to {target.label} in "
        f"{report.seconds:.1f} s: {summary(report)}.",
        file=sys.stderr,
    )
    return report_conflicts(report)


def _open_both(
    stack: contextlib.ExitStack, settings: Settings, to: str, source: str | None
) -> tuple[Database, Database]:
    # The target first: a mistyped --to is a usage error worth reporting before anything else.
    target = stack.enter_context(opened(database_at(to, "--to", settings, reading=False)))
    if source is None:
        origin = stack.enter_context(opened(configured_database(settings, reading=True)))
    else:
        origin = stack.enter_context(opened(database_at(source, "--from", settings, reading=True)))
    # SQLite first, before connecting creates the target file.
    if origin.sqlite_file is not None and same_database(origin, target):
        raise _onto_itself(origin)
    connect(origin, settings)
    connect(target, settings)
    if same_database(origin, target):
        raise _onto_itself(origin)
    require_tasks(origin)
    return origin, target


def _onto_itself(origin: Database) -> CommandError:
    return CommandError(
        f"--to is the same database as the one being copied from, {origin.label}; "
        "give another database.",
        EXIT_USAGE,
    )


def _copy(
    origin: Database,
    target: Database,
    batch_size: int,
    on_progress: Callable[[TransferReport], None],
) -> TransferReport:
    try:
        return copy_tasks(
            origin.engine, target.engine, batch_size=batch_size, on_progress=on_progress
        )
    except TransferFailed as failed:
        side = origin if failed.side == "source" else target
        cause = failed.__cause__ or failed
        raise CommandError(
            f"{'Reading' if side is origin else 'Writing'} {side.label} failed after "
            f"{counted(failed.report.read, 'task')} (those are copied, each batch whole): "
            f"{side.failure(cause)} Run the same command again to finish."
        ) from failed
