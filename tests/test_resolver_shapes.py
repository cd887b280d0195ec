"""URL shapes from a corpus of real DATABASE_URLs the resolver used to misread.

Pure: no network. Each section is one kind of shape: template words, libpq host
lists, Unix sockets, internationalised host names, scheme aliases, a password
without a user name, and connection character sets. The end-to-end proofs against
the real servers are in test_url_shapes_live.py.
"""

from __future__ import annotations

import idna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from src.database.resolver import (
    Resolution,
    describe_server,
    mask_url,
    resolve_database_url,
    server_hosts,
)
from tests.test_resolver import all_text, assert_usable_by_driver
from tests.test_resolver_properties import FAST

PW = "Pw9xQr7Lk2"


def accepted(raw: str) -> Resolution:
    res = resolve_database_url(raw)
    assert res.ok, res.errors
    assert_usable_by_driver(res)
    return res


def rejected(raw: str, *fragments: str) -> Resolution:
    res = resolve_database_url(raw)
    assert not res.ok and res.url is None
    assert any(all(f in e for f in fragments) for e in res.errors), res.errors
    for error in res.errors:
        assert error[0].isupper() and error.endswith("."), error
    return res


def driver_params(res: Resolution) -> dict[str, object]:
    assert res.url is not None
    _, params = res.url.get_dialect()().create_connect_args(res.url)
    return dict(params)


# --- 1. template words left in a part ------------------------------------------------


def test_all_caps_template_url_names_every_part() -> None:
    res = resolve_database_url("postgresql://USER:PASSWORD@HOST:5432/DATABASE")
    assert not res.ok and res.backend == "postgresql"
    errors = " | ".join(res.errors)
    for part in ("user name", "password", "host name", "database name"):
        assert f"The {part} in DATABASE_URL is still a template placeholder" in errors


# Template words an .env.example, README or dashboard leaves in one part.
TEMPLATE_WORDS = [
    "USER", "USERNAME", "PASSWORD", "PASS", "HOST", "HOSTNAME", "PORT", "DATABASE",
    "DB_NAME", "DBNAME", "DB", "YOUR_PASSWORD", "your-password", "yourpassword",
    "YourPassword", "your_db_name", "your-database", "MY_PASSWORD", "MY_DB", "MYDB",
    "DB_PASSWORD", "POSTGRES_PASSWORD", "DB-HOST", "YOUR_PASSWORD_HERE",
]  # fmt: skip
# Real values of the same look: lower or mixed case, or any digit or symbol.
REAL_WORDS = [
    "postgres", "db", "password", "pass", "host", "database", "dbname", "user", "Password1!",
    "PASSWORD1", "DB2", "mydb", "my_db", "mypassword", "mysecretpassword", "Db", "User",
    "ROOT", "ADMIN", "POSTGRES", "APP", "your", "yours", "yourself", "YOUR", "yourdb2",
    "PASS!", "Your_Password_1",
]  # fmt: skip
PARTS = {
    "user name": "postgresql://{}:" + PW + "@db.example.com:5432/app",
    "password": "postgresql://app_user:{}@db.example.com:5432/app",
    "host name": "postgresql://app_user:" + PW + "@{}:5432/app",
    "database name": "postgresql://app_user:" + PW + "@db.example.com:5432/{}",
}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("word", TEMPLATE_WORDS)
def test_template_word_in_any_part_is_refused(part: str, word: str) -> None:
    rejected(PARTS[part].format(word), f"The {part} in DATABASE_URL", "placeholder")


@pytest.mark.parametrize(
    ("part", "word"),
    [
        (part, word)
        for part in PARTS
        for word in REAL_WORDS
        # A "!" is no host name at all: that word is checked in the other parts only.
        if not (part == "host name" and "!" in word)
    ],
)
def test_real_value_of_the_same_look_is_kept(part: str, word: str) -> None:
    res = accepted(PARTS[part].format(word))
    assert res.url is not None
    got = {
        "user name": res.url.username,
        "password": res.url.password,
        "host name": res.url.host,
        "database name": res.url.database,
    }[part]
    assert got == word


