"""Examples for the DATABASE_URL resolver: provider shapes, paste damage, errors.

Pure: no network, no database. Credentials below are invented but shaped like the
real ones providers show (Neon, Supabase, Heroku, Render, PlanetScale, Railway).
"""

from __future__ import annotations

import inspect
from typing import Any

import pymysql
import pytest
from psycopg.conninfo import make_conninfo
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from src.database.resolver import Resolution, mask_url, resolve_database_url

# Distinctive credentials, so a leak check cannot match ordinary message text.
USER = "app_user_q7"
PW = "Pw9xQr7Lk2"
HEX64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SECRETS = (
    USER,
    PW,
    HEX64,
    "npg_AbC123dEfXyZ",
    "alex_neon",
    "AVNS_k3yZq8Pw",
    "p@ss:w/rd#?% +x",
    "pä$$wörd✓🔑",
    "Sup4base_pw_77",
    "uhk2b3c4d5e6f7",
    "KeyPw_sslpass1",
)

PYMYSQL_PARAMS = set(inspect.signature(pymysql.connections.Connection.__init__).parameters)
# SQLAlchemy folds these into PyMySQL's `ssl` dict.
SA_FOLDED_SSL = {"ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}


def assert_usable_by_driver(res: Resolution) -> None:
    """What create_engine and the driver would check, minus the connection."""
    url = res.url
    assert res.ok and url is not None and res.backend is not None
    assert make_url(url) is url
    dialect = url.get_dialect()()
    _, params = dialect.create_connect_args(url)
    if res.backend == "postgresql":
        assert url.drivername == "postgresql+psycopg"
        make_conninfo("", **params)  # libpq validates every keyword here
        explicit: dict[str, Any] = dict(url.query)
        for key, value in (
            ("host", url.host),
            ("port", url.port),
            ("dbname", url.database),
            ("user", url.username),
            ("password", url.password),
        ):
            if value is not None:
                explicit.setdefault(key, value)
        make_conninfo("", **explicit)
    elif res.backend == "mysql":
        assert url.drivername in ("mysql+pymysql", "mariadb+pymysql")
        assert set(url.query) <= PYMYSQL_PARAMS | SA_FOLDED_SSL
        assert set(params) <= PYMYSQL_PARAMS
    else:
        assert url.drivername == "sqlite+pysqlite"
        assert not url.query


def all_text(res: Resolution) -> str:
    """Everything this module could let reach a log line or an HTTP response."""
    parts = [*res.repairs, *res.errors, repr(res), str(res), str(res.masked_url())]
    if res.url is not None:
        parts += [repr(res.url), str(res.url)]
    return "\n".join(parts)


def assert_no_secret(raw: str, res: Resolution) -> None:
    text = all_text(res)
    for secret in SECRETS:
        if secret in raw:
            assert secret not in text


# --- accepted URLs ---------------------------------------------------------------------

NEON_HOST = "ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech"
NEON = f"postgresql://alex_neon:npg_AbC123dEfXyZ@{NEON_HOST}/neondb"
NEON_Q = NEON + "?sslmode=require&channel_binding=require"
HEROKU_HOST = "ec2-3-215-57-87.compute-1.amazonaws.com"
DO_HOST = "db-postgresql-nyc3-12345-do-user-1234567-0.b.db.ondigitalocean.com"
REQUIRE = {"sslmode": "require"}

# id, raw value, expected URL parts (only the keys given are checked), repair fragments
ACCEPTED: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    (
        "neon pooled with channel binding",
        NEON_Q,
        {
            "drivername": "postgresql+psycopg",
            "username": "alex_neon",
            "password": "npg_AbC123dEfXyZ",
            "host": NEON_HOST,
            "port": None,
            "database": "neondb",
            "query": {"sslmode": "require", "channel_binding": "require"},
        },
        (),
    ),
    (
        "neon psql paste, single quotes",
        f"psql '{NEON_Q}'",
        {
            "host": NEON_HOST,
            "password": "npg_AbC123dEfXyZ",
            "query": dict(REQUIRE, channel_binding="require"),
        },
        ("psql", "quotes"),
    ),
    (
        "neon psql paste, double quotes, cell label, trailing newline",
        'psql "postgresql://alex_neon:npg_AbC123dEfXyZ@ep-x-1.c-2.us-east-1.aws.neon.tech/neondb?sslmode=require"\n',
        {"host": "ep-x-1.c-2.us-east-1.aws.neon.tech", "query": REQUIRE},
        ("psql", "quotes", "line breaks"),
    ),
    (
        "neon SNI workaround option",
        NEON + "?sslmode=require&options=endpoint%3Dep-cool-darkness-a1b2c3d4",
        {"query": {"sslmode": "require", "options": "endpoint=ep-cool-darkness-a1b2c3d4"}},
        (),
    ),
    (
        "supabase pooler, postgres scheme",
        "postgres://postgres.abcdefghijklmnopqrst:Sup4base_pw_77@aws-0-us-east-1.pooler.supabase.com:6543/postgres",
        {
            "drivername": "postgresql+psycopg",
            "username": "postgres.abcdefghijklmnopqrst",
            "password": "Sup4base_pw_77",
            "port": 6543,
            "database": "postgres",
        },
        ("postgresql+psycopg",),
    ),
    (
        "heroku with 64-hex password",
        f"postgres://uhk2b3c4d5e6f7:{HEX64}@{HEROKU_HOST}:5432/d9ak1k2l3m4n5",
        {"username": "uhk2b3c4d5e6f7", "password": HEX64, "host": HEROKU_HOST, "port": 5432},
        ("postgres://",),
    ),
    (
        "render internal single-label host",
        f"postgres://{USER}:{PW}@dpg-cn1abc2def3ghi4jkl5m-a/render_db",
        {"host": "dpg-cn1abc2def3ghi4jkl5m-a", "database": "render_db"},
        (),
    ),
    (
        "render external",
        f"postgresql://{USER}:{PW}@dpg-cn1abc2def3ghi4jkl5m-a.oregon-postgres.render.com/render_db",
        {"host": "dpg-cn1abc2def3ghi4jkl5m-a.oregon-postgres.render.com"},
        (),
    ),
    (
        "aiven postgres",
        "postgres://avnadmin:AVNS_k3yZq8Pw@pg-3b2f1a-proj.aivencloud.com:12691/defaultdb?sslmode=require",
        {"port": 12691, "database": "defaultdb", "query": REQUIRE},
        (),
    ),
    (
        "railway public proxy",
        f"postgresql://postgres:{PW}@roundhouse.proxy.rlwy.net:41234/railway",
        {"host": "roundhouse.proxy.rlwy.net", "port": 41234, "database": "railway"},
        (),
    ),
    (
        "railway private",
        f"postgresql://postgres:{PW}@postgres.railway.internal:5432/railway",
        {"host": "postgres.railway.internal"},
        (),
    ),
    (
        "digitalocean",
        f"postgresql://doadmin:{PW}@{DO_HOST}:25060/defaultdb?sslmode=require",
        {"host": DO_HOST, "port": 25060, "query": REQUIRE},
        (),
    ),
    (
        "fly managed postgres",
        f"postgresql://fly-user:{PW}@pgbouncer.9g3k2l.flympg.net/fly-db",
        {"username": "fly-user", "database": "fly-db"},
        (),
    ),
    (
        "prisma flags dropped",
        f"postgresql://{USER}:{PW}@db.example.com:5432/app?pgbouncer=true&connection_limit=1",
        {"query": {}},
        ("pgbouncer", "connection_limit"),
    ),
    (
        "prisma schema and pool options dropped",
        f"postgresql://{USER}:{PW}@db.example.com/app?schema=public&pool_timeout=10&socket_timeout=5",
        {"query": {}},
        ("schema", "pool_timeout", "socket_timeout"),
    ),
    (
        "asyncpg scheme and ssl=require",
        f"postgresql+asyncpg://{USER}:{PW}@db.example.com/app?ssl=require&prepared_statement_cache_size=0",
        {"drivername": "postgresql+psycopg", "query": REQUIRE},
        ("sslmode=require", "prepared_statement_cache_size", "postgresql+asyncpg"),
    ),
    (
        "mixed-case Prisma flag dropped",
        f"postgresql://{USER}:{PW}@db.example.com/app?PgBouncer=true",
        {"query": {}},
        ("pgbouncer",),
    ),
    (
        "ssl=true becomes sslmode=require",
        f"postgresql://{USER}:{PW}@db.example.com/app?ssl=true",
        {"query": REQUIRE},
        ("sslmode=require",),
    ),
    (
        "ssl and sslmode agreeing",
        f"postgresql://{USER}:{PW}@db.example.com/app?ssl=verify-full&sslmode=verify-full",
        {"query": {"sslmode": "verify-full"}},
        (),
    ),
    (
        "sslmode in upper case",
        f"postgresql://{USER}:{PW}@db.example.com/app?sslmode=REQUIRE",
        {"query": REQUIRE},
        ("case",),
    ),
    (
        "option name in mixed case",
        f"postgresql://{USER}:{PW}@db.example.com/app?SSLMode=require",
        {"query": REQUIRE},
        ("lower case",),
    ),
    (
        "newer libpq keywords and sslrootcert=system",
        f"postgresql://{USER}:{PW}@db.example.com/app?sslmode=verify-full&sslrootcert=system"
        "&sslnegotiation=direct&target_session_attrs=read-write&connect_timeout=10",
        {
            "query": {
                "sslmode": "verify-full",
                "sslrootcert": "system",
                "sslnegotiation": "direct",
                "target_session_attrs": "read-write",
                "connect_timeout": "10",
            }
        },
        (),
    ),
    (
        "plus in an option value stays a plus",
        f"postgresql://{USER}:{PW}@db.example.com/app?application_name=todo+api",
        {"query": {"application_name": "todo+api"}},
        (),
    ),
    (
        "identical repeated option merged",
        f"postgresql://{USER}:{PW}@db.example.com/app?sslmode=require&sslmode=require",
        {"query": REQUIRE},
        ("repeated",),
    ),
    (
        "pgsql scheme",
        f"pgsql://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg"},
        ("pgsql",),
    ),
    (
        "psycopg2 scheme",
        f"postgresql+psycopg2://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg"},
        ("psycopg2",),
    ),
    (
        "pg8000 scheme",
        f"postgresql+pg8000://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg"},
        ("pg8000",),
    ),
    (
        "uppercase scheme",
        f"POSTGRESQL://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg"},
        ("lower case",),
    ),
    (
        "mixed-case postgres scheme",
        f"Postgres://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg"},
        ("lower case", "postgres://"),
    ),
    (
        "plain postgresql needs no scheme repair",
        f"postgresql://{USER}:{PW}@db.example.com/app",
        {"drivername": "postgresql+psycopg", "username": USER, "password": PW},
        (),
    ),
    # passwords: raw special characters are taken literally, encoded ones decoded
    (
        "raw password with @ : / # ? % + space",
        f"postgresql://{USER}:p@ss:w/rd#?% +x@db.example.com:5432/app",
        {"username": USER, "password": "p@ss:w/rd#?% +x", "host": "db.example.com"},
        ("exactly as written",),
    ),
    (
        "raw password with @ (last @ wins)",
        f"postgres://{USER}:p@ss@db.example.com/app",
        {"password": "p@ss", "host": "db.example.com"},
        ("exactly as written",),
    ),
    (
        "raw non-ASCII password with emoji",
        f"postgresql://{USER}:pä$$wörd✓🔑@db.example.com/app",
        {"password": "pä$$wörd✓🔑"},
        (),
    ),
    (
        "percent-encoded @",
        f"postgresql://{USER}:p%40ss@db.example.com/app",
        {"password": "p@ss"},
        (),
    ),
    (
        "encoded special characters",
        f"postgresql://{USER}:p%40ss%3Aw%2Frd%23%3F%25%20%2Bx@db.example.com/app",
        {"password": "p@ss:w/rd#?% +x"},
        (),
    ),
    (
        "%41 decodes like SQLAlchemy and libpq",
        f"postgresql://{USER}:a%41b@h.example/app",
        {"password": "aAb"},
        (),
    ),
    (
        "%2541 is a literal %41",
        f"postgresql://{USER}:a%2541b@h.example/app",
        {"password": "a%41b"},
        (),
    ),
    ("plus stays plus", f"postgresql://{USER}:a+b@h.example/app", {"password": "a+b"}, ()),
    ("lone percent stays", f"postgresql://{USER}:100%zz@h.example/app", {"password": "100%zz"}, ()),
    (
        "invalid UTF-8 escape kept literally",
        f"postgresql://{USER}:ab%C3x@h.example/app",
        {"password": "ab%C3x"},
        ("not valid percent-encoding",),
    ),
    ("encoded user name", "postgresql://us%40er:pw@h.example/app", {"username": "us@er"}, ()),
    (
        "user without password",
        f"postgresql://{USER}@h.example/app",
        {"username": USER, "password": None},
        (),
    ),
    (
        "empty password",
        f"postgresql://{USER}:@h.example/app",
        {"username": USER, "password": None},
        (),
    ),
    # paste damage
    ("trailing CRLF", NEON_Q + "\r\n", {"database": "neondb"}, ("line breaks",)),
    ("leading spaces and tab", "  \t" + NEON_Q, {"database": "neondb"}, ("spaces",)),
    ("BOM", "\ufeff" + NEON_Q, {"database": "neondb"}, ("byte-order mark",)),
    ("trailing NBSP", NEON_Q + "\u00a0", {"database": "neondb"}, ("non-breaking",)),
    ("zero-width space", "\u200b" + NEON_Q + "\u200b", {"database": "neondb"}, ("zero-width",)),
    ("double quotes", f'"{NEON_Q}"', {"database": "neondb"}, ("quotes",)),
    ("single quotes", f"'{NEON_Q}'", {"database": "neondb"}, ("quotes",)),
    ("backticks", f"`{NEON_Q}`", {"database": "neondb"}, ("quotes",)),
    ("curly double quotes", f"\u201c{NEON_Q}\u201d", {"database": "neondb"}, ("quotes",)),
    ("curly single quotes", f"\u2018{NEON_Q}\u2019", {"database": "neondb"}, ("quotes",)),
    (
        "quotes inside whitespace",
        f'  "postgres://{USER}:{PW}@db.example.com/app"\n',
        {"database": "app", "drivername": "postgresql+psycopg"},
        ("quotes", "line breaks"),
    ),
    (
        "export with quotes",
        f'export DATABASE_URL="postgres://{USER}:{PW}@db.example.com/app"',
        {"password": PW},
        ("export", "DATABASE_URL=", "quotes"),
    ),
    (
        "env file line",
        f"DATABASE_URL='postgresql://{USER}:{PW}@db.example.com/app'",
        {"password": PW},
        ("DATABASE_URL=",),
    ),
    (
        "other variable name",
        f"POSTGRES_URL = postgresql://{USER}:{PW}@db.example.com/app",
        {"password": PW},
        ("NAME=",),
    ),
    (
        "jdbc prefix with credentials as options",
        f"jdbc:postgresql://db.example.com:5432/app?user={USER}&password={PW}",
        {"username": USER, "password": PW, "query": {}},
        ("jdbc:", "'user'", "'password'"),
    ),
    (
        "password option fills missing password",
        f"postgresql://{USER}@db.example.com/app?password={PW}",
        {"username": USER, "password": PW, "query": {}},
        ("'password'",),
    ),
    (
        "dbname option",
        f"postgresql://{USER}:{PW}@db.example.com?dbname=app",
        {"database": "app", "query": {}},
        ("dbname",),
    ),
    # hosts
    (
        "IPv6 loopback",
        f"postgresql://{USER}:{PW}@[::1]:5432/app",
        {"host": "::1", "port": 5432},
        (),
    ),
    ("IPv6 address", f"postgresql://{USER}:{PW}@[2001:db8::10]/app", {"host": "2001:db8::10"}, ()),
    (
        "unix socket via host option",
        "postgresql:///app?host=/var/run/postgresql",
        {"host": None, "database": "app", "query": {"host": "/var/run/postgresql"}},
        (),
    ),
    (
        "unix socket with port option",
        f"postgresql://{USER}:{PW}@/app?host=/tmp&port=5433",
        {"query": {"host": "/tmp", "port": "5433"}},
        (),
    ),
    (
        "multi-host without ports",
        f"postgresql://{USER}:{PW}@h1.example.com,h2.example.com/app?target_session_attrs=primary",
        {"host": "h1.example.com,h2.example.com", "port": None},
        (),
    ),
    (
        # libpq reads the port as belonging to the last host only (conninfo_to_dict
        # gives port=',5432'); the first uses the default.
        "multi-host with a port on the last host only",
        f"postgresql://{USER}:{PW}@h1.example.com,h2.example.com:5432/app?target_session_attrs=primary",
        {
            "host": None,
            "port": None,
            "query": {
                "host": "h1.example.com,h2.example.com",
                "port": ",5432",
                "target_session_attrs": "primary",
            },
        },
        ("?host=H1,H2&port=P1,P2",),
    ),
    (
        "per-host ports",
        f"postgresql://{USER}:{PW}@h1:5432,h2:5433/app",
        {"host": None, "port": None, "query": {"host": "h1,h2", "port": "5432,5433"}},
        ("?host=H1,H2&port=P1,P2",),
    ),
    (
        "no host: libpq's default socket",
        "postgresql:///app",
        {"host": None, "port": None, "database": "app", "query": {}},
        ("Unix socket", "default directory"),
    ),
    (
        "no host with credentials",
        f"postgresql://{USER}:{PW}@/app",
        {"host": None, "username": USER, "password": PW, "query": {}},
        ("Unix socket",),
    ),
    (
        "multi-host as options",
        f"postgresql://{USER}:{PW}@/app?host=h1.example.com,h2.example.com&port=5432,5433",
        {"host": None, "query": {"host": "h1.example.com,h2.example.com", "port": "5432,5433"}},
        (),
    ),
    (
        "libpq socket directory as encoded host",
        f"postgresql://{USER}@%2Fvar%2Frun%2Fpostgresql/app",
        {"host": None, "query": {"host": "/var/run/postgresql"}},
        ("?host=",),
    ),
    (
        "encoded socket directory with port",
        f"postgresql://{USER}:{PW}@%2Ftmp:5433/app",
        {"host": None, "query": {"host": "/tmp", "port": "5433"}},
        ("?host=",),
    ),
    ("underscore host (docker)", f"postgresql://{USER}:{PW}@my_db:5432/app", {"host": "my_db"}, ()),
    # MySQL / MariaDB
    (
        "aiven mysql ssl-mode",
        "mysql://avnadmin:AVNS_k3yZq8Pw@mysql-1f2e3d-proj.a.aivencloud.com:12692/defaultdb?ssl-mode=REQUIRED",
        {"drivername": "mysql+pymysql", "port": 12692, "query": {}, "mysql_ssl_mode": "REQUIRED"},
        ("ssl-mode",),
    ),
    (
        "cleardb reconnect dropped",
        f"mysql://{USER}:{PW}@us-cluster-east-01.k8s.cleardb.net/heroku_0123456789abcde?reconnect=true",
        {"query": {}, "mysql_ssl_mode": None},
        ("reconnect",),
    ),
    (
        "planetscale verify identity",
        f"mysql://{USER}:{PW}@aws.connect.psdb.cloud/my-db?ssl-mode=VERIFY_IDENTITY",
        {"host": "aws.connect.psdb.cloud", "mysql_ssl_mode": "VERIFY_IDENTITY"},
        (),
    ),
    (
        "planetscale @primary database",
        f"mysql://{USER}:{PW}@aws.connect.psdb.cloud/@primary",
        {"host": "aws.connect.psdb.cloud", "database": "@primary", "password": PW},
        (),
    ),
    (
        "ssl_mode lower case",
        f"mysql://{USER}:{PW}@h.example/app?ssl_mode=verify_ca",
        {"mysql_ssl_mode": "VERIFY_CA"},
        (),
    ),
    (
        "sslmode disabled",
        f"mysql://{USER}:{PW}@h.example/app?sslmode=disabled",
        {"mysql_ssl_mode": "DISABLED"},
        (),
    ),
    (
        "JDBC sslMode",
        f"mysql://{USER}:{PW}@h.example/app?sslMode=REQUIRED",
        {"mysql_ssl_mode": "REQUIRED"},
        (),
    ),
    (
        "ssl=true",
        f"mysql://{USER}:{PW}@h.example/app?ssl=true",
        {"mysql_ssl_mode": "REQUIRED", "query": {}},
        (),
    ),
    (
        "ssl_disabled=true",
        f"mysql://{USER}:{PW}@h.example/app?ssl_disabled=true",
        {"mysql_ssl_mode": "DISABLED"},
        (),
    ),
    (
        "kept PyMySQL options",
        f"mysql://{USER}:{PW}@h.example:3306/app?charset=utf8mb4&ssl_ca=/etc/ssl/certs/ca.pem"
        "&ssl_check_hostname=true&connect_timeout=10&read_timeout=30",
        {
            "query": {
                "charset": "utf8mb4",
                "ssl_ca": "/etc/ssl/certs/ca.pem",
                "ssl_check_hostname": "true",
                "connect_timeout": "10",
                "read_timeout": "30",
            }
        },
        (),
    ),
    (
        "mysql2 scheme",
        f"mysql2://{USER}:{PW}@h.example/app",
        {"drivername": "mysql+pymysql"},
        ("mysql2",),
    ),
    (
        "mysqldb driver",
        f"mysql+mysqldb://{USER}:{PW}@h.example/app",
        {"drivername": "mysql+pymysql"},
        ("mysqldb",),
    ),
    (
        "aiomysql driver",
        f"mysql+aiomysql://{USER}:{PW}@h.example/app",
        {"drivername": "mysql+pymysql"},
        (),
    ),
    (
        "pymysql unchanged",
        f"mysql+pymysql://{USER}:{PW}@h.example/app",
        {"drivername": "mysql+pymysql"},
        (),
    ),
    (
        "mariadb",
        f"mariadb://{USER}:{PW}@h.example/app",
        {"drivername": "mariadb+pymysql"},
        ("mariadb",),
    ),
    (
        "mariadb connector",
        f"MariaDB+mariadbconnector://{USER}:{PW}@h.example/app",
        {"drivername": "mariadb+pymysql"},
        (),
    ),
    (
        "mysql raw @ password",
        f"mysql://{USER}:p@ss@h.example/app",
        {"password": "p@ss", "host": "h.example"},
        (),
    ),
    # SQLite
    ("sqlite in-memory", "sqlite://", {"drivername": "sqlite+pysqlite", "database": None}, ()),
    ("sqlite :memory:", "sqlite:///:memory:", {"database": ":memory:"}, ()),
    ("sqlite relative", "sqlite:///relative.db", {"database": "relative.db"}, ()),
    ("sqlite relative dir", "sqlite:///./data/app.db", {"database": "./data/app.db"}, ()),
    ("sqlite absolute", "sqlite:////abs/path.db", {"database": "/abs/path.db"}, ()),
    ("sqlite encoded space", "sqlite:////data/my%20app.db", {"database": "/data/my app.db"}, ()),
    ("sqlite pysqlite", "sqlite+pysqlite:///x.db", {"drivername": "sqlite+pysqlite"}, ()),
    (
        "sqlite aiosqlite made sync",
        "sqlite+aiosqlite:///x.db",
        {"drivername": "sqlite+pysqlite"},
        ("aiosqlite",),
    ),
    ("sqlite upper case", "SQLITE:///x.db", {"database": "x.db"}, ("lower case",)),
    ("sqlite://:memory:", "sqlite://:memory:", {"database": ":memory:"}, ("in-memory",)),
]


