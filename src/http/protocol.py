"""The HTTP/1.1 server protocol the app runs under: uvicorn's httptools protocol with a
bounded request head.

Uvicorn's httptools protocol puts no limit on the request line and headers: httptools
joins the pieces of a header value by concatenating bytes, so one client streaming an
80 MB header made the server spend 8.6 s of CPU on it (while every other client waited)
and then answered 200, and an unfinished 40 MB header held about 70 MB of memory for as
long as the client kept the connection open. This protocol

* refuses a head (request line and headers) over `HeadLimits.max_bytes` (64 KiB) with
  431 and our JSON error body, after at most that many bytes went into the parser;
* closes a connection whose request head is not complete within `HeadLimits.timeout`
  seconds of the connection opening or of the head's first bytes (slowloris), with 408
  when part of a head arrived; an idle keep-alive connection stays uvicorn's business;
* answers a request httptools cannot parse with a JSON 400 (uvicorn writes plain text).

These refusals carry the headers of every other response (a new `X-Request-ID`, which
their log line names too, `Cache-Control: no-store`, the security headers).

Bytes are fed to the parser in slices of at most the room left for the current head, so
an oversized head is caught before the parser has buffered more than the limit. A head
that begins in the middle of a slice that also ends another message (pipelining) is
counted from the next slice on: such a head is refused by 128 KiB at the latest.

Plugged in with uvicorn's `http=` option as "src.http.protocol:BoundedHttpToolsProtocol"
(an import string, so that worker processes started with `spawn` import it too).
"""

from __future__ import annotations

import json
from asyncio import AbstractEventLoop, TimerHandle, Transport
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from src.http.headers import NO_STORE, new_request_id, standard_headers

MAX_HEAD_BYTES = 64 * 1024
# Apache's mod_reqtimeout allows 20 s for the headers; nginx 60 s. A proxy in front (a
# Space's) sends a whole head at once, so only a stalled or hostile client waits this long.
DEFAULT_HEAD_TIMEOUT_SECONDS = 20.0
# After a refusal, what the client still sends is read and dropped (up to this long and
# this much), so that closing does not reset a connection whose client is still sending
# the rest of its head: a reset can destroy the response before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

# Where the connection is in the current message.
_IDLE, _HEAD, _BODY = 0, 1, 2


@dataclass(frozen=True)
class HeadLimits:
    """`max_bytes`: request line plus headers, in bytes; `timeout`: seconds."""

    max_bytes: int = MAX_HEAD_BYTES
    timeout: float = DEFAULT_HEAD_TIMEOUT_SECONDS


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with the head bounded in size and in time."""

    # None: read from the settings (HTTP_HEADER_TIMEOUT) on the first connection.
    limits: ClassVar[HeadLimits | None] = None

    @classmethod
    def configured_limits(cls) -> HeadLimits:
        if cls.limits is None:
            # Imported here so that importing the protocol stays cheap for servers that
            # set `limits` themselves (bench/floor.py).
            from src.config.settings import load_settings

            cls.limits = HeadLimits(timeout=load_settings().http_header_timeout)
        return cls.limits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.configured_limits()
        self._max_head = limits.max_bytes
        self._head_timeout = limits.timeout
        self._phase = _IDLE
        self._head_bytes = 0  # of the current head, fed to the parser so far
        self._events = 0  # heads and messages completed: tells whether a slice held one
        self._timer: TimerHandle | None = None  # head deadline, or the linger after a refusal
        self._refused = False
        self._discarded = 0  # bytes dropped after a refusal

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and sends nothing holds a connection too.
        self._start_timer(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: read, never parsed
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        limit, start, end = self._max_head, 0, len(data)
        while start < end:
            size = limit if self._phase == _BODY else limit - self._head_bytes
            piece = data if start == 0 and end <= size else memoryview(data)[start : start + size]
            start += len(piece)
            events = self._events
            if not self._feed(piece):
                return
            if self._phase == _HEAD:
                # Only a slice in which nothing else ended is all head.
                self._head_bytes = self._head_bytes + len(piece) if events == self._events else 0
                if self._head_bytes >= limit:
                    self._refuse_head()
                    return
        if self._phase != _BODY and self._timer is None and not self._responding():
            self._start_timer(self._head_timeout, self._head_timed_out)

    def _feed(self, piece: bytes | memoryview) -> bool:
        """Feed the parser as uvicorn does; False when the connection is done with."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserError:
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return True

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = _HEAD
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._head_bytes = 0
        self._events += 1
        self._stop_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._events += 1
        super().on_message_complete()

    # -- refusals --------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._write_error(400, "BAD_REQUEST", msg, new_request_id())
        self.transport.close()

    def _refuse_head(self) -> None:
        self._refused = True
        self._stop_timer()
        if self._responding():
            # A response to an earlier request is being written: end with it.
            self.cycle.keep_alive = False
            return
        request_id = new_request_id()
        self.logger.warning(
            "Request head over %d bytes refused.",
            self._max_head,
            extra={"request_id": request_id},
        )
        self._write_error(
            431,
            "REQUEST_HEADERS_TOO_LARGE",
            f"The request line and headers are larger than {self._max_head // 1024} KiB.",
            request_id,
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._start_timer(LINGER_SECONDS, self.transport.close)

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._responding():
            self.cycle.keep_alive = False
            return
        if self._phase == _HEAD:
            request_id = new_request_id()
            self.logger.info(
                "Request head not received within %gs.",
                self._head_timeout,
                extra={"request_id": request_id},
            )
            self._write_error(
                408,
                "REQUEST_TIMEOUT",
                f"The request head was not received within {self._head_timeout:g} s.",
                request_id,
            )
        self.transport.close()

    def _write_error(self, status: int, code: str, message: str, request_id: str) -> None:
        body = json.dumps({"error": message, "code": code}, separators=(",", ":")).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *standard_headers(request_id),
            NO_STORE,
            (b"connection", b"close"),
        ]
        content = [STATUS_LINE[status]]
        for name, value in headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))

    # -- helpers -------------------------------------------------------------------

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _start_timer(self, delay: float, callback: Callable[[], object]) -> None:
        self._stop_timer()
        self._timer = self.loop.call_later(delay, callback)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
