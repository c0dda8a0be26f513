"""A loopback TCP server that accepts connections and never answers: an SQS endpoint in an outage
(the worst kind: the connection opens, so only the read timeout ends a call)."""

from __future__ import annotations

import socket
import threading


class Blackhole:
    """``with Blackhole() as hole:`` → ``hole.url`` accepts and holds every connection, sends nothing.

    :ivar accepted: connections accepted so far (each SQS call that reached it opened at least one).
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._held.append(conn)  # read nothing, answer nothing, close only at the end
