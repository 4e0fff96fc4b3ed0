"""The layering, enforced: core/ is the domain, free of the web and the task
framework; the ingress and the workers never import each other (the ingress
publishes with celeryconfig's app); views and tasks are short adapters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = {"flask", "flask_smorest", "werkzeug", "webargs"}
TASKS = {"celery", "celery_batches", "kombu", "amqp"}
# package -> the top-level packages it must never import
FORBIDDEN = {
    "core": WEB | TASKS | {"ingress", "workers", "celeryconfig", "tools", "perf"},
    "ingress": {"workers", "tools", "perf"},
    "workers": WEB | {"ingress", "tools", "perf"},
}
ADAPTER_MAX_LINES = 15
VIEW_METHODS = {"get", "post", "put", "patch", "delete"}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_rules(package):
    broken = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert not {path: names for path, names in broken.items() if names}


def test_the_import_rules_see_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom workers.tasks import noop\nimport flask.json\n")
    assert imported_packages(sample) == {"os", "workers", "flask"}


def _length(function: ast.FunctionDef) -> int:
    """Lines from `def` to the end, the docstring not counted (decorators neither)."""
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _decorated_by(node: ast.AST, word: str) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(word in ast.unparse(decorator) for decorator in decorators)


def adapters(path: Path) -> list[tuple[str, ast.FunctionDef]]:
    """Celery tasks (`@shared_task`) and Flask views: the handler methods of a
    routed MethodView, and functions routed themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and (
            _decorated_by(node, "shared_task") or _decorated_by(node, ".route")
        ):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and _decorated_by(node, ".route"):
            found += [
                (f"{node.name}.{method.name}", method)
                for method in node.body
                if isinstance(method, ast.FunctionDef) and method.name in VIEW_METHODS
            ]
    return found


def test_every_view_and_task_is_a_short_adapter():
    long = {
        f"{path.relative_to(ROOT)}:{name}": _length(function)
        for package in ("ingress", "workers")
        for path in (ROOT / package).rglob("*.py")
        for name, function in adapters(path)
        if _length(function) > ADAPTER_MAX_LINES
    }
    assert not long, f"adapters over {ADAPTER_MAX_LINES} lines: {long}"


def test_adapters_are_found():
    tasks = [name for name, _ in adapters(ROOT / "workers" / "tasks.py")]
    views = [name for name, _ in adapters(ROOT / "ingress" / "bookings.py")]
    assert {"create_bookings", "import_flights", "warm_cache"} <= set(tasks)
    assert {"Bookings.post", "Bookings.get", "Booking.get"} <= set(views)


def test_the_length_leaves_out_the_docstring(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('@shared_task\ndef task():\n    """One.\n\n    Two."""\n    return 1\n')
    [(_, function)] = adapters(sample)
    assert _length(function) == 2


def test_importing_the_apps_creates_no_client():
    """No Mongo/Redis/broker client at import: importing every module opens no socket."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('socket opened at import')\n"
        "socket.socket.connect = refuse\n"
        "import ingress, workers.main, workers.running, celeryconfig, core.services\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        check=False,
    )
    assert out.stdout.strip() == "ok", out.stderr


# core module -> the core modules (and clients) it must never import. Recording
# runs on every request and task, so it knows nothing of reading or advice; the
# advice is arithmetic on figures already read, so it holds no client.
# The route search reads flights and nothing else: its cached answers and
# beat's warming are built on it, never the other way round; the booking path
# takes its itinerary rules from core.itinerary, not from the search.
SEARCH_SIDE = {"routes", "route_answers", "warming"}
CORE_FORBIDDEN = {
    "routes": {"cache", "redis", "route_answers", "warming"},
    "route_answers": {"warming"},
    "itinerary": SEARCH_SIDE | {"cache"},
    "group_commit": SEARCH_SIDE,
    "bookings": SEARCH_SIDE,
    "reservations": SEARCH_SIDE,
    "metrics": {"monitoring", "scaling", "sizing"},
    "backpressure": {"monitoring", "scaling", "sizing"},
    "scaling": {"metrics", "monitoring", "redis", "pymongo"},
    "sizing": {"metrics", "monitoring", "scaling", "redis", "pymongo"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level packages, and the core modules by their name within core."""
    names = imported_packages(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "core":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("core."))
    return names


@pytest.mark.parametrize("module", sorted(CORE_FORBIDDEN))
def test_core_module_rules(module):
    path = ROOT / "core" / f"{module}.py"
    assert not imported_modules(path) & CORE_FORBIDDEN[module]


def test_the_core_module_rules_see_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import redis\nfrom core import queues, sizing\nfrom core.monitoring import x\n"
    )
    assert imported_modules(sample) == {"redis", "core", "queues", "sizing", "monitoring"}


CORE_MODULE_MAX_LINES = 400


def test_no_core_module_is_over_its_length():
    """A module past this is doing several jobs: split it along its seams."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "core").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > CORE_MODULE_MAX_LINES
    }
    assert not long, f"core modules over {CORE_MODULE_MAX_LINES} lines: {long}"


def test_migrations_run_only_as_their_own_step():
    """Indexes and one-off data migrations run from core.migrations, called by
    `make migrate`, `make run`, `make cluster` and the deploy's migrate service:
    never as a side effect of a worker getting its clients or of the app factory."""
    runs = {
        str(path.relative_to(ROOT))
        for package in ("workers", "ingress")
        for path in (ROOT / package).rglob("*.py")
        if {"migrations"} & imported_modules(path) or "ensure_indexes" in path.read_text()
    }
    assert not runs, f"adapters that migrate: {runs}"


def _response_schemas(path: Path) -> dict[str, str]:
    """Schema name -> the module it is imported from, for every schema a view
    declares as an answer (`@blp.response`, `@blp.alt_response`) in `path`."""
    tree = ast.parse(path.read_text())
    source = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    found = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr not in ("response", "alt_response"):
            continue
        for arg in [*call.args, *(k.value for k in call.keywords if k.arg == "schema")]:
            target = arg.func if isinstance(arg, ast.Call) else arg
            if isinstance(target, ast.Name) and target.id.endswith("Schema"):
                found[target.id] = source.get(target.id, path.stem)
    return found


def test_response_shapes_live_in_the_ingress():
    """core/schemas/ validates what comes in; what goes out is the ingress's."""
    declared = {
        f"{path.relative_to(ROOT)}:{name}": module
        for path in (ROOT / "ingress").glob("*.py")
        for name, module in _response_schemas(path).items()
    }
    assert len(declared) > 20  # the views' answers are found
    from_core = {name: module for name, module in declared.items() if module.startswith("core")}
    assert not from_core, f"answers declared with core's schemas: {from_core}"


def test_the_response_rule_sees_a_core_schema(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from core.schemas.flights import FlightSchema\n"
        "from ingress.responses.jobs import JobSchema\n"
        "@blp.response(200, FlightSchema)\n@blp.alt_response(202, schema=JobSchema)\n"
        "def view(): pass\n"
    )
    assert _response_schemas(sample) == {
        "FlightSchema": "core.schemas.flights",
        "JobSchema": "ingress.responses.jobs",
    }
