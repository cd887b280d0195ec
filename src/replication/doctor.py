"""`python -m src doctor --connect`: can the replica be read? Lists it, writes nothing."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from src.replication.binary import LitestreamUnavailable, litestream
from src.replication.config import ReplicaConfig
from src.replication.listing import list_replica, preflight
from src.replication.litestream_config import run_directory

DoctorStatus = Literal["ok", "empty", "unreadable", "invalid"]


@dataclass(frozen=True)
class DoctorResult:
    """`ok`: the replica holds `files` LTX files (`bytes` in all); `empty`: nothing there
    yet (a first deploy would start it); `unreadable`/`invalid`: `reason` says why."""

    status: DoctorStatus
    replica_url: str
    reason: str | None = None
    code: str | None = None
    files: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    litestream_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def doctor_check(
    config: ReplicaConfig, timeout: float = 10.0, db_path: Path | None = None
) -> DoctorResult:
    """List the replica within about `timeout` s (TCP pre-check included). Never raises."""
    if not config.valid:
        return DoctorResult(
            "invalid", config.masked_url, reason="; ".join(config.errors), code="invalid"
        )
    try:
        binary = litestream()
    except LitestreamUnavailable as exc:
        return DoctorResult("unreadable", config.masked_url, reason=str(exc), code="no_litestream")
    failure = preflight(config, timeout=min(5.0, timeout))
    if failure is not None:
        return DoctorResult(
            "unreadable",
            config.masked_url,
            reason=failure.reason,
            code=failure.code,
            litestream_version=binary.version,
        )
    # Any path works: Litestream only looks the database up in the config it is given.
    with tempfile.TemporaryDirectory(prefix="todo-doctor-") as scratch:
        target = db_path.absolute() if db_path is not None else Path(scratch) / "todo.db"
        with run_directory(config, target) as (config_path, env):
            listing = list_replica(binary.path, config_path, target, env, timeout)
    if listing.failure is not None:
        return DoctorResult(
            "unreadable",
            config.masked_url,
            reason=listing.failure.reason,
            code=listing.failure.code,
            seconds=round(listing.seconds, 3),
            litestream_version=binary.version,
        )
    return DoctorResult(
        "empty" if listing.empty else "ok",
        config.masked_url,
        files=listing.files,
        bytes=listing.bytes,
        seconds=round(listing.seconds, 3),
        litestream_version=binary.version,
    )