@pytest.mark.parametrize(
    ("raw", "expected", "repair_fragments"),
    [pytest.param(raw, exp, rep, id=name) for name, raw, exp, rep in ACCEPTED],
)
def test_accepted(raw: str, expected: dict[str, Any], repair_fragments: tuple[str, ...]) -> None:
    res = resolve_database_url(raw)
    assert res.errors == ()
    assert res.present and res.ok
    assert_usable_by_driver(res)
    url = res.url
    assert url is not None
    for key, value in expected.items():
        actual: Any = res.mysql_ssl_mode if key == "mysql_ssl_mode" else getattr(url, key)
        if key == "query":
            actual = dict(actual)
        assert actual == value, key
    repairs = " ".join(res.repairs)
    for fragment in repair_fragments:
        assert fragment in repairs
    assert_no_secret(raw, res)


# --- rejected URLs ---------------------------------------------------------------------

SUPABASE_TEMPLATE = (
    "postgres://[db-user].[project-ref]:[db-password]@aws-0-[aws-region].pooler.supabase.com:6543"
)
OK_BASE = f"postgresql://{USER}:{PW}@db.example.com:5432/app"
MY_BASE = f"mysql://{USER}:{PW}@db.example.com:3306/app"

# id, raw value, expected backend, fragments that must all appear in one error
REJECTED: list[tuple[str, object, str | None, tuple[str, ...]]] = [
    (
        "mongodb",
        "mongodb://u:p@cluster0.example.net/db",
        None,
        ("mongodb", "postgresql://", "sqlite"),
    ),
    ("redis", "redis://localhost:6379/0", None, ("redis", "not supported")),
    ("http", "http://example.com/db", None, ("http", "not supported")),
    ("https", "https://example.com/db", None, ("https", "not supported")),
    ("file", "file:///tmp/x.db", None, ("file", "not supported")),
    ("mssql", "mssql://sa:pw@h/db", None, ("mssql",)),
    ("mysqlx", "mysqlx://u:p@h:33060/db", None, ("mysqlx",)),
    ("cockroachdb", "cockroachdb://u@h:26257/db", None, ("cockroachdb",)),
    ("sqlcipher", "sqlite+pysqlcipher://:key@/x.db", None, ("not supported",)),
    ("bare password", "Pw9xQr7Lk2", None, ("postgresql://USER:PASSWORD@HOST:5432/DBNAME",)),
    ("words", "my database", None, ("not a database URL",)),
    ("host and port only", "db.example.com:5432", None, ("not a database URL",)),
    ("one slash", "postgres:/db.example.com/app", None, ("'://'",)),
    ("sqlite one slash", "sqlite:/x.db", None, ("':///'",)),
    ("libpq keyword string", "host=localhost dbname=app user=me", None, ("key=value", "URL")),
    ("unexpanded ${}", "${DATABASE_URL}", None, ("unexpanded",)),
    ("unexpanded $", "$DATABASE_URL", None, ("unexpanded",)),
    ("angle placeholder", "<your-database-url>", None, ("placeholder",)),
    ("stray opening quote", f'"{OK_BASE}', None, ("quote",)),
    ("stray closing quote", f"{OK_BASE}'", None, ("quote",)),
    ("NUL byte", OK_BASE + "\x00", None, ("control character",)),
    ("two URLs on two lines", OK_BASE + "\n" + OK_BASE, None, ("control character",)),
    ("unpaired surrogate", OK_BASE + "\ud800", None, ("invalid Unicode",)),
    ("too long", OK_BASE + "?application_name=" + "a" * 5000, None, ("4096",)),
    ("not text", 12345, None, ("must be text",)),
    # placeholders
    (
        "supabase direct [YOUR-PASSWORD]",
        "postgresql://postgres:[YOUR-PASSWORD]@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
        "postgresql",
        ("password", "placeholder"),
    ),
    (
        "supabase pooler template user",
        SUPABASE_TEMPLATE,
        "postgresql",
        ("user name", "placeholder"),
    ),
    ("supabase pooler template host", SUPABASE_TEMPLATE, "postgresql", ("host", "placeholder")),
    (
        "host:port placeholder",
        "postgresql://user:password@host:port/database",
        "postgresql",
        ("HOST:PORT",),
    ),
    (
        "PORT placeholder",
        f"postgresql://{USER}:{PW}@db.example.com:PORT/app",
        "postgresql",
        ("placeholder",),
    ),
    (
        "<host> placeholder",
        f"postgresql://{USER}:{PW}@<host>:5432/app",
        "postgresql",
        ("placeholder",),
    ),
    (
        "${PGHOST} placeholder",
        f"postgresql://{USER}:{PW}@${{PGHOST}}:5432/app",
        "postgresql",
        ("placeholder",),
    ),
    (
        "$VAR password",
        f"postgresql://{USER}:$DB_PASSWORD@db.example.com/app",
        "postgresql",
        ("password", "placeholder"),
    ),
    (
        "<password>",
        f"postgresql://{USER}:<password>@db.example.com/app",
        "postgresql",
        ("password", "placeholder"),
    ),
    (
        "masked password",
        f"postgresql://{USER}:***@db.example.com/app",
        "postgresql",
        ("asterisks",),
    ),
    (
        "<db> placeholder",
        f"postgresql://{USER}:{PW}@db.example.com/<db>",
        "postgresql",
        ("database", "placeholder"),
    ),
    # host / port / database
    ("empty URL", "postgresql://", "postgresql", ("no database",)),
    ("mysql no host", f"mysql://{USER}:{PW}@/app", "mysql", ("no host",)),
    (
        "supabase pooler without database",
        "postgres://postgres.abcdefghijklmnopqrst:Sup4base_pw_77@aws-0-us-east-1.pooler.supabase.com:6543",
        "postgresql",
        ("no database", "/postgres"),
    ),
    (
        "no database",
        f"postgresql://{USER}:{PW}@db.example.com:5432",
        "postgresql",
        ("no database",),
    ),
    (
        "trailing slash only",
        f"postgresql://{USER}:{PW}@db.example.com:5432/",
        "postgresql",
        ("no database",),
    ),
    ("mysql no database", f"mysql://{USER}:{PW}@db.example.com", "mysql", ("no database",)),
    ("port 0", f"postgresql://{USER}:{PW}@db.example.com:0/app", "postgresql", ("1 and 65535",)),
    (
        "port 99999",
        f"postgresql://{USER}:{PW}@db.example.com:99999/app",
        "postgresql",
        ("1 and 65535",),
    ),
    (
        "port abc",
        f"postgresql://{USER}:{PW}@db.example.com:abc/app",
        "postgresql",
        ("not a number",),
    ),
    (
        "empty port",
        f"postgresql://{USER}:{PW}@db.example.com:/app",
        "postgresql",
        ("no port number",),
    ),
    (
        "signed port",
        f"postgresql://{USER}:{PW}@db.example.com:+5432/app",
        "postgresql",
        ("not a number",),
    ),
    ("mysql encoded socket host", f"mysql://{USER}:{PW}@%2Ftmp/app", "mysql", ("host name",)),
    ("mysql multi-host", f"mysql://{USER}:{PW}@h1,h2/app", "mysql", ("exactly one host",)),
    ("unbracketed IPv6", f"postgresql://{USER}:{PW}@::1:5432/app", "postgresql", ("brackets",)),
    ("space in host", f"postgresql://{USER}:{PW}@db example.com/app", "postgresql", ("host name",)),
    ("junk after IPv6", f"postgresql://{USER}:{PW}@[::1]x/app", "postgresql", ("host name",)),
    ("empty host in list", f"postgresql://{USER}:{PW}@h1,,h2/app", "postgresql", ("empty host",)),
    (
        "slash in database",
        f"postgresql://{USER}:{PW}@db.example.com/app/extra",
        "postgresql",
        ("database",),
    ),
    (
        "fragment in database",
        f"postgresql://{USER}:{PW}@db.example.com/app#prod",
        "postgresql",
        ("'#'",),
    ),
    ("trailing semicolon", f"postgresql://{USER}:{PW}@db.example.com/app;", "postgresql", ("';'",)),
    # credentials
    (
        "ambiguous @",
        f"postgresql://{USER}:a@h/d?x=1@db.example.com/app",
        "postgresql",
        ("ambiguous", "%40"),
    ),
    (
        "user twice",
        f"postgresql://{USER}:{PW}@db.example.com/app?user=other",
        "postgresql",
        ("user", "both"),
    ),
    (
        "password twice",
        f"postgresql://{USER}:{PW}@db.example.com/app?password=x",
        "postgresql",
        ("password", "both"),
    ),
    ("dbname twice", OK_BASE + "?dbname=other", "postgresql", ("dbname",)),
    # PostgreSQL options
    ("sslmode=required", OK_BASE + "?sslmode=required", "postgresql", ("sslmode", "'require'")),
    ("empty sslmode", OK_BASE + "?sslmode=", "postgresql", ("sslmode", "no value")),
    ("unknown option", OK_BASE + "?foo=bar", "postgresql", ("'foo'", "not a PostgreSQL")),
    ("JDBC currentSchema", OK_BASE + "?currentSchema=app", "postgresql", ("'currentSchema'",)),
    ("misspelt option", OK_BASE + "?sslmod=require", "postgresql", ("'sslmode'",)),
    (
        "same option in two spellings",
        OK_BASE + "?application_name=a&APPLICATION_NAME=b",
        "postgresql",
        ("'application_name'", "twice"),
    ),
    (
        "repeated different",
        OK_BASE + "?sslmode=disable&sslmode=require",
        "postgresql",
        ("more than once",),
    ),
    ("ssl=false not guessed", OK_BASE + "?ssl=false", "postgresql", ("'ssl'", "sslmode")),
    ("ssl=maybe", OK_BASE + "?ssl=maybe", "postgresql", ("'ssl'",)),
    ("ssl and sslmode disagree", OK_BASE + "?ssl=true&sslmode=disable", "postgresql", ("sslmode",)),
    ("channel_binding=yes", OK_BASE + "?channel_binding=yes", "postgresql", ("channel_binding",)),
    ("gssencmode bad", OK_BASE + "?gssencmode=on", "postgresql", ("gssencmode",)),
    ("sslnegotiation bad", OK_BASE + "?sslnegotiation=tls", "postgresql", ("sslnegotiation",)),
    (
        "TLSv1.4",
        OK_BASE + "?ssl_min_protocol_version=TLSv1.4",
        "postgresql",
        ("ssl_min_protocol_version",),
    ),
    ("sslsni=2", OK_BASE + "?sslsni=2", "postgresql", ("sslsni",)),
    ("sslcompression=yes", OK_BASE + "?sslcompression=yes", "postgresql", ("sslcompression",)),
    (
        "target_session_attrs=master",
        OK_BASE + "?target_session_attrs=master",
        "postgresql",
        ("target_session_attrs",),
    ),
    (
        "connect_timeout=abc",
        OK_BASE + "?connect_timeout=abc",
        "postgresql",
        ("connect_timeout", "whole number"),
    ),
    ("keepalives=-1", OK_BASE + "?keepalives=-1", "postgresql", ("keepalives",)),
    ("require_auth bad", OK_BASE + "?require_auth=plaintext", "postgresql", ("require_auth",)),
    (
        "sslrootcert=system weak",
        OK_BASE + "?sslrootcert=system&sslmode=require",
        "postgresql",
        ("verify-full",),
    ),
    ("prisma sslaccept pg", OK_BASE + "?sslaccept=strict", "postgresql", ("sslaccept", "sslmode")),
    (
        "both host forms",
        OK_BASE + "?host=other.example.com",
        "postgresql",
        ("host", "keep only one"),
    ),
    ("port option abc", "postgresql:///app?host=/tmp&port=abc", "postgresql", ("'port'",)),
    ("port count mismatch", "postgresql:///app?host=a,b,c&port=1,2", "postgresql", ("3 host(s)",)),
    (
        "port in host option and port",
        "postgresql:///app?host=h.example:5432&port=5433",
        "postgresql",
        ("carries a port",),
    ),
    ("bad host option", "postgresql:///app?host=bad%20host", "postgresql", ("'host'",)),
    ("invalid option name", OK_BASE + "?a%20b=1", "postgresql", ("invalid name",)),
    # MySQL options
    (
        "mysql PREFERRED",
        MY_BASE + "?ssl-mode=PREFERRED",
        "mysql",
        ("PREFERRED", "REQUIRED", "DISABLED"),
    ),
    ("mysql bad mode", MY_BASE + "?ssl-mode=STRICT", "mysql", ("VERIFY_IDENTITY",)),
    (
        "mysql ssl_disabled=false",
        MY_BASE + "?ssl_disabled=false",
        "mysql",
        ("ssl_disabled", "REQUIRED"),
    ),
    ("mysql ssl json", MY_BASE + '?ssl={"rejectUnauthorized":true}', "mysql", ("'ssl'",)),
    (
        "mysql conflicting modes",
        MY_BASE + "?ssl-mode=REQUIRED&ssl_disabled=true",
        "mysql",
        ("conflicting",),
    ),
    ("mysql sslaccept", MY_BASE + "?sslaccept=strict", "mysql", ("sslaccept", "VERIFY_IDENTITY")),
    ("mysql useSSL", MY_BASE + "?useSSL=true", "mysql", ("'useSSL'", "ssl-mode")),
    (
        "mysql unknown option",
        MY_BASE + "?serverTimezone=UTC",
        "mysql",
        ("'serverTimezone'", "not supported"),
    ),
    ("mysql connect_timeout=abc", MY_BASE + "?connect_timeout=abc", "mysql", ("connect_timeout",)),
    (
        "mysql ssl_check_hostname=maybe",
        MY_BASE + "?ssl_check_hostname=maybe",
        "mysql",
        ("true or false",),
    ),
    ("mysql bad charset", MY_BASE + "?charset=utf8%20mb4", "mysql", ("charset",)),
    ("mysql user twice", MY_BASE + "?user=x", "mysql", ("user", "both")),
    # SQLite
    ("sqlite two slashes", "sqlite://app.db", "sqlite", ("sqlite:///app.db",)),
    ("sqlite tilde", "sqlite:///~/app.db", "sqlite", ("'~'", "absolute")),
    ("sqlite tilde inside", "sqlite:////home/~user/app.db", "sqlite", ("'~'",)),
    ("sqlite options", "sqlite:///file:app.db?mode=ro&uri=true", "sqlite", ("options",)),
    ("sqlite no file", "sqlite:///", "sqlite", ("no SQLite file",)),
    ("sqlite directory", "sqlite:////data/", "sqlite", ("no SQLite file",)),
]


