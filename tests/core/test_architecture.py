"""core/ is the domain: it must not depend on the web or the task framework."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_neither_flask_nor_celery():
    for path in CORE.rglob("*.py"):
        banned = imported_modules(path) & {"flask", "flask_smorest", "celery", "ingress", "workers"}
        assert not banned, f"{path.name} imports {banned}"


def test_importing_the_apps_creates_no_client():
    """No Mongo/Redis client at import: importing every module opens no socket."""
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('socket opened at import')\n"
        "socket.socket.connect = refuse\n"
        "import ingress, workers.main, workers.jobs, celeryconfig, core.services\n"
        "print('ok')\n"
    )
    root = CORE.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": ""},
        check=False,
    )
    assert out.stdout.strip() == "ok", out.stderr