@pytest.mark.parametrize(
    ("raw", "part"),
    [
        ("postgresql://db.example.com/app?user=USER&password=x1", "user name"),
        ("postgresql://u1@db.example.com/app?password=YOUR_PASSWORD", "password"),
        ("postgresql://u1@db.example.com?dbname=DBNAME", "database name"),
        ("postgresql://u1@/app?host=HOST", "'host'"),
        ("postgresql://u1@db.example.com/app?user=x&password=PASSWORD", "password"),
        ("mysql://USERNAME:" + PW + "@db.example.com:3306/app", "user name"),
        ("mysql://app:" + PW + "@db.example.com:3306/DB_NAME", "database name"),
        ("postgresql://u1:YOUR%5FPASSWORD@db.example.com/app", "password"),
        ("postgresql://u1:" + PW + "@h1.example.com:5432,HOST:5433/app", "host name"),
        ("postgresql://u1:" + PW + "@db.example.com:YOUR_PORT/app", "port"),
    ],
)
def test_template_words_as_options_lists_and_encodings(raw: str, part: str) -> None:
    rejected(raw, part, "placeholder")


# Built independently of the module: vocabulary words joined ALL CAPS, or after `your`.
ROLE = st.sampled_from(["USER", "USERNAME", "PASSWORD", "PASS", "HOST", "PORT", "DATABASE",
                        "DBNAME", "DB", "NAME"])  # fmt: skip
QUALIFIER = st.sampled_from(["YOUR", "MY", "DB", "POSTGRES", "MYSQL", "APP", "HERE", "THE"])
SEP = st.sampled_from(["", "_", "-"])


@st.composite
def all_caps_templates(draw: st.DrawFn) -> str:
    before = draw(st.lists(QUALIFIER, max_size=2))
    after = draw(st.lists(st.one_of(ROLE, QUALIFIER), max_size=2))
    words = [*before, draw(ROLE), *after]
    sep = draw(SEP)
    return sep.join(words)


@st.composite
def your_templates(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.one_of(ROLE, QUALIFIER), min_size=1, max_size=3))
    sep = draw(SEP)
    text = sep.join(["your", *words])
    # Any casing: yourpassword, YourPassword, YOUR_PASSWORD, your-Db-Name.
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))


@FAST
@given(word=st.one_of(all_caps_templates(), your_templates()), part=st.sampled_from(list(PARTS)))
def test_generated_template_words_are_refused(word: str, part: str) -> None:
    rejected(PARTS[part].format(word), f"The {part} in DATABASE_URL", "placeholder")


@FAST
@given(
    word=all_caps_templates(),
    part=st.sampled_from(list(PARTS)),
    where=st.integers(0, 40),
    how=st.sampled_from(["lower-one", "lower-all", "digit", "bang"]),
)
def test_template_words_made_real_are_kept(word: str, part: str, where: int, how: str) -> None:
    """The boundary from the other side: one lower-case letter, or one digit or symbol,
    makes an ALL-CAPS template word a real value (unless it starts with 'your')."""
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    i = letters[where % len(letters)]
    if how == "lower-one":
        real = word[:i] + word[i].lower() + word[i + 1 :]
    elif how == "lower-all":
        real = word.lower()
    elif how == "digit":
        real = word[:i] + "7" + word[i:]
    else:
        real = word + ("!" if part != "host name" else "1")
    if real.lower().startswith("your") and how.startswith("lower"):
        return  # still a your-template in any case
    res = accepted(PARTS[part].format(real))
    assert res.url is not None
    assert real in (res.url.username, res.url.password, res.url.host, res.url.database)


# --- 2. libpq host lists (HA failover) -----------------------------------------------

FAILOVER = "postgresql://u:p@host1:5432,host2:5432/db?target_session_attrs=read-write"


def test_failover_host_list_reaches_libpq_host_by_host() -> None:
    res = accepted(FAILOVER)
    assert res.url is not None and res.url.host is None and res.url.port is None
    assert dict(res.url.query) == {
        "host": "host1,host2",
        "port": "5432,5432",
        "target_session_attrs": "read-write",
    }
    params = driver_params(res)
    assert params["host"] == "host1,host2" and params["port"] == "5432,5432"
    assert params["user"] == "u" and params["password"] == "p" and params["dbname"] == "db"
    assert any("?host=H1,H2&port=P1,P2" in r for r in res.repairs)
    assert res.masked_url() == (
        "postgresql+psycopg://***:***@/db?host=host1,host2&port=5432,5432"
        "&target_session_attrs=read-write"
    )
    assert mask_url(res.url) == res.masked_url()
    assert set(res.secrets()) == {"p"} and res.usernames() == ("u",)
    assert server_hosts(res.url) == (("host1", 5432), ("host2", 5432))
    assert describe_server(res.url) == "host1:5432, host2:5432"


