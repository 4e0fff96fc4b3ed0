"""The floor for a cached route search: the least a cached answer can cost.

    gunicorn ... 'perf.floor_reads:create_floor_app()'    (perf/bench_reads.py)

Served by the same gunicorn settings as the ingress (gthread, WEB_WORKERS x
WEB_THREADS), GET /floor/routes?origin=&destination=&date= does one Redis GET
of routes:<origin>:<destination>:<date> (core.cache_keys.route_key) and answers
200 with the stored bytes as an application/json body (404 if the key is
absent). No query validation, no JSON parsing, no generation check, no search
counting, no rate limits, no metrics: gunicorn, Flask, one GET and a response.

An answer is stored as a header line "<generation>|<codec>|<cuts>", then the
body (core.cache_codec.encode_answer), the body zlib-compressed above 4 KB (every real
route result). The floor strips that header and decompresses, and only that
(core.cache_codec.split_answer): the ingress pays the same on every hit, and an HTTP
answer must be the JSON itself. The body is what the ingress serves for
limit=100: the stored bytes, unparsed.
"""

from __future__ import annotations

from datetime import date

import redis
from flask import Flask, Response, request

from core.cache_codec import split_answer
from core.cache_keys import route_key
from core.settings import load_settings


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
        _, _, body = split_answer(raw)
        return Response(body, mimetype="application/json")

    return app
