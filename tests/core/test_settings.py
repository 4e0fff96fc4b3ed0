import pytest

from core.settings import Settings, SettingsError, as_environ, load_settings


def test_defaults_are_the_specs():
    s = load_settings({})
    assert (s.DB_POOL_SIZE, s.DB_POOL_MIN) == (50, 10)
    assert (s.CACHE_TTL_ROUTES, s.CACHE_TTL_FLIGHTS, s.CACHE_TTL_BOOKINGS) == (300, 3600, 60)
    assert (s.RATE_LIMIT_BOOKINGS, s.RATE_LIMIT_UPDATES, s.RATE_LIMIT_ROUTES) == (50, 200, 30)
    assert (s.BULK_BOOKING_LIMIT, s.BULK_UPDATE_LIMIT, s.BULK_FLIGHT_LIMIT) == (1000, 500, 2000)
    assert (s.LOCK_DEFAULT_TTL, s.LOCK_MAX_ATTEMPTS, s.JOB_TTL_DAYS) == (30, 50, 7)
    assert s.PORT == 5000 and s.FLOWER_PORT == 5555 and s.BIND_HOST == "127.0.0.1"
    assert "retryWrites=false" in s.MONGODB_URI and "journal=true" in s.MONGODB_URI
    assert s.embedded_mongo


def test_environment_values_are_typed():
    s = load_settings(
        {"DB_POOL_SIZE": " 80 ", "REDIS_TIMEOUT_S": "0.5", "MONGODB_URI": "mongodb://x/y"}
    )
    assert s.DB_POOL_SIZE == 80 and s.REDIS_TIMEOUT_S == 0.5
    assert not s.embedded_mongo


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_POOL_SIZE": "many"}, "DB_POOL_SIZE='many' is not a valid int"),
        ({"LOCK_DEFAULT_TTL": "0"}, "LOCK_DEFAULT_TTL=0 is out of range"),
        ({"PORT": "70000"}, "PORT=70000 is out of range"),
        ({"WORKER_POOL": "gevent"}, "WORKER_POOL='gevent' is out of range"),
        ({"AWB_PREFIX": "20"}, "AWB_PREFIX='20' is out of range"),
        ({"AWB_PREFIX": "0a0"}, "AWB_PREFIX='0a0' is out of range"),
        ({"AWB_PREFIX": "\u0660\u0662\u0660"}, "AWB_PREFIX="),  # Arabic-Indic digits
        ({"AWB_BLOCK_SIZE": "0"}, "AWB_BLOCK_SIZE=0 is out of range"),
    ],
)
def test_bad_values_fail_with_the_variable_named(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_lock_masters_default_to_redis_url_alone():
    assert load_settings({"REDIS_URL": "redis://r:6379/1"}).lock_redis_urls == ("redis://r:6379/1",)
    three = load_settings({"LOCK_REDIS_URLS": "redis://a:6379/0, redis://b:6379/0,rediss://c/0"})
    assert three.lock_redis_urls == ("redis://a:6379/0", "redis://b:6379/0", "rediss://c/0")


def test_broker_urls_are_rabbitmq_url_split_at_semicolons():
    assert load_settings({}).broker_urls == ("amqp://guest:guest@127.0.0.1:5672//",)
    three = load_settings({"RABBITMQ_URL": "amqp://a:5681//; amqps://b:5682/v ;amqp://u:p@c//"})
    assert three.broker_urls == ("amqp://a:5681//", "amqps://b:5682/v", "amqp://u:p@c//")


def test_unknown_override_is_an_error():
    with pytest.raises(SettingsError, match="unknown settings: NOPE"):
        load_settings({}, NOPE=1)


def test_settings_are_immutable():
    with pytest.raises(AttributeError):
        Settings().PORT = 1  # type: ignore[misc]


def test_only_the_settings_module_reads_the_environment():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("core", "ingress", "workers")
        for path in (root / folder).rglob("*.py")
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert offenders == ["core/settings.py"]


def test_lock_attempts_are_read_from_the_specs_variable():
    assert load_settings({"LOCK_MAX_RETRIES": "7"}).LOCK_MAX_ATTEMPTS == 7
    assert load_settings({}, LOCK_MAX_ATTEMPTS=3).LOCK_MAX_ATTEMPTS == 3
    assert load_settings({"LOCK_MAX_ATTEMPTS": "7"}).LOCK_MAX_ATTEMPTS == 50  # not a variable
    with pytest.raises(SettingsError, match="LOCK_MAX_RETRIES=0 is out of range"):
        load_settings({"LOCK_MAX_RETRIES": "0"})


def test_settings_as_environment_load_back_the_same():
    changed = load_settings({}, LOCK_MAX_ATTEMPTS=9, PORT=5001, REQUIRE_API_KEYS=False)
    environ = as_environ(changed)
    assert environ["LOCK_MAX_RETRIES"] == "9" and "LOCK_MAX_ATTEMPTS" not in environ
    assert load_settings(environ) == changed


def test_webhook_settings_default_to_public_https_and_certifi():
    s = load_settings({})
    assert (s.WEBHOOK_TIMEOUT_S, s.WEBHOOK_ALLOW_PRIVATE, s.WEBHOOK_CA_FILE) == (15.0, False, "")
    assert load_settings({"WEBHOOK_ALLOW_PRIVATE": "true"}).WEBHOOK_ALLOW_PRIVATE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEBHOOK_TIMEOUT_S": "0"}, "WEBHOOK_TIMEOUT_S=0.0 is out of range"),
        ({"WEBHOOK_TIMEOUT_S": "61"}, "WEBHOOK_TIMEOUT_S=61.0 is out of range"),
        ({"WEBHOOK_CA_FILE": "/no/such/ca.pem"}, "WEBHOOK_CA_FILE='/no/such/ca.pem' is out of"),
    ],
)
def test_bad_webhook_settings_fail_at_start(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
