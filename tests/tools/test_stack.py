"""`make run`'s set-up: the demo customer and operator whose keys it prints, its
credentials file, and what it prints of the admin token."""

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import redis

from core.clock import utcnow
from core.customers import disable_customer, hash_api_key, key_is_active
from core.settings import load_settings, replace
from tests.conftest import CUSTOMER, booking_body
from tools import stack
from tools.processes import free_port
from tools.stack import (
    admin_token_line,
    ensure_demo_callers,
    load_credentials,
    save_credentials,
    wait_for_port,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def permissive_umask():
    """A umask that would make a plainly created file world-readable (0644)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_credentials_are_created_0600(tmp_path, permissive_umask):
    path = tmp_path / "var" / "credentials.env"
    creds = load_credentials(path)
    assert mode(path) == 0o600
    assert creds["ADMIN_TOKEN"] and creds["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert load_credentials(path) == creds  # a restart keeps them
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.env"]


def test_credentials_replace_the_old_file_atomically(tmp_path, permissive_umask, monkeypatch):
    path = tmp_path / "credentials.env"
    path.write_text("ADMIN_TOKEN=old\n")
    path.chmod(0o644)  # as an older `make run` left it
    old_inode = os.stat(path).st_ino
    seen = {}
    real_replace = os.replace

    def watching_replace(src, dst):
        # The moment before the swap: the new content sits complete in a 0600
        # file, and the old file is still whole where readers look for it.
        seen.update(
            tmp_mode=mode(src), tmp_text=Path(src).read_text(), old_text=Path(dst).read_text()
        )
        return real_replace(src, dst)

    monkeypatch.setattr(stack.os, "replace", watching_replace)
    with open(path) as reader:  # a reader that opened the old file keeps reading it
        save_credentials({"ADMIN_TOKEN": "new", "X": "1"}, path)
        assert reader.read() == "ADMIN_TOKEN=old\n"
    assert seen == {
        "tmp_mode": 0o600,
        "tmp_text": "ADMIN_TOKEN=new\nX=1\n",
        "old_text": "ADMIN_TOKEN=old\n",
    }
    assert path.read_text() == "ADMIN_TOKEN=new\nX=1\n"
    assert mode(path) == 0o600
    assert os.stat(path).st_ino != old_inode  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.env"]


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "credentials.env"
    save_credentials({"ADMIN_TOKEN": "old"}, path)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(stack.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_credentials({"ADMIN_TOKEN": "new"}, path)
    assert path.read_text() == "ADMIN_TOKEN=old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.env"]


def test_the_admin_token_is_printed_only_when_generated():
    creds = {"ADMIN_TOKEN": "generated-" + "g" * 24}
    generated = admin_token_line(load_settings({}), creds)
    assert creds["ADMIN_TOKEN"] in generated and "generated" in generated
    chosen = "chosen-" + "c" * 24
    line = admin_token_line(load_settings({"ADMIN_TOKEN": chosen}), creds)
    assert chosen not in line and creds["ADMIN_TOKEN"] not in line
    assert "ADMIN_TOKEN" in line and "not shown" in line


def test_demo_callers_keep_their_keys_until_the_database_forgets_them(services):
    first = ensure_demo_callers(services.db, {"ADMIN_TOKEN": "kept"})
    assert first["ADMIN_TOKEN"] == "kept"
    keys = (first["DEMO_CUSTOMER_KEY"], first["DEMO_OPERATOR_KEY"])
    assert all(key_is_active(services.db, key) for key in keys)
    roles = [services.db.customers.find_one({"key_hash": hash_api_key(k)})["role"] for k in keys]
    assert roles == ["customer", "operator"]

    assert ensure_demo_callers(services.db, first) == first  # a restart: the same keys

    customer = services.db.customers.find_one({"key_hash": hash_api_key(keys[0])})
    disable_customer(services.db, services.cache, customer["_id"], now=utcnow(), ttl=60)
    again = ensure_demo_callers(services.db, first)
    assert again["DEMO_CUSTOMER_KEY"] != keys[0]
    assert again["DEMO_OPERATOR_KEY"] == keys[1]
    assert key_is_active(services.db, again["DEMO_CUSTOMER_KEY"])


def _unbounded_queue(settings, name: str, message: bytes | None = None) -> None:
    """A queue as an older version declared it: durable, without its bound."""
    from kombu import Connection

    with Connection(settings.RABBITMQ_URL) as conn:
        channel = conn.channel()
        channel.queue_declare(name, durable=True, auto_delete=False)
        if message is not None:
            from amqp import Message

            channel.basic_publish(Message(message), exchange="", routing_key=name)


def test_make_run_replaces_an_empty_queue_declared_without_its_bound(settings):
    import uuid

    from click import ClickException
    from kombu import Connection

    from celeryconfig import celery_config
    from core import queues
    from tools.processes import delete_queues

    older = replace(settings, QUEUE_NAMESPACE=f"older-{uuid.uuid4().hex[:6]}")
    bookings = queues.queue_name(queues.BOOKINGS, older.QUEUE_NAMESPACE)
    status = queues.queue_name(queues.STATUS, older.QUEUE_NAMESPACE)
    try:
        _unbounded_queue(older, bookings)
        stack.ensure_bounded_queues(older)
        stack.ensure_bounded_queues(older)  # and again: nothing left to change
        # The workers' own declarations (celeryconfig) now agree with the broker's.
        with Connection(older.RABBITMQ_URL) as conn:
            for queue in celery_config(older)["task_queues"]:
                queue.bind(conn.channel()).declare()
        # One still holding messages is left alone, and make run says why.
        delete_queues(older)
        _unbounded_queue(older, status, message=b"{}")
        with pytest.raises(ClickException, match="holds 1 messages"):
            stack.ensure_bounded_queues(older)
    finally:
        delete_queues(older)


def _closed_broker() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}//"


def test_make_run_needs_one_answering_node_of_a_broker_cluster(settings, monkeypatch):
    from click import ClickException

    # Whatever happens, this test starts no RabbitMQ of the machine's.
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    down = [_closed_broker(), _closed_broker()]
    stack.ensure_services(replace(settings, RABBITMQ_URL=";".join([*down, settings.RABBITMQ_URL])))
    with pytest.raises(ClickException, match="None of the 2 RabbitMQ nodes in RABBITMQ_URL"):
        stack.ensure_services(replace(settings, RABBITMQ_URL=";".join(down)))


def test_make_run_declares_the_queues_on_the_first_broker_node_that_answers(settings):
    import uuid

    from kombu import Connection

    from core import queues
    from tools.processes import delete_queues

    cluster = replace(
        settings,
        QUEUE_NAMESPACE=f"cluster-{uuid.uuid4().hex[:6]}",
        RABBITMQ_URL=";".join([_closed_broker(), _closed_broker(), settings.RABBITMQ_URL]),
    )
    try:
        stack.ensure_bounded_queues(cluster)
        with Connection(settings.RABBITMQ_URL) as conn:
            name = queues.queue_name(queues.BOOKINGS, cluster.QUEUE_NAMESPACE)
            conn.default_channel.queue_declare(name, passive=True)
    finally:
        delete_queues(cluster)


def test_a_redis_make_run_starts_keeps_accepted_jobs_across_a_crash(
    services, tmp_path, isolated_stack
):
    """Where no Redis answers, make run starts one with tools.stack.redis_command:
    a job answered 202 is still there after that Redis is killed and started again."""
    port = free_port()
    command = stack.redis_command(port, tmp_path, tmp_path / "redis.log")
    subprocess.run(command, check=True)  # it daemonizes
    own = isolated_stack("redis-aof", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        assert own.services.redis.config_get("appendfsync") == {"appendfsync": "everysec"}
        client = own.client()
        accepted = client.post("/api/bookings", json=booking_body(), headers=CUSTOMER)
        assert accepted.status_code == 202, accepted.get_data(as_text=True)
        job_url = accepted.headers["Location"]
        os.kill(own.services.redis.info("server")["process_id"], signal.SIGKILL)
        assert wait_closed("127.0.0.1", port, 10)
        subprocess.run(command, check=True)
        assert wait_for_port("127.0.0.1", port, 10)
        job = client.get(job_url, headers=CUSTOMER)
        assert job.status_code == 200, job.get_data(as_text=True)
        assert job.get_json()["state"] == "queued"
    finally:
        with contextlib.suppress(redis.RedisError):
            own.services.redis.shutdown(nosave=True)


def wait_closed(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while stack.reachable(host, port, 0.5):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_processes_find_the_embedded_database_on_its_port():
    moved = load_settings({}, EMBEDDED_MONGO_PORT=27999)
    assert (
        stack.database_uri(moved)
        == "mongodb://127.0.0.1:27999/radiantgo?retryWrites=false&journal=true"
    )
    chosen = load_settings({}, MONGODB_URI="mongodb://db.internal:27017/rg", EMBEDDED_MONGO_PORT=1)
    assert stack.database_uri(chosen) == "mongodb://db.internal:27017/rg"


@pytest.mark.parametrize("taken", ["PORT", "FLOWER_PORT", "EMBEDDED_MONGO_PORT"])
def test_make_run_refuses_a_port_of_its_own_that_is_taken(taken):
    from click import ClickException

    ports = {name: free_port() for name in ("PORT", "FLOWER_PORT", "EMBEDDED_MONGO_PORT")}
    settings = load_settings({}, **ports)
    stack.refuse_taken_ports(settings)  # all free
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[taken]))
        listener.listen()
        with pytest.raises(ClickException, match=f"Port {ports[taken]} is taken.*{taken}"):
            stack.refuse_taken_ports(settings)
