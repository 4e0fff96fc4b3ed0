"""One job of a kind at a time (core.coalesce), on real Redis."""

import uuid

from core import coalesce
from core.locks import singleton_key


def kind() -> str:
    return f"test.kind.{uuid.uuid4().hex[:6]}"


def test_the_first_claims_and_the_next_get_the_live_job(services):
    job_type, live = kind(), {}
    assert coalesce.holder_or_claim(services.redis, job_type, "job-1", 60, live.get) is None
    live["job-1"] = {"_id": "job-1"}
    for other in ("job-2", "job-3"):
        got = coalesce.holder_or_claim(services.redis, job_type, other, 60, live.get)
        assert got == {"_id": "job-1"}
    assert coalesce.holder(services.redis, job_type) == "job-1"


def test_a_holder_that_ended_without_releasing_is_taken_over(services):
    job_type = kind()
    coalesce.holder_or_claim(services.redis, job_type, "ended", 60, lambda _: None)
    assert coalesce.holder_or_claim(services.redis, job_type, "next", 60, lambda _: None) is None
    assert coalesce.holder(services.redis, job_type) == "next"


def test_release_frees_only_its_own_claim(services):
    job_type = kind()
    coalesce.holder_or_claim(services.redis, job_type, "mine", 60, lambda _: None)
    coalesce.release(services.redis, job_type, "not-mine")
    assert coalesce.holder(services.redis, job_type) == "mine"
    coalesce.release(services.redis, job_type, "mine")
    assert coalesce.holder(services.redis, job_type) is None
    assert not services.redis.exists(singleton_key(job_type))


def test_a_claim_expires_if_its_holder_dies(services):
    job_type = kind()
    coalesce.holder_or_claim(services.redis, job_type, "dead", 60, lambda _: None)
    assert 0 < services.redis.ttl(singleton_key(job_type)) <= 60
