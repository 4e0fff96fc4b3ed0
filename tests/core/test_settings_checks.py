"""core.settings_checks' invariants, as load_settings applies them: settings whose
values each pass but do not fit together fail at start, naming what is wrong."""

import pytest

from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_POOL_MIN": "60"}, "DB_POOL_MIN must not exceed DB_POOL_SIZE"),
        ({"LOCK_REDIS_URLS": "redis://a:1,http://b"}, "LOCK_REDIS_URLS: 'http://b' is not a redis"),
        ({"LOCK_REDIS_URLS": "redis://a:1,"}, "LOCK_REDIS_URLS: '' is not a redis"),
        ({"LOCK_REDIS_URLS": "redis://a:port"}, "LOCK_REDIS_URLS: 'redis://a:port' is not"),
        ({"RABBITMQ_URL": "redis://a:1"}, "RABBITMQ_URL: 'redis://a:1' is not an amqp"),
        ({"RABBITMQ_URL": "amqp://a:1//;http://b//"}, "RABBITMQ_URL: 'http://b//' is not an"),
        ({"RABBITMQ_URL": "amqp://a:1//;"}, "RABBITMQ_URL: '' is not an amqp"),
        ({"RABBITMQ_URL": "amqp://a:1//;amqp://b:port//"}, "RABBITMQ_URL: 'amqp://b:port//'"),
        ({"RABBITMQ_URL": "amqp://a:1//;amqp:///x"}, "RABBITMQ_URL: 'amqp:///x' is not"),
    ],
)
def test_settings_that_do_not_fit_together_fail_naming_why(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_waiters_must_leave_web_threads_free():
    with pytest.raises(SettingsError, match="MAX_WAITERS"):
        load_settings({"MAX_WAITERS": "32", "WEB_THREADS": "32"})
    assert load_settings({"MAX_WAITERS": "31", "WEB_THREADS": "32"}).MAX_WAITERS == 31


def test_warming_runs_more_often_than_route_answers_expire():
    with pytest.raises(SettingsError, match="CACHE_WARM_INTERVAL"):
        load_settings({"CACHE_WARM_INTERVAL": "60", "CACHE_TTL_BOOKINGS": "60"})
    with pytest.raises(SettingsError, match="CACHE_WARM_INTERVAL"):
        load_settings({"CACHE_WARM_INTERVAL": "100", "CACHE_TTL_ROUTES": "90"})
    assert load_settings({"CACHE_WARM_INTERVAL": "59"}).CACHE_WARM_INTERVAL == 59


def test_redis_pool_leaves_a_connection_per_request_thread():
    with pytest.raises(SettingsError, match="REDIS_POOL_SIZE must exceed WEB_THREADS"):
        load_settings({"REDIS_POOL_SIZE": "32", "WEB_THREADS": "32"})
    assert load_settings({"REDIS_POOL_SIZE": "33", "WEB_THREADS": "32"}).REDIS_POOL_SIZE == 33


def test_idempotency_keys_expire_no_later_than_their_jobs():
    with pytest.raises(SettingsError, match="IDEMPOTENCY_TTL_HOURS must not exceed JOB_TTL_DAYS"):
        load_settings({"IDEMPOTENCY_TTL_HOURS": "25", "JOB_TTL_DAYS": "1"})
    assert load_settings({"IDEMPOTENCY_TTL_HOURS": "24", "JOB_TTL_DAYS": "1"}).JOB_TTL_DAYS == 1


@pytest.mark.parametrize("name", ["ADMIN_TOKEN", "METRICS_TOKEN"])
def test_a_token_may_not_look_like_an_api_key(name):
    """The ingress tells tokens from API keys by the prefix (ingress.security)."""
    with pytest.raises(SettingsError, match=name):
        load_settings({name: "rgk_chosen-by-hand"})
    assert getattr(load_settings({name: "chosen-by-hand"}), name) == "chosen-by-hand"


def test_the_overload_limits_must_be_ordered_and_the_target_below_the_interval():
    with pytest.raises(SettingsError, match="OVERLOAD_MIN_LIMIT <= OVERLOAD_INITIAL_LIMIT"):
        load_settings({"OVERLOAD_MIN_LIMIT": "8", "OVERLOAD_INITIAL_LIMIT": "4"})
    with pytest.raises(SettingsError, match="OVERLOAD_MIN_LIMIT <= OVERLOAD_INITIAL_LIMIT"):
        load_settings({"OVERLOAD_INITIAL_LIMIT": "40", "OVERLOAD_MAX_LIMIT": "32"})
    with pytest.raises(SettingsError, match="OVERLOAD_QUEUE_TARGET_MS must stay below"):
        load_settings({"OVERLOAD_QUEUE_TARGET_MS": "100", "OVERLOAD_QUEUE_INTERVAL_MS": "100"})
    assert not load_settings({"OVERLOAD_SHEDDING": "false"}).OVERLOAD_SHEDDING
