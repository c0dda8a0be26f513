"""A real StatsD collector for tests: a UDP socket on loopback that keeps every metric line it receives."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Self


class StatsdListener:
    """Listen on ``127.0.0.1:<free port>`` (``.port``); ``lines`` holds every line received (a packet may
    carry several, newline-separated). Use as a context manager."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-listener", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.lines.extend(line for line in data.decode(errors="replace").splitlines() if line)

    def matching(self, fragment: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if fragment in line]

    def wait_for(self, fragment: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> list[str]:
        """Lines containing ``fragment``, waiting up to ``timeout`` s (or while ``alive()``) for the first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and alive():
            found = self.matching(fragment)
            if found:
                return found
            time.sleep(0.2)
        return self.matching(fragment)