@pytest.mark.parametrize(
    ("hostport", "hosts", "ports"),
    [
        ("h1:5432,h2:5433,h3:5434", "h1,h2,h3", "5432,5433,5434"),
        ("h1:6432,h2", "h1,h2", "6432,"),  # libpq: h2 uses the default port
        ("h1,h2:6432", "h1,h2", ",6432"),  # libpq: h1 uses the default port
        ("[2001:db8::1]:5432,[::1]:5433", "2001:db8::1,::1", "5432,5433"),
        ("bücher-db.example.de:5432,h2:5433", "xn--bcher-db-65a.example.de,h2", "5432,5433"),
    ],
)
def test_host_lists_keep_each_port_with_its_host(hostport: str, hosts: str, ports: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    res = accepted(f"postgresql://u:{PW}@{hostport}/app")
    assert res.url is not None
    assert dict(res.url.query) == {"host": hosts, "port": ports}
    params = driver_params(res)
    assert (params["host"], params["port"]) == (hosts, ports)
    ascii_netloc = hostport.replace("bücher-db", "xn--bcher-db-65a")
    # The same reading libpq itself gives the URL.
    libpq = conninfo_to_dict(f"postgresql://{ascii_netloc}/app")
    assert (libpq["host"], libpq["port"]) == (hosts, ports)


def test_host_list_without_ports_stays_after_the_at() -> None:
    res = accepted(f"postgresql://u:{PW}@h1.example.com,h2.example.com/app")
    assert res.url is not None and res.url.host == "h1.example.com,h2.example.com"
    assert res.masked_url() == "postgresql+psycopg://***:***@h1.example.com,h2.example.com/app"
    assert describe_server(res.url) == "h1.example.com, h2.example.com"


@pytest.mark.parametrize(
    ("query", "hosts", "ports"),
    [
        # SQLAlchemy's documented spelling (psycopg2 dialect, "Specifying multiple fallback hosts").
        ("host=h1:5432&host=h2:5433", "h1,h2", "5432,5433"),
        ("host=h1&host=h2:5433&host=h3", "h1,h2,h3", ",5433,"),
        ("host=[::1]:5432&host=/var/run/postgresql", "::1,/var/run/postgresql", "5432,"),
    ],
)
def test_repeated_host_options_are_joined(query: str, hosts: str, ports: str) -> None:
    res = accepted(f"postgresql://u:{PW}@/app?{query}&target_session_attrs=primary")
    assert res.url is not None
    assert dict(res.url.query) == {"host": hosts, "port": ports, "target_session_attrs": "primary"}
    assert any("repeated option 'host'" in r for r in res.repairs)
    params = driver_params(res)
    assert (params["host"], params["port"]) == (hosts, ports)


def test_repeated_host_options_without_ports_keep_a_single_port_option() -> None:
    res = accepted(f"postgresql://u:{PW}@/app?host=h1&host=h2&port=6432")
    assert res.url is not None and dict(res.url.query) == {"host": "h1,h2", "port": "6432,6432"}
    assert (driver_params(res)["host"], driver_params(res)["port"]) == ("h1,h2", "6432,6432")


def test_one_port_for_a_host_option_list_is_given_to_each_host() -> None:
    # libpq uses one port for all hosts; SQLAlchemy refuses a count mismatch.
    res = accepted(f"postgresql://u:{PW}@/app?host=h1,h2,h3&port=6432")
    assert res.url is not None and res.url.query["port"] == "6432,6432,6432"
    assert driver_params(res)["port"] == "6432,6432,6432"


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        (f"postgresql://u:{PW}@/app?host=h1:1&host=h2&port=5", ("repeated option 'host'",)),
        (f"postgresql://u:{PW}@/app?host=h1:x&host=h2", ("repeated option 'host'",)),
        (f"postgresql://u:{PW}@/app?host=h1:99999&host=h2", ("'port'", "65535")),
        (f"postgresql://u:{PW}@/app?host=h%20x&host=h2", ("'host'", "host names")),
        (f"postgresql://u:{PW}@h1:5432,h2:5433/app?host=h3", ("host", "keep only one")),
        (f"postgresql://u:{PW}@%2Ftmp/app?host=h3&host=h4", ("host", "keep only one")),
        (f"postgresql://u:{PW}@%2Ftmp/app?HOST=h3", ("host", "keep only one")),
        (f"postgresql://u:{PW}@h1:5432,h2:5433/app?port=5432", ("port", "keep only one")),
        (f"postgresql://u:{PW}@h1:5432,h2:99999/app", ("1 and 65535",)),
        (f"postgresql://u:{PW}@h1:5432,h2:abc/app", ("not a number",)),
        (f"postgresql://u:{PW}@h1:5432,,h2/app", ("empty host",)),
        (f"mysql://u:{PW}@h1:3306,h2:3306/app", ("exactly one host",)),
    ],
)
def test_bad_host_lists_are_refused(raw: str, fragments: tuple[str, ...]) -> None:
    rejected(raw, *fragments)


