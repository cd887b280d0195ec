"""Read-only look at a replica: which LTX files it holds (`litestream ltx -json -level all`).

An empty JSON list is the only answer taken to mean "no replica at this path yet"; any
error, odd output or deadline means "could not read". Before that, a TCP connect to an
explicit endpoint turns a refused port or an unknown host into an answer in milliseconds
instead of Litestream's ~240 s of retries.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from src.replication.config import ReplicaConfig
from src.replication.failures import Failure, classify, last_error_line, timed_out
from src.replication.process import run_bounded

_DEFAULT_PORTS = {"sftp": 22, "webdav": 80, "webdavs": 443, "nats": 4222}


@dataclass(frozen=True)
class Listing:
    """`files` is the number of LTX files (None when unreadable); `failure` says why not."""

    files: int | None
    bytes: int | None
    seconds: float
    failure: Failure | None = None

    @property
    def empty(self) -> bool:
        return self.failure is None and self.files == 0


def endpoint_address(config: ReplicaConfig) -> tuple[str, int] | None:
    """Host and port the replica is reached at, when the URL names one explicitly."""
    replica = config.replica
    if replica is None:
        return None
    if replica.scheme == "s3":
        endpoint = replica.option("endpoint")
        if not endpoint:
            return None
        target = endpoint if "://" in endpoint else "https://" + endpoint
        parts = urlsplit(target)
        default = 443 if parts.scheme == "https" else 80
        return (parts.hostname or "", parts.port or default) if parts.hostname else None
    if replica.scheme in _DEFAULT_PORTS:
        parts = urlsplit(f"//{replica.host}")
        if parts.hostname:
            return parts.hostname, parts.port or _DEFAULT_PORTS[replica.scheme]
    return None


def preflight(config: ReplicaConfig, timeout: float) -> Failure | None:
    """Connect (TCP only, nothing sent) to an explicit endpoint; a Failure if that fails."""
    address = endpoint_address(config)
    if address is None:
        return None
    host, port = address
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return Failure("dns", f"the endpoint's host name {host!r} does not resolve")
    except ConnectionRefusedError:
        return Failure("refused", f"the endpoint {host}:{port} refused the connection")
    except TimeoutError:
        return timed_out(timeout, f"connecting to {host}:{port}")
    except OSError as exc:
        return Failure("unreachable", f"the endpoint {host}:{port} is unreachable ({exc})")


def list_replica(
    binary: Path, config_path: Path, db_path: Path, env: dict[str, str], timeout: float
) -> Listing:
    """List every LTX level of the replica configured for `db_path`, within `timeout`."""
    result = run_bounded(
        [
            str(binary),
            "ltx",
            "-no-expand-env",
            "-config",
            str(config_path),
            "-json",
            "-level",
            "all",
            str(db_path),
        ],
        timeout=timeout,
        env=env,
        cwd=str(config_path.parent),
    )
    if result.timed_out:
        return Listing(None, None, result.seconds, timed_out(timeout, "listing the replica"))
    if result.returncode != 0:
        text = last_error_line(result.stderr or result.stdout)
        return Listing(None, None, result.seconds, classify(text))
    try:
        files = json.loads(result.stdout)
        if not isinstance(files, list):
            raise ValueError("not a list")
        size = sum(int(f.get("size", 0)) for f in files if isinstance(f, dict))
    except (ValueError, TypeError, AttributeError):
        return Listing(
            None, None, result.seconds, Failure("other", "Litestream's listing was not readable")
        )
    return Listing(len(files), size, result.seconds)
