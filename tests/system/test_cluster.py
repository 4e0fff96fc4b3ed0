"""`make cluster-chaos`, reduced to fit the suite: three RabbitMQ nodes clustered,
the node leading the work queues stopped under load and brought back.

The cluster is tools.cluster's, on ports of its own and in a temporary folder
(make cluster's may run beside it); the app is one ingress group (no nginx),
the interactive and background workers and beat. The promises are judged by
tools.chaos's verdict, as in the full run: every 202 succeeded, no booking
lost or made twice, every depart applied once, /health degraded while the
node was gone and healthy again after.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tools import chaos, cluster

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow("three RabbitMQ nodes, ~70 s"),
    pytest.mark.timeout(300),  # set-up, load and teardown: ~70 s on a quiet machine
    # The cluster's queues are quorum queues whatever QUEUE_TYPE says: once is enough.
    pytest.mark.skipif(
        os.environ.get("QUEUE_TYPE") == "quorum", reason="run once, in make test's pass"
    ),
]


@pytest.fixture
def small_cluster(tmp_path):
    layout = cluster.Layout(
        var=tmp_path / "cluster",
        amqp_ports=(5691, 5692, 5693),
        lock_ports=(6391, 6392, 6393),
        ingress_ports=(5094,),
        flower_port=5595,
        mongo_port=27038,
        redis_db=int(os.environ.get("TEST_REDIS_DB", "15")),
        node_prefix="radiantgo-test",
        programs=("worker", "background", "beat"),
        extra={"LOG_LEVEL": "WARNING", "GROUP_COMMIT_WAIT_MS": 10},
    )
    # An earlier run killed by its timeout may have left nodes on these ports.
    cluster.kill_strays(layout)
    try:
        cluster.start(layout)
        assert cluster.wait_healthy(layout, 60), "the ingress did not answer"
        yield layout
    finally:
        cluster.stop(layout)
        left = cluster.leftovers(layout)
        shutil.rmtree(layout.var, ignore_errors=True)
        assert not left, f"still running after stop: {left}"


def test_a_rabbitmq_node_stopped_under_load_loses_nothing(small_cluster):
    plan = chaos.Plan(rates={chaos.CREATE: 5.0, chaos.DEPART: 5.0}, lead_s=4, gap_s=0, tail_s=4)
    result = chaos.run(small_cluster, [chaos.stop_rabbit_leader(small_cluster, 6)], plan)
    ok, lines = chaos.verdict(result)
    print("\n".join(lines))
    assert ok, "\n".join(lines)
    fault = result["faults"][0]
    assert fault.what.startswith("stopped RabbitMQ radiantgo-test-")
    figures = chaos.fault_figures(result, fault)
    # Two of three nodes hold every quorum queue: the clients fail over to
    # them, and not one request is refused meanwhile.
    assert figures["refused"] == 0, figures
    assert figures["service_during"] != ["healthy"]
