"""`python -m src serve`: uvicorn on 0.0.0.0:$PORT behind a proxy (a Space, a load balancer)."""

from __future__ import annotations

import uvicorn

from src.config.settings import load_settings
from src.core.logging import configure_logging, uvicorn_log_config

# Uvicorn's graceful shutdown waits this long for in-flight requests after SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 20
# Uvicorn's httptools protocol with the request head bounded in size and time. An import
# string, not the class: worker processes are spawned and import it themselves.
HTTP_PROTOCOL = "src.http.protocol:BoundedHttpToolsProtocol"


def serve(*, host: str, port: int | None, workers: int | None) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "src.main:app",
        host=host,
        port=port or settings.port,
        workers=workers or settings.web_concurrency,
        http=HTTP_PROTOCOL,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Applied in each worker process too, so that its first lines (before the
        # application is built, src.main) already look like every other.
        log_config=uvicorn_log_config(settings.log_level, settings.log_format),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
    return 0
