"""A loopback TCP forwarder whose behaviour tests can change while it runs: forward,
refuse, or accept and go silent (a database that hangs after connecting)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Forwarder:
    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.mode = "forward"  # "forward" | "silent"
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(128)
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            with self._lock:
                self._sockets.append(client)
            if self.mode == "silent":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.1)
                if self.mode == "silent":
                    # Keep the connection open, deliver nothing: the peer hangs.
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


class PostgresRefuser:
    """A loopback listener speaking just enough of the PostgreSQL protocol to answer every
    startup with one FATAL error, as a pooler does when it rejects the user.

    Supabase's pooler (Supavisor) cannot run here; this answers with the bytes it sends
    for an unknown tenant: ErrorResponse S/V=FATAL, C=XX000, M=<message>.
    """

    def __init__(self, message: str, sqlstate: str = "XX000") -> None:
        fields = b"".join(
            key + value.encode() + b"\0"
            for key, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
        )
        payload = fields + b"\0"
        self._error = b"E" + (len(payload) + 4).to_bytes(4, "big") + payload
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            self.connections += 1
            with contextlib.suppress(OSError), client:
                client.settimeout(2)
                while True:
                    length = int.from_bytes(_read_exactly(client, 4), "big")
                    body = _read_exactly(client, length - 4)
                    if body[:4] in (b"\x04\xd2\x16\x2f", b"\x04\xd2\x16\x30"):
                        client.sendall(b"N")  # SSLRequest / GSSENCRequest: not supported
                        continue
                    client.sendall(self._error)
                    break

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("peer closed")
        data += chunk
    return data
