"""The one place that reads the environment.

Every limit, URL and secret RadiantGo uses is a field of `Settings`, filled from
an environment variable of the same name (the spec's names; a field whose name
says better what its value is names the spec's variable as `env`) with a typed
default. A bad value fails at start-up with a message naming the variable, and
settings that depend on each other are checked together, so a typo in a
deployment never turns into a surprising runtime default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from core import settings_checks
from core.settings_checks import non_negative, positive


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _setting(default: Any, *, env: str | None = None, check=None, doc: str = "") -> Any:
    """A field read from the environment variable `env` (default: its own name)."""
    return field(default=default, metadata={"check": check, "doc": doc, "env": env})


@dataclass(frozen=True)
class Settings:
    # Services. The Mongo default is the embedded SecantusDB that `make run`
    # starts; retryWrites=false because retryable writes slow it down more and
    # more as writes accumulate, and standalone servers gain nothing from them.
    # journal=true: a write is acknowledged once it is in the server's log, so
    # a killed server keeps it (without it, SecantusDB loses the writes of the
    # last seconds, acknowledged bookings and job outcomes among them).
    MONGODB_URI: str = _setting(
        "mongodb://127.0.0.1:27018/radiantgo?retryWrites=false&journal=true"
    )
    # Redis: caches, rate limits, queued jobs' records, metrics and, unless
    # LOCK_REDIS_URLS names masters of their own, the locks.
    REDIS_URL: str = _setting("redis://127.0.0.1:6379/0")
    # One broker, or the nodes of a cluster separated by ';' (kombu's failover
    # list, which Celery takes as it is): clients connect to the first that
    # answers. Read the list as `broker_urls`.
    RABBITMQ_URL: str = _setting("amqp://guest:guest@127.0.0.1:5672//")
    # Connection pools and timeouts of each process's MongoDB, Redis and
    # RabbitMQ clients.
    DB_POOL_SIZE: int = _setting(50, check=positive)
    DB_POOL_MIN: int = _setting(10, check=non_negative)
    DB_MAX_IDLE_MS: int = _setting(30000, check=positive)
    DB_TIMEOUT_MS: int = _setting(5000, check=positive)
    REDIS_POOL_SIZE: int = _setting(64, check=positive)
    REDIS_TIMEOUT_S: float = _setting(2.0, check=positive)
    BROKER_TIMEOUT_S: float = _setting(2.0, check=positive)
    # Publishing retries before the ingress gives up and answers 503.
    BROKER_PUBLISH_RETRIES: int = _setting(2, check=non_negative)
    # A job whose publish the broker may have taken unconfirmed is sent again
    # after this many seconds if it is still queued, by beat at this interval
    # (core.outbox).
    UNCONFIRMED_RESEND_S: int = _setting(10, check=positive)
    # Prefixes every queue name, so a test run cannot steal a dev worker's work.
    QUEUE_NAMESPACE: str = _setting("")
    # "quorum": every queue is a replicated quorum queue (core.queues), with a
    # delivery limit and dead-lettering, and retries wait in delay queues
    # instead of in the worker. "classic" keeps the single-node classic queues.
    QUEUE_TYPE: str = _setting("classic", check=lambda v: v in ("classic", "quorum"))
    # Quorum queues: deliveries of one message that may end without an ack
    # (its worker died or gave it back, e.g. a group lost with its pool process)
    # before RabbitMQ dead-letters it. Retries do not count: a retry is a new
    # message. 20 crashes on one message is a poison message, not bad luck.
    QUEUE_DELIVERY_LIMIT: int = _setting(20, check=positive)
    # Backpressure: messages each queue holds at most, per queue group; past
    # it RabbitMQ refuses the publish and the client gets a 503 with a
    # Retry-After from the drain rate. Interactive: ~4 minutes of 10x the
    # spec's peak (400/s) at ~1 KB a message; background messages are small
    # (bulk items wait in MongoDB), but each is minutes of work.
    QUEUE_MAX_INTERACTIVE: int = _setting(100_000, check=positive)
    QUEUE_MAX_BACKGROUND: int = _setting(1_000, check=positive)
    # Group commit (workers.batches): a create or transition worker takes up to
    # this many messages at a time, waiting at most GROUP_COMMIT_WAIT_MS for more.
    # The wait sets the group's size below saturation (rate x wait), and each
    # write command costs the embedded database a fixed price besides its
    # documents', so a larger group is cheaper per document; the wait is what
    # a job may take longer to end.
    GROUP_COMMIT_SIZE: int = _setting(32, check=positive)
    GROUP_COMMIT_WAIT_MS: int = _setting(50, check=positive)

    # Seconds each cache keeps an entry: route answers, flights, booking
    # details, booking list pages.
    CACHE_TTL_ROUTES: int = _setting(300, check=positive)
    CACHE_TTL_FLIGHTS: int = _setting(3600, check=positive)
    CACHE_TTL_BOOKINGS: int = _setting(60, check=positive)
    CACHE_TTL_BOOKING_PAGES: int = _setting(30, check=positive)
    # API key lookups (the spec's "user data": rarely changes). Rotating or
    # disabling a customer invalidates its entry at once, whatever the TTL.
    CACHE_TTL_USERS: int = _setting(1800, check=positive)

    # Rate limits: requests per API key (per client IP for callers without
    # one) per window (per minute for the first
    # three, per 5 minutes for admin operations, per 10 minutes for bulk ones).
    RATE_LIMIT_BOOKINGS: int = _setting(50, check=positive)
    RATE_LIMIT_UPDATES: int = _setting(200, check=positive)
    RATE_LIMIT_ROUTES: int = _setting(30, check=positive)
    RATE_LIMIT_ADMIN: int = _setting(10, check=positive)
    RATE_LIMIT_BULK: int = _setting(5, check=positive)
    # Job polls per client per minute: generous (a client polling a few jobs a
    # second stays under it), but a bound on what waiting clients can cost.
    RATE_LIMIT_JOBS: int = _setting(600, check=positive)
    # List reads (GET /api/bookings) per client per minute: each reads about a
    # page, but a client paging or filtering without end would still keep the
    # database busy for everyone.
    RATE_LIMIT_LISTS: int = _setting(120, check=positive)
    # Calls to /api/webhooks (managing webhook endpoints) per caller per minute.
    RATE_LIMIT_WEBHOOKS: int = _setting(60, check=positive)
    # Failed credentials (an unknown, rotated or disabled API key; a wrong admin
    # or metrics token) per client IP per 5 minutes, on every endpoint that
    # reads credentials, counted together: past it the IP's failures are 429s,
    # and so is any admin or metrics token it sends, right or wrong.
    RATE_LIMIT_AUTH_FAILURES: int = _setting(10, check=positive)
    # Peers whose X-Forwarded-For is believed (comma-separated IPs or CIDRs):
    # nginx in compose. Empty: the TCP peer is the client.
    TRUSTED_PROXIES: str = _setting("")

    # Admin API bearer token. Empty means every /api/admin request is refused;
    # `make run` generates one.
    ADMIN_TOKEN: str = _setting("")
    # Bearer token for GET /metrics (a Prometheus scraper's). Empty: the admin
    # token; read it as `metrics_token`. The admin token opens /metrics either way.
    METRICS_TOKEN: str = _setting("")
    # Customers' and operators' API keys (Authorization: Bearer <key>). False
    # lets callers without a key do everything but /api/admin, on bookings
    # that belong to no customer: for anonymous local experiments only.
    REQUIRE_API_KEYS: bool = _setting(True)

    # Webhooks (core.webhook_endpoints): endpoints per owner (a customer, an
    # operator, or none: the admin's); hours a rotated-away signing secret
    # still signs deliveries beside the new one. Delivery settings: below.
    WEBHOOK_MAX_ENDPOINTS: int = _setting(10, check=positive)
    WEBHOOK_SECRET_OVERLAP_H: int = _setting(24, check=positive)

    # Bulk limits (items per request).
    BULK_BOOKING_LIMIT: int = _setting(1000, check=positive)
    BULK_UPDATE_LIMIT: int = _setting(500, check=positive)
    BULK_FLIGHT_LIMIT: int = _setting(2000, check=positive)

    # Air waybill numbers (core.awb). AWB_PREFIX: the 3-digit airline prefix of
    # the AWBs RadiantGo issues (its airline's IATA prefix, e.g. 020 Lufthansa).
    # The default, 000, is no airline's, so a demo's AWBs collide with no real
    # stock. Serials are taken from MongoDB AWB_BLOCK_SIZE at a time per
    # process: no database round trip per accept, and a restart leaves at most
    # a block per process unissued (never issued twice).
    AWB_PREFIX: str = _setting("000", check=lambda v: len(v) == 3 and v.isascii() and v.isdigit())
    AWB_BLOCK_SIZE: int = _setting(100, check=lambda v: 0 < v <= 10_000)

    # Flights and routes: the items of a bulk import written at a time; the
    # shortest connection between the legs of a one-transit route.
    BULK_CHUNK_SIZE: int = _setting(500, check=positive)
    MIN_CONNECTION_MINUTES: int = _setting(60, check=non_negative)
    # A flight imported without capacity_kg: about a wide-body's belly hold.
    DEFAULT_FLIGHT_CAPACITY_KG: float = _setting(20_000.0, check=lambda v: v >= 0.001)  # >= 1 g
    # Inside the route answers' TTL, min(CACHE_TTL_ROUTES, CACHE_TTL_BOOKINGS):
    # they show flights' available space, which may lag by CACHE_TTL_BOOKINGS
    # at most (core.cache.space_ttl). A run computes only the answers whose
    # inputs changed (core.warming.warm_routes); the others get their TTL again.
    CACHE_WARM_INTERVAL: int = _setting(50, check=positive)
    # Comma-separated ORIGIN-DESTINATION pairs always kept warm.
    POPULAR_ROUTES: str = _setting("DEL-BLR,NYC-LAX,BOM-DEL,DEL-BOM,BLR-DEL,LHR-JFK")
    # The most searched routes kept warm besides POPULAR_ROUTES.
    WARM_TOP_ROUTES: int = _setting(20, check=non_negative)
    # Routes warmed per run: POPULAR_ROUTES, the WARM_TOP_ROUTES most searched,
    # then up to this many searched in the last WARM_RECENT_S seconds.
    WARM_MAX_ROUTES: int = _setting(1000, check=non_negative)
    WARM_RECENT_S: int = _setting(3600, check=positive)
    # A warmed answer no generation says changed is computed again after this
    # long anyway: the bound on the lag of a change whose bump Redis lost. An
    # hour: a route answer is advice (a booking's space is decided again under
    # its flight's lock), and recomputing every warmed answer each few minutes
    # would keep an idle stack busy.
    WARM_REFRESH_S: int = _setting(3600, check=positive)
    # Flights `make run` and `make seed` generate when there are none.
    DEMO_FLIGHTS: int = _setting(20000, check=non_negative)
    # Seconds between beat's audits of every flight's cargo space (core.ledger):
    # a read of the reservations, the bookings that fly and the flights that
    # carry anything.
    LEDGER_CHECK_INTERVAL: int = _setting(3600, check=positive)

    # Locks. LOCK_REDIS_URLS: comma-separated independent Redis masters the
    # locks live on (Redlock): a lock is held when a majority of them took it,
    # so with three, locks go on while any two answer; with fewer than a
    # majority answering, acquiring is a 503 and a retry, never a 409. Empty:
    # REDIS_URL alone (read it as `lock_redis_urls`). Lock metrics stay on REDIS_URL.
    LOCK_REDIS_URLS: str = _setting("")
    # Seconds a lock lives unless released, for locks that name no TTL of their own.
    LOCK_DEFAULT_TTL: int = _setting(30, check=positive)
    # Tries to take a lock before giving up, the first one included. The spec
    # names the variable LOCK_MAX_RETRIES ("Maximum retries: 50 attempts").
    LOCK_MAX_ATTEMPTS: int = _setting(50, env="LOCK_MAX_RETRIES", check=positive)

    # Days a job's record is kept after it was accepted.
    JOB_TTL_DAYS: int = _setting(7, check=positive)
    # Retries of a job whose backing service is down, with backoff 0.5 s
    # doubling up to 30 s: 12 is ~3.5 minutes before the job fails.
    TASK_MAX_RETRIES: int = _setting(12, check=non_negative)
    # Hours an Idempotency-Key answers with its job (at most JOB_TTL_DAYS).
    IDEMPOTENCY_TTL_HOURS: int = _setting(24, check=positive)
    # The longest `Prefer: wait=N` a request is held for.
    MAX_WAIT_SECONDS: int = _setting(10, check=positive)
    # Requests per ingress process that may hold a thread with `Prefer: wait`;
    # beyond them a request is answered at once (202 and Retry-After), so
    # waiters never take every thread (it must stay below WEB_THREADS).
    MAX_WAITERS: int = _setting(16, check=positive)
    # The largest request body in bytes: past it, a 413.
    MAX_CONTENT_LENGTH: int = _setting(1_048_576, check=positive)
    # Logging: the level, and `console` (escaped key=value lines) or `json` lines.
    LOG_LEVEL: str = _setting("INFO")
    LOG_FORMAT: str = _setting("console", check=lambda v: v in ("console", "json"))

    # Webhooks (core.egress). Each delivery attempt must end, answer or not,
    # within WEBHOOK_TIMEOUT_S: connecting, sending and reading the answer.
    # Standard Webhooks suggests ~15 s; a minute at most, so a receiver that is
    # slow on purpose cannot hold a delivery thread for long.
    WEBHOOK_TIMEOUT_S: float = _setting(15.0, check=lambda v: 0 < v <= 60)
    # True lets endpoints be http:// and on loopback or private addresses: for
    # receivers on this machine in development and tests, never in production
    # (it would let a customer's URL reach internal services). Cloud metadata
    # addresses stay refused either way.
    WEBHOOK_ALLOW_PRIVATE: bool = _setting(False)
    # A PEM file of the CAs that receivers' certificates must chain to. Empty:
    # certifi's bundle (the public web's CAs). Checked at start, so a wrong path
    # fails there and not at every delivery.
    WEBHOOK_CA_FILE: str = _setting("", check=lambda v: not v or os.path.isfile(v))

    # Processes started by `make run` (read by tools/stack.py): the ingress on
    # BIND_HOST:PORT, WEB_WORKERS gunicorn processes of WEB_THREADS threads
    # each; Flower on FLOWER_PORT behind FLOWER_BASIC_AUTH (user:password,
    # generated by `make run` when empty).
    BIND_HOST: str = _setting("127.0.0.1")
    PORT: int = _setting(5000, check=lambda v: 0 < v < 65536)
    FLOWER_PORT: int = _setting(5555, check=lambda v: 0 < v < 65536)
    FLOWER_BASIC_AUTH: str = _setting("")
    WEB_WORKERS: int = _setting(2, check=positive)
    WEB_THREADS: int = _setting(32, check=positive)
    # Load shedding (core.overload): past what the machine can serve, each
    # ingress process answers 503 `overloaded` with Retry-After at once, before
    # any work, instead of letting requests wait in gunicorn's line. A request
    # is shed when it waited past OVERLOAD_QUEUE_TARGET_MS for a thread while
    # no request of the last OVERLOAD_QUEUE_INTERVAL_MS waited less (a standing
    # line, not a burst), or when the requests in flight reach a limit that
    # follows their latency (Gradient2), between OVERLOAD_MIN_LIMIT and
    # OVERLOAD_MAX_LIMIT: rising while latency stays within
    # OVERLOAD_LATENCY_TOLERANCE times its long-term average, falling past it
    # (a limit past WEB_THREADS is WEB_THREADS: no more can be in flight). Its
    # bounds default to the thread count, which leaves it idle: on two cores a
    # latency-led limit shed plain bursts of 30-50 clients on an idle stack
    # (the suite's), which queue and pass in well under a second. The queue
    # signal waits OVERLOAD_QUEUE_INTERVAL_MS (1 s) before it calls a line
    # standing for the same reason.
    # Writes are shed too while the interactive queues hold more than
    # OVERLOAD_BACKLOG_TARGET_S of the workers' work at their recent drain
    # rate: accepted faster than finished, a job only waits longer, and on a
    # shared machine the accepting takes CPU from the workers.
    # /health, /metrics, /api/admin and the API docs are never shed.
    OVERLOAD_SHEDDING: bool = _setting(True)
    OVERLOAD_QUEUE_TARGET_MS: float = _setting(50.0, check=positive)
    OVERLOAD_QUEUE_INTERVAL_MS: float = _setting(1000.0, check=positive)
    OVERLOAD_INITIAL_LIMIT: int = _setting(32, check=positive)
    OVERLOAD_MIN_LIMIT: int = _setting(32, check=positive)
    OVERLOAD_MAX_LIMIT: int = _setting(32, check=positive)
    OVERLOAD_LATENCY_TOLERANCE: float = _setting(2.0, check=lambda v: v >= 1)
    OVERLOAD_RETRY_AFTER_S: int = _setting(1, check=positive)
    OVERLOAD_BACKLOG_TARGET_S: float = _setting(5.0, check=positive)
    # prefork, not threads: Celery's thread pool runs each task's ack and event
    # callbacks in the task's thread, and with publisher confirms two threads
    # then read one AMQP connection at once ("UnexpectedFrame"
    # under load). Processes keep every connection single-threaded.
    WORKER_POOL: str = _setting("prefork", check=lambda v: v in ("threads", "prefork", "solo"))
    # Interactive worker (bookings, status) processes: one per core. Its work
    # waits mostly on the database, which is one process; more processes made
    # smaller groups, more switching and more memory, for no more throughput.
    WORKER_CONCURRENCY: int = _setting(2, check=positive)
    # Background work (bulk, maintenance): its own worker, fewer processes, and
    # a lower CPU priority (nice, set by tools.priority), so on a small machine
    # a bulk import or a cache warm takes what the interactive worker and the
    # ingress leave. The interactive worker keeps the default priority: it does
    # the work clients are waiting on.
    BACKGROUND_CONCURRENCY: int = _setting(2, check=positive)
    BACKGROUND_NICE: int = _setting(10, check=lambda v: 0 <= v <= 19)
    # A background or webhook pool process whose peak RSS passed this is
    # replaced after its task (Celery's --max-memory-per-child): a bulk import
    # or a big warm leaves its peak behind in the process (CPython keeps its
    # arenas), where a fresh fork starts from the parent's size.
    BACKGROUND_MAX_MEMORY_MB: int = _setting(120, check=lambda v: v >= 80)
    # Webhooks (core.deliveries): the webhooks worker's processes (at the
    # background group's priority), each sending WEBHOOK_CONCURRENCY attempts
    # at once on threads of its own (a receiver's answer is a wait, not work);
    # at most WEBHOOK_MAX_IN_FLIGHT of them to one endpoint, so a receiver that
    # hangs holds that many and never the rest.
    WEBHOOK_PROCESSES: int = _setting(2, check=positive)
    WEBHOOK_CONCURRENCY: int = _setting(16, check=positive)
    WEBHOOK_MAX_IN_FLIGHT: int = _setting(4, check=positive)
    # How often beat's sweep dispatches what no dispatch took and sends the
    # deliveries due (retries, and those a dead sender held).
    WEBHOOK_SWEEP_INTERVAL_S: float = _setting(2.0, check=positive)
    # An endpoint failing every attempt this long is disabled (Svix: 5 days).
    WEBHOOK_DISABLE_AFTER_H: float = _setting(120.0, check=positive)
    # The embedded MongoDB's port, which `make run` starts when MONGODB_URI is unset.
    EMBEDDED_MONGO_PORT: int = _setting(27018, check=lambda v: 0 < v < 65536)

    @property
    def embedded_mongo(self) -> bool:
        """True when no MONGODB_URI was given and `make run` owns the database."""
        return self.MONGODB_URI == Settings.MONGODB_URI

    @property
    def metrics_token(self) -> str:
        """The token GET /metrics takes: METRICS_TOKEN, or ADMIN_TOKEN when that is unset."""
        return self.METRICS_TOKEN or self.ADMIN_TOKEN

    @property
    def lock_redis_urls(self) -> tuple[str, ...]:
        """The lock masters' URLs: LOCK_REDIS_URLS, or REDIS_URL alone when that is unset."""
        if not self.LOCK_REDIS_URLS:
            return (self.REDIS_URL,)
        return tuple(url.strip() for url in self.LOCK_REDIS_URLS.split(","))

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The RabbitMQ nodes' URLs: RABBITMQ_URL split at ';'."""
        return tuple(url.strip() for url in self.RABBITMQ_URL.split(";"))


def env_name(f: Field) -> str:
    """The environment variable setting `f` is read from."""
    return f.metadata.get("env") or f.name


def as_environ(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables that load_settings reads back."""
    return {env_name(f): str(getattr(settings, f.name)) for f in fields(Settings)}


def _convert(name: str, kind: type, raw: str) -> Any:
    raw = raw.strip()
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from `environ` (default: the process environment).

    Tests pass `overrides` (already typed) instead of touching os.environ.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        kind = _TYPES[f.type] if isinstance(f.type, str) else f.type
        name = env_name(f)
        if f.name in overrides:
            value = overrides.pop(f.name)
        elif environ.get(name, "").strip():
            value = _convert(name, kind, environ[name])
        else:
            continue
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise SettingsError(f"{name}={value!r} is out of range")
        values[f.name] = value
    if overrides:
        raise SettingsError(f"unknown settings: {', '.join(sorted(overrides))}")
    settings = Settings(**values)
    problem = next(settings_checks.broken(settings), None)
    if problem is not None:
        raise SettingsError(problem)
    return settings


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of `settings` with some fields changed (for tests and tools),
    checked as load_settings checks what it loads."""
    current = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    return load_settings({}, **{**current, **changes})
