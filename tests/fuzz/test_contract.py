"""The contract: schemathesis, as its command line runs it, with every check,
against the real ingress (gunicorn), a real worker and the real services,
once with a customer's key, once with an operator's and once with the admin
token. 0 failures.

Every phase: the document's examples, coverage (each constraint's
boundaries, missing and wrong-typed parameters and bodies, methods the path
does not take), fuzzing with valid and invalid data, and stateful sequences
that follow the document's links (a booking's 202 to its job, the booking
and its transitions; a flight list to a flight) and those schemathesis
infers.
Every check (server errors, status codes, content types, headers, response
schemas, schema-valid requests accepted and invalid ones refused, missing
or wrong credentials refused, ...), plus one of ours: every error is an
RFC 9457 problem (tests/fuzz/schemathesis_hooks.py, which also says what the
document states in words and JSON Schema cannot).

The stack has a database, a Redis and queues of its own: the admin's run
clears and warms caches, and disables and rotates the customers it lists,
its own callers among them (last, so no run after it needs them).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from core.clock import utcnow
from core.migrations import migrate
from core.services import connect_services
from core.settings import replace
from tests.conftest import ADMIN, IsolatedStack, bearer, new_customer, store_booking, store_flights
from tests.fuzz.schemathesis_hooks import DROPPED_ENV
from tools.processes import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # seed and bounds
CREDENTIALS = ("customer", "operator", "admin")  # the admin's run last (see above)
FLIGHT = {  # the document's example flight (RG0001-20261128) and route (DEL-BLR)
    "flight_number": "RG0001",
    "airline": "RadiantGo Airlines",
    "origin": "DEL",
    "destination": "BLR",
    "departure_ts": "2026-11-28T06:00:00Z",
    "arrival_ts": "2026-11-28T08:45:00Z",
}


def own_database(uri: str, name: str) -> str:
    return urlunparse(urlparse(uri)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def own_redis():
    """A redis-server of the contract's own: the admin's run clears and warms caches."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_for_port("127.0.0.1", port, 10)
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


@pytest.fixture(scope="module")
def contract_stack(settings, own_redis, tmp_path_factory):
    """An ingress and a worker on a database, a Redis and queues of their own;
    (base URL, headers per role)."""
    name = f"contract_{uuid.uuid4().hex[:6]}"
    own = replace(
        settings,
        QUEUE_NAMESPACE=f"{settings.QUEUE_NAMESPACE}-{name}",
        MONGODB_URI=own_database(settings.MONGODB_URI, f"radiantgo_{name}"),
        REDIS_URL=own_redis,
        LOCK_REDIS_URLS="",
        # Webhook URLs schemathesis makes up are taken without a DNS lookup
        # (nothing is delivered: no receiver, no network); the refusal of
        # private addresses has tests of its own (tests/ingress/test_webhooks_api.py).
        WEBHOOK_ALLOW_PRIVATE=True,
    )
    stack = IsolatedStack(own, connect_services(own), tmp_path_factory.mktemp(name))
    migrate(stack.services.db, own)
    assert store_flights(stack.services, [FLIGHT])["failed"] == 0
    made = {
        role: new_customer(stack.services.db, name=f"Contract {role}", role=role)
        for role in ("customer", "operator")
    }
    store_booking(  # the document's example booking (and AWB), the customer's
        stack.services.db,
        "RG123ABC456",
        {"origin": "DEL", "destination": "BLR", "pieces": 5, "weight_kg": 125.5},
        job_id=str(uuid.uuid4()),
        now=utcnow(),
        customer_id=made["customer"]["customer_id"],
        awb="020-12345675",
    )
    callers = {role: bearer(customer["api_key"]) for role, customer in made.items()}
    callers["admin"] = ADMIN
    stack.start_worker()
    base = stack.start_ingress()
    yield base, callers
    stack.services.mongo.drop_database(stack.services.db.name)
    stack.close()


def run_schemathesis(base: str, headers: dict[str, str], report: Path, dropped: Path):
    command = [
        str(SCHEMATHESIS),
        f"--config-file={CONFIG}",
        "run",
        f"{base}/api/openapi.json",
        "--checks=all",
        "--mode=all",
        "--phases=examples,coverage,fuzzing,stateful",
        "--workers=1",
        f"--header=Authorization: {headers['Authorization']}",
        "--report=junit",
        f"--report-junit-path={report}",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz.schemathesis_hooks",
        DROPPED_ENV: str(dropped),
        "PYTHONPATH": str(ROOT),
    }
    # Run from the report's directory: schemathesis keeps a cache where it runs.
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=900, cwd=report.parent
    )


def figure(pattern: str, output: str) -> int:
    found = re.search(pattern, output)
    return int(found.group(1)) if found else 0


def generated_cases(output: str) -> int:
    return figure(r"Test cases:\s+(\d+) generated", output)


@pytest.mark.slow(reason="schemathesis' every phase over every operation: 20-30 s a credential")
@pytest.mark.parametrize(
    "role",
    [
        # make test runs the customer's; make fuzz (and CI) every credential.
        role if role == "customer" else pytest.param(role, marks=pytest.mark.heavy(reason="~20 s"))
        for role in CREDENTIALS
    ],
)
def test_the_contract_holds_for_every_credential(contract_stack, role, tmp_path):
    base, callers = contract_stack
    report, dropped = tmp_path / "junit.xml", tmp_path / "dropped.txt"
    started = time.monotonic()
    run = run_schemathesis(base, callers[role], report, dropped)
    seconds = time.monotonic() - started
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    summary = run.stdout[run.stdout.find("=== SUMMARY") :] if "SUMMARY" in run.stdout else ""
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-4_000:]
    suites = ET.parse(report).getroot()
    tested = {case.get("name") for case in suites.iter("testcase")}
    failed = [c.get("name") for c in suites.iter("testcase") if c.find("failure") is not None]
    assert not failed, run.stdout[-12_000:]
    assert len(tested) >= 32, tested  # every operation of the document
    assert generated_cases(run.stdout) >= 1000, summary
    # The stateful phase followed links, not only single calls: the customer's
    # through a booking's lifecycle (its 202 to the job, the booking, a cancel).
    links = figure(r"API Links:\s+(\d+) covered", run.stdout)
    assert links >= (5 if role == "customer" else 1), run.stdout[-6_000:]
    kinds = Counter(" ".join(line.split()[:3]) for line in read_lines(dropped))
    print(
        f"{role}: {generated_cases(run.stdout)} cases, 0 failures, {seconds:.0f} s; answers the"
        f" document states in words: {dict(kinds) or 'none'}\n{summary}"
    )


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
