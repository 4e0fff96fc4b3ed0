"""core/logs.py: the ids bound to a thread's log lines, and the two formats."""

import json
import logging
import sys
import threading

import pytest

from core import logs


@pytest.fixture(autouse=True)
def unbound():
    logs.clear()
    yield
    logs.clear()


def record(msg="booked %s", args=("RG1",), exc_info=None, **fields) -> logging.LogRecord:
    made = logging.LogRecord("core.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    if fields:
        made.fields = fields
    return made


def test_bind_adds_to_what_is_bound_and_clear_drops_it():
    logs.bind(request_id="r1")
    logs.bind(job_id="j1", request_id="r2")
    assert logs.bound() == {"request_id": "r2", "job_id": "j1"}
    logs.bound()["job_id"] = "changed"  # a copy
    assert logs.bound()["job_id"] == "j1"
    logs.clear()
    assert logs.bound() == {}


def test_each_thread_logs_its_own_ids():
    logs.bind(request_id="main")
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(logs.bound()))
    thread.start()
    thread.join()
    assert seen == {}
    assert logs.bound() == {"request_id": "main"}


def test_a_json_line_carries_the_message_the_bound_ids_and_the_records_fields():
    logs.bind(request_id="r1", job_id="j1")
    line = json.loads(logs._ContextFormatter(as_json=True).format(record(ref_id="RG1")))
    assert {k: line[k] for k in ("level", "logger", "msg")} == {
        "level": "warning",
        "logger": "core.test",
        "msg": "booked RG1",
    }
    assert (line["request_id"], line["job_id"], line["ref_id"]) == ("r1", "j1", "RG1")
    assert line["ts"].endswith("Z") and len(line["ts"]) == len("2024-01-01T00:00:00.000Z")
    assert "exc" not in line


def test_a_json_line_carries_the_traceback():
    try:
        raise KeyError("ref_id")
    except KeyError:
        exc_info = sys.exc_info()
    line = json.loads(logs._ContextFormatter(as_json=True).format(record(exc_info=exc_info)))
    assert "KeyError: 'ref_id'" in line["exc"]


def test_a_text_line_is_time_level_logger_message_then_the_fields():
    logs.bind(job_id="j1")
    line = logs._ContextFormatter(as_json=False).format(record(ref_id="RG1"))
    ts, level, logger, rest = line.split(maxsplit=3)
    assert ts.endswith("Z") and (level, logger) == ("warning", "core.test:")
    assert rest == "booked RG1 job_id=j1 ref_id=RG1"
