"""Property tests for the DATABASE_URL resolver (hypothesis). Pure: no network."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from src.database.resolver import MAX_URL_LENGTH, Resolution, mask_url, resolve_database_url
from tests.test_resolver import all_text, assert_usable_by_driver

FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROVIDER_URLS = [
    "postgresql://alex:AbC123dEf@ep-cool-darkness-a1b2c3d4-pooler.us-east-2.aws.neon.tech/dbname"
    "?sslmode=require&channel_binding=require",
    "psql 'postgresql://neondb_owner:npg_x1Y2z3@ep-x-1.c-2.us-east-1.aws.neon.tech/neondb"
    "?sslmode=require'",
    "postgresql://postgres:[YOUR-PASSWORD]@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
    "postgres://postgres.abcdefghijklmnopqrst:pw@aws-0-us-east-1.pooler.supabase.com:6543/postgres",
    "postgres://u1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    "@ec2-3-215-57-87.compute-1.amazonaws.com:5432/d9ak1k2l3m4n5",
    "postgres://render_user:RndrPw123@dpg-cn1abc2def3ghi4jkl5m-a/render_db",
    "postgres://avnadmin:AVNS_k3y@pg-3b2f1a-proj.aivencloud.com:12691/defaultdb?sslmode=require",
    "mysql://avnadmin:AVNS_k3y@mysql-1f2e3d-proj.a.aivencloud.com:12692/defaultdb"
    "?ssl-mode=REQUIRED",
    "mysql://b6f1c2d3:1a2b3c4d@us-cluster-east-01.k8s.cleardb.net/heroku_0123456789a?reconnect=true",
    "postgresql://postgres:RailPw@roundhouse.proxy.rlwy.net:41234/railway",
    "postgresql://doadmin:AVNS_do@db-postgresql-nyc3-12345-do-user-1-0.b.db.ondigitalocean.com:25060"
    "/defaultdb?sslmode=require",
    "mysql://ps_user:pscale_pw_abc@aws.connect.psdb.cloud/@primary?ssl-mode=VERIFY_IDENTITY",
    "postgresql://u:p@db.example.com:5432/app?pgbouncer=true&connection_limit=1",
    "postgresql+asyncpg://u:p@db.example.com/app?ssl=require",
    "postgresql:///app?host=/var/run/postgresql",
    "postgresql://u:p@[::1]:5432/app",
    "jdbc:postgresql://db.example.com:5432/app?user=u&password=p",
    "mariadb://u:p@db.example.com:3306/app?charset=utf8mb4&ssl_ca=/etc/ssl/ca.pem",
    "sqlite:////data/app.db",
    "sqlite:///relative.db",
    "sqlite://",
]

# Characters that matter to URL parsing, paste damage and encodings.
NASTY = "@:/?#[]%+ &=,;'\"`\\~$<>{}*\t\n\r\x00\ufeff\u00a0\u200b\u201c\u201d\u2018\u2019é🔑"
# How values get pasted: quotes of each kind, shell/env syntax, invisible characters.
WRAPPERS = [
    "{}",
    "'{}'",
    '"{}"',
    "`{}`",
    "\u201c{}\u201d",
    "psql '{}'",
    "  {}\n",
    "{}\r\n",
    "\ufeff{}\u00a0",
    "export X={}",
    'export DATABASE_URL="{}"\n',
    "DATABASE_URL='{}'",
]


def check(res: Resolution) -> None:
    """Invariants every resolution must satisfy."""
    assert isinstance(res, Resolution)
    assert all(isinstance(x, str) and x for x in res.repairs)
    assert all(isinstance(x, str) and x for x in res.errors)
    assert res.ok == (res.url is not None)
    assert not (res.errors and res.url is not None)
    if not res.present:
        assert res.backend is None and not res.errors
    if res.mysql_ssl_mode is not None:
        assert res.backend == "mysql"
        assert res.mysql_ssl_mode in ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
    repr(res)
    if res.ok:
        assert res.url is not None
        assert_usable_by_driver(res)
        # The masked form cannot depend on the credentials, so it cannot leak them.
        stand_ins = res.url._replace(
            username="U" if res.url.username else None,
            password="P" if res.url.password else None,
        )
        assert res.masked_url() == mask_url(stand_ins)


# --- (1) never raises --------------------------------------------------------------------

URLISH_PIECES = st.sampled_from(
    [
        "postgres://", "postgresql+asyncpg://", "mysql://", "MARIADB://", "sqlite:", "//", "/",
        "@", ":", "u", "p@ss", "host", "[::1]", "h1,h2", ":5432", ":0", ":abc", "/db", "/",
        "?", "&", "=", "sslmode=require", "ssl=true", "host=/tmp", "port=1,2", "%40", "%", "%C3",
        "'", '"', "psql ", "export ", "DATABASE_URL=", "jdbc:", " ", "\n", "\ufeff", "~",
        "${X}", "<db>", "[YOUR-PASSWORD]", "***", "#", "ssl-mode=PREFERRED", "user=x",
    ]
)  # fmt: skip


@settings(FAST, max_examples=3000)
@given(
    st.one_of(
        st.text(st.characters(exclude_categories=())),
        st.text(alphabet=NASTY + "abcdefghijklmnopqrstuvwxyz0123456789", max_size=200),
        st.lists(URLISH_PIECES, max_size=25).map("".join),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
    )
)
@example("postgresql://" + "@" * 5000)
@example("postgresql://" + "@a" * 2040)
@example("x" * (MAX_URL_LENGTH + 1))
@example("postgresql://" + "a" * (MAX_URL_LENGTH - 13))
@example("\x00")
@example("\ud800")
def test_never_raises_on_arbitrary_text(raw: str) -> None:
    check(resolve_database_url(raw))


@settings(FAST, max_examples=300)
@given(st.one_of(st.integers(), st.floats(), st.lists(st.integers()), st.binary(), st.none()))
def test_never_raises_on_non_text(raw: object) -> None:
    check(resolve_database_url(raw))  # type: ignore[arg-type]


# --- (2) mutations of real provider URLs -------------------------------------------------


@st.composite
def mutated_provider_urls(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(PROVIDER_URLS))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "password"]))
        pos = draw(st.integers(0, len(text)))
        char = draw(st.one_of(st.sampled_from(NASTY), st.characters()))
        if op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif op == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        elif "@" in text:
            # Inject into the password: just before the last '@'.
            at = text.rindex("@")
            text = text[:at] + draw(st.text(NASTY, min_size=1, max_size=4)) + text[at:]
    if draw(st.booleans()):
        scheme, sep, rest = text.partition("://")
        text = draw(st.sampled_from([scheme.upper(), scheme.title(), scheme.lower()])) + sep + rest
    wrap = draw(st.sampled_from(WRAPPERS))
    return wrap.replace("{}", text)


@settings(FAST, max_examples=3000)
@given(mutated_provider_urls())
def test_mutated_provider_urls(raw: str) -> None:
    check(resolve_database_url(raw))


@settings(FAST, max_examples=len(PROVIDER_URLS))
@given(st.sampled_from(PROVIDER_URLS))
def test_unmutated_provider_urls_behave(raw: str) -> None:
    res = resolve_database_url(raw)
    check(res)
    assert res.ok == ("[YOUR-PASSWORD]" not in raw)


# --- (3)/(4) credentials round-trip ------------------------------------------------------

SAFE_USER = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", min_size=1,
                    max_size=20)  # fmt: skip
PASSWORD = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
TEMPLATE = "postgresql://{user}:{password}@db.example.com:5432/app"
RAW_ONLY = set("@/?#[] ")
PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _same_shape(password: str) -> str:
    """A different password that the resolver must treat exactly alike: letters and
    digits swapped for others, punctuation and %XX escapes kept."""
    out = []
    for i, part in enumerate(PERCENT_ESCAPE.split(password)):
        if i:
            out.append(PERCENT_ESCAPE.findall(password)[i - 1])
        for ch in part:
            if ch.isascii() and ch.isalpha():
                ch = "Q" if ch.isupper() else "q"
            elif ch.isascii() and ch.isdigit():
                ch = "7"
            elif ch.isalnum():
                ch = "\u00e9"
            out.append(ch)
    return "".join(out)


def _leak_free(res: Resolution, password: str, build: Callable[[str], str]) -> None:
    """The password never shows, unless a same-shaped stand-in's output has the same
    text anyway (a password like '; ' or 'the' occurs in ordinary sentences)."""
    text = all_text(res)
    if password in text:
        twin = resolve_database_url(build(_same_shape(password)))
        assert password in all_text(twin), "password leaked"


def template_shaped(value: str) -> bool:
    """What a template word (`USER`, `DB_NAME`, `your-password`) must at least look like:
    ALL CAPS letters with only '_' or '-' between them, or starting with 'your'. Anything
    else (a digit, a lower-case letter, other punctuation) is a real value."""
    unquoted = unquote(value)
    return any(
        re.fullmatch(r"[A-Z]+(?:[_-]?[A-Z]+)*", v) is not None or v.lower().startswith("your")
        for v in (value, unquoted)
    )


def _placeholder_like(password: str) -> bool:
    return bool(re.fullmatch(r"<.*>|\[.*\]|\$.*|\*{3,}", password, re.S)) or template_shaped(
        password
    )


@settings(FAST, max_examples=3000)
@given(user=SAFE_USER, password=PASSWORD)
@example(user="app", password="p@ss")
@example(user="app", password="p@ss:w/rd#?% +x")
@example(user="app", password="a@h/d?x=1")
@example(user="app", password="%41")
@example(user="app", password="x@db.example.com:5432/app?sslmode=disable")
def test_raw_password_round_trips(user: str, password: str) -> None:
    res = resolve_database_url(TEMPLATE.format(user=user, password=password))
    check(res)
    if res.ok:
        assert res.url is not None and res.url.username == user
        assert res.url.password == meant(password)
    else:
        # The only refusals: an ambiguous '@', or a password that looks like a template.
        assert all(
            "ambiguous" in e or "placeholder" in e or "asterisks" in e for e in res.errors
        ), res.errors
        if not any("ambiguous" in e for e in res.errors):
            assert _placeholder_like(password) or template_shaped(user)
    _leak_free(res, password, lambda pw: TEMPLATE.format(user=user, password=pw))


def meant(password: str) -> str:
    """What a raw password means. Characters that cannot be raw in a URL (@ / ? # [ ]
    space) show it was pasted as-is; otherwise %XX is percent-encoding, exactly as
    SQLAlchemy and libpq read it (so a literal %41 must be written %2541)."""
    if any(ch in RAW_ONLY for ch in password) or not PERCENT_ESCAPE.search(password):
        return password
    try:
        return unquote(password, errors="strict")
    except UnicodeDecodeError:
        return password


@settings(FAST, max_examples=2000)
@given(user=SAFE_USER, password=PASSWORD)
def test_encoded_password_round_trips(user: str, password: str) -> None:
    assume(not template_shaped(user) and not template_shaped(password))
    res = resolve_database_url(TEMPLATE.format(user=user, password=quote(password, safe="")))
    check(res)
    assert res.ok, res.errors
    assert res.url is not None
    assert res.url.username == user
    assert res.url.password == password
    _leak_free(res, password, lambda pw: TEMPLATE.format(user=user, password=quote(pw, safe="")))


@settings(FAST, max_examples=1000)
@given(user=SAFE_USER, password=PASSWORD, wrap=st.sampled_from(WRAPPERS))
def test_paste_wrappers_do_not_change_credentials(user: str, password: str, wrap: str) -> None:
    assume(not template_shaped(user) and not template_shaped(password))
    encoded = TEMPLATE.format(user=user, password=quote(password, safe=""))
    plain = resolve_database_url(encoded)
    wrapped = resolve_database_url(wrap.replace("{}", encoded))
    assert wrapped.ok and plain.url is not None and wrapped.url is not None
    assert wrapped.url == plain.url