# --- 3. Unix sockets -----------------------------------------------------------------


def test_no_host_means_libpqs_default_socket() -> None:
    res = accepted("postgresql:///db")
    assert res.url is not None
    assert (res.url.host, res.url.port, res.url.username, res.url.database) == (
        None,
        None,
        None,
        "db",
    )
    assert "host" not in driver_params(res)
    assert any("Unix socket" in r and "PGHOST" in r for r in res.repairs)
    assert res.masked_url() == "postgresql+psycopg:///db"
    assert describe_server(res.url) == "the local Unix socket"


def test_socket_directory_as_host_option() -> None:
    res = accepted("postgresql://user@/db?host=/var/run/postgresql")
    assert res.url is not None and res.url.username == "user"
    assert driver_params(res)["host"] == "/var/run/postgresql"
    assert res.masked_url() == "postgresql+psycopg://***@/db?host=/var/run/postgresql"
    assert describe_server(res.url) == "the Unix socket in /var/run/postgresql"


def test_an_at_sign_in_the_password_still_beats_the_socket_reading() -> None:
    # `@/x?y=1` could be "no host" followed by a query; a split with a host wins.
    res = accepted(f"postgresql://u:{PW}@/x?y=1@db.example.com/app")
    assert res.url is not None
    assert res.url.host == "db.example.com" and res.url.password == f"{PW}@/x?y=1"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("postgresql://", "no database"), ("mysql:///db", "no host"), ("mysql://u@/db", "no host")],
)
def test_what_still_needs_a_host_or_database(raw: str, fragment: str) -> None:
    rejected(raw, fragment)


# --- 4. internationalised host names -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("postgresql://u:p@bücher-db.example.de/db", "xn--bcher-db-65a.example.de"),
        ("postgresql://u:p@Bücher-DB.Example.DE:5432/db", "xn--bcher-db-65a.example.de"),
        ("mysql://u:p@münchen.example:3306/db", "xn--mnchen-3ya.example"),
        ("postgresql://u:p@xn--bcher-db-65a.example.de/db", "xn--bcher-db-65a.example.de"),
    ],
)
def test_idn_host_is_sent_in_its_idna_form(raw: str, host: str) -> None:
    res = accepted(raw)
    assert res.url is not None and res.url.host == host
    assert host in str(res.masked_url())
    assert ("xn--" in raw) != any("IDNA" in r for r in res.repairs)


def test_idn_host_in_host_option() -> None:
    res = accepted("postgresql://u@/db?host=bücher-db.example.de,h2&port=5432,5433")
    assert res.url is not None and res.url.query["host"] == "xn--bcher-db-65a.example.de,h2"
    assert any("IDNA" in r for r in res.repairs)


@pytest.mark.parametrize(
    "host", ["🍕.example.de", "bücher_db.example.de", "-bücher.example.de", "bü..cher.de"]
)
def test_host_that_is_not_valid_idna_is_refused(host: str) -> None:
    rejected(f"postgresql://u:{PW}@{host}/db", "not a valid internationalised domain name")
    rejected(f"postgresql://u@/db?host={host}", "not a valid internationalised domain name")


@FAST
@given(label=st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF), min_size=1,
                     max_size=20))  # fmt: skip
