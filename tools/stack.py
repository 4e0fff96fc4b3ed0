"""`make run` and `make test` set-up: services up, credentials, processes.

python -m tools.stack ensure-services   # Redis + RabbitMQ reachable, or a clear error
python -m tools.stack run               # the whole system under supervisord, in the foreground
                                        # (the database migrated before the app starts)
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import click
from pymongo.errors import PyMongoError

from core.errors import REDIS_ERRORS
from core.settings import Settings, SettingsError, as_environ, load_settings, replace
from tools import ROOT, migrate, supervision

VAR = ROOT / "var"
CREDENTIALS = "credentials.env"  # in the stack's var folder
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# Where `make run` keeps the data and log of a Redis it starts: a folder per port.
REDIS_DATA = Path("/var/lib/redis")
REDIS_LOGS = Path("/var/log/redis")
PACKAGES = {"Redis": "redis-server", "RabbitMQ": "rabbitmq-server"}  # Debian's, by binary too
# How long the embedded database may take to answer before its migration.
MIGRATE_WAIT_S = 60


def redis_command(port: int, data_dir: Path, log_file: Path) -> list[str]:
    """redis-server as `make run` starts it where none answers: a daemon on
    loopback keeping what it holds (queued jobs' records among it) in its
    append-only file, written before each answer and fsynced every second: a
    restart of Redis loses nothing, a crash of the machine the last second."""
    return [
        *("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1"),
        *("--port", str(port), "--dir", str(data_dir), "--logfile", str(log_file)),
        *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
    ]


def start_command(name: str, port: int) -> list[str]:
    if name == "RabbitMQ":
        return ["rabbitmq-server", "-detached"]
    data = REDIS_DATA / str(port)
    try:
        for folder in (data, REDIS_LOGS):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"Redis cannot be started here: {exc}") from None
    return redis_command(port, data, REDIS_LOGS / f"redis-{port}.log")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reachable(host, port, 0.5):
            return True
        time.sleep(0.25)
    return False


def address(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def ensure_service(name: str, url: str, default_port: int, start_timeout: float) -> None:
    host, port = address(url, default_port)
    if reachable(host, port):
        return
    package = PACKAGES[name]
    if host in LOOPBACK and shutil.which(package):
        click.echo(f"{name} is not running on {host}:{port}; starting it ...")
        subprocess.run(
            start_command(name, port),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait_for_port(host, port, start_timeout):
            click.echo(f"{name} is up on {host}:{port}.")
            return
        raise click.ClickException(
            f"{name} was started but {host}:{port} did not open within {start_timeout:.0f} s."
        )
    raise click.ClickException(
        f"{name} is not reachable at {host}:{port} and cannot be started here.\n"
        f"  Install it (Debian: apt-get install {package}) or start it with\n"
        f"  `docker compose up -d redis rabbitmq`, or point the URL setting at a running server."
    )


def ensure_brokers(urls: tuple[str, ...]) -> None:
    """One broker: as ensure_service. A cluster's nodes: one answering is
    enough (clients fail over to it); they are never started here, a node is
    not a `rabbitmq-server -detached` of the machine's own (make cluster)."""
    if len(urls) == 1:
        ensure_service("RabbitMQ", urls[0], 5672, 120)
        return
    nodes = [address(url, 5672) for url in urls]
    if any(reachable(host, port) for host, port in nodes):
        return
    raise click.ClickException(
        f"None of the {len(nodes)} RabbitMQ nodes in RABBITMQ_URL is reachable"
        f" ({', '.join(f'{host}:{port}' for host, port in nodes)}).\n"
        "  Start the cluster (make cluster), or point RABBITMQ_URL at running brokers."
    )


def ensure_services(settings: Settings) -> None:
    ensure_service("Redis", settings.REDIS_URL, 6379, 15)
    ensure_brokers(settings.broker_urls)


def settings_env(settings: Settings) -> dict[str, str]:
    """Settings as environment variables, for child processes."""
    return as_environ(settings)


DEMO_CALLERS = (
    ("DEMO_CUSTOMER_KEY", "Demo Shipper", "shipper@demo.invalid", "customer"),
    ("DEMO_OPERATOR_KEY", "Demo Carrier Ops", "ops@demo.invalid", "operator"),
)


def ensure_demo_callers(db, creds: dict[str, str]) -> dict[str, str]:
    """A demo customer and operator: the keys in `creds` while the database still
    honours them, new customers (and keys) otherwise. Returns the updated creds."""
    from core.clock import utcnow
    from core.customers import create_customer, key_is_active

    creds = dict(creds)
    for name, label, email, role in DEMO_CALLERS:
        if not (creds.get(name) and key_is_active(db, creds[name])):
            made = create_customer(db, name=label, email=email, role=role, now=utcnow())
            creds[name] = made["api_key"]
    return creds


def demo_callers(settings: Settings, creds: dict[str, str], path: Path) -> dict[str, str]:
    """ensure_demo_callers on the running database, kept in the credentials file `path`."""
    from pymongo.errors import PyMongoError

    from core.db import connect_mongo, database

    client = connect_mongo(settings)
    try:
        creds = ensure_demo_callers(database(client), creds)
    except PyMongoError as exc:
        click.echo(f"Demo customer and operator not made (MongoDB: {exc}).", err=True)
        return creds
    finally:
        client.close()
    save_credentials(creds, path)
    return creds


def save_credentials(creds: dict[str, str], path: Path | None = None) -> None:
    """Write the credentials file atomically, readable by its owner only: a temporary
    file made 0600 from the start (O_CREAT|O_EXCL, whatever the umask) beside it, then
    renamed over it. No moment where it exists wider, or half written."""
    path = path or VAR / CREDENTIALS
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{k}={v}\n" for k, v in creds.items()))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_credentials(path: Path | None = None) -> dict[str, str]:
    """Credentials generated once and kept in var/, so restarts keep them."""
    path = path or VAR / CREDENTIALS
    creds: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name and value:
                creds[name] = value
    if "FLOWER_BASIC_AUTH" not in creds:
        creds["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
    if "ADMIN_TOKEN" not in creds:
        creds["ADMIN_TOKEN"] = secrets.token_urlsafe(24)
    save_credentials(creds, path)
    return creds


def admin_token_line(settings: Settings, creds: dict[str, str]) -> str:
    """The admin token, printed only when we generated it: one the operator set
    (ADMIN_TOKEN) is theirs already, and terminals and CI logs keep what they show."""
    if settings.ADMIN_TOKEN:
        return "  Admin     Authorization: Bearer $ADMIN_TOKEN   (set by you; not shown)"
    token = creds["ADMIN_TOKEN"]
    return f"  Admin     Authorization: Bearer {token}   (generated, kept in var/credentials.env)"


@click.group()
def cli() -> None:
    """RadiantGo's development stack."""


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"bad setting: {exc}") from None


@cli.command("ensure-services")
def ensure_services_command() -> None:
    """Make sure Redis and RabbitMQ answer (start them if installed here)."""
    ensure_services(_settings())


def ensure_bounded_queues(settings: Settings) -> None:
    """Declare every queue as the workers do (celeryconfig: durable, bounded,
    of QUEUE_TYPE; with quorum, the delay and dead-letter queues too).
    A queue declared otherwise (by an older version without its bound, or as
    the other QUEUE_TYPE) cannot be redeclared, RabbitMQ refuses changed
    arguments and types: an empty one is replaced, one still holding messages
    is left for its workers to drain, with a message saying so."""
    from amqp.exceptions import PreconditionFailed
    from kombu import Connection

    from celeryconfig import celery_config, retry_queues

    with Connection(settings.RABBITMQ_URL, connect_timeout=settings.BROKER_TIMEOUT_S) as conn:
        # Each node once, in RABBITMQ_URL's order (kombu moves to the next after
        # a failed try); conn.channel() alone would give up after two.
        conn.ensure_connection(max_retries=len(settings.broker_urls) - 1, interval_start=0)
        for queue in [*celery_config(settings)["task_queues"], *retry_queues(settings)]:
            try:
                queue.bind(conn.channel()).declare()
                continue
            except PreconditionFailed:
                pass  # that channel is closed by the broker
            channel = conn.channel()
            held = channel.queue_declare(queue.name, passive=True).message_count
            if held:
                raise click.ClickException(
                    f"Queue {queue.name!r} holds {held} messages and was declared otherwise"
                    " (without its bound by an older version, or not as a"
                    f" {settings.QUEUE_TYPE} queue): run the workers that declared it"
                    " until it is empty."
                )
            channel.queue_delete(queue.name)
            queue.bind(conn.channel()).declare()
            click.echo(f"queue {queue.name!r} re-declared with its bound, as {settings.QUEUE_TYPE}")


def database_uri(settings: Settings) -> str:
    """Where the processes find MongoDB: MONGODB_URI, or the embedded server on
    EMBEDDED_MONGO_PORT when MONGODB_URI is unset."""
    if not settings.embedded_mongo:
        return settings.MONGODB_URI
    parsed = urlparse(settings.MONGODB_URI)
    return parsed._replace(netloc=f"127.0.0.1:{settings.EMBEDDED_MONGO_PORT}").geturl()


def local_host(settings: Settings) -> str:
    """The address to reach what binds BIND_HOST at."""
    wildcard = settings.BIND_HOST in ("0.0.0.0", "::")  # noqa: S104 (only compared)
    return "127.0.0.1" if wildcard else settings.BIND_HOST


def refuse_taken_ports(settings: Settings) -> None:
    """Stop before starting anything if a port the stack binds is taken (a
    second `make run`, say): its program would only fail and be retried."""
    host = local_host(settings)
    ports = [("PORT", host, settings.PORT), ("FLOWER_PORT", host, settings.FLOWER_PORT)]
    if settings.embedded_mongo:
        mongo = settings.EMBEDDED_MONGO_PORT
        ports.append(("EMBEDDED_MONGO_PORT / MONGODB_URI", "127.0.0.1", mongo))
    for names, at, port in ports:
        if reachable(at, port):
            raise click.ClickException(
                f"Port {port} is taken: is RadiantGo already running? (or set {names})"
            )


def warn_unless_redis_persists(settings: Settings) -> None:
    """Say so when the Redis we use keeps no append-only file: the records of
    queued jobs live there until a worker takes them."""
    from core.services import connect_redis

    client = connect_redis(settings)
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
    except REDIS_ERRORS:
        return  # CONFIG refused (a managed Redis): nothing to say
    finally:
        client.close()
    if appendonly == "no":
        click.echo(
            f"Note: the Redis at {urlparse(settings.REDIS_URL).netloc} keeps no append-only"
            " file: if it restarts, queued jobs' records are lost (GET /api/jobs/<id> 404s"
            " for jobs already accepted). `CONFIG SET appendonly yes` keeps them.",
            err=True,
        )


def local_defaults() -> dict[str, object]:
    """What `make run` (a developer's machine) sets unless the environment does:
    webhooks to receivers on this machine or its network, over http too."""
    if os.environ.get("WEBHOOK_ALLOW_PRIVATE", "").strip():
        return {}
    return {"WEBHOOK_ALLOW_PRIVATE": True}


def stack_environment(settings: Settings, flower_auth: str, admin_token: str) -> dict[str, str]:
    """supervisord's environment, which every program inherits: the settings
    (secrets too: they stay out of the configuration file and command lines)."""
    return {
        **os.environ,
        **settings_env(settings),
        "FLOWER_BASIC_AUTH": flower_auth,
        "ADMIN_TOKEN": admin_token,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def _append_only_output() -> None:
    """Our stdout and stderr, when files, written at their end by every writer:
    supervisord opens /dev/stderr anew for the echo listener's lines, and that
    writer's offset would otherwise overwrite ours (`make run > run.log`)."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _terminated_with_parent() -> None:
    """In supervisord before it runs: SIGTERM when the stack manager dies,
    however it dies, so a killed manager leaves no stack behind (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervised:
    """supervisord in a session of its own, with its programs. The first
    Ctrl-C (SIGINT, or SIGTERM, SIGHUP) has it stop every program, the database
    last; a second one, or STOP_DEADLINE_S without it done, kills every process
    of its session at once."""

    def __init__(self, var: Path, env: dict[str, str]):
        self.var = var
        self.stop_by: float | None = None  # once stopping: when to kill what is left
        command = [sys.executable, "-m", "supervisor.supervisord"]
        self.proc = subprocess.Popen(
            [*command, "--configuration", str(var / supervision.CONFIG)],
            env=env,
            cwd=ROOT,
            start_new_session=True,  # the terminal's Ctrl-C reaches us alone
            preexec_fn=_terminated_with_parent if sys.platform == "linux" else None,
        )
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def serving(self) -> bool:
        return self.stop_by is None and self.proc.poll() is None

    def _on_signal(self, signum: int, frame) -> None:
        if self.stop_by is None:
            self.stop_by = time.monotonic() + supervision.STOP_DEADLINE_S
            click.echo("\nStopping every process (Ctrl-C again: kill them at once) ...", err=True)
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        else:
            click.echo("Killing every process now.", err=True)
            supervision.kill_session(self.proc.pid)

    def wait(self) -> int:
        """Until supervisord has exited and none of its processes is left; its exit status."""
        while self.proc.poll() is None:
            if self.stop_by is not None and time.monotonic() > self.stop_by:
                click.echo(
                    f"Still running {supervision.STOP_DEADLINE_S} s after Ctrl-C: killing them.",
                    err=True,
                )
                supervision.kill_session(self.proc.pid)
                self.stop_by = math.inf  # said and done once
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.2)
        supervision.kill_session(self.proc.pid)  # programs of a supervisord that died
        return self.proc.returncode

    def stop(self) -> None:
        """As the first Ctrl-C: every program stops, the database last."""
        self._on_signal(signal.SIGTERM, None)

    def start(self, name: str) -> None:
        """Start program `name` (one that does not start with the others)."""
        try:
            supervision.control(self.var).supervisor.startProcess(name, False)
        except (OSError, xmlrpc.client.Fault) as exc:
            click.echo(f"{name} not started: {exc}", err=True)


@cli.command()
@click.option(
    "--var-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=VAR,
    show_default=True,
    help="Where the stack keeps its data, logs, credentials and supervisord's socket.",
)
def run(var_dir: Path) -> None:
    """Run ingress, workers, beat, Flower (and the embedded MongoDB) under supervisord."""
    settings = _settings()
    ensure_services(settings)
    warn_unless_redis_persists(settings)
    ensure_bounded_queues(settings)
    refuse_taken_ports(settings)
    var = var_dir.resolve()
    creds = load_credentials(var / CREDENTIALS)
    flower_auth = settings.FLOWER_BASIC_AUTH or creds["FLOWER_BASIC_AUTH"]
    admin_token = settings.ADMIN_TOKEN or creds["ADMIN_TOKEN"]
    embedded = settings.embedded_mongo
    settings = replace(settings, MONGODB_URI=database_uri(settings), **local_defaults())
    for folder in ("log", "mongo"):
        (var / folder).mkdir(parents=True, exist_ok=True)
    # supervisord cannot open a socket as /dev/stderr (systemd's journal): files only then.
    echo = not stat.S_ISSOCK(os.fstat(2).st_mode)
    config = supervision.render(
        settings, var, database=embedded, echo=echo, password=secrets.token_urlsafe(16)
    )
    supervision.write_config(var / supervision.CONFIG, config)
    _append_only_output()
    stack = Supervised(var, stack_environment(settings, flower_auth, admin_token))
    # supervisord runs the database; the app's programs start once it is migrated.
    if not migrated(settings):
        stack.stop()
        stack.wait()
        sys.exit(1)
    supervision.start_group(var)
    base = f"http://{local_host(settings)}:{settings.PORT}"
    if _wait_healthy(base, stack.serving, 60):
        creds = demo_callers(settings, creds, var / CREDENTIALS)
        click.echo(summary(settings, creds, flower_auth, var, embedded=embedded))
        stack.start(supervision.SEED)
    elif stack.serving():
        click.echo(
            f"The ingress did not answer {base}/health within 60 s: see"
            f" {supervision.log_path(var, 'web')} (what dies is restarted).",
            err=True,
        )
    sys.exit(0 if stack.wait() == 0 else 1)


def migrated(settings: Settings) -> bool:
    """Migrate the database (core.migrations) once it answers; whether it was."""
    try:
        click.echo(migrate.summary(migrate.migrate_when_up(settings, MIGRATE_WAIT_S)))
        return True
    except (migrate.DatabaseDown, PyMongoError) as exc:
        click.echo(f"The database was not migrated, so nothing starts: {exc}", err=True)
        return False


def summary(
    settings: Settings, creds: dict[str, str], flower_auth: str, var: Path, *, embedded: bool
) -> str:
    """What `make run` prints once the ingress answers: where everything is."""
    host = local_host(settings)
    base = f"http://{host}:{settings.PORT}"
    user, _, password = flower_auth.partition(":")
    shown = _shown(var)
    lines = [
        "",
        "RadiantGo is running (Ctrl-C stops everything; twice: at once):",
        f"  API       {base}/api/bookings",
        f"  API docs  {base}/api/docs   (OpenAPI: {base}/api/openapi.json)",
        f"  Health    {base}/health",
        f"  Metrics   {base}/metrics   (Bearer "
        + ("$METRICS_TOKEN)" if settings.METRICS_TOKEN else "the admin token)"),
        f"  Flower    http://{host}:{settings.FLOWER_PORT}/   user {user!r}",
        admin_token_line(settings, creds),
    ]
    if not settings.FLOWER_BASIC_AUTH:
        lines.append(f"            generated password {password!r} (kept in {shown}/{CREDENTIALS})")
    lines += [
        f"  Customer  Authorization: Bearer {creds.get('DEMO_CUSTOMER_KEY')}   (demo shipper)",
        f"  Operator  Authorization: Bearer {creds.get('DEMO_OPERATOR_KEY')}   (demo carrier)",
    ]
    if not settings.REQUIRE_API_KEYS:
        lines.append("            REQUIRE_API_KEYS=false: callers without a key may book too")
    mongo = f"embedded SecantusDB, data in {shown}/mongo" if embedded else "MONGODB_URI"
    lines += [
        f"  MongoDB   {mongo}",
        f"  Logs      {shown}/log/<process>.log (here too, after each process's name)",
        f"  Processes {_shown(supervision.BIN / 'supervisorctl')} -c"
        f" {shown}/{supervision.CONFIG} status   (a process that dies is restarted)",
        "  Try:      curl -si -X POST "
        + base
        + "/api/bookings -H 'Content-Type: application/json' "
        + f"-H 'Authorization: Bearer {creds.get('DEMO_CUSTOMER_KEY')}' "
        '-d \'{"origin":"DEL","destination":"BLR","pieces":5,"weight_kg":125.5}\'',
    ]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> Path:
    """`path` as the README's commands name it: from the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _wait_healthy(base: str, serving: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and serving():
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):  # noqa: S310 (our own URL)
                return True
        except urllib.error.HTTPError:
            return True  # answering, even if degraded
        except OSError:
            time.sleep(0.5)
    return False


if __name__ == "__main__":
    cli()