@pytest.mark.parametrize(
    ("raw", "backend", "fragments"),
    [pytest.param(raw, be, fr, id=name) for name, raw, be, fr in REJECTED],
)
def test_rejected(raw: Any, backend: str | None, fragments: tuple[str, ...]) -> None:
    res = resolve_database_url(raw)
    assert res.present
    assert not res.ok
    assert res.url is None and res.masked_url() is None
    assert res.backend == backend
    assert res.errors
    assert any(all(f in error for f in fragments) for error in res.errors), res.errors
    for error in res.errors:
        assert error.endswith((".", "?")), error
        assert error[0].isupper(), error
    if isinstance(raw, str) and len(raw) > 20:
        # Messages never echo the value itself (it may be a pasted password).
        assert all(raw.strip() not in e for e in res.errors)
    if isinstance(raw, str):
        assert_no_secret(raw, res)


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "\n", "\ufeff", "None", "none", "NULL", "null", "undefined", "Undefined",
     '""', "''", "' '", "export DATABASE_URL=", 'DATABASE_URL=""', "“”"],
)  # fmt: skip
def test_missing(raw: str | None) -> None:
    res = resolve_database_url(raw)
    assert not res.present
    assert res.backend is None and res.url is None
    assert res.errors == () and res.repairs == ()
    assert not res.ok and res.masked_url() is None and res.secrets() == ()


