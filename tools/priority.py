"""Run a command at a lower CPU priority that holds against other sessions too.

    python -m tools.priority 10 celery -A workers.main worker ...

`nice -n 10` alone does nothing between processes of different sessions on a
Linux kernel with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled
= 1, the default of most distributions and of this machine kind): the
scheduler first shares the CPU between the sessions' autogroups, and a
process's nice value counts only inside its own group. honcho and the test
harness start every process in a session of its own, so a niced worker still
took as much CPU as the ingress. This lowers the process's nice value and, once
the process leads a session of its own, its autogroup's nice value, then execs
the command (its children inherit both).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int) -> None:
    """Lower this process's CPU priority by `nice` (0-19), within its session and,
    where the kernel groups by session, as a session against the others."""
    if nice <= 0:
        return
    os.nice(nice)
    if not AUTOGROUP.exists():
        return  # no autogroup scheduling: the nice value alone counts
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()  # never nice the caller's session (a shell's, say) with us
        except PermissionError:
            return  # a process group leader cannot start a session: nice alone
    AUTOGROUP.write_text(str(nice))


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m tools.priority NICE COMMAND [ARG...]")
    lower_priority(int(argv[0]))
    os.execvp(argv[1], argv[1:])  # noqa: S606 (the command line is ours: Procfile, tests)


if __name__ == "__main__":
    main(sys.argv[1:])
