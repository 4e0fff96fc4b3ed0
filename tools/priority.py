"""Run a command at a lower CPU priority that holds against the processes it competes with.

    python -m tools.priority 10 celery -A workers.main worker ...

`nice -n 10` alone does nothing between processes of different sessions on a
Linux kernel with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled
= 1, the default of most distributions and of this machine kind): the
scheduler first shares the CPU between the sessions' autogroups, and a
process's nice value counts only inside its own group. This lowers the
process's nice value, then execs the command (its children inherit it):

- in `make run`, every process of the stack is in supervisord's session (one
  autogroup), where the nice value counts against the ingress and the
  interactive worker. supervisord makes each program a process group leader,
  which cannot start a session: the nice value alone it is.
- started otherwise (the test harness and benchmarks start each process in a
  session of its own, tools.processes), the process leads a session of its
  own, or starts one, and its autogroup's nice value is lowered too: a niced
  worker there took as much CPU as the ingress before.
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
            return  # a process group leader (supervisord's program): nice alone, in its session
    AUTOGROUP.write_text(str(nice))


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m tools.priority NICE COMMAND [ARG...]")
    lower_priority(int(argv[0]))
    os.execvp(argv[1], argv[1:])  # noqa: S606 (the command line is ours: tools.supervision, tests)


if __name__ == "__main__":
    main(sys.argv[1:])
