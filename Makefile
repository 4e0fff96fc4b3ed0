# RadiantGo. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create .venv and install the pinned requirements

run: venv ## Run the whole system under supervisord (ingress, workers, beat, Flower, embedded MongoDB)
	$(PY) -m tools.stack run

migrate: venv ## Ensure MongoDB's indexes and run the data migrations not run yet (make run does it too)
	$(PY) -m tools.migrate

test: venv tools ## Run the test suite on real Redis, RabbitMQ and MongoDB wire server (the heavy fault and fuzz runs: make faults, make fuzz)
	$(PY) -m tools.stack ensure-services
	$(PY) -m pytest -m "not heavy" $(PYTEST_ARGS)

test-fast: venv ## The fast tier (< 30 s): every test that starts no process of its own (no worker, gunicorn, redis-server)
	$(PY) -m tools.stack ensure-services
	$(PY) -m pytest -m "not stack and not slow" --ignore=tests/fuzz \
	  -p no:locust -p no:schemathesis -p no:anyio -p no:hypothesispytest $(PYTEST_ARGS)

test-quorum: venv tools ## The tests whose outcome may depend on the queue type, again with QUEUE_TYPE=quorum (as compose runs)
	$(PY) -m tools.stack ensure-services
	QUEUE_TYPE=quorum $(PY) -m pytest -m queue_type $(PYTEST_ARGS)

# promtool checks and unit-tests the alerting rules (tests/test_alerts.py).
# Without it those tests fail, saying so: they never skip.
tools: ## Install promtool (Debian's prometheus package, as root) unless it is there
	@command -v promtool >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "promtool is missing: installing Debian's prometheus package ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null \
	  || echo "could not install prometheus: the alert rule tests will fail"; \
	else \
	  echo "promtool is missing and apt-get as root is not available here: the alert rule" \
	    "tests will fail (Debian: sudo apt-get install prometheus)"; \
	fi

test-heavy: venv tools ## The heavy fault and fuzz runs make test leaves out (CI runs them after make test)
	$(PY) -m tools.stack ensure-services
	$(PY) -m pytest -m heavy $(PYTEST_ARGS)

faults: venv ## Only the fault suite (kills, broker and Redis restarts): prints acknowledged/present/lost
	$(PY) -m tools.stack ensure-services
	$(PY) -m pytest tests/faults -s $(PYTEST_ARGS)

fuzz: venv ## Only schemathesis and the hostile-input cases
	$(PY) -m tools.stack ensure-services
	$(PY) -m pytest tests/fuzz -s $(PYTEST_ARGS)

seed: venv ## Store the demo flight schedule (DEMO_FLIGHTS from today UTC) unless flights exist
	$(PY) -m tools.flights seed-flights --if-empty $(SEED_ARGS)

docs: venv ## Regenerate docs/operations.md's settings table from core/settings.py
	$(PY) -m tools.settings_doc --write

lint: venv ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: bench-create bench-transitions bench-flights bench-bulk bench-auth bench-accept bench-reads bench-lists bench-reservations bench-burst bench-webhooks bench-versus bench-idle ## Every benchmark, one after the other

bench-create: venv ## Booking creation: accept/end-to-end latency, throughput vs a no-op task
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_create $(BENCH_ARGS)

bench-transitions: venv ## Transitions at 30/s and 300/s: latencies and lock acquisition
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_transitions $(BENCH_ARGS)

bench-bulk: venv ## A 1000-booking and a 500-update batch end to end (items/s)
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_bulk $(BENCH_ARGS)

bench-flights: venv ## 100,000-flight import vs insert_many; route search uncached and cached
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_flights $(BENCH_ARGS)

bench-idle: venv ## make run's whole stack at rest with 100,000 flights: RSS, CPU, warms, route hit rate
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_idle $(BENCH_ARGS)

bench-auth: venv ## API key lookup: ingress CPU per request with a cached key vs none
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_auth $(BENCH_ARGS)

bench-accept: venv ## Accept path: POST /api/bookings requests/s and CPU vs a minimal floor app
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_accept $(BENCH_ARGS)

bench-reads: venv ## Route search over HTTP: uncached p95, cached requests/s and CPU vs a Redis-GET floor app
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_reads $(BENCH_ARGS)

bench-lists: venv ## Booking lists over HTTP, 100,000 bookings of one customer: uncached p95 per filter vs a page-cache hit
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_lists $(BENCH_ARGS)

bench-reservations: venv ## Flight capacity: reservations/s on one hot flight vs 1,000 flights, flight lock p50/p95
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_reservations $(BENCH_ARGS)

bench-burst: venv ## 60 s open loop at 10x the peak (100 creates/s + 300 updates/s), then until drained
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_burst $(BENCH_ARGS)

bench-versus: venv ## RadiantGo against a synchronous FastAPI + PostgreSQL service: CPU per stored create/depart at 60/s and at saturation, departs/s (PostgreSQL at 127.0.0.1:5432)
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_versus $(BENCH_ARGS)

# Jobs/s this machine sustains with every process of make run (1 create to 3
# updates): bench-burst's "jobs finished/s" once its queues grow (215 on the
# 2-core machine, 2026-12-05).
SUSTAINABLE ?= 215
bench-overload: venv ## Graceful overload: 60 s at twice SUSTAINABLE jobs/s (503 overloaded past capacity), then until drained
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_burst --overload $(SUSTAINABLE) $(BENCH_ARGS)

bench-webhooks: venv ## Webhooks: commit -> receipt lag at 30 transitions/s x 100 endpoints, deliveries/s and CPU, bookings beside a hanging receiver (BENCH_ARGS=--quick)
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.bench_webhooks $(BENCH_ARGS)

perf: venv ## Locust scenarios + every benchmark, one report in perf/results/<timestamp>/ (PERF_ARGS=--quick)
	$(PY) -m tools.stack ensure-services
	$(PY) -m perf.run_perf $(PERF_ARGS)

cluster: venv ## The scale-out natively: 3 RabbitMQ nodes (quorum queues), 3 lock masters, 2 ingress groups behind nginx, workers; in the background
	$(PY) -m tools.cluster start

cluster-stop: venv ## Stop every process of make cluster (its data stays in var/cluster)
	$(PY) -m tools.cluster stop

cluster-chaos: venv ## Under load at the spec's peak, stop/kill a RabbitMQ node, a lock master, an ingress group: a line per fault and a verdict
	$(PY) -m tools.chaos $(CHAOS_ARGS)

ledger: venv ## Audit every flight's cargo space against its reservations and bookings (exit 1: drift)
	$(PY) -m tools.ledger check

ledger-repair: venv ## Set right every flight whose cargo space does not balance (under its flight lock)
	$(PY) -m tools.ledger repair

panels: venv ## The Grafana dashboard's panels as PNGs from a make perf run (RUN=perf/results/<timestamp>, default the latest) into its panels/
	$(PY) -m perf.panels $(RUN)

clean: ## Remove the venv and local data (var/)
	rm -rf $(VENV) var .pytest_cache .ruff_cache

.PHONY: help venv run migrate test test-fast test-heavy test-quorum tools faults fuzz seed docs lint bench bench-create bench-transitions bench-flights bench-bulk bench-auth bench-accept bench-reads bench-lists bench-reservations bench-burst bench-overload bench-versus bench-webhooks bench-idle perf cluster cluster-stop cluster-chaos ledger ledger-repair panels clean
