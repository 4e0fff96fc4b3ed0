"""The floor for a cached route search: the least a cached answer can cost.

    gunicorn ... 'perf.floor_reads:create_floor_app()'    (perf/bench_reads.py)

Served by the same gunicorn settings as the ingress (gthread, WEB_WORKERS x
WEB_THREADS), GET /floor/routes?origin=&destination=&date= does one Redis GET
of routes:<origin>:<destination>:<date> (core.routes.route_key) and answers
200 with the stored bytes as an application/json body (404 if the key is
absent). No query validation, no JSON parsing, no generation check, no search
counting, no rate limits, no metrics: gunicorn, Flask, one GET and a response.

Stored values above 4 KB (every real route result) are "z:" + base64 of zlib
(core/cache.py). The floor decompresses those, and only those, to the JSON the
entry holds ({"g": generation, "v": result}), untouched: an HTTP answer must
be JSON, and the ingress must pay the same decompression on every hit, so
returning the base64 text would make the floor cheaper than any cached answer
can be while shipping a body no client could use. The JSON is not parsed or
re-encoded: that, and the rest, is what the ingress adds on top.
"""

from __future__ import annotations

import base64
import zlib
from datetime import date

import redis
from flask import Flask, Response, request

from core.cache import COMPRESSED
from core.routes import route_key
from core.settings import load_settings

_PREFIX = COMPRESSED.encode()


def create_floor_app() -> Flask:
    settings = load_settings()  # the environment tools.processes.child_env built
    # As core.services.connect_redis, but bytes as stored (no text decoding).
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_SIZE,
        socket_timeout=settings.REDIS_TIMEOUT_S,
        socket_connect_timeout=settings.REDIS_TIMEOUT_S,
        health_check_interval=30,
    )
    app = Flask(__name__)

    @app.get("/floor/routes")
    def floor_routes():
        args = request.args
        key = route_key(args["origin"], args["destination"], date.fromisoformat(args["date"]))
        raw = client.get(key)
        if raw is None:
            return Response(b'{"error":"not cached"}', status=404, mimetype="application/json")
        if raw.startswith(_PREFIX):
            raw = zlib.decompress(base64.b64decode(raw[len(_PREFIX) :]))
        return Response(raw, mimetype="application/json")

    return app
