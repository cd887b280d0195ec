"""The request head is bounded (src.http.protocol): in size, refused early and cheaply
without delaying anyone else, and in time (slowloris), against the real server process;
and, with the parser fed directly, whatever way the bytes are split into reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from src.http.protocol import MAX_HEAD_BYTES, BoundedHttpToolsProtocol, HeadLimits
from tests.server import Server, clean_env, run_server

HEAD_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("protocol")
    env = clean_env(
        HOME=str(tmp / "home"),
        SQLITE_PATH=str(tmp / "todo.db"),
        HTTP_HEADER_TIMEOUT=str(HEAD_TIMEOUT),
        LOG_LEVEL="info",
    )
    with run_server(env, cwd=tmp) as running:
        yield running


def _address(server: Server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _head(size: int, *, close: bool = False) -> bytes:
    """A GET /health whose request line and headers are exactly `size` bytes."""
    start = b"GET /health HTTP/1.1\r\nHost: t\r\n"
    start += b"Connection: close\r\nX-Pad: " if close else b"X-Pad: "
    pad = size - len(start) - 4
    assert pad > 0
    return start + b"p" * pad + b"\r\n\r\n"


def _read_until_closed(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed."""
    sock.settimeout(timeout)
    received = bytearray()
    started = time.monotonic()
    try:
        while chunk := sock.recv(65536):
            received.extend(chunk)
    except ConnectionResetError:
        pass
    return bytes(received), time.monotonic() - started


