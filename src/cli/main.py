"""Command-line entry point: argument parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src", description="Todo backend: serve, diagnose, migrate, mint tokens."
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
    from src.cli.migrate import migrate

    return migrate()
