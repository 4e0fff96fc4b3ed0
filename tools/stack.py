"""`make run` and `make test` set-up: services up, credentials, processes.

python -m tools.stack ensure-services   # Redis + RabbitMQ reachable, or a clear error
python -m tools.stack run               # the whole system under honcho, in the foreground
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import click

from core import queues
from core.settings import Settings, SettingsError, as_environ, load_settings

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
CREDENTIALS = VAR / "credentials.env"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

START_COMMANDS = {
    "Redis": (
        "redis-server",
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "{port}",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        "redis-server",
    ),
    "RabbitMQ": ("rabbitmq-server", ["rabbitmq-server", "-detached"], "rabbitmq-server"),
}


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


def ensure_service(name: str, url: str, default_port: int, start_timeout: float) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    if reachable(host, port):
        return
    binary, command, package = START_COMMANDS[name]
    if host in LOOPBACK and shutil.which(binary):
        click.echo(f"{name} is not running on {host}:{port}; starting it ...")
        if name == "Redis":
            for folder in ("/var/lib/redis", "/var/log/redis"):
                Path(folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [part.format(port=port) for part in command],
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


def ensure_services(settings: Settings) -> None:
    ensure_service("Redis", settings.REDIS_URL, 6379, 15)
    ensure_service("RabbitMQ", settings.RABBITMQ_URL, 5672, 120)


def queue_list(settings: Settings, group: tuple[str, ...]) -> str:
    """A worker's -Q: the group's queues under this stack's namespace."""
    return ",".join(queues.queue_name(q, settings.QUEUE_NAMESPACE) for q in group)


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


def demo_callers(settings: Settings, creds: dict[str, str]) -> dict[str, str]:
    """ensure_demo_callers on the running database, kept in var/credentials.env."""
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
    save_credentials(creds)
    return creds


def save_credentials(creds: dict[str, str], path: Path | None = None) -> None:
    """Write the credentials file atomically, readable by its owner only: a temporary
    file made 0600 from the start (O_CREAT|O_EXCL, whatever the umask) beside it, then
    renamed over it. No moment where it exists wider, or half written."""
    path = path or CREDENTIALS
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
    path = path or CREDENTIALS
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


@cli.command()
def run() -> None:
    """Run ingress, worker, beat, Flower (and the embedded MongoDB) under honcho."""
    settings = _settings()
    ensure_services(settings)
    ensure_bounded_queues(settings)
    creds = load_credentials()
    flower_auth = settings.FLOWER_BASIC_AUTH or creds["FLOWER_BASIC_AUTH"]
    admin_token = settings.ADMIN_TOKEN or creds["ADMIN_TOKEN"]
    processes = ["web", "worker", "background", "beat", "flower"]
    if settings.embedded_mongo:
        processes.insert(0, "mongo")
        if reachable("127.0.0.1", settings.EMBEDDED_MONGO_PORT):
            raise click.ClickException(
                f"Port {settings.EMBEDDED_MONGO_PORT} is taken: is RadiantGo already running? "
                "(or set EMBEDDED_MONGO_PORT / MONGODB_URI)"
            )
    (VAR / "mongo").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(settings)}
    env.pop("PORT")  # honcho hands each process a PORT of its own; we bind with API_BIND
    env.update(
        API_BIND=f"{settings.BIND_HOST}:{settings.PORT}",
        INTERACTIVE_QUEUES=queue_list(settings, queues.INTERACTIVE),
        BACKGROUND_QUEUES=queue_list(settings, queues.BACKGROUND),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(FLOWER_BASIC_AUTH=flower_auth, ADMIN_TOKEN=admin_token)
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-d", str(ROOT), *processes],
        env=env,
        cwd=ROOT,
    )
    # The terminal's Ctrl-C reaches honcho directly (same process group); we
    # only wait for it, and pass on a TERM sent to us alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
    wildcard = settings.BIND_HOST in ("0.0.0.0", "::")  # noqa: S104 (only compared)
    host = "127.0.0.1" if wildcard else settings.BIND_HOST
    base = f"http://{host}:{settings.PORT}"
    if _wait_healthy(base, honcho, 60):
        creds = demo_callers(settings, creds)
        user, _, password = flower_auth.partition(":")
        lines = [
            "",
            "RadiantGo is running (Ctrl-C stops everything):",
            f"  API       {base}/api/bookings",
            f"  API docs  {base}/api/docs   (OpenAPI: {base}/api/openapi.json)",
            f"  Health    {base}/health",
            f"  Metrics   {base}/metrics   (Bearer "
            + ("$METRICS_TOKEN)" if settings.METRICS_TOKEN else "the admin token)"),
            f"  Flower    http://{host}:{settings.FLOWER_PORT}/   user {user!r}",
        ]
        lines.append(admin_token_line(settings, creds))
        if not settings.FLOWER_BASIC_AUTH:
            lines.append(
                f"            generated password {password!r} (kept in var/credentials.env)"
            )
        lines += [
            f"  Customer  Authorization: Bearer {creds.get('DEMO_CUSTOMER_KEY')}   (demo shipper)",
            f"  Operator  Authorization: Bearer {creds.get('DEMO_OPERATOR_KEY')}   (demo carrier)",
        ]
        if not settings.REQUIRE_API_KEYS:
            lines.append("            REQUIRE_API_KEYS=false: callers without a key may book too")
        mongo = "MONGODB_URI"
        if settings.embedded_mongo:
            mongo = "embedded SecantusDB, data in var/mongo"
        lines.append(f"  MongoDB   {mongo}")
        lines.append(
            "  Try:      curl -si -X POST "
            + base
            + "/api/bookings -H 'Content-Type: application/json' "
            + f"-H 'Authorization: Bearer {creds.get('DEMO_CUSTOMER_KEY')}' "
            '-d \'{"origin":"DEL","destination":"BLR","pieces":5,"weight_kg":125.5}\''
        )
        click.echo("\n".join(lines) + "\n")
        # Route search should work on the first try: a demo schedule if there is none.
        subprocess.Popen(
            [sys.executable, "-m", "tools.flights", "seed-flights", "--if-empty"], env=env, cwd=ROOT
        )
    sys.exit(honcho.wait())


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
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