# --- interface details -----------------------------------------------------------------


def test_masking_hides_user_password_and_secret_options() -> None:
    raw = f"postgresql://{USER}:{PW}@db.example.com/app?sslpassword=KeyPw_sslpass1&sslmode=require"
    res = resolve_database_url(raw)
    assert res.ok and res.url is not None
    assert res.url.username == USER and res.url.password == PW
    assert res.masked_url() == (
        "postgresql+psycopg://***:***@db.example.com/app?sslpassword=***&sslmode=require"
    )
    assert mask_url(res.url) == res.masked_url()
    assert set(res.secrets()) == {PW, "KeyPw_sslpass1"}
    assert res.usernames() == (USER,)
    assert_no_secret(raw, res)
    # The real values are still there for the engine.
    assert res.url.render_as_string(hide_password=False).startswith(
        f"postgresql+psycopg://{USER}:{PW}@"
    )


def test_engine_repr_does_not_show_user_name() -> None:
    res = resolve_database_url(f"postgresql://{USER}:{PW}@db.example.com/app")
    assert res.url is not None
    engine = create_engine(res.url)  # no connection is made
    try:
        assert USER not in repr(engine) and PW not in repr(engine)
        assert engine.url.username == USER
    finally:
        engine.dispose()


def test_mask_url_works_on_plain_urls() -> None:
    url = URL.create("postgresql+psycopg", username="u1", password="p1", host="h", database="d")
    assert mask_url(url) == "postgresql+psycopg://***:***@h/d"
    assert mask_url(URL.create("sqlite+pysqlite", database="/data/app.db")) == (
        "sqlite+pysqlite:////data/app.db"
    )


