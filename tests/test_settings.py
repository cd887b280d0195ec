"""Settings: every variable optional, invalid values warn and fall back to the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.config.settings import Settings, load_settings


def test_defaults_with_empty_environment() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.database_fallback == "auto"
    assert settings.database_connect_timeout == 5
    assert settings.database_startup_retries == 3
    assert settings.database_retry_delay_ms == 500
    assert (settings.database_pool_size, settings.database_max_overflow) == (5, 10)
    assert settings.database_echo is False
    assert settings.port == 7860
    assert settings.cors_origin_list == ["*"]
    assert settings.warnings == ()


@pytest.mark.parametrize(
    ("name", "value", "attribute", "default"),
    [
        ("DATABASE_POOL_SIZE", "abc", "database_pool_size", 5),
        ("DATABASE_POOL_SIZE", "-1", "database_pool_size", 5),
        ("DATABASE_MAX_OVERFLOW", "1e9", "database_max_overflow", 10),
        ("DATABASE_STARTUP_RETRIES", "9", "database_startup_retries", 3),
        ("DATABASE_RETRY_DELAY_MS", "50", "database_retry_delay_ms", 500),
        ("DATABASE_CONNECT_TIMEOUT", "5s", "database_connect_timeout", 5),
        ("DATABASE_ECHO", "maybe", "database_echo", False),
        ("DATABASE_FALLBACK", "sometimes", "database_fallback", "auto"),
        ("PORT", "70000", "port", 7860),
        ("LOG_FORMAT", "xml", "log_format", "text"),
    ],
)
def test_invalid_value_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, attribute: str, default: object
) -> None:
    monkeypatch.setenv(name, value)
    settings = load_settings()
    assert getattr(settings, attribute) == default
    assert len(settings.warnings) == 1
    assert name in settings.warnings[0]


def test_choices_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_FALLBACK", " Invalid-Only ")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.database_fallback == "invalid-only"
    assert settings.log_level == "debug"
    assert settings.warnings == ()


def test_jwt_secret_is_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "s3cret-value")
    settings = load_settings()
    assert settings.better_auth_secret is not None
    assert settings.better_auth_secret.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


def test_dotenv_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text('DATABASE_POOL_SIZE=7\nDATABASE_URL="sqlite:///x.db"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_pool_size == 7
    assert settings.database_url == "sqlite:///x.db"


def test_unreadable_dotenv_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").mkdir()  # a directory where a file is expected
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_pool_size == 5


def test_libpq_variables_build_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.example.com")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGUSER", "app@corp")
    monkeypatch.setenv("PGPASSWORD", "p@ss:w/rd#")
    monkeypatch.setenv("PGDATABASE", "todos")
    monkeypatch.setenv("PGSSLMODE", "require")
    raw, source = load_settings().primary_url_input
    assert source.startswith("PGHOST")
    assert raw == (
        "postgresql://app%40corp:p%40ss%3Aw%2Frd%23@db.example.com:6543/todos?sslmode=require"
    )


def test_database_url_wins_over_libpq_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().primary_url_input == ("postgresql://u@h/db", "DATABASE_URL")


def test_libpq_socket_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "/var/run/postgresql")
    monkeypatch.setenv("PGUSER", "me")
    raw, _ = load_settings().primary_url_input
    assert raw == "postgresql://me@/me?host=/var/run/postgresql"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"sqlite_path": "/srv/todo.db"}, "/srv/todo.db"),
        ({"fallback_database_url": "sqlite:////srv/todo.db"}, "/srv/todo.db"),
        ({"fallback_database_url": "sqlite:///rel.db"}, "rel.db"),
        ({}, None),
    ],
)
def test_sqlite_path_setting(values: dict[str, str], expected: str | None) -> None:
    assert Settings(_env_file=None, **values).sqlite_path_setting == expected  # type: ignore[call-arg]


def test_cors_origins_list() -> None:
    settings = Settings(_env_file=None, cors_origins=" https://a.app , https://b.app ,")  # type: ignore[call-arg]
    assert settings.cors_origin_list == ["https://a.app", "https://b.app"]


def test_cors_origins_are_normalised_as_browsers_send_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # Copied from an address bar: trailing slash, upper case, a path.
    monkeypatch.setenv(
        "CORS_ORIGINS", "https://My-App.vercel.app/, http://localhost:3000 ,https://x.example/app"
    )
    settings = load_settings()
    assert settings.cors_origin_list == [
        "https://my-app.vercel.app",
        "http://localhost:3000",
        "https://x.example",
    ]
    assert len(settings.warnings) == 1 and "has a path" in settings.warnings[0]


def test_cors_entry_that_cannot_be_an_origin_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "my-app.vercel.app,ftp://x.example")
    settings = load_settings()
    assert settings.cors_origin_list == ["*"]
    assert len(settings.warnings) == 2
    assert all("is not an origin" in w for w in settings.warnings)


def test_cors_warnings_never_quote_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A secret pasted into the wrong variable, and a URL whose query holds a token.
    monkeypatch.setenv("CORS_ORIGINS", "hunter2-secret,https://app.example/cb?token=s3cr3t")
    settings = load_settings()
    assert settings.cors_origin_list == ["https://app.example"]
    assert settings.warnings == (
        "CORS_ORIGINS entry 1 is not an origin such as https://my-app.vercel.app (http or "
        "https, then the host); it is ignored.",
        "CORS_ORIGINS entry 2 has a path (or a query); browsers send only the origin, so "
        "https://app.example is used.",
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not a url", "it does not start with http:// or https://"),
        ("localhost:3000", "it does not start with http:// or https://"),
        ("file:///etc/passwd", "it does not start with http:// or https://"),
        ("https://", "it has no host name after the scheme"),
        ("https://app.example:99999", "it is not a well-formed URL (check the host and the port)"),
        ("http://[::1", "it is not a well-formed URL (check the host and the port)"),
    ],
)
@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("BETTER_AUTH_URL", "https://my-app.vercel.app"),
        ("BETTER_AUTH_JWKS_URL", "https://my-app.vercel.app/api/auth/jwks"),
    ],
)
def test_better_auth_urls_that_are_not_urls_are_settings_warnings(
    monkeypatch: pytest.MonkeyPatch, name: str, example: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    warnings = load_settings().warnings
    assert warnings == (
        f"{name} is not an http(s) URL such as {example}: {problem}; it is ignored.",
    )


@pytest.mark.parametrize(
    "value", ["https://my-app.vercel.app", " 'http://localhost:3000/' ", "HTTPS://A.example:8443"]
)
def test_better_auth_urls_that_are_urls_give_no_warning(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BETTER_AUTH_URL", value)
    monkeypatch.setenv("BETTER_AUTH_JWKS_URL", value)
    assert load_settings().warnings == ()


def test_reading_a_setting_twice_adds_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALLBACK_DATABASE_URL", "postgres://x@h/db")
    settings = load_settings()
    for _ in range(3):
        assert settings.sqlite_path_setting is None
    assert len(settings.warnings) == 1
