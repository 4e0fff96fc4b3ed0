"""core/logs.py: the ids bound to a thread's log lines, and the two formats."""

import json
import logging
import re
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- lines that cannot be forged -----------------------------------------------------------

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s"]+=(?:"(?:[^"\\]|\\.)*"|\S*)|\S+')
HEAD = re.compile(r"\S+ \S+ +\S+: (?P<rest>.*)")


def unquoted(token: str) -> str:
    if not token.startswith('"'):
        return token
    inner = token[1:-1]
    return inner.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parsed(line: str) -> tuple[str, dict[str, str]]:
    """(message, fields) of a text line, read as a log reader would: after the
    logger's name, the message (quoted, or plain words), then key=value tokens."""
    rest = HEAD.match(line).group("rest")
    tokens = TOKEN.findall(rest)
    words = (
        1
        if tokens[0].startswith('"')
        else next((n for n, t in enumerate(tokens) if "=" in t), len(tokens))
    )
    fields = [t.split("=", 1) for t in tokens[words:]]
    return unquoted(" ".join(tokens[:words])), {key: unquoted(value) for key, value in fields}


CONTROLS = ["\n", "\r", "\r\n", "\x00", "\x1b[2J", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("control", [*CONTROLS, "\u202e", "\x0b", "\x0c", "\x1c", "\U000e0020"])
def test_a_control_character_never_reaches_a_text_line_as_is(control):
    forged = f"/api/flights{control}2026-01-01T00:00:00.000Z info    ingress: GET / 200"
    logs.bind(request_id=f"r{control}1")
    line = logs._ContextFormatter(as_json=False).format(
        record("%s %s", ("GET", forged), path=forged)
    )
    assert len(line.splitlines()) == 1 and line.isprintable(), repr(line)
    message, fields = parsed(line)
    assert message == f"GET {forged}"
    assert fields == {"request_id": f"r{control}1", "path": forged}


def test_spaces_quotes_and_equals_signs_make_no_fields():
    logs.bind(request_id="abc level=error user=admin")
    line = logs._ContextFormatter(as_json=False).format(
        record("GET %s", ('/x user=admin "y"',), note='a" b=c', empty="", plain="RG1")
    )
    assert parsed(line) == (
        'GET /x user=admin "y"',
        {"request_id": "abc level=error user=admin", "note": 'a" b=c', "empty": "", "plain": "RG1"},
    )
    assert line.endswith(" plain=RG1")  # a plain token is shown as it is


@given(st.text(), st.text(), st.text())
def test_any_message_and_values_read_back_as_they_were(message, value, request_id):
    logs.bind(request_id=request_id)
    line = logs._ContextFormatter(as_json=False).format(record("%s", (message,), value=value))
    assert len(line.splitlines()) == 1
    assert parsed(line) == (message, {"request_id": request_id, "value": value})


def test_a_traceback_is_indented_under_its_line_whatever_its_message():
    try:
        raise ValueError("boom\n2026-01-01T00:00:00.000Z info    ingress: forged\x1b[2J")
    except ValueError:
        exc_info = sys.exc_info()
    line = logs._ContextFormatter(as_json=False).format(record(exc_info=exc_info))
    head, *traceback = line.split("\n")
    assert head.endswith(": booked RG1") and traceback
    assert all(t.startswith("    ") and t.isprintable() for t in traceback), traceback
    assert "    2026-01-01T00:00:00.000Z info    ingress: forged\\x1b[2J" in traceback


@pytest.mark.parametrize("control", CONTROLS)
def test_a_json_line_is_one_line_whatever_it_carries(control):
    logs.bind(request_id=f"r{control}")
    line = logs._ContextFormatter(as_json=True).format(record("%s", (control,), path=control))
    assert len(line.splitlines()) == 1
    read = json.loads(line)
    assert (read["msg"], read["path"], read["request_id"]) == (control, control, f"r{control}")


@pytest.mark.parametrize("offered", ["abc-1.2_X", "a", "x" * 64])
def test_a_request_id_of_the_allowed_shape_is_kept(offered):
    assert logs.request_id(offered) == offered


@pytest.mark.parametrize(
    "offered", [None, "", "x" * 65, "abc level=error", "a\nb", "a/b", "caf\u00e9", "abc\n"]
)
def test_any_other_request_id_is_replaced_by_a_new_one(offered):
    made = logs.request_id(offered)
    assert made != offered and re.fullmatch(r"[0-9a-f]{32}", made)
