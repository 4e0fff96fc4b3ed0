"""`make cluster`: the distributed topology, natively on this machine.

    python -m tools.cluster start    # everything below, in the background; prints the endpoints
    python -m tools.cluster status   # what runs, per node
    python -m tools.cluster stop     # all of it; nothing is left running

- RabbitMQ: three nodes clustered (radiantgo-1@localhost ...), AMQP on
  AMQP_PORTS, each with its own configuration, data and logs under var/cluster/;
  every work queue a quorum queue replicated on all three; the clients get the
  three addresses (kombu fails over from one to the next).
- Three independent Redis masters for the locks (LOCK_REDIS_URLS), append-only
  and fsynced on every write: a master that restarts still holds what it granted.
- Two ingress process groups behind nginx (least_conn) on one port, the
  interactive, background and webhook workers, beat, Flower and the embedded
  MongoDB under one supervisord, run as a daemon. MongoDB stays the single
  embedded server: the replica set is docker-compose's (no mongod here).
- Redis for caches, job records and rate limits is the machine's (REDIS_DB).

A second `start` reuses the data: the nodes remember their cluster, the lock
masters their append-only files, MongoDB its storage.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

import click

from core.settings import Settings, SettingsError, load_settings, replace
from tools import ROOT, stack, supervision

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # Debian's rabbitmq-server package
HOST = "localhost"  # the node names' host, as the machine's own node (rabbit@localhost)
NODE_START_TIMEOUT_S = 90.0
DIST_PORT_OFFSET = 20000  # a node's Erlang distribution port: its AMQP port + this
# What the cluster's processes get unless the environment says otherwise: the
# chaos load books from one customer key at the spec's peak, past its per-key limits.
CLUSTER_DEFAULTS = {
    "RATE_LIMIT_BOOKINGS": 100_000,
    "RATE_LIMIT_UPDATES": 100_000,
    "RATE_LIMIT_JOBS": 100_000,
}


@dataclass(frozen=True)
class Layout:
    """Where each part of the cluster listens and keeps its data."""

    var: Path = ROOT / "var" / "cluster"
    amqp_ports: tuple[int, ...] = (5681, 5682, 5683)
    lock_ports: tuple[int, ...] = (6381, 6382, 6383)
    nginx_port: int = 5080
    ingress_ports: tuple[int, ...] = (5081, 5082)
    flower_port: int = 5585
    mongo_port: int = 27028
    redis_db: int = 2
    node_prefix: str = "radiantgo"
    # Programs of the app under supervisord (a reduced cluster runs fewer).
    programs: tuple[str, ...] = ("worker", "background", "webhooks", "beat", "flower")
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    def node(self, i: int) -> str:
        return f"{self.node_prefix}-{i + 1}@{HOST}"

    @property
    def nodes(self) -> list[str]:
        return [self.node(i) for i in range(len(self.amqp_ports))]

    def ingress_name(self, i: int) -> str:
        return f"ingress-{i + 1}"

    @property
    def base(self) -> str:
        """Where clients call: nginx, or the one ingress of a cluster without it."""
        port = self.nginx_port if len(self.ingress_ports) > 1 else self.ingress_ports[0]
        return f"http://127.0.0.1:{port}"


# -- RabbitMQ nodes ----------------------------------------------------------------------


def rabbit_dir(layout: Layout, i: int) -> Path:
    return layout.var / "rabbitmq" / layout.node(i).partition("@")[0]


def rabbit_env(layout: Layout, i: int) -> dict[str, str]:
    """A node's environment: its own name, ports, configuration, data and logs,
    never the machine's node's (/etc/rabbitmq pins that one to 5672). HOME holds
    the cluster's Erlang cookie, shared by its nodes and the CLI tools."""
    folder = rabbit_dir(layout, i)
    return {
        **os.environ,
        "HOME": str(layout.var / "rabbitmq"),
        "RABBITMQ_NODENAME": layout.node(i),
        "RABBITMQ_DIST_PORT": str(layout.amqp_ports[i] + DIST_PORT_OFFSET),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "pid"),
        "ERL_CRASH_DUMP": str(folder / "log" / "erl_crash.dump"),  # not in the repository
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        # Distribution on loopback only, as the machine's node.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def write_rabbit_files(layout: Layout, i: int) -> None:
    folder = rabbit_dir(layout, i)
    (folder / "log").mkdir(parents=True, exist_ok=True)
    (folder / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{layout.amqp_ports[i]}\n"
        # Publishers block (and the ingress answers 503) well before the disk fills.
        "disk_free_limit.absolute = 200MB\n"
    )
    (folder / "rabbitmq-env.conf").write_text("")
    (folder / "enabled_plugins").write_text("[].\n")  # no management listener to collide
    cookie = layout.var / "rabbitmq" / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)


