"""Figures tallied in the process and added to Redis once a second.

A request, a cache lookup or a task would otherwise pay a Redis round trip for
its statistics alone. Readers in other processes see them up to one interval
late; a process that exits cleanly flushes what it holds, one that is killed
loses at most an interval's worth (statistics, never data).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


class PeriodicFlush:
    """Calls `write` every FLUSH_INTERVAL_S from a daemon thread, started by the
    first start() (after any fork, never at import), and once more at exit.

    One write at a time: flush() returns once what was tallied before it is in
    Redis, even while the thread is still writing what it took a moment ago
    (a reader right after flush() would otherwise see half of it)."""

    def __init__(self, name: str, write: Callable[[], None]):
        self._name = name
        self._write = write
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def flush(self) -> None:
        with self._writing:
            self._write()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            try:
                self.flush()
            except Exception:  # a bug must not stop every later flush: log it, go on
                log.exception("%s flush failed", self._name)