def test_non_ascii_hosts_are_converted_exactly_or_refused(label: str) -> None:
    res = resolve_database_url(f"postgresql://u:{PW}@{label}.example.de/db")
    if res.ok:
        assert res.url is not None and res.url.host is not None and res.url.host.isascii()
        assert idna.decode(res.url.host) == idna.decode(idna.encode(f"{label}.example.de",
                                                                    uts46=True))  # fmt: skip
    else:
        assert res.errors and res.url is None


# --- 5. scheme aliases ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgis", "psql", "POSTGIS", "postgis+psycopg2", "Psql"])
def test_postgresql_aliases(scheme: str) -> None:
    res = accepted(f"{scheme}://u:{PW}@db.example.com:5432/gis")
    assert res.backend == "postgresql" and res.url is not None
    assert res.url.drivername == "postgresql+psycopg"
    assert any(f"'{scheme.lower()}://'" in r for r in res.repairs)


# --- 6. a password without a user name -----------------------------------------------


@pytest.mark.parametrize(
    ("raw", "backend", "who"),
    [
        ("postgresql://:Secr3tPw_zz@db.example.com/app", "postgresql", "PGUSER"),
        ("postgresql://db.example.com/app?password=Secr3tPw_zz", "postgresql", "PGUSER"),
        ("mysql://:Secr3tPw_zz@db.example.com:3306/app", "mysql", "operating-system user"),
    ],
)
def test_password_without_user_name_is_explained_and_masked(
    raw: str, backend: str, who: str
) -> None:
    res = accepted(raw)
    assert res.url is not None and res.url.username is None
    assert res.url.password == "Secr3tPw_zz"
    notice = [r for r in res.repairs if "no user name" in r]
    assert len(notice) == 1 and "default user" in notice[0] and who in notice[0]
    masked = str(res.masked_url())
    assert ":***@" in masked and masked.endswith("/app")
    assert "Secr3tPw_zz" in res.secrets()
    assert "Secr3tPw_zz" not in all_text(res)


def test_user_name_given_means_no_default_user_notice() -> None:
    res = accepted(f"postgresql://app:{PW}@db.example.com/app")
    assert not any("no user name" in r for r in res.repairs)


# --- 7. connection character sets ----------------------------------------------------

MY = f"mysql://app:{PW}@db.example.com:3306/app"


@pytest.mark.parametrize("charset", ["utf8", "utf8mb3", "UTF8", "utf-8", "UTF8MB3"])
def test_mysql_utf8mb3_becomes_utf8mb4(charset: str) -> None:
    res = accepted(f"{MY}?charset={charset}")
    assert res.url is not None and res.url.query["charset"] == "utf8mb4"
    assert driver_params(res)["charset"] == "utf8mb4"
    assert any("utf8mb4" in r and "emoji" in r for r in res.repairs)


@pytest.mark.parametrize("charset", ["utf8mb4", "UTF8MB4"])
def test_mysql_utf8mb4_is_kept(charset: str) -> None:
    res = accepted(f"{MY}?charset={charset}")
    assert res.url is not None and res.url.query["charset"] == "utf8mb4"
    assert not any("charset" in r for r in res.repairs)


@pytest.mark.parametrize("charset", ["latin1", "ascii", "cp1250", "ucs2", "binary", "LATIN1"])
def test_mysql_limited_charset_is_refused(charset: str) -> None:
    rejected(f"{MY}?charset={charset}", "cannot store every character", "utf8mb4")


@pytest.mark.parametrize("charset", ["cp1252", "klingon", "utf8%20mb4"])
def test_mysql_unknown_charset_is_refused(charset: str) -> None:
    rejected(f"{MY}?charset={charset}", "not a character set", "utf8mb4")


@pytest.mark.parametrize(
    ("encoding", "ok"),
    [("UTF8", True), ("utf-8", True), ("unicode", True), ("LATIN1", False), ("SQL_ASCII", False),
     ("WIN1252", False), ("auto", False)],
)  # fmt: skip
def test_postgresql_client_encoding_must_be_unicode(encoding: str, ok: bool) -> None:
    raw = f"postgresql://app:{PW}@db.example.com/app?client_encoding={encoding}"
    if ok:
        assert accepted(raw).url is not None
    else:
        rejected(raw, "client_encoding", "UTF8")
