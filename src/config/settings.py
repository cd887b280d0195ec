"""Every setting the service reads, and the only module that reads the environment.

All values are optional. A value that does not validate is replaced by its default
and recorded as a warning, so no configuration can stop the process from starting.
"""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core.core_schema import ValidatorFunctionWrapHandler
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.config.origins import url_setting_problem

APP_NAME = "todo-backend"
# The project root (the folder holding src/): where ./data and alembic/ are.
APP_DIR = Path(__file__).resolve().parents[2]
APP_VERSION = "1.0.0"

FallbackPolicy = Literal["auto", "invalid-only", "never"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
StatusDetail = Literal["full", "minimal"]
# Where the primary URL came from when it was built from libpq's variables (for messages).
LIBPQ_SOURCE = "PGHOST/PGUSER/PGPASSWORD/PGDATABASE"

logger = logging.getLogger(__name__)

# Fields whose raw value must never be echoed in a warning.
_SECRET_FIELDS = frozenset(
    {
        "database_url",
        "pgpassword",
        "better_auth_secret",
        "jwt_secret",
        "sqlite_replica_url",
        "aws_secret_access_key",
        "litestream_secret_access_key",
        "litestream_azure_account_key",
    }
)
# The Better Auth settings that must be absolute http(s) URLs, with an example for the
# warning when one is not (src.auth.issuer ignores such a value).
BETTER_AUTH_URL_EXAMPLES = {
    "BETTER_AUTH_URL": "https://my-app.vercel.app",
    "BETTER_AUTH_JWKS_URL": "https://my-app.vercel.app/api/auth/jwks",
}
# Choices are matched case-insensitively: `DATABASE_FALLBACK=Never` means never.
_CHOICE_FIELDS = frozenset({"database_fallback", "log_level", "log_format", "status_detail"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
        populate_by_name=True,
        str_strip_whitespace=False,
    )

    # Primary database. Kept raw: the resolver owns cleaning and validation.
    database_url: str | None = None
    pghost: str | None = None
    pgport: str | None = None
    pguser: str | None = None
    pgpassword: str | None = None
    pgdatabase: str | None = None
    pgsslmode: str | None = None

    database_fallback: FallbackPolicy = "auto"
    sqlite_path: str | None = None
    fallback_database_url: str | None = None
    database_connect_timeout: float = Field(default=5.0, ge=0.5, le=60)
    database_statement_timeout: float = Field(default=15.0, ge=1, le=600)
    database_startup_retries: int = Field(default=3, ge=0, le=5)
    database_retry_delay_ms: int = Field(default=500, ge=100, le=5000)
    database_pool_size: int = Field(default=5, ge=1, le=100)
    database_max_overflow: int = Field(default=10, ge=0, le=100)
    database_echo: bool = False

    better_auth_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("better_auth_secret", "jwt_secret")
    )
    # The same value when JWT_SECRET is what gave it: read only so that messages name the
    # variable the deployer set (`secret_setting`); the sources merge the two names above.
    jwt_secret: SecretStr | None = None
    better_auth_url: str | None = None
    better_auth_jwks_url: str | None = None
    better_auth_issuer: str | None = None
    better_auth_audience: str | None = None
    cors_origins: str = "*"

    # Continuous replication of the SQLite database (Litestream).
    sqlite_replica_url: str | None = None
    sqlite_replica_sync_interval: float = Field(default=1.0, ge=0.1, le=3600)
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    litestream_access_key_id: str | None = None
    litestream_secret_access_key: SecretStr | None = None
    # Read only to tell Litestream what it needs (src/replication/config.py builds its
    # environment from these, never from os.environ).
    aws_region: str | None = None
    aws_ca_bundle: str | None = None
    litestream_s3_endpoint: str | None = None
    litestream_azure_account_key: SecretStr | None = None
    google_application_credentials: str | None = None

    port: int = Field(default=7860, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    forwarded_allow_ips: str = "*"
    # Seconds a client has to send a complete request head (src.http.protocol).
    http_header_timeout: float = Field(default=20.0, ge=0.5, le=600)
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    # `minimal` keeps the state and the reason on `/` and `/config/database` but drops
    # host names, database names, file paths and history (for a public Space).
    status_detail: StatusDetail = "full"

    # Facts about where we run, read here so no other module touches os.environ.
    space_id: str | None = None
    home: str | None = None

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _tolerate_invalid_values(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Settings:
        warnings: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            for name, field in cls.model_fields.items():
                key = _present_key(data, name, field)
                if key is None:
                    continue
                if name in _CHOICE_FIELDS and isinstance(data[key], str):
                    data[key] = data[key].strip().lower()
                try:
                    _field_adapter(cls, name).validate_python(data[key])
                except ValidationError as exc:
                    del data[key]
                    warnings.append(_describe_invalid(name, field, exc))
        model: Settings = handler(data)
        model._warnings.extend(warnings)
        model._warnings.extend(_cors_origins(model.cors_origins)[1])
        for env, example in BETTER_AUTH_URL_EXAMPLES.items():
            problem = url_setting_problem(env, getattr(model, env.lower()), example)
            if problem is not None:
                model._warnings.append(problem)
        fallback_url = (model.fallback_database_url or "").strip().strip("'\"")
        if fallback_url and not fallback_url.lower().startswith("sqlite:///"):
            model._warnings.append(
                "FALLBACK_DATABASE_URL is not a sqlite:///path URL and is ignored; "
                "use SQLITE_PATH to choose the SQLite file."
            )
        return model

    # -- derived values ----------------------------------------------------

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    @property
    def on_space(self) -> bool:
        return bool(self.space_id)

    @property
    def home_dir(self) -> Path | None:
        return Path(self.home) if self.home else None

    @property
    def cors_origin_list(self) -> list[str]:
        """`CORS_ORIGINS` as origins a browser sends: `https://app.example` (no path, no
        trailing slash, lower-case scheme and host); entries that cannot be an origin
        are left out (and warned about once, at load)."""
        return _cors_origins(self.cors_origins)[0]

    @property
    def sqlite_path_setting(self) -> str | None:
        """`SQLITE_PATH`, else the path inside `FALLBACK_DATABASE_URL=sqlite:///…`."""
        return _sqlite_path_of(self.sqlite_path, self.fallback_database_url)

    @cached_property
    def primary_url_input(self) -> tuple[str | None, str]:
        """The raw primary URL and where it came from (for messages)."""
        if self.database_url is not None and self.database_url.strip():
            return self.database_url, "DATABASE_URL"
        if self.pghost and self.pghost.strip():
            return _url_from_libpq_env(self), LIBPQ_SOURCE
        return self.database_url, "DATABASE_URL"

    @property
    def secret_setting(self) -> str:
        """The variable the HS256 secret (`better_auth_secret`) was read from, for
        messages: `"JWT_SECRET"`, else `"BETTER_AUTH_SECRET"` (which wins when both are
        set to different values, as it does for the value itself)."""
        if self.jwt_secret is not None and self.jwt_secret == self.better_auth_secret:
            return "JWT_SECRET"
        return "BETTER_AUTH_SECRET"

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Values that must be redacted wherever they might be printed."""
        values = [self.pgpassword or ""]
        for secret in (
            self.better_auth_secret,
            self.aws_secret_access_key,
            self.litestream_secret_access_key,
            self.litestream_azure_account_key,
        ):
            if secret is not None:
                values.append(secret.get_secret_value())
        return tuple(v for v in values if v)


_ORIGIN = re.compile(
    r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?([/?#].*)?", re.I | re.S
)


def _cors_origins(raw: str) -> tuple[list[str], list[str]]:
    """The normalised origins and the warnings about entries that are not origins. An
    entry is named by its position, never quoted: it may be a secret pasted into the
    wrong variable (an origin found in it is shown: a scheme and a host name)."""
    origins: list[str] = []
    warnings: list[str] = []
    entries = [e.strip().strip("'\"").strip() for e in raw.split(",")]
    for number, entry in enumerate(entries, start=1):
        if not entry:
            continue
        if entry == "*":
            origins.append("*")
            continue
        match = _ORIGIN.fullmatch(entry)
        if match is None:
            warnings.append(
                f"CORS_ORIGINS entry {number} is not an origin such as "
                "https://my-app.vercel.app (http or https, then the host); it is ignored."
            )
            continue
        origin = f"{match[1].lower()}://{match[2].lower()}{match[3] or ''}"
        # Browsers send the origin alone; an address bar copied whole adds "/" or a path.
        if match[4] and match[4] != "/":
            warnings.append(
                f"CORS_ORIGINS entry {number} has a path (or a query); browsers send only "
                f"the origin, so {origin} is used."
            )
        if origin not in origins:
            origins.append(origin)
    return origins or ["*"], warnings


def _sqlite_path_of(sqlite_path: str | None, fallback_url: str | None) -> str | None:
    if sqlite_path and sqlite_path.strip():
        return sqlite_path.strip()
    url = (fallback_url or "").strip().strip("'\"")
    if url.lower().startswith("sqlite:///"):
        return url[len("sqlite:///") :] or None
    return None


def _present_key(data: dict[str, Any], name: str, field: FieldInfo) -> str | None:
    candidates = [name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        candidates.extend(str(c) for c in alias.choices)
    elif isinstance(alias, str):
        candidates.append(alias)
    for key in candidates:
        if key in data:
            return key
    return None


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _field_adapter(cls: type[Settings], name: str) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(name)
    if adapter is None:
        field = cls.model_fields[name]
        annotation: Any = field.annotation
        if field.metadata:
            annotation = Annotated[(annotation, *field.metadata)]
        adapter = TypeAdapter(annotation)
        _ADAPTERS[name] = adapter
    return adapter


def _describe_invalid(name: str, field: FieldInfo, exc: ValidationError) -> str:
    env = name.upper()
    reason = exc.errors()[0].get("msg", "invalid value") if exc.errors() else "invalid value"
    default = field.default
    if name in _SECRET_FIELDS:
        return f"{env} is invalid ({reason}); it is ignored."
    return f"{env} is invalid ({reason}); using the default {default!r}."


def _url_from_libpq_env(settings: Settings) -> str:
    """Build a PostgreSQL URL from the libpq variables, percent-encoding each part."""
    host = (settings.pghost or "").strip()
    user = (settings.pguser or "").strip()
    password = settings.pgpassword or ""
    database = (settings.pgdatabase or "").strip() or user
    port = (settings.pgport or "").strip()

    userinfo = ""
    if user:
        userinfo = quote(user, safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    query: list[str] = []
    if host.startswith("/"):
        # A socket directory cannot sit in the authority part of a URL.
        query.append("host=" + quote(host, safe="/"))
        netloc = userinfo
    else:
        netloc = userinfo + host + (f":{port}" if port else "")
    if host.startswith("/") and port:
        query.append("port=" + quote(port, safe=""))
    if settings.pgsslmode and settings.pgsslmode.strip():
        query.append("sslmode=" + quote(settings.pgsslmode.strip(), safe=""))
    url = f"postgresql://{netloc}/{quote(database, safe='')}"
    return url + ("?" + "&".join(query) if query else "")


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and `.env`); never raises."""
    try:
        return Settings(**overrides)
    except Exception as exc:  # noqa: BLE001 - a settings source failing must not stop start-up
        reason = type(exc).__name__
    try:
        settings = Settings(_env_file=None, **overrides)
    except Exception:  # noqa: BLE001
        settings = Settings.model_construct()
    settings._warnings.append(f"The .env file could not be read ({reason}); it is ignored.")
    return settings
