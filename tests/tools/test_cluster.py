"""make cluster's configuration: what each node and program is given.

The cluster itself runs in tests/system/test_cluster.py (a node stopped under
load) and in `make cluster-chaos`.
"""

from __future__ import annotations

from pathlib import Path

from core import queues
from tools import chaos, cluster, supervision

LAYOUT = cluster.Layout(var=Path("/srv/cluster"))


def test_the_app_is_given_every_broker_node_quorum_queues_and_the_lock_masters():
    settings = cluster.cluster_settings(LAYOUT, environ={})
    assert settings.broker_urls == tuple(
        f"amqp://guest:guest@127.0.0.1:{port}//" for port in (5681, 5682, 5683)
    )
    assert settings.QUEUE_TYPE == "quorum"
    assert settings.lock_redis_urls == tuple(
        f"redis://127.0.0.1:{port}/0" for port in (6381, 6382, 6383)
    )
    assert settings.TRUSTED_PROXIES == "127.0.0.1"  # nginx's X-Forwarded-For is believed
    assert settings.REDIS_URL.endswith("/2")  # not make run's database


def test_the_environment_may_set_what_the_cluster_defaults():
    settings = cluster.cluster_settings(LAYOUT, environ={"RATE_LIMIT_BOOKINGS": "7"})
    assert settings.RATE_LIMIT_BOOKINGS == 7
    assert cluster.cluster_settings(LAYOUT, environ={}).RATE_LIMIT_BOOKINGS == 100_000


def test_each_node_has_its_own_name_ports_and_folders_and_shares_one_cookie():
    envs = [cluster.rabbit_env(LAYOUT, i) for i in range(3)]
    assert [e["RABBITMQ_NODENAME"] for e in envs] == [
        "radiantgo-1@localhost",
        "radiantgo-2@localhost",
        "radiantgo-3@localhost",
    ]
    assert [e["RABBITMQ_DIST_PORT"] for e in envs] == ["25681", "25682", "25683"]
    for name in ("RABBITMQ_CONFIG_FILE", "RABBITMQ_MNESIA_BASE", "RABBITMQ_LOG_BASE"):
        folders = {e[name] for e in envs}
        assert len(folders) == 3 and all(f.startswith("/srv/cluster/") for f in folders)
    assert {e["HOME"] for e in envs} == {"/srv/cluster/rabbitmq"}  # its .erlang.cookie
    assert all("{127,0,0,1}" in e["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for e in envs)


def test_a_node_listens_on_its_own_amqp_port_on_loopback_without_plugins(tmp_path):
    layout = cluster.Layout(var=tmp_path)
    cluster.write_rabbit_files(layout, 1)
    folder = cluster.rabbit_dir(layout, 1)
    assert "listeners.tcp.1 = 127.0.0.1:5682" in (folder / "rabbitmq.conf").read_text()
    assert (folder / "enabled_plugins").read_text().strip() == "[]."
    cookie = tmp_path / "rabbitmq" / ".erlang.cookie"
    assert oct(cookie.stat().st_mode & 0o777) == "0o400"


def test_nginx_balances_least_conn_and_never_sends_a_taken_post_twice():
    conf = cluster.nginx_conf(LAYOUT)
    assert "least_conn;" in conf
    assert "server 127.0.0.1:5081" in conf and "server 127.0.0.1:5082" in conf
    assert "listen 127.0.0.1:5080;" in conf
    assert "proxy_next_upstream error timeout;" in conf
    assert "non_idempotent" not in conf


def test_two_ingress_groups_on_their_own_ports_beside_the_workers():
    settings = cluster.cluster_settings(LAYOUT, environ={})
    programs = cluster.app_programs(LAYOUT, settings, LAYOUT.var)
    assert set(programs) == {"ingress-1", "ingress-2", *LAYOUT.programs}
    binds = [programs[f"ingress-{i}"][programs[f"ingress-{i}"].index("--bind") + 1] for i in (1, 2)]
    assert binds == ["127.0.0.1:5081", "127.0.0.1:5082"]
    config = supervision.render(
        settings,
        LAYOUT.var,
        database=True,
        password="p",
        echo=False,
        programs=programs,
        daemon=True,
    )
    assert "nodaemon = false" in config and "[program:ingress-2]" in config


def test_the_node_to_stop_is_the_one_leading_most_interactive_queues():
    """The queues the load fills count, not the background ones (led elsewhere here)."""
    leaders = {queues.queue_name(q, ""): "radiantgo-2@localhost" for q in queues.INTERACTIVE}
    leaders |= {queues.queue_name(q, ""): "radiantgo-1@localhost" for q in queues.ALL_QUEUES[2:]}
    assert len(queues.ALL_QUEUES[2:]) > len(queues.INTERACTIVE)
    assert chaos.leading_node(leaders) == ("radiantgo-2@localhost", len(queues.INTERACTIVE))


def test_the_faults_are_spaced_and_the_load_covers_them():
    faults = chaos.full_faults(LAYOUT, down_s=15)
    due, seconds = chaos.fault_times(faults, chaos.Plan(lead_s=10, gap_s=10, tail_s=10))
    allowance = chaos.MEND_ALLOWANCE_S
    assert due == [10, 10 + 15 + allowance + 10, 10 + 2 * (15 + allowance + 10)]
    assert seconds == due[-1] + 0 + allowance + 10


def test_what_an_earlier_run_left_on_a_layouts_ports_is_killed(tmp_path):
    """A test killed by its timeout may leave its nodes running: the next run
    clears its own ports first, and nothing else."""
    import subprocess
    import sys

    from tools.processes import free_port
    from tools.stack import wait_for_port

    port, elsewhere = free_port(), free_port()
    layout = cluster.Layout(
        var=tmp_path,
        amqp_ports=(),
        lock_ports=(),
        ingress_ports=(port,),
        flower_port=free_port(),
        mongo_port=free_port(),
    )
    serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
    stray = subprocess.Popen(
        [*serve, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    other = subprocess.Popen(
        [*serve, str(elsewhere)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port("127.0.0.1", port, 10) and wait_for_port("127.0.0.1", elsewhere, 10)
        assert cluster.kill_strays(layout) == [stray.pid]
        assert stray.wait(5) == -9 and other.poll() is None
    finally:
        for proc in (stray, other):
            proc.kill()
            proc.wait()


def test_a_stale_pid_file_names_no_process(tmp_path):
    """After a crash the pid in a file may belong to another process: never stopped."""
    import os

    stale = tmp_path / "nginx.pid"
    stale.write_text(str(os.getpid()))  # this pytest: not an nginx
    assert cluster.pid_from(stale, "nginx") is None
    assert cluster.pid_from(stale, "pytest") == os.getpid()
    assert cluster.pid_from(tmp_path / "missing.pid", "nginx") is None
