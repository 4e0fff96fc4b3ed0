"""tools/migrate.py: `make migrate`, the database's schema step on its own."""

import os
import subprocess
import sys
import uuid

import pytest

from core import flights
from core.settings import replace
from tools import ROOT
from tools.migrate import DatabaseDown, migrate_when_up
from tools.processes import free_port


def test_make_migrate_migrates_the_database_mongodb_uri_names(services, settings):
    name = f"migrate_cli_{uuid.uuid4().hex[:8]}"
    uri = settings.MONGODB_URI.replace("/radiantgo_test?", f"/{name}?")
    env = {**os.environ, "MONGODB_URI": uri, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tools.migrate", "--wait", "10"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"{flights.CAPACITY_MIGRATION}: 0" in done.stdout
        marks = services.mongo[name].migrations.distinct("_id")
        assert flights.CAPACITY_MIGRATION in marks
    finally:
        services.mongo.drop_database(name)


def test_a_database_that_never_answers_is_not_waited_for_forever(settings):
    down = replace(
        settings,
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/x?retryWrites=false",
        DB_TIMEOUT_MS=100,
    )
    with pytest.raises(DatabaseDown):
        migrate_when_up(down, wait_s=0.5)
