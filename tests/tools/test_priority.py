"""tools.priority: a lowered priority that holds between sessions (autogroups)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.priority import AUTOGROUP

ROOT = Path(__file__).resolve().parents[2]
REPORT = (
    "import os, pathlib; p = pathlib.Path('/proc/self/autogroup');"
    " print(os.nice(0)); print(p.read_text() if p.exists() else '')"
)


def _run(*prefix: str, new_session: bool, group_leader: bool = False) -> list[str]:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", REPORT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        start_new_session=new_session,
        process_group=0 if group_leader else None,
    )
    return done.stdout.splitlines()


@pytest.mark.parametrize("new_session", [True, False], ids=["session-leader", "in-a-session"])
def test_the_command_runs_niced_and_its_autogroup_too(new_session):
    before = os.nice(0)
    lines = _run(sys.executable, "-m", "tools.priority", "7", new_session=new_session)
    assert int(lines[0]) == min(before + 7, 19)
    if AUTOGROUP.exists():
        # its own session's group, never the caller's (ours stays as it was).
        # A process in the root group (init's session, as under CI) reads "".
        assert lines[1].endswith(" nice 7")
        ours = AUTOGROUP.read_text().split()
        assert not ours or lines[1].split()[0] != ours[0]
        assert ours[-2:] != ["nice", "7"]


def test_nice_zero_changes_nothing():
    lines = _run(sys.executable, "-m", "tools.priority", "0", new_session=True)
    assert int(lines[0]) == os.nice(0)


def test_a_group_leader_in_a_shared_session_runs_niced_beside_the_others():
    """As supervisord starts the background worker: a process group leader (it
    cannot start a session) in the session of the processes it competes with.
    Its nice value counts against theirs (one autogroup), left as it is."""
    before = os.nice(0)
    ours = AUTOGROUP.read_text().strip() if AUTOGROUP.exists() else ""
    lines = _run(sys.executable, "-m", "tools.priority", "7", new_session=False, group_leader=True)
    assert int(lines[0]) == min(before + 7, 19)
    if AUTOGROUP.exists():
        assert lines[1] == ours == AUTOGROUP.read_text().strip()  # ours, not niced
