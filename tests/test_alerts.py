"""deploy/prometheus/ (alerting rules, their unit tests, the scrape config) and
deploy/grafana/ (the dashboard): checked with promtool, and every query they
make checked against what GET /metrics really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from core import metrics, scaling
from core.deliveries import Outcome
from core.egress import Attempt
from core.locks import booking_lock_key
from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "radiantgo.json"
TOKEN_FILE = "/run/secrets/metrics_token"

# The spec's alerting thresholds, as core.scaling (and so /api/admin/performance) has them.
THRESHOLDS = {
    "RadiantGoSlowEndpoint": f"> {scaling.P95_LIMIT_MS}",
    "RadiantGoLowCacheHitRate": f"< {scaling.CACHE_HIT_RATE_FLOOR:g}",
    "RadiantGoSlowLockAcquisition": f"> {scaling.LOCK_ACQUIRE_LIMIT_MS}",
    "RadiantGoHighErrorRate": f"> {scaling.ERROR_RATE_LIMIT:g}",
    "RadiantGoHighMemory": f"> {scaling.MEMORY_LIMIT:g}",
    "RadiantGoQueueBacklogGrowing": "radiantgo_queue_growing) == 1",
    "RadiantGoWebhooksBehind": f"sum(radiantgo_webhook_backlog) >= {scaling.WEBHOOK_BACKLOG_LIMIT}",
}
PANEL_THRESHOLDS = {
    "P95 latency by endpoint": scaling.P95_LIMIT_MS,
    "Server error rate by endpoint": scaling.ERROR_RATE_LIMIT,
    "Cache hit rate by kind": scaling.CACHE_HIT_RATE_FLOOR,
    "Lock acquisition time by kind": scaling.LOCK_ACQUIRE_LIMIT_MS,
    "Memory used by host": scaling.MEMORY_LIMIT,
    "Webhook backlog by endpoint": scaling.WEBHOOK_BACKLOG_LIMIT,
}


def _promtool(*args: str, cwd: Path) -> str:
    promtool = shutil.which("promtool")
    assert promtool, (
        "promtool is not installed: `make test` installs Debian's prometheus package "
        "when it can (apt-get as root); else `apt-get install prometheus`"
    )
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and every dashboard query."""
    found = [(f"alert {name}", rule["expr"]) for name, rule in _rules().items()]
    for panel in _panels():
        found += [(f"panel {panel['title']!r}", t["expr"]) for t in panel["targets"]]
    return found


# -- promtool -------------------------------------------------------------------------


def test_promtool_accepts_the_rules():
    assert "SUCCESS" in _promtool("check", "rules", RULES.name, cwd=PROMETHEUS)


def test_each_alert_fires_past_its_threshold_and_not_at_it():
    """deploy/prometheus/alerts_test.yml: promtool's unit tests of the rules."""
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    tested = re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text())
    assert set(tested) == set(_rules())


def test_promtool_accepts_the_scrape_config(tmp_path):
    """prometheus.yml as compose mounts it: alerts.yml beside it, the token in
    the secret's file (here a file of the test's own)."""
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert config.count(TOKEN_FILE) == 1
    (tmp_path / "token").write_text("t" * 32)
    (tmp_path / "prometheus.yml").write_text(config.replace(TOKEN_FILE, str(tmp_path / "token")))
    shutil.copy(RULES, tmp_path / "alerts.yml")
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def test_the_scrape_reaches_an_ingress_with_the_metrics_token():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "radiantgo" and job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": TOKEN_FILE}
    assert job["static_configs"] == [{"targets": ["ingress:5000"]}]
    assert config["rule_files"] == [RULES.name]
    # The same interval as beat's queue-depth samples, so each sample is scraped.
    assert config["global"]["scrape_interval"] == "15s"


# -- the rules and the dashboard agree with core.scaling --------------------------------


def test_every_spec_threshold_has_an_alert_with_the_apps_number():
    rules = _rules()
    for name, comparison in THRESHOLDS.items():
        assert comparison in " ".join(rules[name]["expr"].split()), name
    for name in ("RadiantGoLowCacheHitRate", "RadiantGoHighErrorRate"):
        assert f">= {scaling.MIN_SAMPLE}" in rules[name]["expr"], name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["action"], name


def test_dashboard_panels_draw_the_alert_thresholds():
    panels = {p["title"]: p for p in _panels()}
    for title, limit in PANEL_THRESHOLDS.items():
        defaults = panels[title]["fieldConfig"]["defaults"]
        steps = [s["value"] for s in defaults["thresholds"]["steps"]]
        assert steps == [None, limit], title
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "line", title


def test_dashboard_is_one_grafana_dashboard_on_the_provisioned_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "radiantgo"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    (source,) = sources
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    titles = [p["title"] for p in _panels()]
    assert len(titles) == len(set(titles)), "make panels names its PNGs after the titles"


# -- every query against a real /metrics ---------------------------------------------

METRIC = re.compile(r"\b(radiantgo_\w+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


@pytest.fixture(scope="module")
def exported(app, services) -> dict[str, dict[str, set[str]]]:
    """Sample name -> label -> the values seen, from GET /metrics after a little
    of everything: requests and an error, a route search, a lock, a task, a
    queue depth sample, a webhook delivered and one given up; this ingress
    reports its host's memory itself."""
    client = app.test_client()
    assert client.get("/api/bookings/RG000000000", headers=ADMIN).status_code == 404
    client.get("/api/routes?origin=QMA&destination=QMB&date=2032-03-01")
    services.locks.release(services.locks.acquire(booking_lock_key("RGALERTS001")))
    metrics.record_tasks(services.redis, "create", wait_ms=[3.0], run_ms=4.0)
    for state, status in (("delivered", 200), ("failed", 410)):
        outcome = Outcome("dlv_alerts", "ep_alerts", state, Attempt(status, 5), lag_ms=40.0)
        metrics.record_webhook(services.redis, outcome, now=time.time())
    services.redis.lpush(
        metrics.queue_depth_key("bookings"),
        json.dumps({"at": time.time(), "messages": 3, "consumers": 1}),
    )
    text = client.get("/metrics", headers=ADMIN).get_data(as_text=True)
    seen: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = seen.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return seen


@pytest.mark.parametrize("where, query", _queries(), ids=lambda v: v[:60])
def test_every_query_names_exported_metrics_and_labels(exported, where, query):
    used = METRIC.findall(query)
    if not used:  # Prometheus' own series of the scrape (prometheus.yml's job)
        assert 'up{job="radiantgo"}' in query, f"{where} queries no RadiantGo metric"
        return
    labels_used = set()
    for name, matchers in used:
        assert name in exported, f"{where}: /metrics exports no {name}"
        labels = exported[name]
        labels_used |= set(labels)
        for label, op, value in MATCHER.findall(matchers):
            assert label in labels, f"{where}: {name} has no label {label}"
            if op in ("=", "!="):  # a concrete value: one /metrics really has
                assert value in labels[label], f"{where}: {name}{{{label}={value!r}}} never seen"
    for group in GROUPING.findall(query):
        for label in filter(None, (part.strip() for part in group.split(","))):
            assert label in labels_used, f"{where}: no metric it uses has a label {label}"
