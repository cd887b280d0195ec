"""What replication needs, built once from Settings: the replica, its credentials, the
environment Litestream runs with, and the time limits.

Nothing here reads the process environment: every variable Litestream may need comes
through `Settings`, and the child gets only those (`child_environment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from src.config.settings import Settings
from src.core.redaction import redactor
from src.replication import replica_url
from src.replication.replica_url import ReplicaURL

# Time limits (seconds). A refused port makes one Litestream listing retry for ~240 s
# and a silent endpoint never answers (research/litestream.md), so every call is cut off.
LIST_TIMEOUT = 10.0
RESTORE_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0
RETRY_INITIAL = 5.0
RETRY_MAX = 60.0
# How long the app waits for Litestream to pick the database up before opening it anyway
# (it cannot when the endpoint hangs: its start-up asks the replica for its position).
WATCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class ReplicaConfig:
    """A configured replica. `errors` non-empty means it must not be used.

    `replica` is None exactly when `errors` is non-empty. `url` and `env` hold secrets and
    are kept out of `repr`.
    """

    raw_url: str = field(repr=False)
    masked_url: str
    replica: ReplicaURL | None
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    sync_interval: float
    env: dict[str, str] = field(repr=False, default_factory=dict)
    # Extra per-replica YAML fields (region, NATS or OSS credentials), written into the
    # private Litestream config file.
    replica_fields: dict[str, str] = field(repr=False, default_factory=dict)
    list_timeout: float = LIST_TIMEOUT
    restore_timeout: float = RESTORE_TIMEOUT
    stop_timeout: float = STOP_TIMEOUT
    retry_initial: float = RETRY_INITIAL
    retry_max: float = RETRY_MAX
    watch_timeout: float = WATCH_TIMEOUT
    # Seconds without a confirmed sync after which replication counts as failing; None:
    # `status.stall_after(sync_interval)`.
    stall_timeout: float | None = None

    @property
    def valid(self) -> bool:
        return not self.errors and self.replica is not None

    @property
    def scheme(self) -> str | None:
        return self.replica.scheme if self.replica else None

    @property
    def monitor_interval(self) -> float:
        """How often Litestream reads the WAL: the sync interval, at most 1 s (its default).

        A crash loses at most about monitor + sync interval of writes."""
        return min(self.sync_interval, 1.0)


def replica_config(settings: Settings, *, beside: str | None = None) -> ReplicaConfig | None:
    """The replica configuration, or None when `SQLITE_REPLICA_URL` is unset/blank.
    `beside`: the replica of a file kept beside the configured one instead, at the
    configured path with this suffix (replica_url.beside).

    Never raises. Registers every secret (keys, URL password) with the redactor.
    """
    raw = settings.sqlite_replica_url
    if raw is None or not raw.strip():
        return None
    if beside is not None:
        raw = replica_url.beside(raw, beside)
    parsed, errors = replica_url.parse(raw)
    warnings: list[str] = []
    env: dict[str, str] = {}
    fields: dict[str, str] = {}
    if parsed is not None:
        redactor.add(parsed.password)
        if parsed.scheme in {"sftp", "webdav", "webdavs", "nats"}:
            redactor.add(parsed.username)
        parsed = _credentials(settings, parsed, env, fields, warnings, errors)
    return ReplicaConfig(
        raw_url=raw,
        masked_url=replica_url.mask(raw),
        replica=parsed if not errors else None,
        errors=tuple(errors),
        warnings=tuple(warnings),
        sync_interval=settings.sqlite_replica_sync_interval,
        env=env,
        replica_fields=fields,
    )


def _credentials(
    settings: Settings,
    parsed: ReplicaURL,
    env: dict[str, str],
    fields: dict[str, str],
    warnings: list[str],
    errors: list[str],
) -> ReplicaURL:
    scheme = parsed.scheme
    if scheme in {"s3", "oss"}:
        key_id, secret = _access_keys(settings, warnings)
        if key_id and secret:
            if scheme == "s3":
                # The SDK reads these itself: the key never lands in a file.
                env["AWS_ACCESS_KEY_ID"] = key_id
                env["AWS_SECRET_ACCESS_KEY"] = secret
            else:
                fields["access-key-id"] = key_id
                fields["secret-access-key"] = secret
        elif key_id or secret:
            errors.append(
                "Only one of the replica's access key id and secret access key is set; "
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or LITESTREAM_*)."
            )
        else:
            warnings.append(
                "No AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or LITESTREAM_*) is set for the "
                "replica; Litestream will try the provider's default credential chain."
            )
    if scheme == "s3":
        parsed = _s3_settings(settings, parsed, fields, warnings)
    if scheme == "abs":
        if settings.litestream_azure_account_key is not None:
            env["LITESTREAM_AZURE_ACCOUNT_KEY"] = (
                settings.litestream_azure_account_key.get_secret_value()
            )
        else:
            warnings.append(
                "LITESTREAM_AZURE_ACCOUNT_KEY is not set; Litestream will try Azure's "
                "default credentials."
            )
    if scheme == "gs":
        if settings.google_application_credentials:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = settings.google_application_credentials
        else:
            warnings.append(
                "GOOGLE_APPLICATION_CREDENTIALS is not set; Litestream will try Google's "
                "default credentials."
            )
    if scheme == "nats":
        if parsed.username:
            fields["username"] = parsed.username
        if parsed.password:
            fields["password"] = parsed.password
    return parsed


def _access_keys(settings: Settings, warnings: list[str]) -> tuple[str | None, str | None]:
    """AWS_* first, then LITESTREAM_*: the order Litestream itself applies
    (`cmd/litestream/main.go` `applyLitestreamEnv`)."""
    aws_secret = settings.aws_secret_access_key
    ls_secret = settings.litestream_secret_access_key
    key_id = (settings.aws_access_key_id or "").strip() or (
        settings.litestream_access_key_id or ""
    ).strip()
    secret = (aws_secret.get_secret_value() if aws_secret else "") or (
        ls_secret.get_secret_value() if ls_secret else ""
    )
    aws_id, ls_id = settings.aws_access_key_id, settings.litestream_access_key_id
    if aws_id and ls_id and aws_id.strip() != ls_id.strip():
        warnings.append(
            "Both AWS_ACCESS_KEY_ID and LITESTREAM_ACCESS_KEY_ID are set and differ; "
            "the AWS_* pair is used, as Litestream does."
        )
    redactor.add(secret)
    return key_id or None, secret or None


def _s3_settings(
    settings: Settings, parsed: ReplicaURL, fields: dict[str, str], warnings: list[str]
) -> ReplicaURL:
    if settings.aws_ca_bundle:
        warnings.append(
            "AWS_CA_BUNDLE is set; Litestream's S3 client cannot start with it ('unable to "
            "add custom RootCAs HTTPClient'), so it is not passed to Litestream, which uses "
            "the system's certificate store."
        )
    if parsed.option("region") is None and settings.aws_region and settings.aws_region.strip():
        fields["region"] = settings.aws_region.strip()
    endpoint = (settings.litestream_s3_endpoint or "").strip()
    if endpoint and parsed.option("endpoint") is None:
        url = replica_url.with_option(parsed.url, "endpoint", endpoint)
        reparsed, errors = replica_url.parse(url)
        if reparsed is None:
            warnings.append(f"LITESTREAM_S3_ENDPOINT is ignored: {errors[0]}")
        else:
            return reparsed
    return parsed
