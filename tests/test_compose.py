"""The container stack: docker-compose.yml, deploy/nginx.conf and the Dockerfile.

No Docker engine is needed: the compose file is read as YAML (PyYAML resolves
its anchors and merge keys the way compose does) and checked against the code
it deploys: Settings' field names, the queues, the ingress's entry point.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from core import queues
from core.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DOCKERFILE = ROOT / "Dockerfile"

# Environment variable -> the Settings field it fills.
SETTINGS_ENV = {env_name(f): f.name for f in dataclasses.fields(Settings)}
# Variables the app's containers may carry that are not RadiantGo settings.
NOT_SETTINGS = {"PYTHONUNBUFFERED"}
# Compose defaults that deliberately differ from Settings' own.
DIFFERENT_DEFAULTS = {"LOG_FORMAT": "json"}
APP_IMAGE = "radiantgo:latest"
DEFAULTED = re.compile(r"^\$\{(?P<name>\w+):-(?P<default>[^}]*)\}$")


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


needs_compose = pytest.mark.skipif(
    not _docker_compose_available(),
    reason="the `docker compose` plugin is not installed (`docker compose version` fails)",
)


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The variables compose requires (`${NAME:?...}`), with values.
REQUIRED_ENV = {
    "FLOWER_BASIC_AUTH": "admin:secret",
    "ADMIN_TOKEN": "t" * 32,
    "METRICS_TOKEN": "m" * 32,
    "GRAFANA_ADMIN_PASSWORD": "secret",
}


@needs_compose
def test_docker_compose_config_accepts_the_file():
    result = _compose_config({**os.environ, **REQUIRED_ENV})
    assert result.returncode == 0, result.stderr


@needs_compose
@pytest.mark.parametrize("name", sorted(REQUIRED_ENV))
def test_docker_compose_config_requires_each_secret(name):
    env = {k: v for k, v in {**os.environ, **REQUIRED_ENV}.items() if k != name}
    result = _compose_config(env)
    assert result.returncode != 0
    assert name in result.stderr


def test_the_required_variables_are_the_ones_the_file_requires():
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required == set(REQUIRED_ENV)


# --- docker-compose.yml, read as YAML ---------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def app_services(services) -> dict[str, dict]:
    """The services that run RadiantGo code (built from this repository's image)."""
    found = {name: svc for name, svc in services.items() if svc.get("image") == APP_IMAGE}
    assert found, f"no service runs {APP_IMAGE}"
    return found


def _command(svc: dict) -> list[str]:
    command = svc.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _worker_services(services: dict[str, dict]) -> dict[str, list[str]]:
    """Each Celery worker service and the argv of its command."""
    return {
        name: argv
        for name, svc in services.items()
        if (argv := _command(svc))[:4] == ["celery", "-A", "workers.main", "worker"]
    }


def _mounts(svc: dict) -> dict[str, str]:
    """A service's short-syntax volumes: container path -> source (with :ro)."""
    mounts = {}
    for volume in svc["volumes"]:
        source, target, *mode = volume.split(":")
        mounts[target] = ":".join([source, *mode])
    return mounts


def yaml_file(path: Path) -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    return yaml.safe_load(path.read_text())


def _option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def _default_env(environment: dict[str, str]) -> dict[str, str]:
    """The environment as compose would set it with none of the variables exported."""
    resolved = {}
    for name, value in environment.items():
        match = DEFAULTED.match(str(value))
        resolved[name] = match["default"] if match else str(value)
    return resolved


def test_app_environment_names_are_settings_fields(compose, app_services):
    anchor = compose["x-app-env"]
    assert anchor, "the x-app-env anchor is empty"
    for name, svc in app_services.items():
        env = svc["environment"]
        assert isinstance(env, dict), f"{name}: environment should be a mapping"
        assert set(anchor) <= set(env), f"{name} does not use the x-app-env anchor"
        unknown = set(env) - set(SETTINGS_ENV) - NOT_SETTINGS
        assert not unknown, f"{name} sets variables Settings does not read: {sorted(unknown)}"


def test_app_environment_points_at_the_compose_services(compose):
    env = compose["x-app-env"]
    assert env["MONGODB_URI"] == (
        "mongodb://mongo1:27017,mongo2:27017,mongo3:27017/radiantgo?replicaSet=rs0&w=majority"
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    masters = [f"redis://redis-lock{n}:6379/0" for n in (1, 2, 3)]
    assert env["LOCK_REDIS_URLS"].split(",") == masters
    assert env["RABBITMQ_URL"] == "amqp://guest:guest@rabbitmq:5672//"


def test_passthrough_defaults_are_the_settings_defaults(app_services):
    for name, svc in app_services.items():
        for var, value in svc["environment"].items():
            match = DEFAULTED.match(str(value))
            if match is None:
                continue
            assert match["name"] == var, f"{name}: {var} passes through ${match['name']}"
            expected = DIFFERENT_DEFAULTS.get(var, str(getattr(Settings, SETTINGS_ENV[var])))
            assert match["default"] == expected, f"{name}: {var} defaults to {match['default']}"


def test_api_keys_are_required_in_every_app_service(app_services):
    for name, svc in app_services.items():
        assert svc["environment"]["REQUIRE_API_KEYS"] == "true", name


def test_default_environment_loads(app_services):
    for name, svc in app_services.items():
        env = _default_env({k: v for k, v in svc["environment"].items() if k in SETTINGS_ENV})
        settings = load_settings(env)
        assert settings.LOG_FORMAT == "json", name
        assert not settings.embedded_mongo, name


def test_flower_basic_auth_is_required_and_flower_only_local(services):
    flower = services["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_BASIC_AUTH:?"), "FLOWER_BASIC_AUTH must be required"
    assert flower["ports"], "Flower publishes no port"
    for port in flower["ports"]:
        assert str(port).startswith("127.0.0.1:"), f"Flower port {port} is not host-local"


def test_only_nginx_is_published_to_the_world(services):
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                assert name == "nginx", f"{name} publishes {port} on every interface"
    assert "5000:5000" in services["nginx"]["ports"]


def test_ingress_is_replicated_behind_nginx(services):
    ingress = services["ingress"]
    assert ingress["deploy"]["replicas"] >= 2
    assert "ports" not in ingress, "the ingress must be reached through nginx only"
    health = " ".join(ingress["healthcheck"]["test"])
    assert "urllib" in health and "/health" in health
    nginx = services["nginx"]
    assert any(v.startswith("./deploy/nginx.conf:") for v in nginx["volumes"])
    assert nginx["depends_on"]["ingress"]["condition"] == "service_healthy"


def test_backing_services_are_healthchecked_and_awaited(services, app_services):
    backing = ("mongo1", "mongo2", "mongo3", "redis", "rabbitmq", *LOCK_MASTERS)
    for name in backing:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name, svc in _serving(app_services).items():
        for dep, condition in svc["depends_on"].items():
            if dep == MIGRATE:
                assert condition["condition"] == "service_completed_successfully", name
                continue
            assert dep in backing or dep == "ingress", f"{name} depends on {dep}"
            assert condition["condition"] == "service_healthy", f"{name} -> {dep}"
        assert "rabbitmq" in svc["depends_on"], f"{name} starts before the broker"


MIGRATE = "migrate"  # the one-shot service of core.migrations


def _serving(app_services: dict[str, dict]) -> dict[str, dict]:
    """The app services that keep running (all but the migration)."""
    return {name: svc for name, svc in app_services.items() if name != MIGRATE}


def test_the_database_is_migrated_once_before_the_app_starts(services, app_services):
    """A one-shot service runs core.migrations when MongoDB is healthy; every
    service that uses the database starts only once it succeeded."""
    migrate = services[MIGRATE]
    assert _command(migrate)[:3] == ["python", "-m", "tools.migrate"]
    assert (ROOT / "tools" / "migrate.py").is_file()  # in the image: COPY tools/
    assert migrate["restart"] == "no", "a one-shot that ended must not start again"
    assert migrate["depends_on"] == {"mongo1": {"condition": "service_healthy"}}
    for name, svc in _serving(app_services).items():
        if "mongo1" in svc.get("depends_on", {}):
            condition = svc["depends_on"].get(MIGRATE, {}).get("condition")
            assert condition == "service_completed_successfully", name
    for name in ("ingress", "beat", *_worker_services(services)):
        assert MIGRATE in services[name]["depends_on"], name


LOCK_MASTERS = ("redis-lock1", "redis-lock2", "redis-lock3")


def test_mongodb_is_a_three_member_replica_set_initiated_by_its_first_member(services):
    for n in (1, 2, 3):
        command = services[f"mongo{n}"]["command"]
        assert command[command.index("--replSet") + 1] == "rs0"
    initiation = " ".join(services["mongo1"]["healthcheck"]["test"])
    for n in (1, 2, 3):
        assert f"mongo{n}:27017" in initiation
    assert "rs.initiate" in initiation and "PRIMARY" in initiation


def test_stores_that_hold_state_persist_it(services):
    assert "--appendonly yes" in services["redis"]["command"]
    for name in LOCK_MASTERS:  # a master restarted without its locks could grant one twice
        assert "--appendonly yes --appendfsync always" in services[name]["command"]
        assert any(v.endswith(":/data") for v in services[name]["volumes"])


def test_app_services_wait_for_every_lock_master(app_services):
    for name, svc in _serving(app_services).items():
        if "mongo1" in svc.get("depends_on", {}):  # the ones doing the work (not Flower)
            assert set(LOCK_MASTERS) <= set(svc["depends_on"]), name


def test_one_worker_service_per_queue_group_covering_every_queue(services):
    workers = _worker_services(services)
    assert set(workers) == {
        "worker-bookings",
        "worker-bulk",
        "worker-maintenance",
        "worker-webhooks",
    }
    consumed: list[str] = []
    names = set()
    for service, argv in workers.items():
        consumed += _option(argv, "-Q").split(",")
        names.add(_option(argv, "-n").split("@")[0])
        for flag in ("-E", "--without-mingle", "--without-gossip"):
            assert flag in argv, f"{service} lacks {flag}"
        # The pool the settings default to (threads corrupt AMQP frames under load).
        assert _option(argv, "--pool") == Settings.WORKER_POOL == "prefork"
        assert int(_option(argv, "--concurrency")) > 0
    assert sorted(consumed) == sorted(queues.ALL_QUEUES), "each queue needs exactly one group"
    assert len(names) == len(workers), "worker node names must differ"
    assert _option(workers["worker-bookings"], "-Q").split(",") == ["bookings", "status"]


def test_beat_and_flower_commands(services):
    beat = _command(services["beat"])
    assert beat[:4] == ["celery", "-A", "workers.main", "beat"]
    assert _option(beat, "--schedule").startswith("/tmp/")
    assert "deploy" not in services["beat"], "beat must run exactly once"
    flower = _command(services["flower"])
    assert flower[:4] == ["celery", "-A", "workers.main", "flower"]
    assert "--port=5555" in flower


def test_only_nginx_is_a_trusted_proxy(compose, services, app_services):
    """nginx has a fixed address on the compose network, and X-Forwarded-For is
    believed from exactly that address (not from any container on the network)."""
    pools = compose["networks"]["default"]["ipam"]["config"]
    assert len(pools) == 1
    subnet = ipaddress.ip_network(pools[0]["subnet"])
    dynamic = ipaddress.ip_network(pools[0]["ip_range"])
    assert dynamic.subnet_of(subnet)
    address = services["nginx"]["networks"]["default"]["ipv4_address"]
    nginx = ipaddress.ip_address(address)
    # Docker hands other containers addresses from ip_range only: none can take nginx's.
    assert nginx in subnet and nginx not in dynamic
    assert nginx != ipaddress.ip_address(pools[0]["gateway"])
    for name, svc in services.items():
        networks = svc.get("networks", {"default": None})
        assert list(networks) == ["default"], f"{name} is not on the default network"
    for name, svc in app_services.items():
        assert svc["environment"]["TRUSTED_PROXIES"] == address, name
        settings = load_settings(_default_env(svc["environment"]))
        trusted = [ipaddress.ip_network(p) for p in settings.TRUSTED_PROXIES.split(",")]
        assert trusted == [ipaddress.ip_network(f"{address}/32")], name


def test_metrics_token_is_required_and_is_prometheus_secret(compose, services):
    """The ingress checks METRICS_TOKEN, Prometheus sends it from the secret's
    file: one variable, in no file of the repository."""
    assert compose["x-app-env"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert services["prometheus"]["secrets"] == ["metrics_token"]
    config = yaml_file(PROMETHEUS_DIR / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"


def test_prometheus_loads_the_repositorys_config_and_rules(services):
    prometheus = services["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"]), "pin a version"
    mounts = _mounts(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml:ro"
    # prometheus.yml names its rule files relative to itself.
    for rule_file in yaml_file(PROMETHEUS_DIR / "prometheus.yml")["rule_files"]:
        assert mounts[f"/etc/prometheus/{rule_file}"] == f"./deploy/prometheus/{rule_file}:ro"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert mounts["/prometheus"] == "prometheus-data"
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert "/-/ready" in " ".join(prometheus["healthcheck"]["test"])


def test_grafana_is_provisioned_from_the_repository(services):
    grafana = services["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), "pin a version"
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning:ro"
    assert mounts["/etc/grafana/dashboards"] == "./deploy/grafana/dashboards:ro"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (provider,) = yaml_file(provisioning / "dashboards" / "radiantgo.yml")["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).is_file()
    (source,) = yaml_file(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"  # the prometheus service, its port
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]


def test_rabbitmq_management_ui_is_not_public(services):
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3-management")
    for port in rabbit.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"RabbitMQ publishes {port}"


# --- deploy/nginx.conf and the Dockerfile (plain text) ----------------------


def _nginx_directives() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in NGINX.read_text().splitlines())
    return [line for line in lines if line]


def test_nginx_balances_least_conn_over_the_ingress():
    text = "\n".join(_nginx_directives())
    upstream = re.search(r"upstream\s+ingress\s*\{(?P<body>[^}]*)\}", text)
    assert upstream, "no `upstream ingress` block"
    body = upstream["body"]
    assert re.search(r"^\s*least_conn;", body, re.M)
    assert "server ingress:5000 max_fails=3 fail_timeout=30s;" in body
    assert "proxy_pass http://ingress;" in text


NGINX_LOCATION = re.compile(
    r"location\s+(?:(?P<modifier>=|\^~|~\*?)\s+)?(?P<path>[^\s{]+)\s*\{(?P<body>[^{}]*)\}"
)


def _nginx_locations() -> list[dict[str, str]]:
    # Quoted strings (a JSON body) may hold braces: blanked before blocks are matched.
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "''", "\n".join(_nginx_directives()))
    return [m.groupdict() for m in NGINX_LOCATION.finditer(text)]


def _nginx_location_for(uri: str) -> dict[str, str]:
    """The location block nginx picks for `uri`: an exact match, else the longest
    prefix unless a regex matches first (a `^~` prefix skips the regexes)."""
    locations = _nginx_locations()
    for loc in locations:
        if loc["modifier"] == "=" and loc["path"] == uri:
            return loc
    prefixes = [
        loc for loc in locations if loc["modifier"] in (None, "^~") and uri.startswith(loc["path"])
    ]
    longest = max(prefixes, key=lambda loc: len(loc["path"]))
    if longest["modifier"] == "^~":
        return longest
    for loc in locations:
        flags = re.IGNORECASE if loc["modifier"] == "~*" else 0
        if loc["modifier"] in ("~", "~*") and re.search(loc["path"], uri, flags):
            return loc
    return longest


@pytest.mark.parametrize("uri", ["/metrics", "/metrics/", "/metrics/x"])
def test_nginx_does_not_forward_metrics(uri):
    """/metrics (operators' figures) is scraped inside the network, never through nginx."""
    body = _nginx_location_for(uri)["body"]
    assert "proxy_pass" not in body, f"nginx forwards {uri}"
    assert re.search(r"^\s*return 404\b", body, re.M), f"{uri} is not refused"
    assert "default_type application/problem+json;" in body


@pytest.mark.parametrize("uri", ["/api/bookings", "/api/admin/performance", "/health"])
def test_nginx_forwards_the_api(uri):
    assert "proxy_pass http://ingress;" in _nginx_location_for(uri)["body"]


def test_nginx_proxy_settings():
    directives = set(_nginx_directives())
    for expected in (
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_connect_timeout 5s;",
        "proxy_send_timeout 30s;",
        "proxy_read_timeout 30s;",
        "client_max_body_size 1m;",
    ):
        assert expected in directives, expected
    # A Prefer: wait response may take MAX_WAIT_SECONDS; nginx must outwait it.
    assert Settings.MAX_WAIT_SECONDS < 30


def test_dockerfile_runs_gunicorn_as_non_root():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    cmd = re.findall(r"^CMD\s+(.+)$", text, re.M)[-1]
    for part in (
        "gunicorn",
        "--bind 0.0.0.0:5000",
        "--worker-class ingress.serving.StampingThreadWorker",
        "${WEB_WORKERS",
        "${WEB_THREADS",
        "'ingress:create_app()'",
    ):
        assert part in cmd, part
    for path in ("core/", "ingress/", "workers/", "tools/", "celeryconfig.py"):
        assert re.search(rf"^COPY\s+{re.escape(path)}", text, re.M), path


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (".venv", "var", ".git", "perf/results"):
        assert entry in ignored, entry
    assert "__pycache__" in ignored or "**/__pycache__" in ignored
