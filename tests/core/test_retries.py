"""core/retries.py: the retry schedule of a job's transient failure."""

from core import queues, retries
from core.settings import load_settings, replace


def test_the_wait_doubles_from_half_a_second_to_thirty():
    assert [retries.countdown_s(n) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_each_wait_has_the_delay_queue_rabbitmq_already_knows():
    # Declared under these names and TTLs: a queue redeclared with other
    # arguments is refused (PRECONDITION_FAILED).
    assert [queues.delay_name(ms) for ms in retries.STEPS_MS] == [
        "retry-500ms",
        "retry-1000ms",
        "retry-2000ms",
        "retry-4000ms",
        "retry-8000ms",
        "retry-16000ms",
        "retry-30000ms",
    ]


def test_a_job_gives_up_after_task_max_retries():
    settings = replace(load_settings({}), TASK_MAX_RETRIES=3)
    assert not retries.exhausted(2, settings) and retries.exhausted(3, settings)
    assert retries.gave_up("Redis down", settings) == "Gave up after 3 retries: Redis down"