def test_failed_resolution_still_reports_secrets_for_redaction() -> None:
    raw = f"postgres://{USER}:{PW}%21@db.example.com:5432"
    res = resolve_database_url(raw)
    assert not res.ok
    assert {f"{PW}%21", f"{PW}!"} <= set(res.secrets())
    assert USER in res.usernames()
    assert USER not in repr(res) and PW not in repr(res)
    assert "no database" in repr(res)


def test_value_that_is_not_a_url_is_treated_as_secret() -> None:
    # Someone pasted the password into DATABASE_URL.
    res = resolve_database_url(f"  {PW}\n")
    assert not res.ok and res.secrets() == (PW,)
    assert PW not in all_text(res)


def test_secret_query_values_of_rejected_url_are_reported() -> None:
    res = resolve_database_url(f"{OK_BASE}?sslpassword=KeyPw_sslpass1&sslmode=bogus")
    assert not res.ok and "KeyPw_sslpass1" in res.secrets()


def test_encoded_spelling_is_a_secret_too() -> None:
    res = resolve_database_url(f"postgresql://{USER}:p%40ss{PW}@db.example.com/app")
    assert res.ok and res.url is not None and res.url.password == f"p@ss{PW}"
    assert {f"p@ss{PW}", f"p%40ss{PW}"} <= set(res.secrets())


