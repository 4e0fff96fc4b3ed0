"""supervisord's event listeners for `make run` (configured by tools.supervision).

    python -m tools.supervisor_events restarts   # PROCESS_STATE and TICK_60 events
    python -m tools.supervisor_events echo       # PROCESS_LOG events

`restarts` counts each restart of a program in Redis (core.metrics, served on
/metrics), and kills what is left of a process group whose leader died: the
pool processes of a Celery worker SIGKILLed notice only when idle, and one in
the middle of a task (a bulk import's, for minutes) would finish it beside its
redelivered copy.
`echo` writes every program's output to the terminal, a line at a time, with
the program's name in front; var/log/<program>.log keeps it too.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import TextIO

from supervisor.childutils import eventdata, get_headers, listener

from core import metrics
from core.errors import REDIS_ERRORS

log = logging.getLogger("tools.supervisor_events")
RESTARTED_FROM = frozenset({"EXITED", "BACKOFF"})  # a start from STOPPED is a first start
NAME_WIDTH = 10
LONGEST_PARTIAL = 65536  # a line without its end is shown once it is this long


def events(stdin: TextIO, stdout: TextIO) -> Iterator[tuple[str, str]]:
    """(event name, payload) for each event supervisord sends, acknowledged
    once the caller has handled it."""
    while True:
        headers, payload = listener.wait(stdin, stdout)
        yield headers["eventname"], payload
        listener.ok(stdout)


class RestartCounter:
    """Restarts per program, added to Redis after each event; what Redis could
    not take is kept and added with the next event (TICK_60 at the latest)."""

    def __init__(self, client):
        self.redis = client
        self.pending: Counter[str] = Counter()

    def handle(self, name: str, payload: str) -> None:
        if name.startswith("PROCESS_STATE_"):
            fields = get_headers(payload)
            if name == "PROCESS_STATE_STARTING":
                # 0 on a first start: the counter exists before its first rise.
                self.pending[fields["processname"]] += fields["from_state"] in RESTARTED_FROM
            elif name == "PROCESS_STATE_EXITED":
                kill_group(int(fields["pid"]))
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        try:
            metrics.record_restarts(self.redis, dict(self.pending))
        except REDIS_ERRORS as exc:
            log.warning("restarts not counted yet (%s): %s", exc, dict(self.pending))
            return
        self.pending.clear()


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a dead program's process group. supervisor made
    the program the leader of that group; while any member lives, Linux keeps
    the group's id from being used again."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return  # the group died with its leader
    log.warning("killed what was left of process group %d", pgid)


class Echo:
    """Each program's output as whole lines, `HH:MM:SS name | line`."""

    def __init__(self, out: TextIO):
        self.out = out
        self.partial: dict[str, str] = {}  # a program's output since its last newline

    def handle(self, payload: str) -> None:
        headers, data = eventdata(payload)
        program = headers["processname"]
        *lines, rest = (self.partial.pop(program, "") + data).split("\n")
        if len(rest) >= LONGEST_PARTIAL:
            lines.append(rest)
        elif rest:
            self.partial[program] = rest
        stamp = time.strftime("%H:%M:%S")
        self.out.write("".join(f"{stamp} {program:<{NAME_WIDTH}} | {line}\n" for line in lines))
        self.out.flush()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # supervisord's stop: a clean exit
    # supervisord counts a payload's length in characters of UTF-8 text.
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if argv == ["restarts"]:
        from core.logs import configure_logging
        from core.services import connect_redis
        from core.settings import load_settings

        settings = load_settings()
        configure_logging(settings)
        counter = RestartCounter(connect_redis(settings))
        for name, payload in events(stdin, sys.stdout):
            counter.handle(name, payload)
    elif argv == ["echo"]:
        echo = Echo(sys.stderr)
        for _, payload in events(stdin, sys.stdout):
            echo.handle(payload)
    else:
        sys.exit("usage: python -m tools.supervisor_events restarts|echo")


if __name__ == "__main__":
    main(sys.argv[1:])
