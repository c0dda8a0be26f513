"""A loopback TCP proxy that a test can cut and restore: the way to make a real server "unreachable"
without touching the server (we never stop the machine's PostgreSQL).

    with TcpProxy("127.0.0.1", 5432) as proxy:      # proxy.port forwards to 127.0.0.1:5432
        ...                                          # point the client at 127.0.0.1:proxy.port
        proxy.cut()                                  # drop every open connection, refuse new ones
        proxy.restore()                              # forward again

``latency_s`` delays every chunk coming back from the server: a slow endpoint, e.g. to prove that an
async caller keeps its event loop free while a request is outstanding.

While cut, new connections are accepted and closed at once (the client sees a reset/EOF quickly rather
than hanging), and existing ones are shut down in both directions.
"""

from __future__ import annotations

import select
import socket
import threading
import time


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``; :meth:`cut` / :meth:`restore`."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", listen_port: int = 0, latency_s: float = 0.0):
        self.target = (target_host, target_port)
        self.latency_s = latency_s
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((listen_host, listen_port))
        self._server.listen(128)
        self.host, self.port = self._server.getsockname()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._cut = threading.Event()
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    # -- control ---------------------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop all open connections and refuse new ones until :meth:`restore`."""
        self._cut.set()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            _close(s)

    def restore(self) -> None:
        self._cut.clear()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        _close(self._server)
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._server], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            self.accepted += 1
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._cut.is_set() and not self._closed.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is b and self.latency_s:
                        time.sleep(self.latency_s)
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)
            _close(a)
            _close(b)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