def test_source_name_is_used_in_messages_and_assignment() -> None:
    res = resolve_database_url("PRIMARY_DB=mongodb://x/y", source="PRIMARY_DB")
    assert res.source == "PRIMARY_DB"
    assert any("PRIMARY_DB" in e for e in res.errors)
    assert any("'PRIMARY_DB='" in r for r in res.repairs)


def test_bad_source_falls_back_to_default() -> None:
    res = resolve_database_url("nonsense", source=None)  # type: ignore[arg-type]
    assert res.source == "DATABASE_URL" and res.errors


def test_bytes_are_decoded() -> None:
    res = resolve_database_url(b"postgresql://u@h.example/app")  # type: ignore[arg-type]
    assert res.ok


def test_url_is_built_from_parts_not_reparsed() -> None:
    # render_as_string does not escape everything (sqlalchemy#10738), yet the URL
    # object carries the exact password.
    res = resolve_database_url(f"postgresql://{USER}:100%25%20sure@h.example/app")
    assert res.url is not None and res.url.password == "100% sure"
    assert make_url(res.url).password == "100% sure"


def test_resolution_is_frozen() -> None:
    res = resolve_database_url("sqlite://")
    with pytest.raises(AttributeError):
        res.errors = ("x",)  # type: ignore[misc]


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://h.example.com/app?user=a&User=b",
        "postgresql://h.example.com/app?password=one&PASSWORD=two",
    ],
)
def test_credential_option_spelled_twice_differently_is_an_error(raw: str) -> None:
    resolution = resolve_database_url(raw)
    assert not resolution.ok
    assert any("given twice" in error for error in resolution.errors)


