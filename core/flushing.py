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
    """Calls `flush` every FLUSH_INTERVAL_S from a daemon thread, started by the
    first start() (after any fork, never at import), and once more at exit."""

    def __init__(self, name: str, flush: Callable[[], None]):
        self._name = name
        self._flush = flush
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                atexit.register(self._flush)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            try:
                self._flush()
            except Exception:  # a bug must not stop every later flush: log it, go on
                log.exception("%s flush failed", self._name)
