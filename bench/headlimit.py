"""What one client streaming a huge request header costs the server, and everyone else.

    python -m bench.headlimit --port 8000 --pid 1234 [--mb 80]

One client sends `GET /health` with an `--mb` megabyte header as fast as loopback takes
it, reading the socket at the same time; meanwhile another client asks for `/health`
every 20 ms on fresh connections. Reported: when the big request was answered (its status,
or how the connection ended), the server's CPU time (user + system, from /proc) from the
first byte to the answer plus a second, and the worst `/health` latency in that window.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from typing import Any

import httpx2 as httpx

CHUNK = 256 * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the process, in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _big_request(host: str, port: int, size: int, out: dict[str, Any]) -> None:
    started = time.monotonic()
    sock = socket.create_connection((host, port), timeout=30)
    received = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                received.extend(chunk)
                if "answered_s" not in out:
                    out["answered_s"] = time.monotonic() - started
        except OSError as exc:
            out["read_error"] = type(exc).__name__
        out.setdefault("closed_s", time.monotonic() - started)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode())
        block = b"a" * CHUNK
        while sent < size:
            sent += sock.send(block[: min(CHUNK, size - sent)])
        sock.sendall(b"\r\n\r\n")
        out["sent_all_s"] = time.monotonic() - started
    except OSError as exc:
        out["send_error"] = type(exc).__name__
    out["sent_mb"] = round(sent / 1e6, 1)
    reader.join(60)
    sock.close()
    head = bytes(received[:200]).split(b"\r\n", 1)[0].decode(errors="replace")
    out["status_line"] = head or None


def measure(host: str, port: int, pid: int, megabytes: float = 80) -> dict[str, Any]:
    """Send one oversized head while timing /health; see the module docstring."""
    base = f"http://{host}:{port}"
    httpx.get(base + "/health", timeout=10)  # warm
    result: dict[str, Any] = {"header_mb": megabytes}
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                httpx.get(base + "/health", timeout=30)
                latencies.append(time.monotonic() - started)
            except httpx.HTTPError:
                latencies.append(float("inf"))
            time.sleep(0.02)

    cpu_before = cpu_seconds(pid)
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    big = threading.Thread(target=_big_request, args=(host, port, int(megabytes * 1e6), result))
    big.start()
    big.join(120)
    time.sleep(1)  # whatever the server still does with it, after the answer
    stop.set()
    prober.join(60)
    result["server_cpu_s"] = round(cpu_seconds(pid) - cpu_before, 3)
    result["health_max_ms"] = round(max(latencies) * 1000, 1) if latencies else None
    result["health_probes"] = len(latencies)
    for key in ("answered_s", "closed_s", "sent_all_s"):
        if key in result:
            result[key] = round(result[key], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server process (for CPU)")
    parser.add_argument("--mb", type=float, default=80)
    args = parser.parse_args()
    print(json.dumps(measure(args.host, args.port, args.pid, args.mb), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
