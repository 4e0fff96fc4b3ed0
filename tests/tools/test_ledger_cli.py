"""tools/ledger.py: the operator's audit and repair of every flight's cargo
space, and the line it leaves in /api/admin/performance and /metrics.

On a database of its own (the suite's other tests leave flights whose space
they took by hand), the suite's Redis."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from core import ledger
from core.services import connect_services
from core.settings import as_environ, replace
from tests.conftest import ADMIN
from tests.core.test_reservations import _create_bookings, _create_item, new_flight
from tools.ledger import cli


@pytest.fixture
def own_database(settings):
    own = replace(
        settings, MONGODB_URI=settings.MONGODB_URI.replace("/radiantgo_test?", "/ledger_cli?")
    )
    svc = connect_services(own)
    svc.mongo.drop_database("ledger_cli")
    yield svc
    svc.mongo.drop_database("ledger_cli")
    svc.close()


def run(svc, command: str):
    return CliRunner().invoke(cli, [command], env=as_environ(svc.settings))


def test_check_names_a_drifting_flight_and_repair_sets_it_right(own_database, app):
    svc = own_database
    fid, fine = new_flight(svc, 1000), new_flight(svc, 1000)
    _create_bookings(svc, [_create_item(fid, 100), _create_item(fine, 200)])
    assert run(svc, "check").exit_code == 0
    svc.db.flights.update_one({"_id": fid}, {"$inc": {"booked_g": 25_000}})

    checked = run(svc, "check")
    assert checked.exit_code == 1, checked.output
    (line, summary) = checked.output.strip().splitlines()
    assert json.loads(line)["flight_id"] == fid and json.loads(line)["drift_kg"] == 25
    assert summary == "2 flights checked, 1 do not balance"
    figures = app.test_client().get("/api/admin/performance", headers=ADMIN).get_json()
    assert figures["ledger"]["flights_unbalanced"] == 1 and figures["ledger"]["drift_kg"] == 25
    advice = [a for a in figures["scalingRecommendations"] if a["type"] == "repair_ledger"]
    assert len(advice) == 1 and "make ledger-repair" in advice[0]["reason"]
    scraped = app.test_client().get("/metrics", headers=ADMIN).get_data(as_text=True)
    assert "radiantgo_ledger_unbalanced_flights 1.0" in scraped

    repaired = run(svc, "repair")
    assert repaired.exit_code == 0, repaired.output
    assert "booked 125 kg -> 100 kg" in repaired.output
    assert repaired.output.strip().splitlines()[-1] == "2 flights checked, 0 do not balance"
    assert ledger.last_check(svc.redis)["flights_unbalanced"] == 0
    assert svc.db.flights.find_one({"_id": fid})["available_g"] == 900_000