def _status_and_body(response: bytes) -> tuple[int, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def _headers(response: bytes) -> dict[str, str]:
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1")
    fields = (line.partition(":") for line in head.split("\r\n")[1:])
    return {name.strip().lower(): value.strip() for name, _, value in fields}


def _assert_common_headers(response: bytes) -> str:
    """The headers every response of the app carries; returns the request id."""
    headers = _headers(response)
    assert headers["content-type"] == "application/json", headers
    assert headers["cache-control"] == "no-store", headers
    assert headers["x-content-type-options"] == "nosniff", headers
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin", headers
    assert len(headers["x-request-id"]) >= 16, headers
    return headers["x-request-id"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- size --------------------------------------------------------------------------------


def test_a_head_of_exactly_the_limit_is_served_one_byte_more_is_refused(server: Server) -> None:
    for size, expected in ((MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 431)):
        with socket.create_connection(_address(server)) as sock:
            sock.sendall(_head(size, close=True))
            status, body = _status_and_body(_read_until_closed(sock)[0])
        assert status == expected, size
    assert body == {
        "error": "The request line and headers are larger than 64 KiB.",
        "code": "REQUEST_HEADERS_TOO_LARGE",
    }


def test_spawned_workers_bound_the_head_too(tmp_path: Path) -> None:
    """With WEB_CONCURRENCY=2 uvicorn spawns the workers, which import the protocol by
    its name (a class set up in the parent would not reach them)."""
    env = clean_env(
        HOME=str(tmp_path / "home"), SQLITE_PATH=str(tmp_path / "todo.db"), WEB_CONCURRENCY="2"
    )
    with run_server(env, cwd=tmp_path) as running:
        deadline = time.monotonic() + 20
        while running.logs().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, running.logs()
            time.sleep(0.05)
        for _ in range(6):  # connections are spread over both workers
            with socket.create_connection(_address(running)) as sock:
                sock.sendall(_head(MAX_HEAD_BYTES + 1))
                assert _read_until_closed(sock)[0].startswith(b"HTTP/1.1 431 ")


def test_a_large_but_legal_cookie_is_served(server: Server) -> None:
    cookie = "session=" + "c" * 32 * 1024
    with server.client() as client:
        response = client.get("/health", headers={"Cookie": cookie})
    assert response.status_code == 200, response.text


def test_an_oversized_head_is_refused_at_once_and_the_connection_closed(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(_head(MAX_HEAD_BYTES * 4))
        response, closed_after = _read_until_closed(sock)
    status, body = _status_and_body(response)
    assert status == 431 and body["code"] == "REQUEST_HEADERS_TOO_LARGE"
    # Written like the app's own error bodies (compact JSON), though made without it.
    assert response.partition(b"\r\n\r\n")[2].startswith(b'{"error":"')
    assert b"connection: close" in response.lower()
    assert closed_after < 5  # the linger after a refusal is 2 s at most
    request_id = _assert_common_headers(response)
    assert f"[{request_id}] Request head over 65536 bytes refused" in server.logs()


def test_a_huge_streamed_header_costs_little_and_delays_no_one(server: Server) -> None:
    """80 MB of header: before the limit, 8.6 s of server CPU and a 200, while a
    concurrent /health waited 5 s."""
    pid = server.process.pid
    cpu_before = _cpu_seconds(pid)
    outcome: dict[str, Any] = {}

    def stream() -> None:
        with socket.create_connection(_address(server)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ")
            block, sent = b"b" * 256 * 1024, 0
            try:
                while sent < 80_000_000:
                    sent += sock.send(block)
            except OSError:  # the server closed the connection: expected
                pass
            outcome["sent"] = sent
            outcome["response"], _ = _read_until_closed(sock)

    streamer = threading.Thread(target=stream)
    streamer.start()
    latencies = []
    with server.client(timeout=30) as client:
        while streamer.is_alive() or not latencies:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)
    streamer.join(30)
    assert outcome["sent"] < 20_000_000, outcome["sent"]  # refused long before the end
    assert outcome["response"].startswith(b"HTTP/1.1 431 ")
    assert max(latencies) < 2, latencies
    assert _cpu_seconds(pid) - cpu_before < 2


def test_an_unparsable_request_gets_a_json_400(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        response = _read_until_closed(sock)[0]
    status, body = _status_and_body(response)
    assert status == 400
    assert body == {"error": "Invalid HTTP request received.", "code": "BAD_REQUEST"}
    _assert_common_headers(response)


def test_pipelined_requests_are_all_answered(server: Server) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(request * 3 + request.replace(b"Host: t", b"Host: t\r\nConnection: close"))
        response, _ = _read_until_closed(sock)
    assert response.count(b"HTTP/1.1 200 OK") == 4


# -- time ------------------------------------------------------------------------------------


def test_a_slowloris_head_is_cut_off_with_408(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        sock.settimeout(0.2)
        received = b""
        # One byte every 0.2 s: never a complete head.
        while time.monotonic() - started < 10:
            try:
                sock.sendall(b"X")
                received += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if received and received.endswith(b"}"):
                break
        elapsed = time.monotonic() - started
    status, body = _status_and_body(received)
    assert status == 408 and body["code"] == "REQUEST_TIMEOUT"
    assert HEAD_TIMEOUT * 0.8 < elapsed < HEAD_TIMEOUT + 5
    request_id = _assert_common_headers(received)
    assert f"[{request_id}] Request head not received" in server.logs()


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        received, closed_after = _read_until_closed(sock)
    assert received == b""
    assert HEAD_TIMEOUT * 0.8 < closed_after < HEAD_TIMEOUT + 5


def test_an_idle_keep_alive_connection_outlives_the_head_timeout(server: Server) -> None:
    """Idle between requests is uvicorn's keep-alive (5 s), not the head timeout."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        first = client.get("/health")
        time.sleep(HEAD_TIMEOUT * 2)
        second = client.get("/health")
    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


# -- any split of the bytes (the parser fed directly) -------------------------------------


class _Transport(asyncio.Transport):
    """Stands in for the socket: collects what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.extend(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 7860), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...


class _Protocol(BoundedHttpToolsProtocol):
    limits = HeadLimits(timeout=60)


async def _serve_pieces(pieces: list[bytes]) -> tuple[list[int], bytes]:
    """Feed `pieces` as successive reads; returns the head sizes the app saw, and the output."""
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(int(dict(scope["headers"])[b"x-size"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app=app, lifespan="off", proxy_headers=False, log_config=None)
    config.load()
    transport = _Transport()
    protocol = _Protocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)
    for piece in pieces:
        if transport.closed:
            break
        protocol.data_received(piece)
        await asyncio.sleep(0)
    for _ in range(200):  # let the pipelined responses run
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return seen, bytes(transport.written)


def _sized(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: t\r\nX-Size: %07d\r\nX-Pad: " % size
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


head_sizes = st.one_of(
    st.integers(100, 3000),
    st.integers(MAX_HEAD_BYTES - 100, MAX_HEAD_BYTES),
    st.integers(MAX_HEAD_BYTES + 1, 3 * MAX_HEAD_BYTES),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(head_sizes, min_size=1, max_size=4), cuts=st.data())
def test_any_split_serves_heads_within_the_limit_and_refuses_larger(
    sizes: list[int], cuts: st.DataObject
) -> None:
    stream = b"".join(_sized(size) for size in sizes)
    points = sorted(cuts.draw(st.sets(st.integers(1, len(stream) - 1), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    seen, output = asyncio.run(_serve_pieces(pieces))

    legal = []
    for size in sizes:
        if size > MAX_HEAD_BYTES:
            break
        legal.append(size)
    # The app sees the requests in order, without a gap; at least every one before the
    # first oversized head…
    assert seen == sizes[: len(seen)] and len(seen) >= len(legal)
    # …never a head over twice the limit (one that starts inside a read which also ends
    # an earlier request is counted from the next read on)…
    assert all(size <= 2 * MAX_HEAD_BYTES for size in seen)
    # …and never one over the limit that starts the connection: that one is answered 431.
    if sizes[0] > MAX_HEAD_BYTES:
        assert seen == []
        assert output.startswith(b"HTTP/1.1 431 ")
    assert output.count(b"HTTP/1.1 200 ") == len(seen)