def test_database_given_as_an_option_is_checked_for_placeholders() -> None:
    resolution = resolve_database_url("postgresql://u:p@db.example.com?dbname=%3Cdbname%3E")
    assert not resolution.ok
    assert any("placeholder" in error for error in resolution.errors)
    assert resolve_database_url("postgresql://u:p@db.example.com?dbname=app").ok


def test_the_placeholder_error_says_what_the_resolver_accepts() -> None:
    """It must not ask for percent-encoding the resolver does not need: the real
    password, pasted raw with @ : / # ?, is then used exactly."""
    template = (
        "postgresql://postgres.abc:[YOUR-PASSWORD]"
        "@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    )
    refused = resolve_database_url(template)
    assert len(refused.errors) == 1
    assert "percent-encode" not in refused.errors[0]
    assert "@ : / # ? may be pasted as they are" in refused.errors[0]
    pasted = resolve_database_url(template.replace("[YOUR-PASSWORD]", "p@ss:w/o#r?d"))
    assert pasted.ok, pasted.errors
    assert pasted.url is not None and pasted.url.password == "p@ss:w/o#r?d"


@pytest.mark.parametrize(
    ("raw", "expected", "not_expected"),
    [
        # Two ports is not an IPv6 address, whatever the count of ':'.
        ("postgresql://u:p@127.0.0.1:5432:6543/db", "gives one host 2 ports", "IPv6"),
        ("postgresql://u:p@db.example.com:5432:6543:7000/db", "3 ports", "IPv6"),
        ("mysql://u:p@db.example.com:3306:3307/db", "HOST:3306", "IPv6"),
        (
            "postgresql://u:p@db.example.com:5432:x/db",
            "port in DATABASE_URL is not a number",
            "IPv6",
        ),
        # Real IPv6 literals keep the advice, with the URL's own scheme in the example.
        ("postgresql://u:p@2001:db8::1/db", "must be in brackets", "ports"),
        ("postgresql://u:p@fe80::1%25eth0/db", "must be in brackets", "ports"),
        ("mysql://u:p@::1/db", "mysql://USER:PASSWORD@[2001:db8::1]:3306", "postgresql://"),
    ],
)
def test_colons_after_the_host_are_told_apart(raw: str, expected: str, not_expected: str) -> None:
    res = resolve_database_url(raw)
    assert not res.ok
    text = " ".join(res.errors)
    assert expected in text and not_expected not in text, res.errors


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PGHOST": "127.0.0.1", "PGPORT": "abc"}, "PGPORT is not a number"),
        ({"PGHOST": "127.0.0.1", "PGPORT": "99999"}, "PGPORT must be between 1 and 65535"),
        ({"PGHOST": "/var/run/postgresql", "PGPORT": "abc"}, "PGPORT must be port numbers"),
        ({"PGHOST": "bad host"}, "PGHOST contains characters"),
    ],
)
def test_the_pg_variables_are_named_not_their_url(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    from src.config.settings import load_settings

    for name, value in {"PGUSER": "app", "PGPASSWORD": "pw", "PGDATABASE": "db", **env}.items():
        monkeypatch.setenv(name, value)
    raw, source = load_settings().primary_url_input
    res = resolve_database_url(raw, source=source)
    assert any(error.startswith(expected) for error in res.errors), res.errors
    assert "PGHOST/PGUSER" not in " ".join(res.errors)