def rabbitmqctl(layout: Layout, i: int, *args: str, timeout: float = 60) -> str:
    """rabbitmqctl against node i; its output, or ClusterError with what it said."""
    command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", layout.node(i), *args]
    try:
        done = subprocess.run(
            command, env=rabbit_env(layout, i), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"rabbitmqctl {' '.join(args)} on {layout.node(i)}: no answer") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ClusterError(f"rabbitmqctl {' '.join(args)} on {layout.node(i)}: {said[:3]}")
    return done.stdout


class ClusterError(click.ClickException):
    pass


def start_node(layout: Layout, i: int) -> None:
    """Start node i in the background (it daemonizes); wait_for_node waits for it."""
    write_rabbit_files(layout, i)
    subprocess.run(
        [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
        env=rabbit_env(layout, i),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_node(layout: Layout, i: int, timeout: float = NODE_START_TIMEOUT_S) -> None:
    """Until node i runs its broker (a restarted node first waits for its peers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rabbitmqctl(layout, i, "await_startup", "--timeout", "10", timeout=20)
            return
        except ClusterError:
            if time.monotonic() > deadline:
                log = rabbit_dir(layout, i) / "log" / f"{layout.node(i)}.log"
                raise ClusterError(f"{layout.node(i)} did not start: see {log}") from None
            time.sleep(0.5)


def node_running(layout: Layout, i: int) -> bool:
    return stack.reachable("127.0.0.1", layout.amqp_ports[i], 0.5)


def stop_node(layout: Layout, i: int, timeout: float = 120) -> None:
    """Stop node i gracefully, and wait until it no longer answers. A node that
    is not running is left alone: its pid file may name another process now."""
    pid_file = rabbit_dir(layout, i) / "pid"
    if node_running(layout, i):
        # With its pid file rabbitmqctl waits for the process to end.
        args = ["stop", str(pid_file)] if pid_file.exists() else ["stop"]
        with contextlib.suppress(ClusterError):
            rabbitmqctl(layout, i, *args, timeout=timeout)
        deadline = time.monotonic() + timeout
        while node_running(layout, i) and time.monotonic() < deadline:
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


def clustered_marker(layout: Layout) -> Path:
    return layout.var / "rabbitmq" / "clustered"


def start_rabbitmq(layout: Layout) -> None:
    """The nodes up and clustered. The first time, node 1 alone first and the
    others joining it; afterwards all at once (each waits for the others)."""
    fresh = not clustered_marker(layout).exists()
    down = [i for i in range(len(layout.amqp_ports)) if not node_running(layout, i)]
    if fresh:
        for i in down:  # a half-made cluster from an interrupted start: made anew
            shutil.rmtree(rabbit_dir(layout, i) / "mnesia", ignore_errors=True)
    first = [0] if fresh else down
    for i in first:
        start_node(layout, i)
    for i in first:
        wait_for_node(layout, i)
    if not fresh:
        return
    for i in down[1:] if down and down[0] == 0 else down:
        start_node(layout, i)
        wait_for_node(layout, i)
        rabbitmqctl(layout, i, "stop_app")
        rabbitmqctl(layout, i, "join_cluster", layout.node(0))
        rabbitmqctl(layout, i, "start_app")
    clustered_marker(layout).write_text(" ".join(layout.nodes) + "\n")


def queue_leaders(layout: Layout, via: int | None = None) -> dict[str, str]:
    """Quorum queue name -> the node leading it, as a running node tells."""
    candidates = [via] if via is not None else range(len(layout.amqp_ports))
    for i in candidates:
        if not node_running(layout, i):
            continue
        out = rabbitmqctl(layout, i, "list_queues", "name", "type", "leader", "-q", "-s")
        leaders = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "quorum":
                leaders[parts[0]] = parts[2]
        return leaders
    raise ClusterError("no RabbitMQ node of the cluster answers")


# -- lock masters ----------------------------------------------------------------------


def lock_dir(layout: Layout, port: int) -> Path:
    return layout.var / "redis-locks" / str(port)


def start_lock_master(layout: Layout, port: int) -> None:
    folder = lock_dir(layout, port)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *stack.redis_command(port, folder, folder / "redis.log"),
            *("--appendfsync", "always", "--pidfile", str(folder / "redis.pid")),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if not stack.wait_for_port("127.0.0.1", port, 15):
        raise ClusterError(f"lock master on {port} did not start: see {folder / 'redis.log'}")


def lock_master_pid(layout: Layout, port: int) -> int | None:
    return pid_from(lock_dir(layout, port) / "redis.pid", "redis-server")


def pid_from(pid_file: Path, program: str) -> int | None:
    """The pid in `pid_file` if that process still runs `program` (a stale
    file's pid may have gone to another process since)."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        if program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    return None


def kill_pid(pid: int | None, sig: int = signal.SIGKILL, timeout: float = 15) -> None:
    """Signal `pid` and wait until it is gone."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        if (Path(f"/proc/{pid}") / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.05)


# -- nginx -----------------------------------------------------------------------------


def nginx_conf(layout: Layout) -> str:
    folder = layout.var / "nginx"
    servers = "\n".join(
        f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in layout.ingress_ports
    )
    return f"""# Written by tools/cluster.py at each start.
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {layout.var / "log" / "nginx-error.log"} warn;
events {{ worker_connections 2048; }}
http {{
  access_log off;
  client_body_temp_path {folder / "body"};
  proxy_temp_path {folder / "proxy"};
  fastcgi_temp_path {folder / "fastcgi"};
  uwsgi_temp_path {folder / "uwsgi"};
  scgi_temp_path {folder / "scgi"};
  client_max_body_size 8m;
  upstream ingress {{
    least_conn;
{servers}
  }}
  server {{
    listen 127.0.0.1:{layout.nginx_port};
    location / {{
      proxy_pass http://ingress;
      # A request no ingress took (connection refused: a group is down) goes to
      # the other; one an ingress took is never sent twice (a POST is a job).
      proxy_next_upstream error timeout;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


def ensure_nginx() -> str:
    """nginx's path; Debian's package installed (as root) if it is missing."""
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    if found:
        return str(found)
    if os.getuid() != 0 or not shutil.which("apt-get"):
        raise ClusterError("nginx is missing (Debian: sudo apt-get install nginx-light)")
    click.echo("nginx is missing: installing Debian's nginx package ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    # The package starts a site of its own on port 80 at install: not ours to keep.
    subprocess.run(["nginx", "-s", "stop"], check=False, capture_output=True)
    return "/usr/sbin/nginx"


def start_nginx(layout: Layout) -> None:
    nginx = ensure_nginx()
    folder = layout.var / "nginx"
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(nginx_conf(layout))
    subprocess.run(
        [nginx, "-c", str(conf), "-e", str(layout.var / "log" / "nginx-error.log")], check=True
    )
    if not stack.wait_for_port("127.0.0.1", layout.nginx_port, 10):
        raise ClusterError(f"nginx did not open {layout.nginx_port}")


def nginx_pid(layout: Layout) -> int | None:
    return pid_from(layout.var / "nginx" / "nginx.pid", "nginx")


# -- the app under supervisord -----------------------------------------------------------


def cluster_settings(layout: Layout, environ=None) -> Settings:
    """The app's settings in the cluster: its brokers, lock masters and ports;
    the rest from the environment."""
    environ = dict(os.environ if environ is None else environ)
    defaults = {k: v for k, v in CLUSTER_DEFAULTS.items() if k not in environ}
    ours = {
        "RABBITMQ_URL": ";".join(f"amqp://guest:guest@127.0.0.1:{p}//" for p in layout.amqp_ports),
        "QUEUE_TYPE": "quorum",
        "LOCK_REDIS_URLS": ",".join(f"redis://127.0.0.1:{p}/0" for p in layout.lock_ports),
        "REDIS_URL": f"redis://127.0.0.1:6379/{layout.redis_db}",
        "PORT": layout.ingress_ports[0],
        "FLOWER_PORT": layout.flower_port,
        "EMBEDDED_MONGO_PORT": layout.mongo_port,
        "BIND_HOST": "127.0.0.1",
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    try:
        return load_settings(environ, **{**defaults, **ours, **layout.extra})
    except SettingsError as exc:
        raise ClusterError(f"bad setting: {exc}") from None


def app_programs(layout: Layout, settings: Settings, var: Path) -> dict[str, list[str]]:
    """The supervised programs: one ingress group per ingress port, and the rest."""
    made = supervision.make_run_programs(settings, var)
    ingress = {
        layout.ingress_name(i): supervision.make_run_programs(replace(settings, PORT=p), var)["web"]
        for i, p in enumerate(layout.ingress_ports)
    }
    return {**ingress, **{name: made[name] for name in layout.programs}}


def supervisord_pid(layout: Layout) -> int | None:
    return pid_from(layout.var / "supervisord.pid", "supervisord")


def start_app(layout: Layout, settings: Settings) -> None:
    """supervisord with the app's programs, as a daemon; the embedded MongoDB
    among them unless MONGODB_URI names a server."""
    var = layout.var
    for folder in ("log", "mongo"):
        (var / folder).mkdir(parents=True, exist_ok=True)
    creds = stack.load_credentials(var / stack.CREDENTIALS)
    embedded = settings.embedded_mongo
    settings = replace(settings, MONGODB_URI=stack.database_uri(settings))
    config = supervision.render(
        settings,
        var,
        database=embedded,
        password=secrets.token_urlsafe(16),
        echo=False,
        programs=app_programs(layout, settings, var),
        daemon=True,
    )
    supervision.write_config(var / supervision.CONFIG, config)
    env = stack.stack_environment(
        settings,
        settings.FLOWER_BASIC_AUTH or creds["FLOWER_BASIC_AUTH"],
        settings.ADMIN_TOKEN or creds["ADMIN_TOKEN"],
    )
    command = [sys.executable, "-m", "supervisor.supervisord"]
    subprocess.run(
        [*command, "--configuration", str(var / supervision.CONFIG)], env=env, cwd=ROOT, check=True
    )
    # supervisord runs the database; the app's programs start once it is migrated.
    if not stack.migrated(settings):
        stop_app(layout)
        raise ClusterError("the database was not migrated: the app is not started")
    supervision.start_group(var)


def control(layout: Layout) -> xmlrpc.client.ServerProxy:
    return supervision.control(layout.var)


def ingress_pid(layout: Layout, i: int) -> int:
    info = control(layout).supervisor.getProcessInfo(
        supervision.program_name(layout.ingress_name(i))
    )
    return int(info["pid"])


def stop_app(layout: Layout) -> None:
    """supervisord stops every program (the database last) and exits; whatever
    its session still holds past the deadline is killed."""
    pid = supervisord_pid(layout)
    if pid is None:
        return
    with contextlib.suppress(OSError, xmlrpc.client.Fault):
        control(layout).supervisor.shutdown()
    deadline = time.monotonic() + supervision.STOP_DEADLINE_S + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    supervision.kill_session(pid)  # supervisord daemonizes into a session of its own


# -- the whole cluster -----------------------------------------------------------------


def start(layout: Layout, *, nginx: bool = True) -> Settings:
    """Everything up (what already runs is left as it is); the app's settings."""
    settings = cluster_settings(layout)
    stack.ensure_service("Redis", settings.REDIS_URL, 6379, 15)
    (layout.var / "log").mkdir(parents=True, exist_ok=True)
    start_rabbitmq(layout)
    for port in layout.lock_ports:
        if not stack.reachable("127.0.0.1", port):
            start_lock_master(layout, port)
    stack.ensure_bounded_queues(settings)
    if supervisord_pid(layout) is None:
        start_app(layout, settings)
    if (
        nginx
        and len(layout.ingress_ports) > 1
        and not stack.reachable("127.0.0.1", layout.nginx_port)
    ):
        start_nginx(layout)
    return settings


def wait_healthy(layout: Layout, timeout: float = 90) -> bool:
    """Until every ingress group answers /health (nginx answers 502 before)."""
    deadline = time.monotonic() + timeout
    return all(
        stack._wait_healthy(f"http://127.0.0.1:{port}", lambda: True, deadline - time.monotonic())
        for port in layout.ingress_ports
    )


def stop(layout: Layout) -> None:
    """Everything down, the app first (it drains), the brokers last."""
    stop_app(layout)
    kill_pid(nginx_pid(layout), signal.SIGTERM)
    for port in layout.lock_ports:
        kill_pid(lock_master_pid(layout, port), signal.SIGTERM)
    for i in range(len(layout.amqp_ports)):
        stop_node(layout, i)


def leftovers(layout: Layout) -> list[str]:
    """What of the cluster still answers or runs."""
    left = [
        f"RabbitMQ {layout.node(i)}"
        for i in range(len(layout.amqp_ports))
        if node_running(layout, i)
    ]
    left += [f"lock master :{p}" for p in layout.lock_ports if stack.reachable("127.0.0.1", p)]
    ports = [*layout.ingress_ports, layout.flower_port, layout.mongo_port]
    if len(layout.ingress_ports) > 1:
        ports.append(layout.nginx_port)
    left += [f"port {p}" for p in ports if stack.reachable("127.0.0.1", p)]
    if supervisord_pid(layout):
        left.append("supervisord")
    return left


def ports(layout: Layout) -> set[int]:
    """Every port the cluster's processes listen on."""
    dist = {port + DIST_PORT_OFFSET for port in layout.amqp_ports}
    own = {*layout.amqp_ports, *dist, *layout.lock_ports, *layout.ingress_ports}
    nginx = {layout.nginx_port} if len(layout.ingress_ports) > 1 else set()
    return own | nginx | {layout.flower_port, layout.mongo_port}


def kill_strays(layout: Layout) -> list[int]:
    """SIGKILL whatever listens on the cluster's ports: what an earlier run left
    when it was killed before it could stop its nodes (a test's timeout). Only
    for a layout whose ports are its own; returns the pids killed."""
    import psutil

    listening = psutil.net_connections("tcp")
    pids = {c.pid for c in listening if c.status == psutil.CONN_LISTEN and c.pid}
    strays = sorted(p for p in pids if _listens_on(listening, p, ports(layout)))
    for pid in strays:
        kill_pid(pid)
    return strays


def _listens_on(connections, pid: int, wanted: set[int]) -> bool:
    return any(c.pid == pid and c.laddr and c.laddr.port in wanted for c in connections)


def endpoints(layout: Layout, settings: Settings, creds: dict[str, str]) -> str:
    shown = stack._shown(layout.var)
    user, _, password = (settings.FLOWER_BASIC_AUTH or creds["FLOWER_BASIC_AUTH"]).partition(":")
    nodes = ", ".join(f"{layout.node(i)} (AMQP :{p})" for i, p in enumerate(layout.amqp_ports))
    lines = [
        "",
        "RadiantGo cluster is running (make cluster-stop stops it all):",
        f"  API       {layout.base}/api/bookings   (nginx least_conn over ingress"
        f" {', '.join(str(p) for p in layout.ingress_ports)})",
        f"  Health    {layout.base}/health",
        f"  Flower    http://127.0.0.1:{layout.flower_port}/   user {user!r} password {password!r}",
        f"  RabbitMQ  {nodes}; quorum queues on all three",
        f"  Locks     Redis masters :{', :'.join(str(p) for p in layout.lock_ports)}"
        " (append-only, fsync always)",
        f"  Redis     {settings.REDIS_URL}   MongoDB embedded, :{layout.mongo_port}"
        " (a replica set is docker-compose's)",
        f"  Customer  Authorization: Bearer {creds.get('DEMO_CUSTOMER_KEY')}",
        f"  Operator  Authorization: Bearer {creds.get('DEMO_OPERATOR_KEY')}",
        f"  Logs      {shown}/log/, RabbitMQ's in {shown}/rabbitmq/<node>/log/",
        f"  Processes {stack._shown(supervision.BIN / 'supervisorctl')} -c"
        f" {shown}/{supervision.CONFIG} status",
    ]
    return "\n".join(lines) + "\n"


@click.group()
def cli() -> None:
    """RadiantGo as a cluster on this machine."""


@cli.command("start")
def start_command() -> None:
    """Start the cluster in the background and print its endpoints."""
    layout = Layout()
    settings = start(layout)
    if not wait_healthy(layout):
        raise ClusterError(f"{layout.base}/health did not answer: see {layout.var / 'log'}")
    creds = stack.load_credentials(layout.var / stack.CREDENTIALS)
    creds = stack.demo_callers(
        replace(settings, MONGODB_URI=stack.database_uri(settings)),
        creds,
        layout.var / stack.CREDENTIALS,
    )
    click.echo(endpoints(layout, settings, creds))


@cli.command("stop")
def stop_command() -> None:
    """Stop every process of the cluster; say what is left, if anything."""
    layout = Layout()
    stop(layout)
    left = leftovers(layout)
    if left:
        raise ClusterError(f"still running: {', '.join(left)}")
    click.echo(
        "The cluster is stopped; nothing of it runs. Its data stays in "
        f"{stack._shown(layout.var)}/."
    )


@cli.command("status")
def status_command() -> None:
    """Each node and program: running or not."""
    layout = Layout()
    for i in range(len(layout.amqp_ports)):
        click.echo(f"{layout.node(i):24} {'up' if node_running(layout, i) else 'down'}")
    for port in layout.lock_ports:
        up = stack.reachable("127.0.0.1", port)
        click.echo(f"{'lock master :' + str(port):24} {'up' if up else 'down'}")
    if supervisord_pid(layout):
        for info in control(layout).supervisor.getAllProcessInfo():
            click.echo(f"{info['name']:24} {info['statename'].lower()}")
    else:
        click.echo("supervisord              down")


if __name__ == "__main__":
    cli()
