"""A time limit on a whole network exchange, not on each wait within it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Deadline:
    """One attempt's time limit. Socket timeouts bound each wait; this bounds
    their sum: when time is up it shuts the attempt's socket down, which ends
    whatever read or write the attempt is blocked in, TLS handshake included.
    It keeps a duplicate of the socket, closed only by `end`, so shutting down
    can never reach a socket that has since been closed and its number reused."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._fired = False

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() - self._started >= self.seconds

    @property
    def interrupted(self) -> bool:
        """Whether the socket was shut down: what was read until then may be cut short."""
        return self._fired

    def remaining(self) -> float:
        """Seconds left; TimeoutError when none are."""
        left = self.seconds - (time.monotonic() - self._started)
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self._started) * 1000)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when time is up (or now, if it already is)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
            self._socket = sock.dup()
            if self._fired:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
            elif self._timer is None:
                left = max(0.0, self.seconds - (time.monotonic() - self._started))
                self._timer = threading.Timer(left, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._fired = True
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def end(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._socket is not None:
                self._socket.close()
                self._socket = None
