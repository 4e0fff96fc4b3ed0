"""Per-process worker state: clients made after fork, logging, heartbeats."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import Celery, bootsteps, signals
from celery.worker.consumer import Consumer as _Consumer
from celery_batches import Batches

from core import health, logs, metrics, queues
from core.services import Services, connect_services
from core.settings import Settings

log = logging.getLogger(__name__)
_state: dict[str, object] = {}
_started: dict[str, float] = {}  # task id -> start time, between prerun and postrun
_lock = threading.Lock()


def worker_services() -> Services:
    """This process's clients, made on first use after fork (pymongo is not
    fork-safe). The database is migrated before any worker starts
    (core.migrations: `make run`, compose's `migrate` service)."""
    current = _state.get("services")
    if current is not None and _state.get("pid") == os.getpid():
        return current  # type: ignore[return-value]
    with _lock:
        if _state.get("services") is None or _state.get("pid") != os.getpid():
            settings: Settings = _state["settings"]  # type: ignore[assignment]
            _state.update(services=connect_services(settings), pid=os.getpid())
    return _state["services"]  # type: ignore[return-value]


def worker_settings() -> Settings:
    """This worker's settings, known before (and whether or not) any client connects."""
    return _state["settings"]  # type: ignore[return-value]


class Heartbeat(bootsteps.StartStopStep):
    """Records this worker as alive in Redis every few seconds, for /health.

    A consumer step: it starts again with the consumer after a lost broker
    connection (the consumer's restart drops the timers set before it; as a
    worker step, the heartbeat stopped for good after a RabbitMQ restart)."""

    def start(self, consumer):
        self.name_ = consumer.hostname or socket.gethostname()
        self.tref = consumer.timer.call_repeatedly(health.WORKER_HEARTBEAT_INTERVAL, self.beat)
        self.beat()

    def beat(self):
        """The heartbeat, and the host's memory for /metrics (as the ingress reports it)."""
        now = time.time()
        try:
            health.record_worker_heartbeat(worker_services().redis, self.name_, now)
            metrics.record_memory(worker_services().redis, now)
        except Exception as exc:  # a missed heartbeat must never stop the worker
            log.warning("heartbeat not recorded: %s", exc)

    def stop(self, consumer):
        if getattr(self, "tref", None) is not None:
            self.tref.cancel()
            self.tref = None


class Topology(bootsteps.StartStopStep):
    """QUEUE_TYPE=quorum: declares the delay and dead-letter queues
    (celeryconfig.retry_queues) before the consumer takes a message, so a retry
    or a poison message always has somewhere to go. Again after a lost
    connection: a broker restored empty gets them back."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, consumer):
        from celeryconfig import retry_queues

        extra = retry_queues(consumer.app.conf.radiantgo_settings)
        if extra:
            channel = consumer.connection.default_channel
            for queue in extra:
                queue.bind(channel).declare()


class Consumer(_Consumer):
    """Celery's consumer without its native delayed delivery step: it needs
    topic exchanges (ours is direct) and whole-second countdowns, and shares
    28 `celery_delayed_*` queues between every namespace on the broker; our
    retries wait in delay queues of their own (core.retries.STEPS_MS)."""

    class Blueprint(_Consumer.Blueprint):
        default_steps = [
            step
            for step in _Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]


def _queue_of(task_name: str) -> str | None:
    if task_name not in queues.TASKS:
        return None
    return queues.queue_name(queues.TASKS[task_name][1], worker_settings().QUEUE_NAMESPACE)


def worker_app() -> Celery:
    """The Celery app this worker runs (install), which publishes what the worker sends."""
    return _state["app"]  # type: ignore[return-value]


def install(app: Celery) -> None:
    settings: Settings = app.conf.radiantgo_settings
    _state.update(settings=settings, app=app)
    app.steps["consumer"].add(Heartbeat)
    app.steps["consumer"].add(Topology)

    @signals.setup_logging.connect(weak=False)
    def _logging(**_):
        logs.configure_logging(settings)

    @signals.worker_process_init.connect(weak=False)
    def _child_started(**_):
        worker_services()  # prefork child: connect now, after the fork

    @signals.task_prerun.connect(weak=False)
    def _bind(task_id=None, task=None, **_):
        request_id = getattr(task.request, "request_id", None) if task else None
        logs.clear()
        logs.bind(task=task.name if task else None, job_id=task_id, request_id=request_id)
        _started[task_id] = time.time()

    @signals.task_postrun.connect(weak=False)
    def _unbind(task_id=None, task=None, state=None, **_):
        logs.clear()
        started = _started.pop(task_id, None)
        if task is None or started is None or isinstance(task, Batches):
            return  # a group's tasks are recorded by workers.batches, each
        enqueued = getattr(task.request, "enqueued_at", None)
        # A retried task's wait counts from its first enqueue: that is what a client waits.
        wait_ms = (started - enqueued) * 1000 if isinstance(enqueued, int | float) else None
        try:
            metrics.record_tasks(
                worker_services().redis,
                task.name.rsplit(".", 1)[-1],
                wait_ms=[wait_ms] if wait_ms is not None else [],
                run_ms=(time.time() - started) * 1000,
                failed=int(state == "FAILURE"),
                queue=_queue_of(task.name),
            )
        except Exception as exc:  # metrics must never fail a task
            log.warning("task metrics not recorded: %s", exc)
