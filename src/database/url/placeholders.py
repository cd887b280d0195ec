"""Template words left in a URL part: `USER`, `PASSWORD`, `HOST`, `DB_NAME`, `your-password`.

Provider dashboards, READMEs and `.env.example` files show URLs such as
`postgresql://USER:PASSWORD@HOST:5432/DATABASE`; pasted unchanged, they only fail
later, as a DNS or authentication error that does not say why. A part counts as
a template word only when the *whole* part is one, in one of two shapes:

* ALL CAPS, made only of template vocabulary with at least one word naming a part
  (`USER`, `DB_PASSWORD`, `MY_DB`, `DBNAME`, `POSTGRES-HOST`). Lower- or mixed-case
  words are real values (`postgres`, `db`, `password`, `Password1!`, `mydb`), and
  any digit or other character makes it real (`PASSWORD1`, `DB2`).
* `your` in any case, then only template vocabulary (`YOUR_PASSWORD`,
  `your-password`, `yourpassword`, `YourDbName`, `your_password_here`). Lower-case
  `my…` is not a template: `mydb` is the PostgreSQL tutorial's database and
  `mysecretpassword` the password the Docker image's README really sets.
"""

from __future__ import annotations

import re

# Words that name a part of the URL: at least one must appear.
_ROLE_WORDS = (
    "USERNAME", "USER", "USR", "LOGIN",
    "PASSWORD", "PASSWD", "PASS", "PWD", "PW",
    "HOSTNAME", "HOST", "SERVER", "ADDRESS", "ADDR", "ENDPOINT",
    "PORT",
    "DATABASE", "DBNAME", "DBUSER", "DBPASS", "DBHOST", "DB", "NAME",
)  # fmt: skip
# Words that only qualify one: `POSTGRES_PASSWORD`, `YOUR_PROJECT_REF`, `DB_NAME_HERE`.
_QUALIFIER_WORDS = (
    "YOUR", "MY", "THE", "HERE", "REAL", "ACTUAL", "NEW", "STRONG", "SECURE", "SECRET",
    "POSTGRESQL", "POSTGRES", "PGSQL", "PG", "MYSQL", "MARIADB", "SQL",
    "SUPABASE", "NEON", "PROJECT", "REF", "REGION", "CLUSTER", "INSTANCE", "APP", "ID",
    "ADMIN", "ROOT",
)  # fmt: skip


def _alternation(words: tuple[str, ...]) -> str:
    # Longest first, so `USERNAME` is tried before `USER` when segmenting `DBUSERNAME`.
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_ROLE = _alternation(_ROLE_WORDS)
_ANY = _alternation(_ROLE_WORDS + _QUALIFIER_WORDS)
_SEP = "[_-]?"
_ALL_CAPS_TEMPLATE = re.compile(rf"(?:{_ANY}{_SEP})*{_ROLE}(?:{_SEP}{_ANY})*")
_YOUR_TEMPLATE = re.compile(rf"YOUR(?:{_SEP}{_ANY})+", re.IGNORECASE)
# Template words are short; the bound also keeps the segmenting regex cheap.
_MAX_TEMPLATE_LENGTH = 64


def is_template_word(value: str) -> bool:
    """Whether the whole of one URL part (user, password, host, database) is a
    template word, as defined in the module docstring."""
    if not value or len(value) > _MAX_TEMPLATE_LENGTH or not value.isascii():
        return False
    if _YOUR_TEMPLATE.fullmatch(value):
        return True
    return value.isupper() and _ALL_CAPS_TEMPLATE.fullmatch(value) is not None
