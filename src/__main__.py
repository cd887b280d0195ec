"""`python -m src [serve|doctor|migrate|token]` — see README, "Command line"."""

from src.cli.main import main

raise SystemExit(main())
