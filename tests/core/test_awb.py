"""core.awb: air waybill numbers' rules, and the serials RadiantGo issues."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from core import awb
from core.errors import AwbStockExhausted, ValidationFailed

# Published AWB numbers, each valid (check digit = serial mod 7):
PUBLISHED = [
    # Australian Border Force, ICS reference "Airway bill check digit formula":
    # serial 1234567 / 7 = 176366 remainder 5 (the prefix left out: Lufthansa's here).
    "020-12345675",
    # jetcurrent.com glossary, "Check Digit": Emirates SkyCargo 176-12345675 and
    # Lufthansa Cargo 020-81140743 (8114074 = 7 x 1159153 + 3).
    "176-12345675",
    "020-81140743",
    # freight.domains, "Air Way Bill Check Digit Calculator": 589 8114074 3.
    "589-81140743",
    # trackingmore.com's air cargo tracker, its example (Cargolux): 172-58338954.
    "172-58338954",
]


@pytest.mark.parametrize("number", PUBLISHED)
def test_published_awbs_are_valid_and_their_check_digit_is_the_serial_mod_7(number):
    assert awb.broken_rule(number) is None
    assert awb.broken_rule(number.replace("-", "")) is None  # the hyphen left out
    prefix, serial = number[:3], int(number[4:11])
    assert awb.awb_number(prefix, serial) == number


@pytest.mark.parametrize(
    ("number", "rule"),
    [
        ("020-81140744", awb.CHECK_DIGIT_MESSAGE),  # a published one, its digit one off
        ("172-58338950", awb.CHECK_DIGIT_MESSAGE),
        ("176-12345670", awb.CHECK_DIGIT_MESSAGE),
        ("176-12345678", "Must be an air waybill number"),  # 7, 8, 9: never a remainder
        ("176-1234567", "Must be an air waybill number"),  # 10 digits
        ("176-123456755", "Must be an air waybill number"),
        ("17-612345675", "Must be an air waybill number"),
        ("176 12345675", "Must be an air waybill number"),
        ("176-12345675\n", "Must be an air waybill number"),
        ("\uff11\uff17\uff16-12345675", "Must be an air waybill number"),  # fullwidth digits
    ],
)
def test_a_broken_awb_names_the_rule_it_breaks(number, rule):
    assert awb.broken_rule(number).startswith(rule)


def test_the_hyphen_left_out_is_put_in():
    assert awb.normalized("02081140743") == "020-81140743"
    assert awb.normalized("020-81140743") == "020-81140743"


def _stock(services, prefix: str, block_size: int = 5) -> awb.SerialStock:
    return awb.SerialStock(services.db.awb_counters, prefix, block_size)


def _own_prefix(services) -> str:
    """A prefix no other test issues from (the counter is the database's)."""
    for _ in range(100):
        prefix = f"{uuid.uuid4().int % 1000:03d}"
        if services.db.awb_counters.find_one({"_id": prefix}) is None:
            services.db.awb_counters.insert_one({"_id": prefix, "issued": 0})
            return prefix
    raise AssertionError("no free prefix")


def test_stocks_on_one_counter_never_issue_a_serial_twice(services):
    """Two processes' stocks (and a restarted one's) take blocks from one
    counter: every AWB differs, each one valid."""
    prefix = _own_prefix(services)
    first, second = _stock(services, prefix), _stock(services, prefix)
    taken = [first.take(), second.take(), first.take()]
    restarted = _stock(services, prefix)  # the first process, after a restart
    taken += [restarted.take() for _ in range(12)] + [second.take() for _ in range(6)]
    assert len(set(taken)) == len(taken)
    assert all(number.startswith(prefix + "-") and not awb.broken_rule(number) for number in taken)
    # Four blocks of 5 and the restarted one's third: one $inc each.
    assert services.db.awb_counters.find_one({"_id": prefix})["issued"] == 5 * 6


def test_stocks_racing_for_a_new_prefix_s_first_blocks_each_get_their_own(services):
    """16 processes starting at once on prefixes no block was taken from yet."""
    for _ in range(6):
        prefix = _own_prefix(services)
        services.db.awb_counters.delete_one({"_id": prefix})
        stocks = [_stock(services, prefix) for _ in range(16)]
        start = threading.Barrier(16)

        def first_take(stock: awb.SerialStock, start=start) -> str:
            start.wait()
            return stock.take()

        with ThreadPoolExecutor(16) as pool:
            taken = list(pool.map(first_take, stocks))
        assert len(set(taken)) == 16
        assert services.db.awb_counters.find_one({"_id": prefix})["issued"] == 16 * 5


def test_a_stock_is_safe_across_threads(services):
    stock = _stock(services, _own_prefix(services), block_size=3)
    with ThreadPoolExecutor(16) as pool:
        taken = list(pool.map(lambda _: stock.take(), range(400)))
    assert len(set(taken)) == 400


def test_a_prefix_whose_serials_are_all_issued_is_a_problem_not_a_crash(services):
    prefix = _own_prefix(services)
    services.db.awb_counters.update_one({"_id": prefix}, {"$set": {"issued": awb.SERIALS - 3}})
    stock = _stock(services, prefix, block_size=5)
    assert [stock.take() for _ in range(2)] == [f"{prefix}-99999981", f"{prefix}-99999992"]
    for _ in range(2):  # and again, without asking the database
        with pytest.raises(AwbStockExhausted) as refused:
            stock.take()
        assert refused.value.status == 503 and prefix in refused.value.detail
    assert services.db.awb_counters.find_one({"_id": prefix})["issued"] == awb.SERIALS + 2


def test_a_request_s_own_awb_is_kept_unless_it_is_of_radiantgo_s_prefix(services):
    stock = _stock(services, _own_prefix(services))
    assert stock.awb_for({"awb": "176-12345675"}) == "176-12345675"
    assert stock.awb_for({}).startswith(stock.prefix + "-")
    with pytest.raises(ValidationFailed) as refused:
        stock.awb_for({"awb": awb.awb_number(stock.prefix, 1234567)})
    assert refused.value.errors == {"awb": [awb.RESERVED_MESSAGE]}


def _queued_create(services, number: str) -> dict:
    from core import jobs, queued_jobs, queues
    from core.clock import utcnow
    from core.ids import new_job_id, new_ref_id

    ref_id, job_id = new_ref_id(), new_job_id()
    job = jobs.new_job(
        services.settings,
        job_id=job_id,
        job_type=queues.job_type(queues.CREATE_BOOKINGS),
        payload=jobs.job_payload({"awb": number}, ref_id=ref_id, awb=number),
        now=utcnow(),
        links={"job": f"/api/jobs/{job_id}"},
        ref_id=ref_id,
    )
    return queued_jobs.job_record(job)


@pytest.mark.parametrize("ending", ["succeeded", "failed", "discarded"])
def test_a_create_claims_its_awb_while_queued_and_frees_it_when_it_ends(services, ending):
    from core import queued_jobs
    from core.errors import AwbTaken

    number = awb.awb_number("176", uuid.uuid4().int % (awb.SERIALS - 1) + 1)
    record = _queued_create(services, number)
    queued_jobs.hold_queued(services.redis, record, 60)
    assert awb.ref_id_of(services.db, services.redis, number) == record["ref_id"]
    rival = _queued_create(services, number)
    with pytest.raises(AwbTaken):
        queued_jobs.hold_queued(services.redis, rival, 60)
    assert queued_jobs.find_job(services.db, services.redis, rival["_id"]) is None  # nothing kept
    assert services.redis.get(queued_jobs.creating_key(rival["ref_id"])) is None
    if ending == "discarded":
        queued_jobs.discard_queued(services.redis, record, 60)
    else:
        failed = [record["_id"]] if ending == "failed" else []
        queued_jobs.release_queued(services.redis, [record], failed)
    # A failed create's AWB still names it (its booking-not-made), as its ref_id does.
    named = record["ref_id"] if ending == "failed" else None
    assert awb.ref_id_of(services.db, services.redis, number) == named
    queued_jobs.hold_queued(services.redis, rival, 60)  # free again: it may be brought anew
    assert awb.ref_id_of(services.db, services.redis, number) == rival["ref_id"]


def test_a_booking_is_found_by_its_awb_through_its_unique_index(services):
    """The list's awb filter, GET /api/awb and the door's check read one
    index entry (the embedded server uses no partial index: sparse)."""
    plan = services.db.bookings.find({"awb": "176-12345675"}).explain()["queryPlanner"]
    assert plan["winningPlan"]["inputStage"]["indexName"] == "awb_1", plan
    assert services.db.bookings.index_information()["awb_1"]["unique"] is True
