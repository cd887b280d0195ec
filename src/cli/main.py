"""Command-line entry point: argument parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

# Mirrors src.database.transfer (not imported here: parsing must stay cheap).
_DEFAULT_BATCH = 500
_MAX_BATCH = 5000
# What a shell reports for a process killed by SIGPIPE (128 + 13): a command whose reader
# went away (`doctor | head -3`) ends as a C tool would, and `set -o pipefail` sees it.
EXIT_BROKEN_PIPE = 141


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {_MAX_BATCH}")
    return value


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=_DEFAULT_BATCH,
        metavar="N",
        help=f"tasks per read and per transaction (default {_DEFAULT_BATCH})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src",
        description="Todo backend: serve, diagnose, migrate, mint tokens, move tasks.",
    )
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the HTTP server (default)")
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 7860)")
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default $WEB_CONCURRENCY or 1)"
    )

    doctor = commands.add_parser(
        "doctor", help="explain the database configuration without starting the server"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--connect", action="store_true", help="also try to connect")
    doctor.add_argument(
        "--reveal-password",
        action="store_true",
        help="show the user name and password (only when printing to a terminal)",
    )

    commands.add_parser("migrate", help="apply database migrations with the app's start-up rules")

    token = commands.add_parser(
        "token", help="print a JWT for a user, signed with the secret the server uses"
    )
    token.add_argument("--user", required=True, help="the user id (the token's `sub`)")
    token.add_argument("--ttl", default="1h", help="lifetime: 30s, 15m, 1h, 7d (default 1h)")

    export = commands.add_parser(
        "export",
        help="write every task (all users) as JSON Lines",
        description="Every task of every user, one JSON object per line, from the configured "
        "database (DATABASE_URL, else the app's SQLite file). The count goes to stderr.",
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        help="write FILE (complete or not at all; new files are private, 0600) "
        "instead of standard output",
    )
    export.add_argument(
        "--force", action="store_true", help="let an export of no tasks replace a non-empty FILE"
    )
    _add_batch_size(export)

    importer = commands.add_parser(
        "import",
        help="load a JSON Lines export into the configured database (idempotent)",
        description="Validates every line first (nothing is written if one is bad), then "
        "merges by id: new tasks are added, a newer updated_at replaces an older one.",
    )
    importer.add_argument("file", metavar="FILE", help="the export to load; - for standard input")
    _add_batch_size(importer)

    copy = commands.add_parser(
        "copy",
        help="copy every task to another database (idempotent, resumable)",
        description="From the configured database (or --from) to --to, merging by id "
        "(newest updated_at wins). Run it again after an interruption to finish.",
    )
    copy.add_argument("--to", required=True, metavar="URL", help="the database to copy into")
    copy.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the database to copy from (default: the configured one)",
    )
    _add_batch_size(copy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; its exit code. A closed standard output ends it quietly.

    Python ignores SIGPIPE, so a write to a pipe whose reader has gone raises
    BrokenPipeError, wherever the command happens to be, and a last one when the
    interpreter flushes stdout at exit (the recipe of the `signal` module's documentation,
    "Note on SIGPIPE"). stdout is flushed here, inside the handler, and then pointed at
    /dev/null, so that nothing is left to fail at exit.
    """
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        from src.cli.serve import serve

        return serve(
            host=getattr(args, "host", "0.0.0.0"),
            port=getattr(args, "port", None),
            workers=getattr(args, "workers", None),
        )
    if command == "doctor":
        from src.cli.doctor import doctor

        return doctor(as_json=args.json, connect=args.connect, reveal=args.reveal_password)
    if command == "token":
        from src.cli.token import token

        return token(user=args.user, ttl=args.ttl)
    if command == "export":
        from src.cli.export import export

        return export(output=args.output, force=args.force, batch_size=args.batch_size)
    if command == "import":
        from src.cli.importer import import_tasks

        return import_tasks(file=args.file, batch_size=args.batch_size)
    if command == "copy":
        from src.cli.copy import copy

        return copy(to=args.to, source=args.source, batch_size=args.batch_size)
    from src.cli.migrate import migrate

    return migrate()
